"""Write the calibration into a cell file: ``camera_position_m`` / ``camera_orientation_xyzw``
under ``/**: ros__parameters:`` (the parameters of ``config/world.yaml``, shared by every node).

A new file gets just those two keys. An existing file is changed only when asked
(``allow_update``), and then only on those two lines (or two new lines under ``/**``): comments,
order and every other value stay as they were. The edit is checked by reading the result back
(every other parameter unchanged, the two new values in place) and written atomically (a
temporary file beside it, then a rename), so a failure leaves the file as it was.
"""

from __future__ import annotations

import copy
import os
import re
import tempfile
from pathlib import Path

import yaml

KEYS = ("camera_position_m", "camera_orientation_xyzw")
_SECTION = re.compile(r"""^(?P<indent>\s*)(?P<q>['"]?)/\*\*(?P=q)\s*:\s*(#.*)?$""")
_PARAMS = re.compile(r"^(?P<indent>\s*)ros__parameters\s*:\s*(#.*)?$")


class CellFileError(ValueError):
    """A cell file that cannot be written or safely edited; nothing was written."""


def _format(values) -> str:
    return "[" + ", ".join(f"{float(v):.6f}" for v in values) + "]"


def _load(text: str, path) -> dict:
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise CellFileError(f"{path}: not valid YAML ({exc}); nothing written") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise CellFileError(f"{path}: expected a ROS 2 parameter file (a mapping of node names), got "
                            f"{type(data).__name__}; nothing written")
    return data


def _without_camera(data: dict) -> dict:
    """``data`` without the two camera keys under ``/**: ros__parameters:``."""
    data = copy.deepcopy(data)
    shared = data.get("/**")
    if isinstance(shared, dict) and isinstance(shared.get("ros__parameters"), dict):
        for key in KEYS:
            shared["ros__parameters"].pop(key, None)
    return data


def new_cell_text(position_m, quaternion_xyzw, header: str = "") -> str:
    lines = [f"# {line}" if line else "#" for line in header.splitlines()]
    lines += ["/**:", "  ros__parameters:",
              f"    camera_position_m: {_format(position_m)}",
              f"    camera_orientation_xyzw: {_format(quaternion_xyzw)}", ""]
    return "\n".join(lines)


def edited_cell_text(text: str, position_m, quaternion_xyzw, path="cell file") -> str:
    """``text`` with the two keys set under ``/**: ros__parameters:``; raises CellFileError when the
    file's layout does not allow a safe line edit (e.g. flow style, or a value over several lines)."""
    values = {"camera_position_m": _format(position_m), "camera_orientation_xyzw": _format(quaternion_xyzw)}
    lines = text.splitlines(keepends=True)
    section = next((i for i, line in enumerate(lines) if _SECTION.match(line)), None)
    if section is None:
        if "/**" in _load(text, path):
            raise CellFileError(f"{path}: its '/**' section is not in block style ('/**:' on a line of its own); "
                                f"set camera_position_m: {values['camera_position_m']} and camera_orientation_xyzw: "
                                f"{values['camera_orientation_xyzw']} under it by hand; nothing written")
        tail = "" if not text or text.endswith("\n") else "\n"
        out = text + tail + new_cell_text(position_m, quaternion_xyzw)
    else:
        base = len(_SECTION.match(lines[section]).group("indent"))
        end = len(lines)
        for j in range(section + 1, len(lines)):
            stripped = lines[j].strip()
            if stripped and not stripped.startswith("#") and len(lines[j]) - len(lines[j].lstrip()) <= base:
                end = j
                break
        params = next((j for j in range(section + 1, end) if _PARAMS.match(lines[j])), None)
        if params is None:
            raise CellFileError(f"{path}: its '/**' section has no 'ros__parameters:' line to put the camera "
                                f"pose under; nothing written")
        key_indent = None
        for j in range(params + 1, end):
            stripped = lines[j].strip()
            if stripped and not stripped.startswith("#"):
                key_indent = lines[j][:len(lines[j]) - len(lines[j].lstrip())]
                break
        if key_indent is None:
            key_indent = _PARAMS.match(lines[params]).group("indent") + "  "
        missing = []
        for key, value in values.items():
            pattern = re.compile(rf"^(?P<lead>{re.escape(key_indent)}{key}\s*:\s*)(?P<value>\[[^\]#]*\])"
                                 rf"(?P<rest>\s*(#.*)?)$")
            hits = [j for j in range(params + 1, end) if re.match(rf"^\s*{key}\s*:", lines[j])]
            if not hits:
                missing.append(f"{key_indent}{key}: {value}\n")
                continue
            match = pattern.match(lines[hits[0]].rstrip("\r\n"))
            if len(hits) > 1 or match is None:
                raise CellFileError(f"{path}: cannot edit '{key}' in place (expected one line "
                                    f"'{key}: [...]' under '/**: ros__parameters:'); set it by hand to {value}; "
                                    f"nothing written")
            newline = lines[hits[0]][len(lines[hits[0]].rstrip("\r\n")):] or "\n"
            lines[hits[0]] = match.group("lead") + value + match.group("rest") + newline
        lines[params + 1:params + 1] = missing
        out = "".join(lines)
    # Read it back: the two values in place, everything else unchanged.
    before, after = _load(text, path), _load(out, path)
    try:
        shared = after["/**"]["ros__parameters"]
        placed = all(shared[k] == [float(x) for x in yaml.safe_load(values[k])] for k in KEYS)
    except (KeyError, TypeError):
        placed = False
    rest_kept = _without_camera(after) == _without_camera(before) or (
        "/**" not in before and _without_camera(after) == {**before, "/**": {"ros__parameters": {}}})
    if not (placed and rest_kept):
        raise CellFileError(f"{path}: the edit did not read back as intended (unusual layout?); set by hand "
                            f"camera_position_m: {values['camera_position_m']} and camera_orientation_xyzw: "
                            f"{values['camera_orientation_xyzw']} under '/**: ros__parameters:'; nothing written")
    return out


def write_cell_file(path, position_m, quaternion_xyzw, allow_update: bool = False, header: str = "") -> str:
    """Write the camera pose into ``path``: a new file, or with ``allow_update`` the two keys of an
    existing one. Returns ``"created"`` or ``"updated"``; raises CellFileError with nothing written."""
    target = Path(path)
    if target.is_dir():
        raise CellFileError(f"{target}: is a directory; give the cell file's path")
    if target.exists():
        if not allow_update:
            raise CellFileError(f"{target}: exists; pass --update to replace its camera_position_m / "
                                f"camera_orientation_xyzw (the rest of the file is kept), or choose a new file; "
                                f"nothing written")
        text = target.read_text(encoding="utf-8")
        out, what = edited_cell_text(text, position_m, quaternion_xyzw, target), "updated"
    else:
        if not target.parent.is_dir():
            raise CellFileError(f"{target}: its directory {target.parent} does not exist; nothing written")
        out, what = new_cell_text(position_m, quaternion_xyzw, header), "created"
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(out)
            f.flush()
            os.fsync(f.fileno())
        if target.exists():
            os.chmod(tmp, target.stat().st_mode & 0o7777)
        else:
            os.chmod(tmp, 0o644)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return what
