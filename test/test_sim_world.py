"""The PyBullet world and the interaction core: camera conventions, control, contact, events."""

import sys

import numpy as np
import pybullet as p
import pybullet_data
import pytest

from coop_robot.camera import optical_to_pixel, pixel_to_optical
from coop_robot.geometry import minimum_jerk
from coop_robot.sim.core import InteractionSim
from coop_robot.sim.world import PANDA_JOINT_NAMES, SimWorld, WorldConfig, person_pose

DOWN = p.getQuaternionFromEuler([np.pi, 0.0, 0.0])  # gripper pointing at the table


@pytest.fixture(scope="module")
def world():
    w = SimWorld(WorldConfig.default())
    yield w
    w.close()


@pytest.fixture()
def fresh_world():
    w = SimWorld(WorldConfig.default())
    yield w
    w.close()


def ik(world: SimWorld, target_m, iterations: int = 30) -> np.ndarray:
    """Arm configuration putting the EE at ``target_m`` (gripper down), refined iteratively."""
    q_saved, _ = world.arm_state()
    q = q_saved
    for _ in range(iterations):
        q = np.array(p.calculateInverseKinematics(world.robot_id, 11, list(target_m), DOWN, maxNumIterations=100,
                                                  physicsClientId=world.client_id)[:7])
        world.reset_arm(q)
        if np.linalg.norm(world.ee_position_m() - target_m) < 1e-3:
            break
    world.reset_arm(q_saved)
    return q


def is_green(rgb):
    r, g, b = (int(c) for c in rgb)
    return g > 120 and g > 2 * r and g > 2 * b


@pytest.mark.parametrize("hand", [(1.02, 0.15, 0.80), (0.62, 0.06, 0.70), (0.80, 0.10, 0.75), (0.55, -0.05, 0.85)])
def test_glove_centre_projects_onto_green_pixels_with_matching_depth(world, hand):
    """Pins the camera conventions perception relies on: projection, pixel centres, depth."""
    hand = np.asarray(hand)
    world.set_partner_hand(hand)
    rgb, depth = world.render()
    cfg = world.config
    assert rgb.shape == (cfg.image_height, cfg.image_width, 3) and rgb.dtype == np.uint8
    assert depth.shape == (cfg.image_height, cfg.image_width) and depth.dtype == np.float32
    centre_opt = cfg.camera_pose.to_optical(hand)[0]
    u, v = optical_to_pixel(centre_opt, world.intrinsics)[0]
    ui, vi = int(round(u)), int(round(v))
    assert is_green(rgb[vi, ui]), f"pixel ({ui}, {vi}) is {rgb[vi, ui]}, expected the green glove"
    # Along the ray through the centre, the visible surface is glove_radius nearer than the centre.
    dist = np.linalg.norm(centre_opt)
    expected_z = (dist - cfg.glove_radius_m) * centre_opt[2] / dist
    assert abs(float(depth[vi, ui]) - expected_z) < 0.01
    # Back-projecting that pixel lands on the glove surface in the world frame.
    surface = cfg.camera_pose.to_world(pixel_to_optical(ui, vi, depth[vi, ui], world.intrinsics))[0]
    assert abs(np.linalg.norm(surface - hand) - cfg.glove_radius_m) < 0.01


def test_glove_is_the_only_green_thing_in_the_image(world):
    world.set_partner_hand((0.62, 0.06, 0.70))
    rgb, _ = world.render()
    r, g, b = (rgb[..., i].astype(int) for i in range(3))
    green = (g > 120) & (g > 2 * r) & (g > 2 * b)
    ys, xs = np.nonzero(green)
    assert green.sum() > 30
    u, v = optical_to_pixel(world.config.camera_pose.to_optical((0.62, 0.06, 0.70)), world.intrinsics)[0]
    assert np.max(np.hypot(xs - u, ys - v)) < 15  # all green pixels belong to the glove blob


def test_task_object_pads_are_drawn_and_never_detected_as_the_glove(world):
    import yaml

    from coop_robot.paths import config_path
    from coop_robot.perception import HandTracker, HandTrackerConfig
    from coop_robot.sim.world import TABLE_TOP_Z_M, TASK_PAD_RGBA

    cfg = world.config
    world.set_partner_hand((0.60, 3.0, 0.80))  # behind the camera: no glove in the image
    rgb, depth = world.render()
    for k, (x, y, _) in enumerate(cfg.partner_task_objects_m):  # each pad shows, in its own colour
        u, v = optical_to_pixel(cfg.camera_pose.to_optical((x, y, TABLE_TOP_Z_M + 0.012)), world.intrinsics)[0]
        colour = rgb[int(round(v)), int(round(u))].astype(float) / 255.0
        assert np.max(np.abs(colour - TASK_PAD_RGBA[k][:3])) < 0.12, f"pad {k} at ({x}, {y}) shows {colour}"
    params = yaml.safe_load(config_path("perception.yaml").read_text())["perception"]["ros__parameters"]
    tracker = HandTracker(HandTrackerConfig.from_parameters(params, cfg.zone))
    seen = tracker.process(rgb, depth, world.intrinsics, cfg.camera_pose, 0.0)
    assert not seen.detected and seen.pixel_area == 0, seen.reason
    world.set_partner_hand(cfg.partner_rest_m)


