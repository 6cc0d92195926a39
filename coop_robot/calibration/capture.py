"""Which joint state belongs to a captured image, and was the arm still? (No ROS.)

A live capture pairs the newest colour image with the arm's joint state at the image's stamp. A
sample is only good when the arm stood still around that moment: a board moving during the
exposure, or a joint state from a different instant, puts the flange somewhere the image does not
show it. :class:`JointStateHistory` keeps the recent joint states and answers both questions.
"""

from __future__ import annotations

from collections import deque

import numpy as np

from coop_robot.control.kinematics import JOINT_NAMES, select_joint_positions

#: The joint state paired with an image must be this close to the image's stamp (s).
MAX_PAIRING_GAP_S = 0.05
#: Window around the image's stamp over which the arm must not have moved (s).
STILL_WINDOW_S = 0.25
#: Largest change of any joint within that window for the arm to count as still (rad).
STILL_TOLERANCE_RAD = 0.001


class NotReady(RuntimeError):
    """No usable joint state for this image yet; the message says why and what to do."""


class JointStateHistory:
    """The last ``capacity`` arm joint states (stamp s, positions rad in ``joint_names`` order)."""

    def __init__(self, joint_names=JOINT_NAMES, capacity: int = 500) -> None:
        self.joint_names = tuple(joint_names)
        self._states: deque[tuple[float, np.ndarray]] = deque(maxlen=capacity)

    def add(self, stamp_s: float, names, positions) -> None:
        """Record one JointState; one without the arm's joints (e.g. a gripper's) is ignored."""
        try:
            q = select_joint_positions(names, positions, self.joint_names)
        except ValueError:
            return
        if np.all(np.isfinite(q)):
            self._states.append((float(stamp_s), q))

    def __len__(self) -> int:
        return len(self._states)

    def at_rest(self, stamp_s: float) -> np.ndarray:
        """The arm's positions (rad) at ``stamp_s``; raises :class:`NotReady` when no joint state is
        close enough to it, or the arm moved within :data:`STILL_WINDOW_S` of it."""
        if not self._states:
            raise NotReady("no joint state received yet")
        stamps = np.array([s for s, _ in self._states])
        nearest = int(np.argmin(np.abs(stamps - stamp_s)))
        gap = abs(stamps[nearest] - stamp_s)
        if gap > MAX_PAIRING_GAP_S:
            raise NotReady(f"the nearest joint state is {gap:.3f} s from the image (limit {MAX_PAIRING_GAP_S} s); "
                           f"are the camera and the arm on the same clock?")
        window = np.abs(stamps - stamp_s) <= STILL_WINDOW_S
        positions = np.array([q for (_, q), keep in zip(self._states, window) if keep])
        motion = float(np.max(positions.max(axis=0) - positions.min(axis=0)))
        if motion > STILL_TOLERANCE_RAD:
            raise NotReady(f"the arm moved {np.degrees(motion):.2f} deg within {STILL_WINDOW_S} s of the image; "
                           f"let it come to rest and capture again")
        return self._states[nearest][1].copy()
