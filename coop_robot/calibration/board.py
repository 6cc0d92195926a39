"""The ChArUco calibration board: its layout, a printable image, detection and pose from one image.

Board frame (OpenCV's): origin at the board's outer chessboard corner that is top-left in the
printed image, x along the image's rows (right), y down the image, z into the board (a camera
looking at the printed side sees z pointing away from it). Metres.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import cv2
import numpy as np

#: OpenCV's predefined ArUco dictionaries this package accepts, by name.
DICTIONARIES = {
    "DICT_4X4_50": cv2.aruco.DICT_4X4_50,
    "DICT_4X4_100": cv2.aruco.DICT_4X4_100,
    "DICT_5X5_50": cv2.aruco.DICT_5X5_50,
    "DICT_5X5_100": cv2.aruco.DICT_5X5_100,
    "DICT_6X6_50": cv2.aruco.DICT_6X6_50,
    "DICT_6X6_250": cv2.aruco.DICT_6X6_250,
}


class BoardError(ValueError):
    """A board layout or a detection that cannot be used."""


@dataclass(frozen=True)
class BoardSpec:
    """A ChArUco board: ``squares_x`` x ``squares_y`` chessboard squares of ``square_m``, markers
    of ``marker_m`` in the white squares, from ``dictionary``.

    The default is 0.28 x 0.20 m with 24 inner corners (0.32 x 0.24 m with its white margin: an
    A3 sheet; on A4 take 0.03 m squares and 0.022 m markers). Print it at 100 % and measure a
    square: the printed size is what goes in ``square_m``.
    """

    squares_x: int = 7
    squares_y: int = 5
    square_m: float = 0.04
    marker_m: float = 0.03
    dictionary: str = "DICT_4X4_50"

    def __post_init__(self) -> None:
        if not (isinstance(self.squares_x, int) and isinstance(self.squares_y, int)
                and self.squares_x >= 3 and self.squares_y >= 3):
            raise BoardError(f"board needs at least 3 x 3 squares, got {self.squares_x!r} x {self.squares_y!r}")
        if not (np.isfinite(self.square_m) and 0.005 <= self.square_m <= 0.5):
            raise BoardError(f"square_m must be in [0.005, 0.5] m, got {self.square_m!r}")
        if not (np.isfinite(self.marker_m) and 0.0 < self.marker_m < self.square_m):
            raise BoardError(f"marker_m must be in (0, square_m={self.square_m}) m, got {self.marker_m!r}")
        if self.dictionary not in DICTIONARIES:
            raise BoardError(f"unknown ArUco dictionary {self.dictionary!r}; expected one of {sorted(DICTIONARIES)}")
        n_markers = (self.squares_x * self.squares_y) // 2
        size = int(self.dictionary.rsplit("_", 1)[1])
        if n_markers > size:
            raise BoardError(f"a {self.squares_x} x {self.squares_y} board needs {n_markers} markers, "
                             f"but {self.dictionary} has {size}")

    @classmethod
    def from_dict(cls, data, source: str = "board") -> BoardSpec:
        if not isinstance(data, dict):
            raise BoardError(f"{source}: expected a mapping with squares_x, squares_y, square_m, marker_m, "
                             f"dictionary, got {data!r}")
        unknown = set(data) - set(cls.__dataclass_fields__)
        if unknown:
            raise BoardError(f"{source}: unknown board key(s) {sorted(unknown)}; expected "
                             f"{sorted(cls.__dataclass_fields__)}")
        try:
            return cls(**data)
        except BoardError as exc:
            raise BoardError(f"{source}: {exc}") from exc

    def as_dict(self) -> dict:
        return asdict(self)

    @property
    def size_m(self) -> tuple[float, float]:
        """Width (x) and height (y) of the chessboard area (m)."""
        return self.squares_x * self.square_m, self.squares_y * self.square_m

    @property
    def n_corners(self) -> int:
        """Inner chessboard corners, the points calibration uses."""
        return (self.squares_x - 1) * (self.squares_y - 1)

    def cv_board(self) -> cv2.aruco.CharucoBoard:
        dictionary = cv2.aruco.getPredefinedDictionary(DICTIONARIES[self.dictionary])
        return cv2.aruco.CharucoBoard((self.squares_x, self.squares_y), self.square_m, self.marker_m, dictionary)

    def corners_board_m(self) -> np.ndarray:
        """Inner corners in the board frame, ``(n_corners, 3)``, indexed by ChArUco corner id."""
        return np.asarray(self.cv_board().getChessboardCorners(), dtype=float).reshape(-1, 3)

    def image(self, pixels_per_square: int = 100, margin_squares: float = 0.5) -> np.ndarray:
        """The printable board, grey ``uint8``, with a white margin of ``margin_squares`` squares
        around the chessboard (the quiet zone the marker detector needs)."""
        margin = int(round(margin_squares * pixels_per_square))
        width = self.squares_x * pixels_per_square + 2 * margin
        height = self.squares_y * pixels_per_square + 2 * margin
        return self.cv_board().generateImage((width, height), marginSize=margin, borderBits=1)


@dataclass(frozen=True)
class BoardView:
    """The board found in one image: the pose of the board in the camera's optical frame
    (``p_optical = rotation @ p_board + translation_m``) and the corners it rests on."""

    rotation: np.ndarray
    translation_m: np.ndarray
    corner_ids: np.ndarray        # (N,) ChArUco corner ids
    image_points_px: np.ndarray   # (N, 2)
    object_points_m: np.ndarray   # (N, 3) in the board frame
    reprojection_rms_px: float

    @property
    def transform(self) -> np.ndarray:
        """4x4 board -> optical frame."""
        t = np.eye(4)
        t[:3, :3] = self.rotation
        t[:3, 3] = self.translation_m
        return t


def detect_board(spec: BoardSpec, image, camera_matrix, dist_coeffs, min_corners: int = 6) -> BoardView | None:
    """Find the board in ``image`` (BGR or grey) and estimate its pose, or None when fewer than
    ``min_corners`` ChArUco corners are found or they are collinear (no unique pose)."""
    gray = image if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
    board = spec.cv_board()
    detector = cv2.aruco.CharucoDetector(board)
    corners, ids, _, _ = detector.detectBoard(gray)
    if ids is None or len(ids) < min_corners:
        return None
    if board.checkCharucoCornersCollinear(ids):
        return None
    object_points, image_points = board.matchImagePoints(corners, ids)
    return board_pose(np.asarray(ids, dtype=int).reshape(-1), object_points, image_points, camera_matrix,
                      dist_coeffs)


def board_pose(corner_ids, object_points, image_points, camera_matrix, dist_coeffs) -> BoardView | None:
    """The board's pose from its corners (board frame, m) and where they are in the image (px):
    IPPE for a planar target, then Levenberg-Marquardt on the reprojection error."""
    object_points = np.asarray(object_points, dtype=float).reshape(-1, 3)
    image_points = np.asarray(image_points, dtype=float).reshape(-1, 2)
    k = np.asarray(camera_matrix, dtype=float).reshape(3, 3)
    d = np.asarray(dist_coeffs, dtype=float).reshape(-1)
    ok, rvec, tvec = cv2.solvePnP(object_points, image_points, k, d, flags=cv2.SOLVEPNP_IPPE)
    if not ok:
        return None
    rvec, tvec = cv2.solvePnPRefineLM(object_points, image_points, k, d, rvec, tvec)
    projected, _ = cv2.projectPoints(object_points, rvec, tvec, k, d)
    rms = float(np.sqrt(np.mean(np.sum((projected.reshape(-1, 2) - image_points) ** 2, axis=1))))
    rotation, _ = cv2.Rodrigues(rvec)
    return BoardView(rotation, tvec.reshape(3), np.asarray(corner_ids, dtype=int).reshape(-1), image_points,
                     object_points, rms)
