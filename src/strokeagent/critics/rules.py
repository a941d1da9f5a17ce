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

Reason strings are GenEval's, so results read the same as its JSONL. The canvas
judge (``strokeagent.critics.canvas``) runs this same ``evaluate`` in its own
``Dialect``: in-colour instances first, looser rules for the predicates GenEval
lacks, and its own wording of colour and position failures.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from strokeagent.scene.geometry import holds, relative_position
from strokeagent.scene.vocab import GENEVAL_COLORS

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


@dataclass(frozen=True)
class Dialect:
    """Where a caller of ``evaluate`` departs from GenEval: ``GENEVAL`` nowhere, ``CANVAS`` as below.

        >>> CANVAS.position_reason.format(cls="dog", rel="right of", target="teddy bear", true="above")
        'expected dog right of teddy bear'

    * ``in_colour_first``: of a class's detections, those already in the asked
      colour rank first (stably: the detector's order holds within each), so
      "a red cup and a blue cup" can pass. GenEval checks the colour of its
      ``count`` most confident detections, whatever their colour.
    * ``holds(rel, box, target_box)``: the position rule; ``None`` is GenEval's
      (``relative_position`` with ``position_threshold``: its four predicates only).
    * ``colour_reason``, ``position_reason``: how those two failures are worded.
      Colour: ``n`` of the ``count`` checked are in the asked ``color``; ``tally``
      counts every colour in GenEval's order, ``as_found`` in the order found.
      Position: ``target`` is the target's class, ``true`` the relations the first
      failing pair has instead.
    """

    in_colour_first: bool = False
    holds: Callable[[str, Box, Box], bool] | None = None
    colour_reason: str = "expected {color} {cls}>={count}, found {n} {color}; and {tally}"
    position_reason: str = "expected {cls} {rel} target, found {true} target"


GENEVAL = Dialect()
#: The canvas judge's (``strokeagent.critics.canvas``): its reasons name what it saw, for the reflector.
CANVAS = Dialect(
    in_colour_first=True,
    holds=holds,
    colour_reason="expected {color} {cls}>={count}, found {as_found}",
    position_reason="expected {cls} {rel} {target}",
)


def evaluate(
    detected: dict[str, list[Detection]],
    include: Sequence[dict[str, Any]],
    exclude: Sequence[dict[str, Any]],
    *,
    colors_of: ColorsOf | None,
    position_threshold: float = POSITION_THRESHOLD,
    dialect: Dialect = GENEVAL,
) -> tuple[bool, list[str]]:
    """GenEval's ``evaluate``: whether the detections satisfy the row, and one reason per failed clause.

        >>> evaluate({"cup": [Detection((0, 0, 9, 9), 0.9)]}, [{"class": "cup", "count": 2}], [], colors_of=None)
        (False, ['expected cup>=2, found 1'])

    ``colors_of(cls, detections)`` names the colour of each detection (GenEval:
    CLIP over the box); rows with a ``color`` clause need it. Detections are
    anything with a ``box``, most confident first. ``dialect`` is where the caller
    departs from GenEval (``strokeagent.critics.canvas``: the canvas's).
    """
    holds = dialect.holds or (lambda rel, a, b: rel in relative_position(a, b, position_threshold))
    reasons: list[str] = []
    groups: list[list[Any] | None] = []
    for req in include:
        cls, count, color = req["class"], req.get("count", 1), req.get("color")
        pool = detected.get(cls, [])
        if color and dialect.in_colour_first and colors_of is not None:
            colors = colors_of(cls, pool)
            pool = [pool[i] for i in sorted(range(len(pool)), key=lambda i: colors[i] != color)]
        found = pool[:count]
        matched = len(found) >= count
        if not matched:
            reasons.append(f"expected {cls}>={count}, found {len(found)}")
        elif color:
            if colors_of is None:
                raise ValueError(f"the row asks for a {color} {cls}, but this critic cannot see colours")
            colors = colors_of(cls, found)
            if colors.count(color) < count:
                matched = False
                words = {"cls": cls, "count": count, "color": color, "n": colors.count(color)}
                words["tally"] = ", ".join(f"{colors.count(c)} {c}" for c in COLORS if c in colors)
                words["as_found"] = ", ".join(f"{colors.count(c)} {c}" for c in dict.fromkeys(colors))
                reasons.append(dialect.colour_reason.format(**words))
        if matched and req.get("position"):
            rel, target = req["position"]
            targets = groups[target] if target < len(groups) else None
            if targets is None:
                matched = False
                reasons.append(f"no target for {cls} to be {rel}")
            elif wrong := [(a.box, b.box) for a in found for b in targets if not holds(rel, a.box, b.box)]:
                matched = False
                true = " and ".join(sorted(relative_position(*wrong[0], position_threshold)))
                target_cls = include[target]["class"]
                reasons.append(dialect.position_reason.format(cls=cls, rel=rel, target=target_cls, true=true))
        groups.append(found if matched else None)
    for req in exclude:
        n = len(detected.get(req["class"], []))
        if n >= req["count"]:
            reasons.append(f"expected {req['class']}<{req['count']}, found {n}")
    return not reasons, reasons