def test_composited_render_equals_a_full_render(world):
    world.set_partner_hand((0.70, 0.05, 0.72))
    rgb, depth = world.render()
    full_rgb, full_depth = world._render_all()  # every body drawn in one pass
    assert np.array_equal(rgb, full_rgb) and np.array_equal(depth, full_depth)


def test_background_depth_reads_far_plane(world):
    world.set_partner_hand(world.config.partner_rest_m)
    _, depth = world.render()
    top_centre = depth[0, world.config.image_width // 2]  # looks past the table's far edge
    assert np.isclose(top_centre, world.config.far_m, atol=1e-3)


def test_person_arm_reaches_hand_target_with_elbow_below_the_shoulder():
    cfg = WorldConfig.default()
    hip = np.asarray(cfg.partner_shoulder_m) + np.array([0.04, -0.19, -0.47])
    for hand in (cfg.partner_rest_m, cfg.partner_target_m):
        pose = person_pose(hand, cfg.partner_shoulder_m, hip)
        assert np.linalg.norm(pose.wrist_m - np.asarray(hand)) < 1e-6  # glove on the forearm's end
        assert pose.elbow_m[2] < pose.shoulder_m[2]
        assert pose.elbow_m[1] >= min(pose.shoulder_m[1], hand[1]) - 0.05  # not tucked across the body
    rest = person_pose(cfg.partner_rest_m, cfg.partner_shoulder_m, hip)
    reach = person_pose(cfg.partner_target_m, cfg.partner_shoulder_m, hip)
    assert rest.lean_rad == 0.0 and 0.0 < reach.lean_rad < 0.6


def test_joint_state_reports_arm_and_finger_joints(world):
    names, position, velocity, effort = world.joint_state()
    assert names == list(PANDA_JOINT_NAMES)
    assert position.shape == velocity.shape == effort.shape == (9,)
    assert np.allclose(position[:7], world.config.robot_home_rad, atol=1e-3)


def fk_reference():
    """A separate PyBullet client with the Panda for forward kinematics of reference joints."""
    cid = p.connect(p.DIRECT)
    robot = p.loadURDF(pybullet_data.getDataPath() + "/franka_panda/panda.urdf", [0, 0, 0.626],
                       useFixedBase=True, physicsClientId=cid)

    def fk(q):
        for i, v in enumerate(q):
            p.resetJointState(robot, i, v, physicsClientId=cid)
        return np.array(p.getLinkState(robot, 11, computeForwardKinematics=True, physicsClientId=cid)[4])
    return cid, fk


def test_one_second_minimum_jerk_move_tracks_within_a_centimetre_at_the_ee(fresh_world):
    w = fresh_world
    home = np.asarray(w.config.robot_home_rad)
    target = ik(w, np.array([0.58, -0.05, 0.78]))
    cid, fk = fk_reference()
    try:
        errors = []
        dt = w.config.physics_dt_s
        for k in range(1, int(1.3 / dt)):
            s, ds, _ = minimum_jerk(k * dt, 1.0)
            q, qd = home + (target - home) * s, (target - home) * ds
            w.apply_joint_targets(q, qd)
            w.step()
            errors.append(np.linalg.norm(w.ee_position_m() - fk(q)))
    finally:
        p.disconnect(cid)
    assert max(errors) < 0.01
    assert errors[-1] < 0.002
    assert w.config.zone.contains(w.ee_position_m())


def test_ee_zone_occupancy_home_is_out_and_reach_target_is_in(fresh_world):
    w = fresh_world
    assert not w.config.zone.contains(w.ee_position_m())
    w.reset_arm(ik(w, np.array([0.60, -0.05, 0.80])))
    assert w.config.zone.contains(w.ee_position_m())


def test_driving_the_arm_into_the_person_is_detected_as_contact(fresh_world):
    w = fresh_world
    hand = np.array([0.62, 0.06, 0.72])
    w.set_partner_hand(hand)
    w.step()
    assert not w.robot_partner_contact()
    q_touch = ik(w, hand + np.array([0.0, 0.0, 0.02]))  # EE slightly inside the glove
    home = np.asarray(w.config.robot_home_rad)
    touched = False
    dt = w.config.physics_dt_s
    for k in range(1, int(1.5 / dt)):
        s, ds, _ = minimum_jerk(k * dt, 1.0)
        w.apply_joint_targets(home + (q_touch - home) * s, (q_touch - home) * ds)
        w.set_partner_hand(hand)
        w.step()
        touched = touched or w.robot_partner_contact()
    assert touched


def test_person_does_not_collide_with_table_or_objects(fresh_world):
    w = fresh_world
    x, y, _ = w.config.partner_task_objects_m[0]
    w.set_partner_hand((x, y, 0.64))  # glove pushed into a task object's pad and the table top
    w.step()
    for body in w.person_bodies:
        contacts = p.getContactPoints(bodyA=body, physicsClientId=w.client_id)
        assert all(c[2] == w.robot_id for c in contacts)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="X11 display check is Linux-only")
