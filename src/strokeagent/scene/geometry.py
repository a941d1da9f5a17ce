"""GenEval's position rule and looser readings of the other relations, on boxes ``(x0, y0, x1, y1)``.

    >>> holds("left of", (0, 0, 10, 10), (50, 0, 60, 10))
    True

Positions follow GenEval's rule (djghosh13/geneval, ``evaluate_images.py``):
take the offset between two box centres, shrink each axis by 0.1 × the sum of
the boxes' extents on that axis (the margin), and call A "left of" B when the
shrunk horizontal offset is below -0.5 × the length of the full offset (likewise
right, above, below). Predicates GenEval does not judge get loose geometric
readings (see ``holds``). This is the rule, not perception: the layout solver,
the inspector and the judge each apply it to boxes they found their own way.
"""

from __future__ import annotations

import math

import numpy as np

Box = tuple[int, int, int, int]

#: GenEval's ``position_threshold``: the margin, as a fraction of the boxes' summed extent.
POSITION_MARGIN = 0.1


def relative_position(a: Box, b: Box, margin: float = POSITION_MARGIN) -> set[str]:
    """GenEval's position of box ``a`` relative to box ``b``: a subset of {left of, right of, above, below}."""
    dx = (a[0] + a[2] - b[0] - b[2]) / 2
    dy = (a[1] + a[3] - b[1] - b[3]) / 2
    # The margin grows with the boxes, so big objects must be further apart to count as beside.
    sx = max(abs(dx) - margin * ((a[2] - a[0]) + (b[2] - b[0])), 0.0) * np.sign(dx)
    sy = max(abs(dy) - margin * ((a[3] - a[1]) + (b[3] - b[1])), 0.0) * np.sign(dy)
    if abs(sx) < 1e-3 and abs(sy) < 1e-3:
        return set()
    norm = math.hypot(dx, dy)
    rx, ry = sx / norm, sy / norm
    found = set()
    if rx < -0.5:
        found.add("left of")
    if rx > 0.5:
        found.add("right of")
    if ry < -0.5:
        found.add("above")
    if ry > 0.5:
        found.add("below")
    return found


def _x_overlap(a: Box, b: Box) -> float:
    """How much of the narrower box's width the two boxes share."""
    shared = min(a[2], b[2]) - max(a[0], b[0])
    return max(shared, 0) / max(1, min(a[2] - a[0], b[2] - b[0]))


def _gap(a: Box, b: Box) -> float:
    gx = max(a[0] - b[2], b[0] - a[2], 0)
    gy = max(a[1] - b[3], b[1] - a[3], 0)
    return math.hypot(gx, gy)


def holds(predicate: str, a: Box, b: Box) -> bool:
    """Whether ``a predicate b`` reads true from the two boxes.

    GenEval's four predicates use its rule. The others are loose: "on top of" and
    "under" are above/below with the boxes sharing at least half the narrower
    width; "next to" and "near" leave a gap of at most the larger box's longer side;
    "in front of" sits lower in the picture (closer to the viewer), "behind" higher.
    """
    if predicate in ("left of", "right of", "above", "below"):
        return predicate in relative_position(a, b)
    if predicate == "on top of":
        return "above" in relative_position(a, b) and _x_overlap(a, b) >= 0.5
    if predicate == "under":
        return "below" in relative_position(a, b) and _x_overlap(a, b) >= 0.5
    if predicate in ("next to", "near"):
        longest = max(a[2] - a[0], a[3] - a[1], b[2] - b[0], b[3] - b[1])
        return _gap(a, b) <= longest
    if predicate == "in front of":
        return (a[1] + a[3]) > (b[1] + b[3])
    if predicate == "behind":
        return (a[1] + a[3]) < (b[1] + b[3])
    raise ValueError(f"unknown predicate {predicate!r}")
