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

An instance counts when at least half of its glyph shows; its box is the bounds
of its visible pixels; its colour the palette colour nearest the rgb it was
painted with.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from strokeagent.critics.canvas import clauses_of
from strokeagent.sketch.document import META_KEY, SketchDocument

HIDDEN_THRESHOLD = 0.5


@dataclass(frozen=True)
class Truth:
    """One drawn instance as its document and id buffer say it shows."""

    cls: str
    color: str
    box: tuple[int, int, int, int]
    visible: float  # fraction of its glyph that shows

    @property
    def counts(self) -> bool:
        return self.visible >= HIDDEN_THRESHOLD


def document_of(canvas: Any) -> SketchDocument:
    """The document of a SketchDocument, a document/meta dict, or anything with ``meta`` carrying one."""
    if isinstance(canvas, SketchDocument):
        return canvas
    if isinstance(canvas, dict):
        return (
            SketchDocument.from_meta(canvas) if META_KEY in canvas else SketchDocument.model_validate(canvas)
        )
    return SketchDocument.from_meta(getattr(canvas, "meta", None) or {})


def instances(doc: SketchDocument) -> list[Truth]:
    """Every drawn instance with what shows of it, in document order."""
    from strokeagent.sketch.glyphs import render
    from strokeagent.sketch.palette import nearest_color

    _, ids = render(doc)
    out = []
    for d in doc.instances:
        # The whole glyph, wherever it lies: the instance rendered alone on a canvas big enough to hold it.
        x0, y0, x1, y1 = d.box
        alone = SketchDocument(size=max(x1 - x0, y1 - y0, 1)).add(
            d.model_copy(update={"box": (0, 0, x1 - x0, y1 - y0)})
        )
        area = int((render(alone)[1] > 0).sum())
        shows = ids == d.iid
        visible = int(shows.sum())
        if visible:
            ys, xs = np.nonzero(shows)
            box = (int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1)
        else:
            box = d.box
        out.append(Truth(d.cls, nearest_color(d.rgb), box, visible / area if area else 0.0))
    return out


def truth(item: Any, canvas: Any) -> tuple[bool, list[str]]:
    """GenEval's verdict on what ``canvas``'s document says was drawn (the answer key, not the pixels)."""
    from strokeagent.critics.rules import CANVAS, evaluate

    include, exclude = clauses_of(item)
    detected: dict[str, list[Truth]] = {}
    for t in sorted(instances(document_of(canvas)), key=lambda t: -t.visible):
        if t.counts:
            detected.setdefault(t.cls, []).append(t)
    return evaluate(
        detected, include, exclude, colors_of=lambda cls, ts: [t.color for t in ts], dialect=CANVAS
    )
