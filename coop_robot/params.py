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
        raise ParamFileError(f"parameter file {p} must map node names to {{ros__parameters: ...}}, got {type(data).__name__}")
    for node, body in data.items():
        if not isinstance(body, dict) or set(body) != {"ros__parameters"} or not isinstance(body["ros__parameters"], dict):
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
        if isinstance(val, list) and len({type(v) for v in val if not isinstance(v, bool)} | {bool for v in val if isinstance(v, bool)}) > 1:
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
