"""GenEval's verdict on a canvas, from its pixels alone.

    >>> from strokeagent.sketch.document import Drawn, SketchDocument
    >>> from strokeagent.sketch.glyphs import render
    >>> doc = SketchDocument(size=256).add(Drawn(iid=0, object_id="o0", cls="dog", supercategory="animal",
    ...     rgb=(139, 69, 19), box=(150, 100, 230, 160)))
    >>> doc = doc.add(Drawn(iid=0, object_id="o1", cls="teddy bear", supercategory="indoor",
    ...     rgb=(200, 200, 200), box=(20, 90, 100, 170)))
    >>> image = render(doc)[0]
    >>> judge([{"class": "teddy bear", "count": 1}, {"class": "dog", "count": 1, "position": ["right of", 0]}], image)
    (True, [])

The judge sees only pixels. Its detector is ``strokeagent.critics.canvas_detector``
(segmentation of the canvas into outlined fill regions, then analysis by
synthesis against every class's rendered glyph); it shares no code with the
sketch inspector (``sketch.measure``, ``sketch.perceive``, ``sketch.reflector``),
and never reads a document, an id buffer or a label's text. A document given
in place of pixels is rendered first and judged from those pixels; a ``Canvas``
is judged from its ``image``, whatever its meta says — so a blank canvas with a
real canvas's document fails, and a PNG re-encoded without its metadata gets
the same verdict.

The rules are GenEval's ``evaluate`` (djghosh13/geneval, ``evaluate_images.py``;
here ``strokeagent.critics.rules.evaluate`` in the ``CANVAS`` dialect), with the
detector standing in for GenEval's: an object counts when it matches a class's
glyph (``MIN_IOU``) and at least half of it shows; its box is the bounds of its
visible pixels; its colour the nearest named colour of its fill.

* ``include`` clauses are ANDed: at least ``count`` of the class; with
  ``color``, that many of those in the colour; with ``position: [rel, i]``, each
  of them ``rel`` every object matched by clause ``i`` (GenEval's margin rule).
* ``exclude`` clauses fail when ``count`` or more of the class are visible — so
  a counting row (``include`` n, ``exclude`` n + 1) asks for exactly n.
* One deliberate difference: GenEval checks the colour of its ``count`` most
  confident detections; here instances already in the asked colour rank first
  (then larger ones), so "a red cup and a blue cup" can pass.

A ``SceneGraph`` (free-form prompts) is judged as the clauses it implies, with
exact counts and every relation, GenEval's four by its rule and the others by
``scene.geometry.holds``. Reasons name the target's class ("expected dog right
of teddy bear") and the colours found ("expected blue cup>=1, found 1 purple").

The document-based labels a data generator may want are elsewhere, on purpose:
``strokeagent.critics.ground_truth``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from PIL import Image

from strokeagent.critics.canvas_detector import Found, detect
from strokeagent.scene.graph import SceneGraph


def clauses_of(item: Any) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """``(include, exclude)`` from a GenEval row (dict or model), an include list, or a SceneGraph."""
    if isinstance(item, SceneGraph):
        return _graph_clauses(item)
    if hasattr(item, "model_dump"):
        item = item.model_dump(by_alias=True, exclude_none=True)
    if isinstance(item, list):
        return list(item), []
    return list(item.get("include", [])), list(item.get("exclude") or [])


def _graph_clauses(graph: SceneGraph) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    include: list[dict[str, Any]] = []
    at: dict[str, int] = {}
    for obj in graph.objects:
        at[obj.id] = len(include)
        include.append({"class": obj.cls, "count": obj.count, **({"color": obj.color} if obj.color else {})})
    for r in graph.relations:
        subject = graph.object(r.subject)
        include.append(
            {"class": subject.cls, "count": subject.count, "position": [r.predicate, at[r.object]]}
        )
    totals: dict[str, int] = {}
    for obj in graph.objects:
        totals[obj.cls] = totals.get(obj.cls, 0) + obj.count
    return include, [{"class": c, "count": n + 1} for c, n in totals.items()]


def pixels_of(canvas: Any) -> Image.Image:
    """The pixels to judge: a Canvas's image, a PIL image, or a document (dict or model) rendered."""
    from strokeagent.sketch.document import META_KEY, SketchDocument
    from strokeagent.sketch.glyphs import render

    if isinstance(canvas, Image.Image):
        return canvas
    if isinstance(canvas, SketchDocument):
        return render(canvas)[0]
    if isinstance(canvas, dict):
        doc = (
            SketchDocument.from_meta(canvas) if META_KEY in canvas else SketchDocument.model_validate(canvas)
        )
        return render(doc)[0]
    image = getattr(canvas, "image", None)
    if isinstance(image, Image.Image):
        return image
    raise TypeError(f"cannot judge a {type(canvas).__name__}: give an image, a Canvas or a sketch document")


def _wanted(include: list[dict[str, Any]], exclude: list[dict[str, Any]], item: Any) -> list[Any]:
    """The classes the row names (with supercategories where a scene graph gives them)."""
    classes: list[Any] = []
    if isinstance(item, SceneGraph):
        classes += [(o.cls, o.supercategory) for o in item.objects]
    classes += [req["class"] for req in [*include, *exclude]]
    return classes


@dataclass
class Judgement:
    """What the judge saw and decided."""

    correct: bool
    reasons: list[str]
    found: list[Found]

    def to_json(self) -> dict[str, Any]:
        return {
            "correct": self.correct,
            "reasons": self.reasons,
            "objects": [f.to_json() for f in self.found],
        }


def see(item: Any, canvas: Any) -> Judgement:
    """The verdict on ``canvas`` for ``item`` (a GenEval row, include list or SceneGraph), with what was seen."""
    from strokeagent.critics.rules import CANVAS, evaluate

    include, exclude = clauses_of(item)
    found = detect(pixels_of(canvas), _wanted(include, exclude, item))
    detected: dict[str, list[Found]] = {}
    for f in found:  # largest first
        if f.counts:
            for cls in f.classes:
                detected.setdefault(cls, []).append(f)
    correct, reasons = evaluate(detected, include, exclude, colors_of=_colors, dialect=CANVAS)
    return Judgement(correct, reasons, found)


def judge(item: Any, canvas: Any) -> tuple[bool, list[str]]:
    """Whether ``canvas``'s pixels satisfy ``item`` by GenEval's rules, and the reasons when not."""
    j = see(item, canvas)
    return j.correct, j.reasons


def _colors(cls: str, seen: list[Found]) -> list[str | None]:
    """The colours named from the pixels, where GenEval asks CLIP."""
    return [s.color for s in seen]
