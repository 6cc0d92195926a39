"""Mirror policy network: egocentric features, shapes and recurrence, InfoNCE, checkpoints, policy loop."""

import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from coop_robot.geometry import Zone, minimum_jerk
from coop_robot.policy import Observation, make_policy
from coop_robot.policy.mirror import (
    DEFAULT_PARTNER_REST_M,
    DEFAULT_ROBOT_HOME_EE_M,
    DEFAULT_ZONE_MAX_M,
    DEFAULT_ZONE_MIN_M,
    MirrorPolicy,
)
from coop_robot.policy.mirror_net import (
    CONTEXT_FIELDS,
    FEATURE_NAMES,
    CheckpointError,
    EgocentricFrame,
    MirrorNetConfig,
    MirrorPolicyNet,
    ObservationSpec,
    egocentric_features,
    info_nce,
    load_checkpoint,
    save_checkpoint,
    supervised_info_nce,
    task_context,
    zone_signed_distance_m,
)

ZONE = Zone.from_lists(DEFAULT_ZONE_MIN_M, DEFAULT_ZONE_MAX_M)
ROOT = Path(__file__).resolve().parents[1]


def _ego_reach(n=40, duration_s=0.8):
    """A minimum-jerk reach from the origin to 0.9 of the way to the zone centre, egocentric units."""
    t = np.linspace(0.0, duration_s, n)
    s, ds, _ = minimum_jerk(t, duration_s)
    goal = np.array([0.9, 0.05, -0.1])
    return s[:, None] * goal, ds[:, None] * goal


def _to_world(frame: EgocentricFrame, ego_p, ego_v):
    return frame.origin_m + ego_p * frame.scale_m @ frame.axes, ego_v * frame.scale_m @ frame.axes


def _net(shared=True, seed=0):
    torch.manual_seed(seed)
    return MirrorPolicyNet(MirrorNetConfig(shared_encoder=shared)).eval()


def _inputs(b=3, t=7, seed=1):
    g = torch.Generator().manual_seed(seed)
    cfg = MirrorNetConfig()
    shape = (b, t, cfg.window_steps, cfg.n_features)
    return (torch.randn(shape, generator=g), torch.randn(shape, generator=g),
            torch.randn((b, t, cfg.context_dim), generator=g))


# ------------------------------------------------------------------ features
def test_mirrored_reaches_give_identical_features_in_a_symmetric_world():
    # Two agents facing each other across the zone centre: the box maps onto itself under the
    # 180 deg turn about z, so every feature (zone distance included) must match.
    c = ZONE.center_m
    robot_rest = c + np.array([-0.5, 0.1, 0.2])
    partner_rest = c + np.array([0.5, -0.1, 0.2])
    ego_p, ego_v = _ego_reach()
    feats = []
    for rest in (robot_rest, partner_rest):
        p, v = _to_world(EgocentricFrame.facing_zone(rest, ZONE), ego_p, ego_v)
        feats.append(egocentric_features(p, v, rest, ZONE))
    np.testing.assert_allclose(feats[0], feats[1], atol=1e-5)
    assert feats[0][0, 7] == 0 and feats[0][-1, 7] == 1      # starts outside, ends inside


def test_robot_and_partner_reach_share_kinematic_features_in_the_real_world():
    ego_p, ego_v = _ego_reach()
    feats = []
    for rest in (DEFAULT_ROBOT_HOME_EE_M, DEFAULT_PARTNER_REST_M):
        p, v = _to_world(EgocentricFrame.facing_zone(rest, ZONE), ego_p, ego_v)
        feats.append(egocentric_features(p, v, rest, ZONE))
    np.testing.assert_allclose(feats[0][:, :6], feats[1][:, :6], atol=1e-5)
    assert np.all(feats[0][:, 8] == 1)
    np.testing.assert_allclose(feats[0][0, :3], 0.0, atol=1e-6)  # rest point is the origin


def test_frame_axes_point_at_zone_and_up():
    frame = EgocentricFrame.facing_zone(DEFAULT_PARTNER_REST_M, ZONE)
    heading = ZONE.center_m - np.asarray(DEFAULT_PARTNER_REST_M)
    heading[2] = 0
    np.testing.assert_allclose(frame.axes[0], heading / np.linalg.norm(heading))
    np.testing.assert_allclose(frame.axes[2], [0, 0, 1])
    np.testing.assert_allclose(frame.axes @ frame.axes.T, np.eye(3), atol=1e-12)
    np.testing.assert_allclose(np.linalg.norm(frame.points(ZONE.center_m[None])), 1.0)


