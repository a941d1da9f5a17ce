"""GenEval's rules on detections: which detections count, and whether they satisfy a metadata row.

    >>> dets = {"dog": [Detection((150, 100, 230, 160), 0.95)], "teddy bear": [Detection((20, 90, 100, 170), 0.8)]}
    >>> row = {"tag": "position", "include": [{"class": "teddy bear", "count": 1},
    ...        {"class": "dog", "count": 1, "position": ["right of", 0]}]}
    >>> evaluate(keep_detections(dets, row["tag"]), row["include"], [], colors_of=None)
    (True, [])

Reproduces ``evaluate_image`` and ``evaluate`` of GenEval (djghosh13/geneval,
``evaluation/evaluate_images.py``) with its default options:

* a detection counts when its confidence is *above* 0.3, or above 0.9 on
  ``counting`` rows; at most 16 per class, most confident first; greedy
  suppression of boxes overlapping a kept one by IoU >= ``max_overlap`` (1.0
  by default: off). IoU uses GenEval's inclusive pixel areas (``+ 1``).
* ``include`` clauses are ANDed: the ``count`` most confident detections of
  the class must exist; with ``color``, at least ``count`` of *those* must be
  classified in that colour; with ``position: [rel, i]``, each of them must
  stand ``rel`` every object matched by clause ``i`` (GenEval's margin rule,
  ``relative_position``). ``exclude`` clauses fail at ``count`` or more.

Reason strings are GenEval's, so results read the same as its JSONL.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from strokeagent.scene.vocab import GENEVAL_COLORS
from strokeagent.sketch.measure import relative_position

THRESHOLD = 0.3
COUNTING_THRESHOLD = 0.9
MAX_OBJECTS = 16
MAX_OVERLAP = 1.0
POSITION_THRESHOLD = 0.1
COLORS = GENEVAL_COLORS  # the order GenEval lists them in

Box = tuple[float, float, float, float]


@dataclass(frozen=True)
class Detection:
    """One detected object: ``Detection(box=(x0, y0, x1, y1), score=0.93, mask=None)`` in image pixels."""

    box: Box
    score: float
    mask: np.ndarray | None = None  # (H, W) bool, when the detector segments

    def to_json(self) -> list[float]:
        return [*(round(float(v), 2) for v in self.box), round(float(self.score), 4)]


def compute_iou(a: Box, b: Box) -> float:
    """GenEval's IoU: areas count inclusive pixels, ``(x1 - x0 + 1) * (y1 - y0 + 1)``."""

    def area(box: Sequence[float]) -> float:
        return max(box[2] - box[0] + 1, 0) * max(box[3] - box[1] + 1, 0)

    inter = area((max(a[0], b[0]), max(a[1], b[1]), min(a[2], b[2]), min(a[3], b[3])))
    union = area(a) + area(b) - inter
    return inter / union if union else 0.0


def keep_detections(
    raw: dict[str, list[Detection]],
    tag: str | None,
    *,
    threshold: float = THRESHOLD,
    counting_threshold: float = COUNTING_THRESHOLD,
    max_objects: int = MAX_OBJECTS,
    max_overlap: float = MAX_OVERLAP,
) -> dict[str, list[Detection]]:
    """The detections GenEval keeps, per class, most confident first; classes with none are left out."""
    cutoff = counting_threshold if tag == "counting" else threshold
    kept: dict[str, list[Detection]] = {}
    for cls, dets in raw.items():
        # Strictly above the cutoff, as GenEval's `> confidence_threshold`.
        ranked = sorted((d for d in dets if d.score > cutoff), key=lambda d: -d.score)[:max_objects]
        out: list[Detection] = []
        while ranked:
            best = ranked.pop(0)
            out.append(best)
            if max_overlap < 1:
                ranked = [d for d in ranked if compute_iou(best.box, d.box) < max_overlap]
        if out:
            kept[cls] = out
    return kept


ColorsOf = Callable[[str, list[Detection]], list[str]]


def evaluate(
    detected: dict[str, list[Detection]],
    include: Sequence[dict[str, Any]],
    exclude: Sequence[dict[str, Any]],
    *,
    colors_of: ColorsOf | None,
    position_threshold: float = POSITION_THRESHOLD,
) -> tuple[bool, list[str]]:
    """GenEval's ``evaluate``: whether the detections satisfy the row, and one reason per failed clause.

    ``colors_of(cls, detections)`` names the colour of each detection (GenEval:
    CLIP over the box); rows with a ``color`` clause need it.
    """
    reasons: list[str] = []
    groups: list[list[Detection] | None] = []
    for req in include:
        cls, count = req["class"], req.get("count", 1)
        found = detected.get(cls, [])[:count]
        matched = len(found) >= count
        if not matched:
            reasons.append(f"expected {cls}>={count}, found {len(found)}")
        elif req.get("color"):
            if colors_of is None:
                raise ValueError(
                    f"the row asks for a {req['color']} {cls}, but this critic cannot see colours"
                )
            colors = colors_of(cls, found)
            if colors.count(req["color"]) < count:
                matched = False
                seen = ", ".join(f"{colors.count(c)} {c}" for c in COLORS if c in colors)
                reasons.append(
                    f"expected {req['color']} {cls}>={count}, found {colors.count(req['color'])} {req['color']}; and {seen}"
                )
        if matched and req.get("position"):
            rel, target = req["position"]
            targets = groups[target] if target < len(groups) else None
            if targets is None:
                matched = False
                reasons.append(f"no target for {cls} to be {rel}")
            else:
                bad = _first_wrong_relation(found, targets, rel, position_threshold)
                if bad is not None:
                    matched = False
                    reasons.append(f"expected {cls} {rel} target, found {' and '.join(sorted(bad))} target")
        groups.append(found if matched else None)
    for req in exclude:
        n = len(detected.get(req["class"], []))
        if n >= req["count"]:
            reasons.append(f"expected {req['class']}<{req['count']}, found {n}")
    return not reasons, reasons


def _first_wrong_relation(
    found: list[Detection], targets: list[Detection], rel: str, margin: float
) -> set[str] | None:
    """The true relations of the first (object, target) pair that lacks ``rel``; None when all have it."""
    for obj in found:
        for target in targets:
            true = relative_position(obj.box, target.box, margin)
            if rel not in true:
                return true
    return None
