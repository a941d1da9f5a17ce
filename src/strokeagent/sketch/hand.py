"""The hand that paints a model's strokes on the canvas: a 4×4 grid of places, and realistic mistakes.

    >>> doc = SketchDocument(size=SIZE)
    >>> doc = paint(doc, [Stroke("dog", None, 1, 1)], np.random.default_rng(0), mistake_rate=0.0)
    >>> [(d.cls, d.box) for d in doc.instances]
    [('dog', (138, 134, 246, 228))]

A unified model whose visual output is strokes (``process-tiny``) writes, for
each pass, what to draw: a class, a colour (or none: the class's own tint) and
a place, one of the 16 cells of a 4×4 grid. The hand draws each stroke as a
glyph in its cell, and — like a person's hand — sometimes gets it wrong, with
the drafter's own mistake model (``sketch.mistakes``): the more strokes in one
pass, the likelier each goes wrong; a wrong stroke lands elsewhere, on another
instance, partly off the canvas, in a drifted colour, or not at all.

A stroke for a class and cell that the canvas already has *replaces* that
instance (the hand scrapes it off and paints it again): this is how a refine
pass repaints what an inspection found wrong, and only that. The document
(``SketchDocument``) records what was actually drawn; every instance's
``object_id`` is the stroke it came from (``"dog@1,1"``), so the hand knows
which drawn instance a later stroke redoes. The model never sees the
document: it sees the rendered pixels.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from strokeagent.scene.vocab import COCO_CLASSES
from strokeagent.sketch.document import Box, Drawn, SketchDocument
from strokeagent.sketch.mistakes import MISTAKE_KINDS, add_mistaken, applicable, mistake_probability
from strokeagent.sketch.palette import rgb_for

SIZE = 512
GRID = 4
CELL = SIZE // GRID
#: The glyph inside its cell, leaving room for the label underneath.
INSET = (10, 6, 118, 100)
#: The hand's own mistakes: ``jitter`` needs the relation a stroke serves, which a stroke does not say;
#: its ``misplaced`` stroke lands in another cell instead.
HAND_MISTAKES: tuple[str, ...] = tuple(k for k in MISTAKE_KINDS if k != "jitter") + ("misplaced",)


@dataclass(frozen=True)
class Stroke:
    """Draw ``cls`` in ``color`` (None: the class's tint) in cell (``col``, ``row``)."""

    cls: str
    color: str | None
    col: int
    row: int

    @property
    def key(self) -> str:
        return f"{self.cls}@{self.col},{self.row}"


def cell_box(col: int, row: int) -> Box:
    x, y = col * CELL, row * CELL
    return (x + INSET[0], y + INSET[1], x + INSET[2], y + INSET[3])


def supercategory(cls: str) -> str:
    return COCO_CLASSES.get(cls, "generic")


def paint(
    doc: SketchDocument,
    strokes: list[Stroke],
    rng: np.random.Generator,
    mistake_rate: float = 0.25,
    crowding: float = 0.25,
) -> SketchDocument:
    """``doc`` with ``strokes`` painted: each replaces the instance its key drew before, else is added."""
    p = mistake_probability(len(strokes), mistake_rate, crowding)
    for stroke in strokes:
        doc = doc.model_copy(update={"instances": [d for d in doc.instances if d.object_id != stroke.key]})
        drawn = Drawn(
            iid=0,
            object_id=stroke.key,
            cls=stroke.cls,
            supercategory=supercategory(stroke.cls),
            color=stroke.color,
            rgb=rgb_for(stroke.color, stroke.cls),
            box=cell_box(stroke.col, stroke.row),
        )
        if rng.random() >= p:
            doc = doc.add(drawn)
            continue
        kinds = applicable(HAND_MISTAKES, doc, [])
        kind = kinds[int(rng.integers(len(kinds)))]
        if kind == "misplaced":
            cells = [(c, r) for c in range(GRID) for r in range(GRID) if (c, r) != (stroke.col, stroke.row)]
            col, row = cells[int(rng.integers(len(cells)))]
            doc = doc.add(drawn.model_copy(update={"box": cell_box(col, row)}))
        else:
            doc = add_mistaken(doc, kind, drawn, [], rng)
    return doc