def test_origin_above_zone_centre_is_rejected():
    with pytest.raises(ValueError, match="no horizontal heading"):
        EgocentricFrame.facing_zone(ZONE.center_m + [0, 0, 0.5], ZONE)


def test_undetected_hand_is_zeroed_and_masked():
    p = np.array([[1.0, 0.1, 0.8], [np.nan, np.nan, np.nan], [0.6, 0.0, 0.75]])
    v = np.array([[0.1, 0, 0], [0.2, 0, 0], [np.nan, np.nan, np.nan]])
    f = egocentric_features(p, v, DEFAULT_PARTNER_REST_M, ZONE)
    assert f.shape == (3, len(FEATURE_NAMES)) and f.dtype == np.float32
    assert np.all(np.isfinite(f))
    np.testing.assert_array_equal(f[1], 0.0)
    np.testing.assert_array_equal(f[:, 8], [1, 0, 1])
    np.testing.assert_array_equal(f[2, 3:6], 0.0)              # unknown velocity counts as zero
    assert f[2, 7] == 1 and f[2, 6] < 0 and f[0, 6] > 0


def test_zone_signed_distance():
    d = zone_signed_distance_m(ZONE, [ZONE.center_m, [0.85, 0.0, 0.776], [0.5, 0.0, 0.776]])
    np.testing.assert_allclose(d, [-0.15, 0.10, -0.05], atol=1e-9)


def test_task_context_layout():
    ctx = task_context("reaching", True, None, math.inf, 2.5, 0.04)
    assert ctx.shape == (len(CONTEXT_FIELDS),)
    assert ctx[CONTEXT_FIELDS.index("robot_state_reaching")] == 1 and ctx[:8].sum() == 1
    assert ctx[CONTEXT_FIELDS.index("partner_in_zone")] == 0
    assert ctx[CONTEXT_FIELDS.index("since_partner_enter")] == 1.0
    assert ctx[CONTEXT_FIELDS.index("since_partner_exit")] == pytest.approx(0.5)
    assert ctx[CONTEXT_FIELDS.index("perception_age")] == pytest.approx(0.04)


# The egocentric origins the shipped checkpoint (coop_robot/policy/checkpoints/mirror.pt) was trained
# with: the raised home of speed and separation monitoring (retrained 2026-12-02), pinned here.
TRAINED_ROBOT_HOME_EE_M = (0.4329, 0.0, 1.2691)
TRAINED_PARTNER_REST_M = (1.02, 0.15, 0.80)


def test_policy_geometry_is_derived_from_world_yaml():
    from coop_robot.control.kinematics import PandaKinematics

    world = yaml.safe_load((ROOT / "config" / "world.yaml").read_text())["/**"]["ros__parameters"]
    assert tuple(world["zone_min_m"]) == DEFAULT_ZONE_MIN_M and tuple(world["zone_max_m"]) == DEFAULT_ZONE_MAX_M
    assert tuple(world["partner_rest_m"]) == DEFAULT_PARTNER_REST_M
    ee = PandaKinematics(base_m=world["robot_base_m"]).ee_position(np.array(world["robot_home_joint_positions_rad"]))
    np.testing.assert_array_equal(ee, DEFAULT_ROBOT_HOME_EE_M)


def test_derived_geometry_is_what_the_shipped_checkpoint_was_trained_with():
    # The trained home EE was this FK rounded to 0.1 mm; the rest point is the same number.
    assert tuple(np.round(DEFAULT_ROBOT_HOME_EE_M, 4)) == TRAINED_ROBOT_HOME_EE_M
    assert DEFAULT_PARTNER_REST_M == TRAINED_PARTNER_REST_M
    policy = MirrorPolicy()
    np.testing.assert_allclose(policy.robot_home_m, TRAINED_ROBOT_HOME_EE_M, atol=5e-5)
    np.testing.assert_array_equal(policy.partner_rest_m, TRAINED_PARTNER_REST_M)


