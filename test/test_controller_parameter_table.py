"""One controller parameter table feeds the node, the fast environment, training and the benchmark.

A value changed in (a temporary copy of) config/controller.yaml must reach all four: the
controller node started with that file, TurnTakingEnv, the environments training builds and the
benchmark's environment.
"""

import importlib.util
import os
import random
import shutil
import subprocess
import sys
import threading
import time
from dataclasses import fields
from pathlib import Path

import pytest
import yaml

import coop_robot.paths
from coop_robot.control.controller import (
    CONTROLLER_PARAMETER_NAMES,
    CONTROLLER_PARAMETERS,
    ControllerConfig,
    controller_config_from_params,
)

REPO = Path(__file__).resolve().parents[1]
# Values that differ from the shipped ones; the two approach-guard settings are the ones a copied
# key list once dropped for the environment.
CHANGED = {"approach_horizon_s": 0.37, "approach_min_speed_mps": 0.23, "velocity_scale": 0.45,
           "staging_timeout_s": 2.5}


def _shipped_controller_params() -> dict:
    return yaml.safe_load((REPO / "config" / "controller.yaml").read_text())["controller"]["ros__parameters"]


def test_every_controller_yaml_key_is_in_the_table_and_every_field_exists():
    assert set(_shipped_controller_params()) <= set(CONTROLLER_PARAMETER_NAMES)
    config_fields = {f.name for f in fields(ControllerConfig)}
    for spec in CONTROLLER_PARAMETERS:
        assert spec.field is None or spec.field in config_fields, spec
        assert spec.description and spec.default is not None, spec
    assert len(set(CONTROLLER_PARAMETER_NAMES)) == len(CONTROLLER_PARAMETERS)


def test_config_from_params_applies_every_table_value_and_names_a_bad_one():
    cfg = controller_config_from_params(CHANGED)
    for name, value in CHANGED.items():
        assert getattr(cfg, name) == value
    with pytest.raises(ValueError, match=r"approach_horizon_s.*\[0.0, 5.0\].*9.0"):
        controller_config_from_params({"approach_horizon_s": 9.0})
    with pytest.raises(ValueError, match="anticipation.*true or false"):
        controller_config_from_params({"anticipation": "yes"})


@pytest.fixture
def changed_config(tmp_path, monkeypatch):
    """A copy of the package's config/ with CHANGED written into controller.yaml, made the package's
    config directory for this process; returns the changed controller.yaml."""
    share = tmp_path / "share"
    shutil.copytree(REPO / "config", share / "config")
    path = share / "config" / "controller.yaml"
    data = yaml.safe_load(path.read_text())
    data["controller"]["ros__parameters"].update(CHANGED)
    path.write_text(yaml.safe_dump(data))
    monkeypatch.setattr(coop_robot.paths, "share_dir", lambda: share)
    return path


def _assert_changed(config: ControllerConfig) -> None:
    for name, value in CHANGED.items():
        assert getattr(config, name) == pytest.approx(value), name


def test_the_fast_environment_reads_the_changed_file(changed_config):
    from coop_robot.envs.turn_env import TurnTakingEnv

    with TurnTakingEnv("typical", seed=0) as env:
        _assert_changed(env.controller.config)


def test_training_environments_read_the_changed_file(changed_config):
    from coop_robot.training.config import TrainConfig
    from coop_robot.training.sessions import make_envs

    envs = make_envs(TrainConfig(partners=("typical",), eval_partners=("typical",)))
    assert envs
    for env in envs.values():
        _assert_changed(env.controller.config)


def test_the_benchmark_environment_reads_the_changed_file(changed_config):
    spec = importlib.util.spec_from_file_location("turn_taking", REPO / "bench" / "turn_taking.py")
    tt = sys.modules.get("turn_taking")
    if tt is None:
        tt = importlib.util.module_from_spec(spec)
        sys.modules["turn_taking"] = tt
        spec.loader.exec_module(tt)
    job = tt.Job(tt.ProfileSpec("typical", "typical"), tt.PolicySpec("reactive 0.4s", "reactive", 0.4), 1, 0)
    env = tt.job_env(job)
    try:
        _assert_changed(env.controller.config)
    finally:
        env.close()


def test_an_override_the_environment_cannot_honour_is_named():
    from coop_robot.envs.turn_env import TurnTakingEnv

    with pytest.raises(ValueError, match="rate_hz.*50.0"):
        TurnTakingEnv("typical", controller_params={"rate_hz": 50.0})


def test_the_node_declares_the_table_and_reads_the_changed_file(changed_config, monkeypatch):
    rclpy = pytest.importorskip("rclpy")
    from rclpy.parameter_client import AsyncParameterClient

    domain = random.randint(1, 200)
    monkeypatch.setenv("ROS_DOMAIN_ID", str(domain))
    monkeypatch.setenv("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env["PYTHONUNBUFFERED"] = "1"
    cmd = [sys.executable, "-m", "coop_robot.nodes.controller_node", "--ros-args",
           "--params-file", str(changed_config.parent / "world.yaml"), "--params-file", str(changed_config)]
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(proc.stdout), daemon=True)
    reader.start()
    context = rclpy.Context()
    rclpy.init(context=context, domain_id=domain)
    node = rclpy.create_node("parameter_table_probe", context=context)
    executor = rclpy.executors.SingleThreadedExecutor(context=context)
    executor.add_node(node)
    try:
        client = AsyncParameterClient(node, "controller")
        deadline = time.monotonic() + 30.0
        while not client.services_are_ready() and time.monotonic() < deadline and proc.poll() is None:
            executor.spin_once(timeout_sec=0.05)
        assert client.services_are_ready(), "".join(lines)

        def call(future):
            end = time.monotonic() + 10.0
            while not future.done() and time.monotonic() < end:
                executor.spin_once(timeout_sec=0.05)
            assert future.done(), "parameter service did not answer"
            return future.result()

        listed = set(call(client.list_parameters()).result.names)
        assert set(CONTROLLER_PARAMETER_NAMES) | {"zone_min_m", "zone_max_m"} <= listed
        values = call(client.get_parameters(list(CHANGED))).values
        assert [v.double_value for v in values] == pytest.approx(list(CHANGED.values()))
    finally:
        executor.shutdown()
        node.destroy_node()
        rclpy.shutdown(context=context)
        proc.kill()
        proc.wait(timeout=10)
        reader.join(timeout=2)
