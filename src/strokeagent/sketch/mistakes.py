"""The drafter's realistic mistakes, and how often it makes them.

    >>> mistake_probability(1, rate=0.25, crowding=0.25), mistake_probability(4, rate=0.25, crowding=0.25)
    (0.25, 0.4375)

**The model.** Every instance drawn in a pass goes wrong with probability

    p(n) = min(cap, rate × (1 + crowding × (n − 1))),   cap = max(0.9, rate)

where ``n`` is how many instances that pass draws: each extra thing to keep in
mind raises every instance's risk by ``crowding`` × ``rate``. One object alone
fails a quarter of the time at the defaults; four at once, 44 %; eight, 69 %.
That is the reason to plan in increments: a step that adds one object keeps ``n``
small. When an instance goes wrong, one kind is drawn uniformly from the enabled
kinds that can apply to it (the cap keeps a crowded canvas from being hopeless,
yet lets ``rate=1`` force a mistake on every instance, as tests do):

* ``jitter`` — it lands on the wrong side of an object it relates to (needs a
  relation to something already drawn);
* ``overlap`` — it lands on another instance, half the time drawn over it
  (hiding it), half the time under it (hidden itself) (needs something drawn);
* ``color`` — its colour drifts to another named colour or a hue that measures
  as one;
* ``drop`` — it is never drawn;
* ``off_frame`` — it slides 30–80 % of its width or height past an edge.

A mistake need not break the prompt (a drifted colour on an object the prompt
gave no colour is harmless), as with a human painter.
"""

from __future__ import annotations

import numpy as np

from strokeagent.sketch.document import Drawn, SketchDocument
from strokeagent.sketch.glyphs import footprint
from strokeagent.sketch.layout import Need, find_place
from strokeagent.sketch.palette import drifted_rgb

MISTAKE_KINDS: tuple[str, ...] = ("jitter", "overlap", "color", "drop", "off_frame")


def mistake_probability(n: int, rate: float, crowding: float) -> float:
    return min(max(0.9, rate), rate * (1 + crowding * max(n - 1, 0)))


class _Broken:
    """The opposite of a need: the box must break it."""

    def __init__(self, need: Need) -> None:
        self.need = need

    def met(self, box: tuple[int, int, int, int]) -> bool:
        return not self.need.met(box)


def applicable(kinds: tuple[str, ...], doc: SketchDocument, needs: list[Need]) -> list[str]:
    return [k for k in kinds if (k != "jitter" or needs) and (k != "overlap" or doc.instances)]


def make_mistake(
    kind: str, drawn: Drawn, doc: SketchDocument, needs: list[Need], rng: np.random.Generator
) -> tuple[Drawn | None, bool]:
    """``drawn`` gone wrong in the way ``kind`` says; and whether it goes under everything drawn."""
    x0, y0, x1, y1 = drawn.box
    w, h = x1 - x0, y1 - y0
    if kind == "drop":
        return None, False
    if kind == "color":
        return drawn.model_copy(update={"rgb": drifted_rgb(drawn.rgb, rng)}), False
    if kind == "off_frame":
        side = int(rng.integers(4))
        out = rng.uniform(0.3, 0.8)
        dx = {0: -(x0 + out * w), 1: doc.size - x1 + out * w}.get(side, 0)
        dy = {2: -(y0 + out * h), 3: doc.size - y1 + out * h}.get(side, 0)
        return _moved(drawn, round(dx), round(dy)), False
    if kind == "overlap":
        victim = doc.instances[int(rng.integers(len(doc.instances)))]
        vx, vy = (victim.box[0] + victim.box[2]) / 2, (victim.box[1] + victim.box[3]) / 2
        # Centred on the victim, about as large: whichever is underneath is mostly covered.
        jx, jy = rng.uniform(-0.15, 0.15) * w, rng.uniform(-0.15, 0.15) * h
        dx, dy = round(vx + jx - (x0 + x1) / 2), round(vy + jy - (y0 + y1) / 2)
        return _moved(drawn, dx, dy), bool(rng.random() < 0.5)
    if kind == "jitter":
        broken = _Broken(needs[int(rng.integers(len(needs)))])
        obstacles = [footprint(d.cls, d.box) for d in doc.instances]
        box = find_place(drawn.cls, w, h, doc.size, obstacles, [broken], prefer=(x0 + w / 2, y0 + h / 2))
        if box is None:  # no free spot on the wrong side: shove it across its partner anyway
            other = broken.need.other
            box = (other[0], other[1], other[0] + w, other[1] + h)
        return drawn.model_copy(update={"box": box}), False
    raise ValueError(f"unknown mistake kind {kind!r}; use one of {', '.join(MISTAKE_KINDS)}")


def add_mistaken(
    doc: SketchDocument, kind: str, drawn: Drawn, needs: list[Need], rng: np.random.Generator
) -> SketchDocument:
    """``doc`` with ``drawn`` added gone wrong in the way ``kind`` says: dropped, or added over or under the rest."""
    mistaken, under = make_mistake(kind, drawn, doc, needs, rng)
    if mistaken is None:
        return doc
    doc = doc.add(mistaken)
    if under:
        low = min(d.z for d in doc.instances) - 1
        doc = doc.replace(doc.instances[-1].model_copy(update={"z": low}))
    return doc


def _moved(drawn: Drawn, dx: int, dy: int) -> Drawn:
    x0, y0, x1, y1 = drawn.box
    return drawn.model_copy(update={"box": (x0 + dx, y0 + dy, x1 + dx, y1 + dy)})
