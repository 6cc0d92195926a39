"""Pairing colour and depth images by their stamp (no ROS).

An RGB-D camera (or the sim) publishes a colour and an aligned depth image with the same stamp
on two topics; they arrive in either order, and best-effort transport may lose either one.
:class:`StampPairer` holds each image until its partner arrives:

- a pair is released once both images of a stamp are there, in stamp order; a pair that
  completes after a newer one was released is dropped (perception never goes back in time);
- an image older than the newest stamp seen minus ``window_ns`` is dropped (its partner was lost);
- a stamp more than two windows before the last released pair means the clock went back (the
  sim restarted, a bag looped): everything held is dropped and pairing starts afresh.
"""

from __future__ import annotations

from typing import Generic, TypeVar

Image = TypeVar("Image")

COLOR, DEPTH = "color", "depth"


class StampPairer(Generic[Image]):
    """Colour and depth images in, ``(stamp_ns, colour, depth)`` pairs out."""

    def __init__(self, window_ns: int) -> None:
        if isinstance(window_ns, bool) or not isinstance(window_ns, int) or window_ns <= 0:
            raise ValueError(f"pairing window must be a positive number of nanoseconds, got {window_ns!r}")
        self.window_ns = window_ns
        self._held: dict[str, dict[int, Image]] = {COLOR: {}, DEPTH: {}}
        self._newest_ns: int | None = None
        self.last_released_ns: int | None = None

    def add_color(self, stamp_ns: int, image: Image) -> bool:
        """Hold a colour image; True when its stamp showed that the clock went back (all reset)."""
        return self._add(COLOR, stamp_ns, image)

    def add_depth(self, stamp_ns: int, image: Image) -> bool:
        """Hold a depth image; True when its stamp showed that the clock went back (all reset)."""
        return self._add(DEPTH, stamp_ns, image)

    def held(self) -> tuple[int, int]:
        """How many colour and depth images wait for their partner."""
        return len(self._held[COLOR]), len(self._held[DEPTH])

    def has_pair(self) -> bool:
        """Is a colour/depth pair complete (possibly one :meth:`take_pairs` will drop as late)?"""
        return not self._held[COLOR].keys().isdisjoint(self._held[DEPTH].keys())

    def take_pairs(self) -> list[tuple[int, Image, Image]]:
        """The complete pairs newer than the last released one, oldest first; late pairs are dropped."""
        pairs = []
        for stamp_ns in sorted(self._held[COLOR].keys() & self._held[DEPTH].keys()):
            color, depth = self._held[COLOR].pop(stamp_ns), self._held[DEPTH].pop(stamp_ns)
            if self.last_released_ns is not None and stamp_ns <= self.last_released_ns:
                continue  # completed after a newer pair was released
            self.last_released_ns = stamp_ns
            pairs.append((stamp_ns, color, depth))
        return pairs

    def _add(self, kind: str, stamp_ns: int, image: Image) -> bool:
        went_back = self.last_released_ns is not None and stamp_ns < self.last_released_ns - 2 * self.window_ns
        if went_back:
            for held in self._held.values():
                held.clear()
            self._newest_ns = self.last_released_ns = None
        self._held[kind][stamp_ns] = image  # a repeated stamp replaces the image held for it
        self._newest_ns = stamp_ns if self._newest_ns is None else max(self._newest_ns, stamp_ns)
        oldest_ns = self._newest_ns - self.window_ns
        for held in self._held.values():
            for stale in [ns for ns in held if ns < oldest_ns]:
                del held[stale]
        return went_back
