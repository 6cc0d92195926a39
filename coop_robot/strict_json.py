"""Strict JSON for the package's reports, and file fingerprints.

Python's ``json`` writes NaN and Infinity, which strict JSON readers (browsers, ``jq``, most other
languages) refuse. Every report the package writes goes through :func:`json_safe` first.
"""

from __future__ import annotations

import hashlib
import math
from pathlib import Path

import numpy as np


def json_safe(value):
    """``value`` with every non-finite float replaced by None (recursively through dicts, lists and
    tuples) and NumPy scalars turned into Python numbers, ready for ``json.dumps(..., allow_nan=False)``."""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value


def sha256_file(path: str | Path) -> str:
    """The SHA-256 of a file's bytes, as hex (read in 1 MiB chunks)."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
