"""The policy node's per-tick fast paths give what the slow ones give: the NumPy copy of the mirror
network (outputs within float32 rounding of torch's, decisions tick for tick), the one-row
egocentric features and the one-configuration forward kinematics (bit for bit)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from coop_robot.control.kinematics import JOINT_NAMES, PandaKinematics
from coop_robot.envs.turn_env import TurnTakingEnv
from coop_robot.policy import PolicyError, make_policy
from coop_robot.policy import mirror_net as mn
from coop_robot.policy.mirror import DEFAULT_CHECKPOINT, MirrorPolicy
from coop_robot.policy.numpy_net import NumpyMirrorStep, erf, gelu

REPO = Path(__file__).resolve().parents[1]
CHECKPOINTS = [DEFAULT_CHECKPOINT, DEFAULT_CHECKPOINT.with_name("mirror_sync.pt"),
               REPO / "bench" / "checkpoints" / "mirror_unshared.pt"]   # shared, sync, separate encoders
OUTPUTS = ("p_act", "exit_forecast_s", "exit_log_var", "value")


def test_erf_and_gelu_match_the_exact_functions():
    x = np.linspace(-7.0, 7.0, 4001)
    assert np.max(np.abs(erf(x) - np.array([math.erf(v) for v in x]))) < 2e-7      # the approximation's bound
    x32 = x.astype(np.float32)                                                       # plus float32 arithmetic
    assert np.max(np.abs(erf(x32) - np.array([math.erf(float(v)) for v in x32]))) < 5e-7
    t = torch.from_numpy(x.astype(np.float32))
    assert np.max(np.abs(gelu(x.astype(np.float32)) - torch.nn.functional.gelu(t).numpy())) < 1e-6
    assert np.array_equal(erf(-x), -erf(x)) and gelu(np.zeros(3)).tolist() == [0.0, 0.0, 0.0]


@pytest.mark.parametrize("checkpoint", CHECKPOINTS, ids=lambda p: p.stem)
def test_numpy_step_matches_the_torch_network(checkpoint):
    net, _ = mn.load_checkpoint(checkpoint)
    cfg = net.config
    fast = NumpyMirrorStep(net)
    rng = np.random.default_rng(7)
    h_torch, h_np = None, None
    worst = dict.fromkeys(OUTPUTS + ("hidden",), 0.0)
    for i in range(200):
        sw = rng.normal(size=(cfg.window_steps, cfg.n_features)).astype(np.float32)
        ow = rng.normal(size=(cfg.window_steps, cfg.n_features)).astype(np.float32)
        if i % 10 == 0:
            ow[:] = 0.0                                   # an unobserved partner: zero rows
        ctx = rng.uniform(size=cfg.context_dim).astype(np.float32)
        with torch.inference_mode():
            out, h_torch = net.step(torch.from_numpy(sw)[None], torch.from_numpy(ow)[None],
                                    torch.from_numpy(ctx)[None], h_torch)
        got, h_np = fast.step(sw, ow, ctx, h_np)
        ref = {"p_act": float(torch.sigmoid(out["act_logit"][0])), "exit_forecast_s": float(out["exit_forecast_s"][0]),
               "exit_log_var": float(out["exit_log_var"][0]), "value": float(out["value"][0])}
        for key in OUTPUTS:
            worst[key] = max(worst[key], abs(ref[key] - got[key]))
        worst["hidden"] = max(worst["hidden"], float(np.max(np.abs(h_torch[0, 0].numpy() - h_np))))
    # float32 rounding, carried through 200 recurrent steps
    assert max(worst.values()) < 1e-5, worst


@pytest.mark.parametrize("task, partner", [("turn_taking", "erratic"), ("sync", "typical")])
def test_numpy_engine_decides_as_torch_tick_for_tick(task, partner):
    logs = {}
    for engine in ("torch", "numpy"):
        policy = make_policy("mirror", task=task, engine=engine)
        assert policy.engine == engine
        ticks = []
        env = TurnTakingEnv(partner, seed=5, task=task)
        try:
            env.run(policy, 3, seed=5, on_step=lambda obs, d, info, p=policy, out=ticks: out.append(
                (obs.t_s, d.action, p.p_act)))
        finally:
            env.close()
        logs[engine] = ticks
    a, b = logs["torch"], logs["numpy"]
    assert len(a) == len(b) > 500
    assert [t[:2] for t in a] == [t[:2] for t in b]
    assert {t[1] for t in a} >= {"act", "wait"}       # the session had decisions both ways
    assert max(abs(x[2] - y[2]) for x, y in zip(a, b)) < 1e-5


def test_numpy_engine_refuses_a_replaced_network_and_bad_engines():
    policy = MirrorPolicy(engine="numpy")
    policy.reset()
    policy.net = mn.MirrorPolicyNet(policy.net.config)    # as training and analyses swap it
    from coop_robot.policy.base import Observation
    with pytest.raises(PolicyError, match="engine='torch'"):
        policy.step(Observation(t_s=0.0, partner_in_zone=False, perception_age_s=0.0,
                                partner_hand_m=np.zeros(3), robot_state="home", robot_ee_m=np.zeros(3)))
    with pytest.raises(PolicyError, match="engine must be one of"):
        MirrorPolicy(engine="onnx")


def test_one_row_features_equal_the_vectorised_ones_bit_for_bit():
    policy = MirrorPolicy()
    rng = np.random.default_rng(3)
    centre = policy.zone.center_m
    for which, origin in (("self", policy.robot_home_m), ("other", policy.partner_rest_m)):
        frame = policy._frame(which, origin)
        row = mn.EgocentricRow(frame, policy.zone)
        for i in range(3000):
            point = centre + rng.uniform(-0.4, 0.4, 3) if i % 2 else rng.uniform(-2.0, 3.0, 3)
            if i % 3 == 0:
                point = np.clip(point, policy.zone.min_m, policy.zone.max_m)   # on the boundary
            velocity = rng.normal(scale=3.0, size=3)
            if i % 17 == 0:
                point[i % 3] = np.nan                       # not observed
            if i % 13 == 0:
                velocity[0] = np.inf                       # unknown velocity
            if i % 29 == 0:
                point = origin + rng.uniform(-50, 50, 3)   # far outside: clipped features
            if i % 31 == 0:
                # Garbage from upstream (the fault campaign's "huge" hand): squares overflow to inf.
                point = rng.choice([-1.0, 1.0], 3) * 10.0 ** rng.uniform(150, 308, 3)
                velocity = rng.choice([-1.0, 1.0], 3) * 10.0 ** rng.uniform(150, 308, 3)
            with np.errstate(over="ignore"):   # the huge points' squares overflow to inf, as intended
                expected = mn.egocentric_features(point[None], velocity[None], origin, policy.zone, frame)[0]
            got = row(point, velocity)
            assert got.dtype == np.float32 and np.array_equal(got, expected), (point, velocity, got, expected)


def test_one_configuration_forward_kinematics_equals_the_batch_bit_for_bit():
    rng = np.random.default_rng(11)
    for base in ((0.0, 0.0, 0.0), (0.1, -0.3, 0.75)):
        kin = PandaKinematics(base_m=base)
        q = rng.uniform(-3.2, 3.2, size=(3000, 7))
        batch = kin.fk(q)
        for i in range(len(q)):
            assert np.array_equal(kin.ee_position(q[i]), batch[i])
        assert kin.ee_position(q[:4]).shape == (4, 3)   # a batch still goes to fk


def test_the_policy_node_takes_the_newest_joint_state_that_has_the_arm():
    from sensor_msgs.msg import JointState

    from coop_robot.nodes.policy_node import newest_arm_positions

    arm = JointState(name=list(JOINT_NAMES) + ["panda_finger_joint1"], position=[0.1 * i for i in range(8)])
    newer_arm = JointState(name=list(JOINT_NAMES), position=[0.2] * 7)
    fingers = JointState(name=["panda_finger_joint1", "panda_finger_joint2"], position=[0.04, 0.04])
    q, errors = newest_arm_positions([arm, newer_arm, fingers], list(JOINT_NAMES))
    assert np.array_equal(q, [0.2] * 7) and len(errors) == 1 and "panda_joint1" in errors[0]
    q, errors = newest_arm_positions([newer_arm, arm], list(JOINT_NAMES))
    assert np.allclose(q, [0.1 * i for i in range(7)]) and errors == []
    q, errors = newest_arm_positions([fingers, fingers], list(JOINT_NAMES))
    assert q is None and len(errors) == 2
    assert newest_arm_positions([], list(JOINT_NAMES)) == (None, [])


def test_the_policy_node_decodes_only_the_joint_states_a_tick_uses():
    """The node keeps /joint_states as CDR bytes (a raw subscription) and decodes the newest first,
    only until one has the arm: bytes that are not a JointState are a reason, not a crash."""
    from rclpy.serialization import serialize_message
    from sensor_msgs.msg import JointState

    from coop_robot.nodes.policy_node import newest_arm_positions

    arm = serialize_message(JointState(name=list(JOINT_NAMES), position=[0.3] * 7))
    fingers = serialize_message(JointState(name=["panda_finger_joint1"], position=[0.04]))
    q, errors = newest_arm_positions([b"\x00\x01garbage", arm, fingers, arm[:12]], list(JOINT_NAMES))
    assert np.array_equal(q, [0.3] * 7) and len(errors) == 2
    assert "undecodable" in errors[0] and "panda_joint1" in errors[1]
    q, errors = newest_arm_positions([b"\x00\x01garbage"], list(JOINT_NAMES))
    assert q is None and len(errors) == 1 and "undecodable" in errors[0]
