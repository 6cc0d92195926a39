"""TickRateMonitor: windows of tick times against the asked rate."""

import math

import pytest

from coop_robot.timing.keepup import TickRateMonitor


def feed(monitor, period_s, seconds, cpu_per_tick_s=0.0, t0=0.0):
    windows, t, cpu = [], t0, 0.0
    while t < t0 + seconds:
        w = monitor.tick(t, t, cpu)
        if w is not None:
            windows.append(w)
        t += period_s
        cpu += cpu_per_tick_s
    return windows


def test_on_rate_ticks_are_not_behind_and_the_cpu_share_is_measured():
    m = TickRateMonitor(50.0, window_s=1.0)
    windows = feed(m, 0.02, 3.05, cpu_per_tick_s=0.001)
    assert len(windows) == 3
    for w in windows:
        assert w.rate_hz == pytest.approx(50.0, rel=0.03) and not w.behind
        assert w.cpu_share == pytest.approx(0.05, rel=0.05)   # 1 ms of CPU per 20 ms tick
        assert w.worst_interval_s == pytest.approx(0.02)
    assert not m.behind


def test_slow_ticks_are_behind_and_catching_up_clears_it():
    m = TickRateMonitor(50.0, window_s=1.0, min_fraction=0.8)
    slow = feed(m, 1 / 30, 2.05)
    assert slow and all(w.behind for w in slow) and m.behind
    assert slow[-1].rate_hz == pytest.approx(30.0, rel=0.05)
    assert "30.0 Hz of the 50 Hz asked" in m.describe(slow[-1])
    fast = feed(m, 0.02, 2.05, t0=3.0)
    assert fast and not fast[-1].behind and not m.behind


def test_one_long_stall_shows_as_the_worst_interval():
    m = TickRateMonitor(50.0, window_s=1.0)
    times = [0.02 * k for k in range(20)] + [0.38 + 0.6 + 0.02 * k for k in range(20)]
    windows = [w for w in (m.tick(t, t) for t in times) if w is not None]
    assert windows[0].worst_interval_s == pytest.approx(0.6, abs=1e-9)
    assert math.isnan(windows[0].cpu_share)


@pytest.mark.parametrize("kwargs", [dict(rate_hz=0.0), dict(rate_hz=50.0, window_s=-1.0),
                                    dict(rate_hz=50.0, min_fraction=0.0), dict(rate_hz=math.nan)])
def test_bad_settings_are_refused(kwargs):
    with pytest.raises(ValueError):
        TickRateMonitor(**kwargs)