def test_gui_without_a_display_raises_instead_of_killing_the_process(monkeypatch):
    monkeypatch.delenv("DISPLAY", raising=False)
    with pytest.raises(RuntimeError, match="DISPLAY"):
        SimWorld(WorldConfig.default(), gui=True)


def test_same_commands_give_identical_physics():
    runs = []
    for _ in range(2):
        with SimWorld(WorldConfig.default()) as w:
            home = np.asarray(w.config.robot_home_rad)
            for k in range(200):
                w.apply_joint_targets(home + 0.2 * np.sin(0.05 * k), np.zeros(7))
                w.set_partner_hand((1.02 - 0.001 * k, 0.15, 0.80))
                w.step()
            runs.append(w.joint_state()[1])
    assert np.array_equal(runs[0], runs[1])


# ----------------------------------------------------------------------------- interaction core
class ScriptedPartner:
    """Glove path: rest -> into the zone over 0.5 s, stay 0.5 s, back out."""

    phase = "scripted"
    planned_enter_s = None
    planned_exit_s = 1.0

    def __init__(self, rest, target):
        self.rest, self.target = np.asarray(rest), np.asarray(target)

    def step(self, t_s, robot_in_zone, contact=False):
        s_in, _, _ = minimum_jerk(t_s, 0.5)
        s_out, _, _ = minimum_jerk(t_s - 1.0, 0.5)
        return self.rest + (self.target - self.rest) * (s_in - s_out)


def test_core_reports_partner_and_robot_zone_events_at_physics_resolution():
    world = SimWorld(WorldConfig.default())
    sim = InteractionSim(world, ScriptedPartner(world.config.partner_rest_m, world.config.partner_target_m))
    try:
        q_in = ik(world, np.array([0.58, -0.12, 0.80]))
        home = np.asarray(world.config.robot_home_rad)
        sim.command_trajectory(list(reversed([f"panda_joint{i}" for i in range(1, 8)])),
                               [(1.5, list(reversed(home.tolist()))), (2.5, list(reversed(q_in.tolist()))),
                                (3.5, list(reversed(home.tolist())))])
        events = []
        while sim.t_s < 4.0:
            events += sim.step()
        names = [e.name for e in events]
        assert names == ["partner_enter", "partner_exit", "robot_enter", "robot_exit"], names
        for e in events:  # stamped on the physics grid
            assert abs(e.t_s / sim.dt_s - round(e.t_s / sim.dt_s)) < 1e-6
        assert 0.0 < events[0].t_s < 0.5 and 1.0 < events[1].t_s < 1.5
        assert sim.take_plan_updates() == [("planned_exit", 1.0, sim.t_s)]
        assert sim.take_plan_updates() == []
    finally:
        sim.close()


def test_core_reports_contact_begin_and_end():
    world = SimWorld(WorldConfig.default())

    class StillPartner:
        def step(self, t_s, robot_in_zone, contact=False):
            return np.array([0.62, 0.06, 0.72])

    sim = InteractionSim(world, StillPartner())
    try:
        home = np.asarray(world.config.robot_home_rad)
        q_touch = ik(world, np.array([0.62, 0.06, 0.74]))
        sim.command_trajectory([f"panda_joint{i}" for i in range(1, 8)],
                               [(1.0, q_touch.tolist()), (2.0, home.tolist())])
        names = []
        while sim.t_s < 2.5:
            names += [e.name for e in sim.step()]
        assert "contact_begin" in names and "contact_end" in names
        assert names.index("contact_begin") < names.index("contact_end")
    finally:
        sim.close()


def test_core_with_same_seed_is_deterministic():
    traces = []
    for seed in (7, 7, 8):
        sim = InteractionSim.from_params(partner="typical", seed=seed)
        try:
            hands, events = [], []
            for _ in range(2400):  # 10 s of sim time
                events += sim.step()
                hands.append(sim.partner_hand_m())
            traces.append((np.array(hands), events))
        finally:
            sim.close()
    assert np.array_equal(traces[0][0], traces[1][0]) and traces[0][1] == traces[1][1]
    assert not np.array_equal(traces[0][0], traces[2][0])


def test_joint_targets_beyond_the_limits_are_clamped_before_they_reach_the_physics(fresh_world):
    from coop_robot.control.kinematics import JOINT_UPPER_RAD

    w = fresh_world
    q = np.asarray(w.config.robot_home_rad, dtype=float).copy()
    q[6] = 10.0  # panda_joint7's limit is 2.8973 rad; the URDF's hard limit is wider
    for _ in range(int(2.0 / w.config.physics_dt_s)):
        w.apply_joint_targets(q, np.zeros(7))
        w.step()
    q7 = w.arm_state()[0][6]
    assert JOINT_UPPER_RAD[6] - 0.02 < q7 < JOINT_UPPER_RAD[6] + 0.005
