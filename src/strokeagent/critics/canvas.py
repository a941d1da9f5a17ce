"""GenEval's verdict on a canvas, from what is actually visible on it.

    >>> from strokeagent.sketch.document import Drawn, SketchDocument
    >>> doc = SketchDocument(size=256).add(Drawn(iid=0, object_id="o0", cls="dog", supercategory="animal",
    ...     rgb=(139, 69, 19), box=(150, 100, 230, 160)))
    >>> doc = doc.add(Drawn(iid=0, object_id="o1", cls="teddy bear", supercategory="indoor",
    ...     rgb=(200, 200, 200), box=(20, 90, 100, 170)))
    >>> judge([{"class": "teddy bear", "count": 1}, {"class": "dog", "count": 1, "position": ["right of", 0]}], doc)
    (True, [])

The rules are GenEval's ``evaluate`` (djghosh13/geneval, ``evaluate_images.py``;
here ``strokeagent.critics.rules.evaluate`` in the ``CANVAS`` dialect), with the
canvas standing in for its detector: the "detections" of a class are its
instances with at least half their area visible, their boxes the bounding boxes
of their visible pixels, their colours measured from the pixels.

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
``measure.holds``. Reasons name the target's class ("expected dog right of teddy
bear") and the colours found ("expected blue cup>=1, found 1 purple"). The judge
never reads a plan or the document's intent.
"""

from __future__ import annotations

from typing import Any

from PIL import Image

from strokeagent.scene.graph import SceneGraph
from strokeagent.sketch.document import META_KEY, SketchDocument
from strokeagent.sketch.glyphs import render
from strokeagent.sketch.measure import Seen, inspect


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


def _canvas(canvas: Any) -> tuple[Image.Image, SketchDocument]:
    """The pixels and the document of a Canvas, a SketchDocument, or a document/meta dict."""
    if isinstance(canvas, SketchDocument):
        return render(canvas)[0], canvas
    if isinstance(canvas, dict):
        doc = (
            SketchDocument.from_meta(canvas) if META_KEY in canvas else SketchDocument.model_validate(canvas)
        )
        return render(doc)[0], doc
    return canvas.image, SketchDocument.from_meta(canvas.meta)


def detect(image: Image.Image, doc: SketchDocument) -> dict[str, list[Seen]]:
    """The canvas's "detections": visible instances by class, largest first."""
    found: dict[str, list[Seen]] = {}
    for s in sorted(inspect(image, doc), key=lambda s: -s.visible):
        if s.counts:
            found.setdefault(s.cls, []).append(s)
    return found


def judge(item: Any, canvas: Any) -> tuple[bool, list[str]]:
    """Whether ``canvas`` satisfies ``item`` by GenEval's rules, and the reasons when not."""
    # Here, not at the top: critics.rules reads boxes through sketch.measure, whose package imports us.
    from strokeagent.critics.rules import CANVAS, evaluate

    include, exclude = clauses_of(item)
    detected = detect(*_canvas(canvas))
    return evaluate(detected, include, exclude, colors_of=_colors, dialect=CANVAS)


def _colors(cls: str, seen: list[Seen]) -> list[str | None]:
    """The colours measured from the pixels, where GenEval asks CLIP."""
    return [s.color for s in seen]