def test_shipped_checkpoint_decides_as_trained_with_the_derived_geometry():
    """Two turns of the fast environment: the derived origins and the trained constants give the same
    decision on every tick (and P(act) within 1e-3)."""
    from coop_robot.envs.turn_env import TurnTakingEnv

    derived = MirrorPolicy()
    trained = MirrorPolicy()
    trained.robot_home_m = np.array(TRAINED_ROBOT_HOME_EE_M)
    trained.partner_rest_m = np.array(TRAINED_PARTNER_REST_M)
    acts = 0
    with TurnTakingEnv("typical", seed=3) as env:
        obs = env.reset()
        while len(env.tracker.records) < 2 and env.t_s < 40.0:
            a, b = derived.step(obs), trained.step(obs)
            assert a.action == b.action, f"t = {obs.t_s:.2f} s"
            assert derived.p_act == pytest.approx(trained.p_act, abs=1e-3)
            acts += a.action == "act"
            obs, _ = env.step(a.action)
    assert len(env.tracker.records) == 2 and acts > 0


def test_the_policy_follows_the_cell_it_is_given(tmp_path):
    path, _ = _save(tmp_path)
    moved = MirrorPolicy(checkpoint=path, robot_base_m=(0.1, 0.0, 0.626), partner_rest_m=(1.1, -0.1, 0.9))
    np.testing.assert_allclose(moved.robot_home_m, np.array(DEFAULT_ROBOT_HOME_EE_M) + [0.1, 0.0, 0.0], atol=1e-12)
    np.testing.assert_array_equal(moved.partner_rest_m, [1.1, -0.1, 0.9])
    with pytest.raises(ValueError, match="robot_home_joint_positions_rad must be 7"):
        MirrorPolicy(checkpoint=path, robot_home_joint_positions_rad=[0.0] * 6)


# ------------------------------------------------------------------ network
def test_sequence_and_step_output_shapes():
    net = _net()
    s, o, c = _inputs(b=3, t=7)
    out, h = net.forward_sequence(s, o, c)
    assert h.shape == (1, 3, 64)
    for key in ("exit_forecast_s", "exit_log_var", "act_logit", "value"):
        assert out[key].shape == (3, 7)
    assert out["z_self"].shape == out["z_other"].shape == (3, 7, 32)
    assert out["phase_logits_self"].shape == (3, 7, 4)
    assert torch.all(out["exit_forecast_s"] >= 0)
    step_out, h1 = net.step(s[:, 0], o[:, 0], c[:, 0])
    assert step_out["act_logit"].shape == (3,) and step_out["z_self"].shape == (3, 32) and h1.shape == (1, 3, 64)


