"""Panda kinematics: FK against PyBullet's panda.urdf, Jacobian, IK round trips and failures."""

import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest

from coop_robot.control.kinematics import (
    JOINT_LOWER_RAD,
    JOINT_NAMES,
    JOINT_UPPER_RAD,
    JOINT_VELOCITY_LIMIT_RAD_S,
    IKError,
    PandaKinematics,
)
from coop_robot.geometry import Zone

HOME = np.array([0.0, -0.5, 0.0, -2.3, 0.0, 1.85, 0.785])
ZONE = Zone((0.45, -0.20, 0.626), (0.75, 0.20, 0.926))
GRASPTARGET_LINK = 11


@pytest.fixture(scope="module")
def pybullet_panda():
    import pybullet as p
    import pybullet_data
    client = p.connect(p.DIRECT)
    p.setAdditionalSearchPath(pybullet_data.getDataPath(), physicsClientId=client)
    base = [0.0, 0.0, 0.626]
    robot = p.loadURDF("franka_panda/panda.urdf", base, useFixedBase=True, physicsClientId=client)
    yield p, client, robot, base
    p.disconnect(physicsClientId=client)


def _pybullet_ee(p, client, robot, q):
    for i, v in enumerate(q):
        p.resetJointState(robot, i, float(v), physicsClientId=client)
    return np.array(p.getLinkState(robot, GRASPTARGET_LINK, computeForwardKinematics=True,
                                   physicsClientId=client)[4])


def test_fk_matches_pybullet_grasptarget_on_random_configurations(pybullet_panda):
    p, client, robot, base = pybullet_panda
    assert p.getJointInfo(robot, GRASPTARGET_LINK, physicsClientId=client)[12] == b"panda_grasptarget"
    kin = PandaKinematics(base)
    rng = np.random.default_rng(7)
    configs = rng.uniform(JOINT_LOWER_RAD, JOINT_UPPER_RAD, size=(60, 7))
    expected = np.array([_pybullet_ee(p, client, robot, q) for q in configs])
    errors = np.linalg.norm(kin.fk_many(configs) - expected, axis=1)
    assert errors.max() < 1e-3, f"worst FK error {errors.max() * 1000:.3f} mm"


def test_fk_follows_the_robot_base(pybullet_panda):
    q = HOME
    shifted = PandaKinematics((0.1, -0.2, 0.5)).fk(q)
    assert np.allclose(shifted - PandaKinematics((0.0, 0.0, 0.0)).fk(q), [0.1, -0.2, 0.5])


def test_vectorised_fk_matches_single_configurations():
    kin = PandaKinematics()
    configs = np.random.default_rng(1).uniform(JOINT_LOWER_RAD, JOINT_UPPER_RAD, size=(20, 7))
    batch = kin.fk_many(configs)
    assert batch.shape == (20, 3)
    assert np.allclose(batch, [kin.fk(q) for q in configs])


def test_arm_positions_are_picked_by_name_and_missing_joints_named():
    names = ["panda_finger_joint1", *reversed(JOINT_NAMES)]
    positions = [0.04, *reversed(HOME.tolist())]
    assert np.allclose(PandaKinematics.arm_positions(names, positions), HOME)
    with pytest.raises(ValueError, match="panda_joint7"):
        PandaKinematics.arm_positions(list(JOINT_NAMES[:6]), HOME[:6].tolist())


def test_position_jacobian_matches_finite_differences():
    kin = PandaKinematics()
    q = np.array([0.3, 0.2, -0.4, -1.9, 0.5, 2.0, 0.1])
    jp, _ = kin.jacobian(q)
    eps = 1e-6
    numeric = np.stack([(kin.fk(q + eps * e) - kin.fk(q - eps * e)) / (2 * eps) for e in np.eye(7)], axis=1)
    assert np.allclose(jp, numeric, atol=1e-6)


def test_joint_limits_are_the_datasheet_values_in_panda_urdf():
    import pybullet_data

    root = ET.parse(Path(pybullet_data.getDataPath()) / "franka_panda" / "panda.urdf").getroot()
    joints = {j.get("name"): j for j in root.iter("joint")}
    for i, name in enumerate(JOINT_NAMES):
        soft = joints[name].find("safety_controller")
        hard = joints[name].find("limit")
        assert float(soft.get("soft_lower_limit")) == pytest.approx(JOINT_LOWER_RAD[i])
        assert float(soft.get("soft_upper_limit")) == pytest.approx(JOINT_UPPER_RAD[i])
        assert float(hard.get("velocity")) == pytest.approx(JOINT_VELOCITY_LIMIT_RAD_S[i])
        # The soft (datasheet) range lies inside the URDF's hard range.
        assert float(hard.get("lower")) <= JOINT_LOWER_RAD[i] < JOINT_UPPER_RAD[i] <= float(hard.get("upper"))


def test_home_is_outside_the_zone():
    assert not ZONE.contains(PandaKinematics().fk(HOME), margin_m=0.02)


@pytest.mark.parametrize("target", [
    (0.60, -0.08, 0.72), (0.62, 0.06, 0.70), (0.50, -0.15, 0.66), (0.72, 0.15, 0.90),
    (0.47, 0.18, 0.88), (0.74, -0.18, 0.65), (0.60, 0.0, 0.80),
])
def test_ik_round_trip_on_zone_targets(target):
    kin = PandaKinematics()
    q = kin.ik(target, seed_rad=HOME, nominal_rad=HOME)
    assert np.linalg.norm(kin.fk(q) - target) <= 1e-3
    assert kin.within_limits(q)
    # The soft tool-down preference keeps the hand pointing roughly at the table.
    assert kin.tool_axis(q)[2] < -0.9


@pytest.mark.parametrize("target", [(2.0, 0.0, 1.0), (0.0, 0.0, 2.5), (0.3, 0.0, -0.6)])
def test_ik_raises_for_unreachable_targets(target):
    with pytest.raises(IKError, match="no IK solution"):
        PandaKinematics().ik(target, seed_rad=HOME)


def test_ik_rejects_non_finite_targets():
    with pytest.raises(IKError, match="finite"):
        PandaKinematics().ik((np.nan, 0.0, 0.8), seed_rad=HOME)
