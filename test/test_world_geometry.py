"""config/world.yaml is the one definition of the cell's geometry: every default in code reads it."""

from pathlib import Path

import numpy as np
import pytest
import yaml

from coop_robot.geometry import WorldGeometry, read_world_params, world_geometry

REPO = Path(__file__).resolve().parents[1]


def _world_yaml() -> dict:
    return yaml.safe_load((REPO / "config" / "world.yaml").read_text())["/**"]["ros__parameters"]


def test_world_geometry_is_world_yaml():
    world = _world_yaml()
    geometry = world_geometry()
    assert geometry.as_params() == {k: [float(v) for v in world[k]] for k in WorldGeometry.KEYS}
    assert read_world_params() == world


def test_code_defaults_read_world_yaml():
    from coop_robot.camera import CameraPose
    from coop_robot.control.controller import DEFAULT_HOME_RAD, DEFAULT_ZONE, ControllerConfig
    from coop_robot.control.kinematics import DEFAULT_ROBOT_BASE_M
    from coop_robot.perception.hand_tracker import DEFAULT_ZONE as TRACKER_ZONE
    from coop_robot.policy.mirror import DEFAULT_PARTNER_REST_M, DEFAULT_ZONE_MAX_M, DEFAULT_ZONE_MIN_M
    from coop_robot.sim.core import world_config_from_params
    from coop_robot.sim.world import WorldConfig

    g = world_geometry()
    assert DEFAULT_ZONE == TRACKER_ZONE == g.zone == ControllerConfig().zone
    assert (DEFAULT_ZONE_MIN_M, DEFAULT_ZONE_MAX_M) == (g.zone_min_m, g.zone_max_m)
    assert DEFAULT_HOME_RAD == g.robot_home_joint_positions_rad == ControllerConfig().home_rad
    assert DEFAULT_ROBOT_BASE_M == g.robot_base_m == ControllerConfig().robot_base_m
    assert DEFAULT_PARTNER_REST_M == g.partner_rest_m
    camera = CameraPose.from_position_quaternion(g.camera_position_m, g.camera_orientation_xyzw)
    for config in (WorldConfig.default(), world_config_from_params()):
        assert config.zone == g.zone
        assert tuple(config.robot_home_rad) == g.robot_home_joint_positions_rad
        assert tuple(config.robot_base_m) == g.robot_base_m
        assert tuple(config.partner_rest_m) == g.partner_rest_m
        assert tuple(config.partner_task_objects_m) == g.task_objects_m
        assert config.partner_target_m == g.nominal_task_object_m
        np.testing.assert_allclose(config.camera_pose.position_m, camera.position_m)


def test_the_sim_mounts_the_robot_and_the_zone_on_its_table():
    from coop_robot.sim.world import TABLE_TOP_Z_M

    g = world_geometry()
    assert g.robot_base_m[2] == pytest.approx(TABLE_TOP_Z_M)
    assert g.zone_min_m[2] == pytest.approx(TABLE_TOP_Z_M)


def test_node_parameter_files_do_not_repeat_the_world_geometry():
    # One definition: the per-node files get these from world.yaml ("/**"), never a copy.
    for name in ("controller.yaml", "policy.yaml", "turn_tracker.yaml", "perception.yaml", "sim.yaml"):
        data = yaml.safe_load((REPO / "config" / name).read_text())
        for node, body in data.items():
            repeated = set(body["ros__parameters"]) & set(WorldGeometry.KEYS)
            assert not repeated, f"{name}: {node} repeats {sorted(repeated)} from world.yaml"


def test_task_objects_are_read_as_triples_from_a_flat_list():
    g = world_geometry()
    flat = _world_yaml()["task_objects_m"]
    assert len(g.task_objects_m) == len(flat) // 3 >= 5
    assert [x for obj in g.task_objects_m for x in obj] == flat
    assert g.nominal_task_object_m == tuple(flat[:3])


def test_every_task_object_holds_the_glove_in_the_zone_within_the_persons_reach():
    from coop_robot.sim.world import _HIP_FROM_SHOULDER_M, _MAX_LEAN_RAD, WorldConfig, person_pose

    cfg = WorldConfig.default()
    hip = np.asarray(cfg.partner_shoulder_m) + np.asarray(_HIP_FROM_SHOULDER_M)
    objects = np.asarray(world_geometry().task_objects_m)
    for obj in objects:
        assert cfg.zone.contains(obj, margin_m=-cfg.glove_radius_m), f"glove at {obj} pokes out of the zone"
        pose = person_pose(obj, cfg.partner_shoulder_m, hip)
        assert np.linalg.norm(pose.wrist_m - obj) < 1e-6, f"{obj} is out of the person's reach"
        assert pose.lean_rad < _MAX_LEAN_RAD, f"{obj} needs the person's full lean"
    # Spread over the zone: near and far from the person, on its left and right.
    centre = cfg.zone.center_m
    assert objects[:, 0].min() < centre[0] < objects[:, 0].max()
    assert objects[:, 1].min() < centre[1] < objects[:, 1].max()
    assert len({tuple(o) for o in objects.tolist()}) == len(objects)


@pytest.mark.parametrize("key, value, expected", [
    ("task_objects_m", [0.62, 0.06], "task_objects_m must be a flat list"),
    ("task_objects_m", [], "task_objects_m must be a flat list"),
    ("task_objects_m", [0.62, 0.06, float("inf")], "task_objects_m must be a flat list"),
    ("task_objects_m", [[0.62, 0.06, 0.70]], "task_objects_m must be a flat list"),
    ("zone_min_m", [0.45, -0.2], "zone_min_m must be a list of 3 finite numbers"),
    ("robot_home_joint_positions_rad", [0.0] * 6, "robot_home_joint_positions_rad must be a list of 7"),
    ("partner_rest_m", [1.0, float("nan"), 0.8], "partner_rest_m must be a list of 3 finite numbers"),
    ("zone_max_m", [0.40, 0.2, 0.926], "zone max must exceed min"),
])
def test_bad_world_geometry_is_named(key, value, expected):
    params = dict(_world_yaml(), **{key: value})
    with pytest.raises(ValueError, match=expected):
        WorldGeometry.from_params(params, source="my_cell.yaml")


def test_missing_world_keys_are_named():
    params = _world_yaml()
    del params["partner_rest_m"]
    with pytest.raises(ValueError, match=r"my_cell.yaml: missing world parameter\(s\) \['partner_rest_m'\]"):
        WorldGeometry.from_params(params, source="my_cell.yaml")