def test_step_by_step_equals_sequence_forward():
    net = _net()
    s, o, c = _inputs(b=2, t=9)
    with torch.no_grad():
        seq, h_seq = net.forward_sequence(s, o, c)
        h = None
        for t in range(9):
            out, h = net.step(s[:, t], o[:, t], c[:, t], h)
            for key in ("exit_forecast_s", "act_logit", "value"):
                torch.testing.assert_close(out[key], seq[key][:, t], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(h, h_seq, atol=1e-5, rtol=1e-5)


def test_recurrent_state_carries_across_calls():
    net = _net()
    s, o, c = _inputs(b=1, t=6)
    with torch.no_grad():
        full, _ = net.forward_sequence(s, o, c)
        _, h = net.forward_sequence(s[:, :3], o[:, :3], c[:, :3])
        rest, _ = net.forward_sequence(s[:, 3:], o[:, 3:], c[:, 3:], h)
        fresh, _ = net.forward_sequence(s[:, 3:], o[:, 3:], c[:, 3:])
    torch.testing.assert_close(rest["act_logit"], full["act_logit"][:, 3:], atol=1e-5, rtol=1e-5)
    assert not torch.allclose(fresh["act_logit"], full["act_logit"][:, 3:], atol=1e-4)


def test_shared_encoder_is_one_module_and_separate_doubles_it():
    shared, separate = _net(shared=True), _net(shared=False)
    enc = sum(p.numel() for p in shared.encoders[0].parameters())
    head = sum(p.numel() for p in shared.phase_heads[0].parameters())
    n_shared = sum(p.numel() for p in shared.parameters())
    n_separate = sum(p.numel() for p in separate.parameters())
    assert n_separate - n_shared == enc + head
    assert n_shared < 200_000
    s, _, _ = _inputs(b=1, t=1)
    torch.testing.assert_close(shared.encode_self(s), shared.encode_other(s))
    assert not torch.allclose(separate.encode_self(s), separate.encode_other(s))


def test_info_nce_is_low_for_aligned_pairs_and_high_for_shuffled():
    g = torch.Generator().manual_seed(0)
    z = torch.randn(16, 8, generator=g)
    aligned = info_nce(z, z + 0.01 * torch.randn(16, 8, generator=g))
    shuffled = info_nce(z, z[torch.randperm(16, generator=g)])
    assert aligned < 0.1 and shuffled > 2.0


def test_info_nce_gradient_flows_and_optimisation_aligns_two_encoders():
    torch.manual_seed(0)
    phases = torch.randn(32, 6)                       # 32 "action phases", two views of each
    view_a, view_b = phases + 0.05 * torch.randn(32, 6), phases @ torch.randn(6, 6) + 0.05 * torch.randn(32, 6)
    enc_a, enc_b = torch.nn.Linear(6, 8), torch.nn.Linear(6, 8)
    opt = torch.optim.Adam([*enc_a.parameters(), *enc_b.parameters()], lr=0.05)
    first = info_nce(enc_a(view_a), enc_b(view_b))
    first.backward()
    assert enc_a.weight.grad is not None and enc_a.weight.grad.abs().sum() > 0
    for _ in range(60):
        opt.zero_grad()
        loss = info_nce(enc_a(view_a), enc_b(view_b))
        loss.backward()
        opt.step()
    assert loss.item() < 0.5 * first.item()


def test_supervised_info_nce_prefers_phase_clusters():
    labels = torch.tensor([0, 0, 1, 1, 2, 2, 3, 3])
    centres = torch.eye(4) * 5
    clustered = centres[labels] + 0.1 * torch.randn(8, 4)
    shuffled = labels[torch.tensor([0, 2, 4, 6, 1, 3, 5, 7])]
    assert supervised_info_nce(clustered, labels) < supervised_info_nce(clustered, shuffled)


def test_info_nce_rejects_mismatched_batches():
    with pytest.raises(ValueError, match="equal shape"):
        info_nce(torch.zeros(4, 8), torch.zeros(3, 8))


# ------------------------------------------------------------------ checkpoints
def _save(tmp_path, net=None, name="mirror.pt", **kw):
    net = net or _net()
    return save_checkpoint(tmp_path / name, net, net.config, ObservationSpec(), kw.get("extra", {"seed": 0})), net


def test_checkpoint_round_trip_gives_identical_outputs(tmp_path):
    path, net = _save(tmp_path, extra={"seed": 3, "train": {"lr": 1e-3, "steps": [1, 2]}})
    raw = torch.load(path, weights_only=True, map_location="cpu")
    assert raw["package_version"] and raw["format_version"] == 1 and raw["config"]["hidden_dim"] == 64
    assert path.stat().st_size < 5 * 1024 * 1024
    loaded, info = load_checkpoint(path, expected_spec=ObservationSpec())
    assert info.extra["train"]["steps"] == [1, 2] and info.config == net.config and not loaded.training
    s, o, c = _inputs()
    with torch.no_grad():
        a, ha = net.forward_sequence(s, o, c)
        b, hb = loaded.forward_sequence(s, o, c)
    for key in a:
        torch.testing.assert_close(a[key], b[key], atol=0, rtol=0)
    torch.testing.assert_close(ha, hb, atol=0, rtol=0)


def test_missing_checkpoint_is_named(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "nope.pt")


def test_truncated_checkpoint_is_rejected(tmp_path):
    path, _ = _save(tmp_path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="corrupt"):
        load_checkpoint(path)


def test_garbage_file_is_rejected(tmp_path):
    path = tmp_path / "junk.pt"
    path.write_bytes(b"definitely not a checkpoint" * 10)
    with pytest.raises(CheckpointError, match="mirror checkpoint .*junk.pt"):
        load_checkpoint(path)


def test_pickled_objects_are_refused_by_weights_only(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"format": "coop_robot.mirror_policy", "obj": Path("/x")}, path)
    with pytest.raises(CheckpointError, match="weights_only"):
        load_checkpoint(path)


def test_foreign_checkpoint_is_rejected(tmp_path):
    path = tmp_path / "plain_state_dict.pt"
    torch.save(_net().state_dict(), path)
    with pytest.raises(CheckpointError, match="not a coop_robot mirror checkpoint"):
        load_checkpoint(path)


def test_format_version_mismatch_is_rejected(tmp_path):
    path, _ = _save(tmp_path)
    raw = torch.load(path, weights_only=True)
    raw["format_version"] = 99
    torch.save(raw, path)
    with pytest.raises(CheckpointError, match="format version 99"):
        load_checkpoint(path)


