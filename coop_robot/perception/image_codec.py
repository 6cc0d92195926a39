"""Raw ``sensor_msgs/Image`` buffers -> NumPy arrays, without cv_bridge (no ROS imports).

The node passes the message fields (``data``, ``width``, ``height``, ``step``, ``encoding``,
``is_bigendian``); these functions check them against each other, honour row padding (``step``
larger than ``width * bytes_per_pixel``) and byte order, and return arrays perception can use.
Anything inconsistent raises :class:`ImageFormatError` (a :class:`PerceptionInputError`).
"""

from __future__ import annotations

import numpy as np

from coop_robot.perception.hand_tracker import PerceptionInputError, depth_from_image

#: Colour encodings accepted: channels and the index order that yields RGB.
COLOR_ENCODINGS = {
    "rgb8": (3, (0, 1, 2)),
    "bgr8": (3, (2, 1, 0)),
    "rgba8": (4, (0, 1, 2)),
    "bgra8": (4, (2, 1, 0)),
}
#: Depth encodings accepted: element dtype (native byte order) and unit.
DEPTH_ENCODINGS = {
    "32FC1": np.dtype(np.float32),
    "16UC1": np.dtype(np.uint16),
    "mono16": np.dtype(np.uint16),
}


class ImageFormatError(PerceptionInputError):
    """An image message whose encoding, size, step or data length cannot be decoded."""


def _rows(data, width: int, height: int, step: int, bytes_per_pixel: int, encoding: str) -> np.ndarray:
    """View ``data`` as ``height`` rows of ``width * bytes_per_pixel`` bytes (padding dropped)."""
    if width <= 0 or height <= 0:
        raise ImageFormatError(f"{encoding} image is empty ({width}x{height})")
    row_bytes = width * bytes_per_pixel
    if step < row_bytes:
        raise ImageFormatError(f"{encoding} image step {step} B is smaller than width {width} x "
                               f"{bytes_per_pixel} B/px = {row_bytes} B")
    buf = np.frombuffer(memoryview(data).cast("B"), dtype=np.uint8)
    if buf.size != step * height:
        raise ImageFormatError(f"{encoding} image data is {buf.size} B, expected step {step} x height {height} = "
                               f"{step * height} B")
    return buf.reshape(height, step)[:, :row_bytes]


def decode_color(data, width: int, height: int, step: int, encoding: str) -> np.ndarray:
    """Colour image buffer -> HxWx3 uint8 array in RGB order (rgb8, bgr8, rgba8, bgra8)."""
    if encoding not in COLOR_ENCODINGS:
        raise ImageFormatError(f"colour encoding must be one of {sorted(COLOR_ENCODINGS)}, got {encoding!r}")
    channels, order = COLOR_ENCODINGS[encoding]
    rows = _rows(data, width, height, step, channels, encoding)
    pixels = rows.reshape(height, width, channels)
    return np.ascontiguousarray(pixels[:, :, list(order)])


def decode_depth(data, width: int, height: int, step: int, encoding: str, is_bigendian: bool) -> np.ndarray:
    """Depth image buffer -> HxW float32 metres, NaN = no reading (32FC1 m, 16UC1/mono16 mm)."""
    if encoding not in DEPTH_ENCODINGS:
        raise ImageFormatError(f"depth encoding must be one of {sorted(DEPTH_ENCODINGS)}, got {encoding!r}")
    dtype = DEPTH_ENCODINGS[encoding]
    rows = _rows(data, width, height, step, dtype.itemsize, encoding)
    wire = dtype.newbyteorder(">" if is_bigendian else "<")
    values = np.ascontiguousarray(rows).view(wire).reshape(height, width).astype(dtype)  # native byte order
    return depth_from_image(values, encoding)
