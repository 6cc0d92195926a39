"""What the fault campaign (bench/fault_campaign.py, issue 11) found and is not fixed yet.

Each finding is pinned on the core it lives in, as an ``xfail(strict=True)`` test with its
reason: the test states the behaviour the package should have, fails today, and a fix shows up
as XPASS (which strict turns into a failure), so the marker is removed with the fix. See
docs/fault_injection.md, "Findings".
"""

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


@pytest.mark.xfail(strict=True, reason=(
    "Finding F1 of the fault campaign: a protective stop late in an uncommitted reach leaves it crawling. When "
    "separation monitoring lets the arm go on, ArmController._speed_profile finds no room to ramp up to the "
    "cruise speed and brake again before the gate, and falls back to 'keep the speed it has': the residue of "
    "the stop ramp, a fraction of a percent or nothing. The arm creeps toward its gate for 15-70 s of sim time "
    "or stands still for good; the entry is committed only at the gate, and no timeout covers it "
    "(staging_timeout_s counts one unbroken protective stop, or a wait at the waiting point). The arm stays "
    "outside the zone (safe), but the robot does not take its turn and the partner waits. In the graph a "
    "0.1-0.3 s perception delay at that point of the reach is enough: a loaded host, a stalled perception "
    "or policy node, a delayed link."))
def test_a_short_perception_delay_late_in_the_reach_does_not_leave_it_stuck():
    events = _run_reach(stale_from_s=0.6, stale_for_s=0.12, until_s=10.0)
    names = [n for _, n in events]
    assert "ssm_stop" in names  # the delay did stop the arm (the scenario is the finding's)
    # Within 10 s the reach either takes its turn or gives it up.
    assert "act_start" in names or "abort" in names, events
