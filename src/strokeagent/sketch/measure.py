"""Ground truth of a canvas: what is visible, where, and in which colour — from its document and id buffer.

    >>> from strokeagent.sketch.document import Drawn, SketchDocument
    >>> doc = SketchDocument(size=128).add(Drawn(iid=0, object_id="o0", cls="cup",
    ...     supercategory="kitchen", rgb=(40, 90, 220), box=(10, 10, 60, 60)))
    >>> from strokeagent.sketch.glyphs import render
    >>> [(s.cls, s.color, s.counts) for s in inspect(render(doc)[0], doc)]
    [('cup', 'blue', True)]

This is the answer key, not perception: the reflector sees through
``perceive`` (pixels only); this module serves data building, tests and
benchmarks that need the truth. It reads no intent either: an instance's visible pixels are where the id buffer holds its iid, its
colour is the most common nearest-named-colour among those pixels *of the image
as given*, and its box for relations is the bounding box of those pixels.

Positions follow GenEval's rule (djghosh13/geneval, ``evaluate_images.py``):
take the offset between two box centres, shrink each axis by 0.1 × the sum of
the boxes' extents on that axis (the margin), and call A "left of" B when the
shrunk horizontal offset is below -0.5 × the length of the full offset (likewise
right, above, below). Predicates GenEval does not judge get loose geometric
readings here (see ``holds``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image

from strokeagent.scene.geometry import POSITION_MARGIN, holds, relative_position  # noqa: F401 - re-exported
from strokeagent.scene.graph import SceneGraph, SceneObject
from strokeagent.sketch.document import Box, SketchDocument
from strokeagent.sketch.glyphs import glyph_kind, glyph_mask, render
from strokeagent.sketch.palette import OUTLINE, color_names, nearest_index

#: An instance with less than this fraction of its own area visible does not count.
HIDDEN_THRESHOLD = 0.5


@dataclass(frozen=True)
class Seen:
    """One drawn instance as the pixels show it."""

    iid: int
    object_id: str
    cls: str
    area: int  # pixels of the whole glyph, wherever it lies
    inframe: int  # of those, inside the canvas
    visible: int  # of those, not covered by anything drawn later
    box: Box | None  # bounding box of the visible pixels
    color: str | None  # nearest named colour of the visible pixels

    @property
    def visible_fraction(self) -> float:
        return self.visible / self.area if self.area else 0.0

    @property
    def inframe_fraction(self) -> float:
        return self.inframe / self.area if self.area else 0.0

    @property
    def occluded_fraction(self) -> float:
        return (self.inframe - self.visible) / self.area if self.area else 0.0

    @property
    def counts(self) -> bool:
        """Whether a viewer would count it: enough of it is visible."""
        return self.visible_fraction >= HIDDEN_THRESHOLD


def inspect(image: Image.Image, doc: SketchDocument) -> list[Seen]:
    """Every drawn instance of ``doc`` as it shows in ``image``, in document order."""
    _, ids = render(doc)
    pixels = np.asarray(image.convert("RGB"))
    size = doc.size
    seen = []
    for d in doc.instances:
        x0, y0, x1, y1 = d.box
        w, h = x1 - x0, y1 - y0
        mask = glyph_mask(glyph_kind(d.supercategory), w, h) if w > 0 and h > 0 else np.zeros((0, 0), bool)
        cx0, cy0, cx1, cy1 = max(x0, 0), max(y0, 0), min(x1, size), min(y1, size)
        inframe = int(mask[cy0 - y0 : cy1 - y0, cx0 - x0 : cx1 - x0].sum()) if cx1 > cx0 and cy1 > cy0 else 0
        box, color, visible = None, None, 0
        if inframe:
            window = ids[cy0:cy1, cx0:cx1] == d.iid
            visible = int(window.sum())
            if visible:
                ys, xs = np.nonzero(window)
                box = (
                    cx0 + int(xs.min()),
                    cy0 + int(ys.min()),
                    cx0 + int(xs.max()) + 1,
                    cy0 + int(ys.max()) + 1,
                )
                color = measure_color(pixels[cy0:cy1, cx0:cx1][window])
        seen.append(Seen(d.iid, d.object_id, d.cls, int(mask.sum()), inframe, visible, box, color))
    return seen


def measure_color(pixels: np.ndarray) -> str:
    """The colour a viewer would name for an (N, 3) array of an object's pixels."""
    paint = pixels[(pixels != OUTLINE).any(axis=1)]
    paint = paint if len(paint) else pixels
    # A sketch has few distinct colours: name each once, weigh it by how many pixels have it.
    packed = (paint[:, 0].astype(np.int32) << 16) | (paint[:, 1].astype(np.int32) << 8) | paint[:, 2]
    distinct, counts = np.unique(packed, return_counts=True)
    rgb = np.stack([distinct >> 16, (distinct >> 8) & 255, distinct & 255], axis=1)
    votes = np.bincount(nearest_index(rgb), weights=counts, minlength=len(color_names()))
    return color_names()[int(votes.argmax())]


