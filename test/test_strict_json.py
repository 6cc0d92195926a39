"""coop_robot.strict_json: reports are strict JSON; file fingerprints."""

import hashlib
import json
import math

import numpy as np

from coop_robot.strict_json import json_safe, sha256_file


def test_non_finite_numbers_become_null_at_any_depth_and_numpy_scalars_become_python():
    doc = {"a": math.nan, "b": [1.0, math.inf, (np.float64(-math.inf), np.float32(2.5))],
           "c": {"d": np.int64(3), "e": "text", "f": None, "g": True}}
    safe = json_safe(doc)
    assert safe == {"a": None, "b": [1.0, None, [None, 2.5]], "c": {"d": 3, "e": "text", "f": None, "g": True}}
    assert type(safe["c"]["d"]) is int
    json.dumps(safe, allow_nan=False)  # strict JSON: raises on any NaN left


def test_sha256_of_a_file(tmp_path):
    path = tmp_path / "blob.bin"
    data = bytes(range(256)) * 5000  # > 1 MiB: more than one chunk
    path.write_bytes(data)
    assert sha256_file(path) == hashlib.sha256(data).hexdigest()