def test_observation_spec_mismatch_names_the_field(tmp_path):
    path, _ = _save(tmp_path)
    with pytest.raises(CheckpointError, match="tick_rate_hz: 50.0 vs 30.0"):
        load_checkpoint(path, expected_spec=ObservationSpec(tick_rate_hz=30.0))


def test_weights_that_do_not_fit_the_config_are_rejected(tmp_path):
    path, _ = _save(tmp_path)
    raw = torch.load(path, weights_only=True)
    raw["config"]["hidden_dim"] = 32
    torch.save(raw, path)
    with pytest.raises(CheckpointError, match="weights do not fit"):
        load_checkpoint(path)


def test_config_that_does_not_fit_the_spec_is_rejected(tmp_path):
    path, _ = _save(tmp_path)
    raw = torch.load(path, weights_only=True)
    raw["config"]["window_steps"] = 8
    torch.save(raw, path)
    with pytest.raises(CheckpointError, match="window_steps 8"):
        load_checkpoint(path)


def test_save_refuses_non_plain_extra(tmp_path):
    net = _net()
    with pytest.raises(ValueError, match="extra"):
        save_checkpoint(tmp_path / "x.pt", net, net.config, ObservationSpec(), {"path": Path("/x")})
    assert not (tmp_path / "x.pt").exists()


# ------------------------------------------------------------------ policy wrapper
def _partner_hand(t_s):
    """Partner reaches into the zone over 0.8 s from t = 0.2 s, dwells, withdraws from t = 1.5 s."""
    rest, target = np.array(DEFAULT_PARTNER_REST_M), np.array([0.62, 0.06, 0.70])
    s_in, _, _ = minimum_jerk(t_s - 0.2, 0.8)
    s_out, _, _ = minimum_jerk(t_s - 1.5, 0.8)
    return rest + (float(s_in) - float(s_out)) * (target - rest)


def test_mirror_policy_decision_loop_with_random_checkpoint(tmp_path):
    path, _ = _save(tmp_path)
    policy = make_policy("mirror", checkpoint=str(path))
    assert isinstance(policy, MirrorPolicy) and not policy.yields_to_partner
    decisions, forecasts, in_zone_flags = [], [], []
    hidden_norms = []
    for k in range(150):
        t = k * 0.02
        hand = _partner_hand(t)
        in_zone = ZONE.contains(hand)
        obs = Observation(t_s=t, partner_in_zone=in_zone, perception_age_s=0.03, partner_hand_m=hand,
                          robot_state="home", robot_ee_m=np.array(DEFAULT_ROBOT_HOME_EE_M))
        d = policy.step(obs)
        decisions.append(d.action)
        forecasts.append(d.exit_forecast_s)
        in_zone_flags.append(in_zone)
        hidden_norms.append(float(policy._hidden.norm()))
    assert set(decisions) <= {"act", "wait"}
    assert any(in_zone_flags) and policy.robot_turn_due
    assert all(math.isfinite(f) and f >= 0 for f, z in zip(forecasts, in_zone_flags) if z)
    assert all(math.isnan(f) for f, z in zip(forecasts, in_zone_flags) if not z)
    assert len(set(np.round(hidden_norms, 6))) > 10                 # the GRU state evolves tick to tick
    assert policy._other_window[:, 8].all() and policy._self_window[:, 8].all()
    policy.reset()
    assert policy._hidden is None and not policy._other_window.any()


def test_mirror_policy_waits_on_stale_perception_but_keeps_integrating(tmp_path):
    path, _ = _save(tmp_path)
    policy = MirrorPolicy(checkpoint=path)
    d = policy.step(Observation(t_s=0.0, partner_in_zone=True, perception_age_s=2.0,
                                partner_hand_m=np.array([0.6, 0.0, 0.75])))
    assert d.action == "wait" and policy._hidden is not None
    assert policy._self_window[-1, 8] == 0                           # robot EE unknown -> masked


def test_mirror_policy_missing_checkpoint_says_how_to_get_one(tmp_path):
    with pytest.raises(CheckpointError, match=r"nope\.pt does not exist; train one"):
        make_policy("mirror", checkpoint=str(tmp_path / "nope.pt"))


def test_mirror_policy_rejects_bad_thresholds(tmp_path):
    path, _ = _save(tmp_path)
    with pytest.raises(ValueError, match="release_threshold"):
        MirrorPolicy(checkpoint=path, act_threshold=0.3, release_threshold=0.6)


def test_importing_the_policy_package_does_not_import_torch():
    code = "import sys, coop_robot.policy, coop_robot.policy.mirror; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)
