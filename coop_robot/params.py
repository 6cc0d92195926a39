"""Reading and checking ROS 2 parameter files before any node is started."""

from __future__ import annotations

import math
from pathlib import Path

import yaml


class ParamFileError(ValueError):
    """A parameter file is missing, unreadable or not in the ROS 2 layout."""


def load_param_file(path: str | Path) -> dict:
    """Load a ROS 2 parameter YAML (``node_name: {ros__parameters: {...}}``) and check its shape.

    Values are checked for what ROS 2 can carry (scalars, strings and homogeneous lists) and for
    NaN/inf; the node itself then validates ranges and meaning.
    """
    p = Path(path)
    if not p.is_file():
        raise ParamFileError(f"parameter file {p} does not exist")
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise ParamFileError(f"parameter file {p} is not valid YAML: {exc}") from exc
    if not isinstance(data, dict) or not data:
        raise ParamFileError(f"parameter file {p} must map node names to {{ros__parameters: ...}}, "
                             f"got {type(data).__name__}")
    for node, body in data.items():
        params = body.get("ros__parameters") if isinstance(body, dict) else None
        if set(body if isinstance(body, dict) else ()) != {"ros__parameters"} or not isinstance(params, dict):
            raise ParamFileError(f"parameter file {p}: entry {node!r} must contain exactly 'ros__parameters: {{...}}'")
        _check_values(p, str(node), body["ros__parameters"], "")
    return data


def _check_values(path: Path, node: str, params: dict, prefix: str) -> None:
    for key, val in params.items():
        name = f"{prefix}{key}"
        if isinstance(val, dict):  # nested namespaces are allowed in ROS 2 parameter files
            _check_values(path, node, val, name + ".")
            continue
        items = val if isinstance(val, list) else [val]
        kinds = {bool if isinstance(v, bool) else type(v) for v in val} if isinstance(val, list) else set()
        if len(kinds) > 1:
            if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in val):
                raise ParamFileError(f"parameter file {path}: {node}.{name} mixes types in a list: {val!r}")
        for v in items:
            if v is None or isinstance(v, (dict, list)):
                raise ParamFileError(f"parameter file {path}: {node}.{name} has an unsupported value {val!r}")
            if isinstance(v, float) and not math.isfinite(v):
                raise ParamFileError(f"parameter file {path}: {node}.{name} must be finite, got {val!r}")


def write_param_file(path: str | Path, node: str, params: dict) -> Path:
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(yaml.safe_dump({node: {"ros__parameters": params}}, sort_keys=True), encoding="utf-8")
    return p


# --- How ROS 2 combines parameter files ----------------------------------------------------------
#
# rcl parses every --params-file of a node into one table of entries keyed by node-name pattern
# ("/**", "controller", "/controller", ...). Entries under the same key merge, a later file
# overriding an earlier one; the keys themselves are applied in the order each FIRST appeared over
# all the files. Every coop_robot node loads config/world.yaml first, which opens with "/**", so a
# node-named entry in any file wins over a "/**" entry in any file, whatever the file order.
# (Checked against rclpy: tests/test_graph_and_launch.py starts real nodes with such files.)


def _matches(pattern: str, node_name: str) -> bool:
    """Does a parameter-file key select the node ``node_name`` (no namespace)?"""
    return pattern in ("/**", "**", "/*", "*", node_name, "/" + node_name)


def effective_parameters(files: list[str | Path], node_name: str) -> dict:
    """The parameter values ROS 2 gives node ``node_name`` started with ``--params-file`` for each
    of ``files`` in order (see the rule above). Nested namespaces come back as dotted names."""
    groups: dict[str, dict] = {}
    for f in files:
        for key, body in load_param_file(f).items():
            groups.setdefault(str(key), {}).update(_flatten(body["ros__parameters"]))
    values: dict = {}
    for key, params in groups.items():
        if _matches(key, node_name):
            values.update(params)
    return values


def check_shadowed_wildcards(files: list[str | Path], node_name: str, overrides: str | Path | None = None) -> None:
    """Refuse a ``/**`` setting that ROS 2 would silently ignore for ``node_name``.

    A value under ``/**`` loses to the same parameter under the node's own name in any of the
    files (the rule above), so a lab's cell file that sets e.g. ``velocity_scale`` under ``/**``
    would leave the controller at ``config/controller.yaml``'s value. Raises
    :class:`ParamFileError` naming the file, the parameter and where to put it instead.
    ``overrides``: the file holding the launch arguments / command options (named as such).
    """
    wildcard_source: dict[str, tuple[Path, object]] = {}
    named: dict[str, tuple[Path, str, object]] = {}
    order: list[str] = []
    for f in files:
        for key, body in load_param_file(f).items():
            key = str(key)
            if not _matches(key, node_name):
                continue
            if key not in order:
                order.append(key)
            for name, value in _flatten(body["ros__parameters"]).items():
                if key in ("/**", "**", "/*", "*"):
                    wildcard_source[name] = (Path(f), value)
                else:
                    named[name] = (Path(f), key, value)
    effective = effective_parameters(files, node_name)
    for name, (path, value) in wildcard_source.items():
        if name in named and effective.get(name) != value:
            other, key, _ = named[name]
            if overrides is not None and Path(other) == Path(overrides):
                raise ParamFileError(
                    f"parameter file {path} sets {name}: {value!r} under '/**', but the launch arguments / command "
                    f"options set {name} for node '{node_name}' and take precedence: change that option instead")
            raise ParamFileError(
                f"parameter file {path} sets {name}: {value!r} under '/**', but {other} sets it under "
                f"'{key}:' for node '{node_name}', and ROS 2 applies node-named entries after '/**' ones, so "
                f"{path.name}'s value would be ignored; put it under '{node_name}:' in {path.name}")


def _flatten(params: dict, prefix: str = "") -> dict:
    out = {}
    for key, val in params.items():
        if isinstance(val, dict):
            out.update(_flatten(val, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = val
    return out
