"""argparse types shared by the package's commands and benchmarks: a bad value is refused when
the command line is parsed (argparse exits 2 naming the option), before anything runs."""

from __future__ import annotations

import argparse


def whole_at_least(low: int):
    """An argparse type: a whole number >= ``low``."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be a whole number >= {low}, got {text!r}") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"must be >= {low}, got {text!r}")
        return value
    return parse
