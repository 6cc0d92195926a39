"""What the fault campaign (bench/fault_campaign.py, issue 11) found, pinned on the core it lives
in: each test states the behaviour the package should have and failed before the fix. See
docs/fault_injection.md, "Findings". A finding not fixed yet is an ``xfail(strict=True)`` test
with its reason, so that the fix shows up as XPASS (a failure) and the marker goes with it."""

import numpy as np
import pytest

from coop_robot.control.controller import ArmController, ControllerInputs
from coop_robot.geometry import world_geometry

TICK_S = 0.01


def _run_reach(stale_from_s: float, stale_for_s: float, until_s: float) -> list[tuple[float, str]]:
    """The controller core driving a perfectly tracking arm toward its turn with the partner at
    rest outside the zone and fresh perception (30 ms old), except that no new perception
    arrives from ``stale_from_s`` for ``stale_for_s`` (a perception delay: a loaded host, a
    stalled node, a delayed link). Returns the controller's events until ``until_s``."""
    core = ArmController()
    rest = np.asarray(world_geometry().partner_rest_m, dtype=float)
    events, t, stamp = [], 0.0, 0.0
    while t < until_s:
        t = round(t + TICK_S, 6)
        if not stale_from_s <= t < stale_from_s + stale_for_s:
            stamp = t - 0.03
        q, _, _ = core.commanded_state(t)
        out = core.update(t, ControllerInputs(decision="act", partner_in_zone=False, perception_stamp_s=stamp,
                                              joint_positions=q, partner_hand_m=rest,
                                              partner_velocity_mps=np.zeros(3)))
        events += [(e.t_s, e.name) for e in out.events]
    return events


def test_a_reach_without_a_perception_delay_takes_its_turn():
    names = [n for _, n in _run_reach(stale_from_s=100.0, stale_for_s=0.0, until_s=3.0)]
    assert names == ["reach_start", "entry_commit", "act_start", "withdraw_start"]


# Finding F1 of the fault campaign (docs/fault_injection.md): a protective stop late in an
# uncommitted reach left it crawling toward its gate for 7-70 s of sim time, or at rest for good,
# and the partner waited. When separation monitoring let the arm go on from nearly at rest, the
# search for the fastest cruise speed that still stops at the gate took the "keep the speed it
# has" fallback for a fit, so the arm went on at the stop ramp's residue (2 % of its speed).
# (0.8 s, 0.12 s) crawled for 7.5 s at 1983d05, before the fix.
@pytest.mark.parametrize(("stale_from_s", "stale_for_s"),
                         [(0.6, 0.12), (0.78, 0.12), (0.8, 0.08), (0.8, 0.12), (0.82, 0.12), (0.85, 0.1)])
def test_a_short_perception_delay_late_in_the_reach_does_not_leave_it_crawling(stale_from_s, stale_for_s):
    events = _run_reach(stale_from_s=stale_from_s, stale_for_s=stale_for_s, until_s=6.0)
    names = [n for _, n in events]
    assert "ssm_stop" in names  # the delay did stop the arm (the scenario is the finding's)
    # The reach takes its turn within a second and a half of an undisturbed one (2.0 s).
    acts = [t for t, n in events if n == "act_start"]
    assert acts and acts[0] < 3.5, events
