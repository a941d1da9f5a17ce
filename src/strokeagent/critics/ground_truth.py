"""Ground truth for a stroke canvas, from its document: what a data generator labels with, never the judge.

    >>> from strokeagent.sketch.document import Drawn, SketchDocument
    >>> doc = SketchDocument(size=128).add(Drawn(iid=0, object_id="o0", cls="cup",
    ...     supercategory="kitchen", rgb=(20, 60, 220), box=(10, 10, 60, 60)))
    >>> truth([{"class": "cup", "count": 1, "color": "blue"}], doc)
    (True, [])

The document records what was drawn (class, rgb, box, drawing order), and the
renderer's id buffer says which of each instance's pixels show. That is the
answer key: it decides GenEval's rules exactly as drawn, and so it is what the
data builder labels its self-sampled trajectories with and what the pixel
judge (``strokeagent.critics.canvas``) is measured against. It must not stand
in for the judge: a canvas's pixels may not match its document.

What shows of each instance is ``strokeagent.sketch.measure``'s reading of the
document and the render's id buffer (the sketch world's own answer key): an
instance counts when at least half of its glyph shows.
"""

from __future__ import annotations

from typing import Any

from strokeagent.critics.canvas import clauses_of
from strokeagent.sketch.document import META_KEY, SketchDocument
from strokeagent.sketch.glyphs import render
from strokeagent.sketch.measure import Seen, inspect


def document_of(canvas: Any) -> SketchDocument:
    """The document of a SketchDocument, a document/meta dict, or anything with ``meta`` carrying one."""
    if isinstance(canvas, SketchDocument):
        return canvas
    if isinstance(canvas, dict):
        return (
            SketchDocument.from_meta(canvas) if META_KEY in canvas else SketchDocument.model_validate(canvas)
        )
    return SketchDocument.from_meta(getattr(canvas, "meta", None) or {})


def truth(item: Any, canvas: Any) -> tuple[bool, list[str]]:
    """GenEval's verdict on what ``canvas``'s document says was drawn (the answer key, not the pixels)."""
    from strokeagent.critics.rules import CANVAS, evaluate

    include, exclude = clauses_of(item)
    doc = document_of(canvas)
    detected: dict[str, list[Seen]] = {}
    for s in sorted(inspect(render(doc)[0], doc), key=lambda s: -s.visible_fraction):
        if s.counts:
            detected.setdefault(s.cls, []).append(s)
    return evaluate(
        detected, include, exclude, colors_of=lambda cls, seen: [s.color for s in seen], dialect=CANVAS
    )
