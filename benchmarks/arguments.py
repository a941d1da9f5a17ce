"""argparse types the benchmarks share: a bad value is one usage line and exit 2, before any work.

    parser.add_argument("--steps", type=positive_int, default=20)

A benchmark reads ``from arguments import positive_int`` (its own folder is first on ``sys.path``).
"""

from __future__ import annotations

import argparse


def positive_int(text: str) -> int:
    """A whole number above 0: a count, a size, a step."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: give a whole number above 0")
    return value


def positive_ints(text: str) -> list[int]:
    """Whole numbers above 0, comma-separated."""
    try:
        values = [int(v) for v in text.split(",")]
    except ValueError:
        values = []
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: give whole numbers above 0, comma-separated, e.g. 832,576")
    return values


def fraction(text: str) -> float:
    """A number from 0 to 1: a rate."""
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"{text!r}: give a number from 0 to 1")
    return value


def torch_device(text: str) -> str:
    """``cpu``, or ``cuda`` where torch sees a GPU."""
    if text not in ("cpu", "cuda"):
        raise argparse.ArgumentTypeError(f"{text!r}: give cpu or cuda")
    if text == "cuda":
        try:
            import torch
        except ImportError:
            return text  # the benchmark's own check of its extras names what is missing
        if not torch.cuda.is_available():
            raise argparse.ArgumentTypeError("cuda: torch sees no GPU here (torch.cuda.is_available() is False)")
    return text
