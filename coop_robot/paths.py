"""Where the package's installed data (config/, launch/) lives.

Order: the source tree this module was imported from (a checkout or an editable install: its
``config/`` belongs to the code that runs), the ament index (a colcon/ROS 2 install), then
``<sys.prefix>/share/coop_robot`` (a pip install into a virtual environment). An installed package
has no ``config/`` beside it, so the source tree is only ever found for a checkout.
"""

from __future__ import annotations

import sys
from functools import lru_cache
from pathlib import Path

PACKAGE = "coop_robot"


@lru_cache(maxsize=1)
def share_dir() -> Path:
    source_tree = Path(__file__).resolve().parents[1]
    candidates: list[Path] = []
    if (source_tree / "package.xml").is_file():
        candidates.append(source_tree)
    try:
        from ament_index_python.packages import PackageNotFoundError, get_package_share_directory

        try:
            candidates.append(Path(get_package_share_directory(PACKAGE)))
        except (PackageNotFoundError, LookupError, ValueError, OSError):  # OSError: AMENT_PREFIX_PATH unset
            pass
    except ImportError:
        pass
    candidates.append(Path(sys.prefix) / "share" / PACKAGE)
    for cand in candidates:
        if (cand / "config" / "world.yaml").is_file():
            return cand
    raise FileNotFoundError(
        "cannot find coop_robot's config/ directory; looked in: " + ", ".join(str(c) for c in candidates)
    )


def config_path(name: str) -> Path:
    """A file of the package's config/ directory by name (an absolute path is taken as is)."""
    path = Path(name) if Path(name).is_absolute() else share_dir() / "config" / name
    if not path.is_file():
        raise FileNotFoundError(f"config file {name!r} not found at {path}")
    return path