def _violation(kind: str, text: str, **fields: Any) -> dict[str, Any]:
    return {"kind": kind, "text": text, **fields}


def _name(obj: SceneObject, count: int) -> str:
    from strokeagent.scene.vocab import pluralize

    return obj.cls if count == 1 else pluralize(obj.cls)


#: An instance may lose this much of itself to the frame or to others before it counts as a problem.
TOLERANCE = 0.1


def check_document(
    prompt: SceneGraph, expected: list[str], doc: SketchDocument, seen: list[Seen]
) -> list[dict[str, Any]]:
    """Ground truth: where the document's canvas disagrees with what should be on it by now (for data and
    benchmarks; the reflector sees pixels only, ``reflector.check_pixels``)."""
    out: list[dict[str, Any]] = []
    asked = {o.id: o for o in prompt.objects}
    visible: dict[str, list[Seen]] = {}
    for s in seen:
        obj = asked.get(s.object_id)
        if obj is None:
            out.append(
                _violation(
                    "unexpected", f"a {s.cls} is drawn that the prompt does not ask for", instance=s.iid
                )
            )
        elif s.object_id in expected and s.cls != obj.cls:
            out.append(_violation("wrong_class", f"a {s.cls} is drawn where a {obj.cls} should be",
                                  instance=s.iid, object_id=obj.id, expected=obj.cls, found=s.cls))  # fmt: skip
    for oid in expected:
        obj = asked[oid]
        mine = [s for s in seen if s.object_id == oid and s.cls == obj.cls]
        shown = [s for s in mine if s.counts]
        for s in mine:
            if not s.counts:
                where = "off the frame" if s.inframe_fraction < 0.5 else "hidden"
                out.append(_violation("hidden", f"a {obj.cls} is {where} ({s.visible_fraction:.0%} visible)",
                                      instance=s.iid, object_id=oid, found=round(s.visible_fraction, 3)))  # fmt: skip
        if len(shown) != obj.count:
            add = max(0, obj.count - len(mine))
            extra = sorted(shown, key=lambda s: s.visible)[: max(0, len(shown) - obj.count)]
            out.append(_violation("count", f"expected {obj.count} {_name(obj, obj.count)}, {len(shown)} visible",
                                  object_id=oid, expected=obj.count, found=len(shown), add=add,
                                  remove=[s.iid for s in extra]))  # fmt: skip
        for s in shown:
            if s.inframe_fraction < 1 - TOLERANCE:
                out.append(_violation("off_frame", f"a {obj.cls} is partly off the frame", instance=s.iid, object_id=oid,
                                      found=round(s.inframe_fraction, 3)))  # fmt: skip
            elif s.occluded_fraction > TOLERANCE:
                out.append(_violation("occluded", f"a {obj.cls} is partly covered", instance=s.iid, object_id=oid,
                                      found=round(s.occluded_fraction, 3)))  # fmt: skip
            if obj.color and s.color != obj.color:
                out.append(_violation("color", f"{obj.cls} is {s.color}, expected {obj.color}", instance=s.iid,
                                      object_id=oid, expected=obj.color, found=s.color))  # fmt: skip
        visible[oid] = shown
    for r in prompt.relations:
        if r.subject not in visible or r.object not in visible:
            continue
        target = asked[r.object].cls
        for a in visible[r.subject]:
            bad = next((b for b in visible[r.object] if not holds(r.predicate, a.box, b.box)), None)
            if bad is not None:
                out.append(_violation("relation", f"{asked[r.subject].cls} is not {r.predicate} {target}",
                                      instance=a.iid, object_id=r.subject, expected=r.predicate,
                                      target=r.object, target_instance=bad.iid))  # fmt: skip
    return out
