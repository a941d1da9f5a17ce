"""Layout: a box for every instance, so that every relation holds and nothing overlaps.

    >>> from strokeagent.scene import parse_prompt
    >>> layout = solve_layout(parse_prompt("a photo of a dog right of a teddy bear"), seed=0)
    >>> dog, bear = layout.boxes["o0"][0], layout.boxes["o1"][0]
    >>> from strokeagent.scene.geometry import holds
    >>> holds("right of", dog, bear)
    True

Two parts:

* ``solve_layout`` arranges a whole scene. Each object (all its instances) gets
  one cell of a coarse grid, found by backtracking: "left of" puts the cells in
  one row, in order; "above" in one column; "on top of" in adjacent cells of a
  column; "next to" in adjacent cells of a row. If that is impossible, the same
  search runs again asking only for the order. Inside its cell an object's
  instances sit on a small sub-grid, each glyph a seeded size and offset within
  its sub-cell, its label under it. Every candidate is checked with the very
  rule the reflector applies to pixels (``measure.holds``: GenEval's margin rule)
  and against overlaps and the frame; the first that passes wins.
* ``find_place`` finds one free box for one instance among boxes already drawn,
  satisfying its relations to them, as near a preferred spot as possible. The
  drafter uses it when a planned slot is taken, the refiner to move or add.

Glyph boxes touch their glyph's pixels on all four sides (see ``glyphs``), so a
fully visible instance's pixel box is its layout box: what holds here holds on
the canvas.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np

from strokeagent.core.state import Handoff
from strokeagent.scene.geometry import holds
from strokeagent.scene.graph import Relation, SceneGraph
from strokeagent.sketch.document import Box
from strokeagent.sketch.glyphs import ASPECT, LABEL_GAP, LABEL_SIZE, footprint, glyph_kind

MARGIN = 6  # frame margin, pixels
LABEL_ROOM = LABEL_GAP + LABEL_SIZE + 6


@dataclass(frozen=True)
class Layout:
    """Planned glyph boxes, per object id, one per instance; relations it could not satisfy."""

    size: int
    boxes: dict[str, list[Box]]
    unsatisfied: list[Relation] = field(default_factory=list)


@dataclass(frozen=True)
class Need:
    """A relation a placed box must keep with a box already drawn."""

    predicate: str
    other: Box
    self_is_subject: bool

    def met(self, box: Box) -> bool:
        return (
            holds(self.predicate, box, self.other)
            if self.self_is_subject
            else holds(self.predicate, self.other, box)
        )


def fits(
    boxes: dict[str, list[Box]], classes: dict[str, str], relations: Sequence[Relation], size: int
) -> bool:
    """Whether the boxes keep every relation (all instance pairs), stay apart and inside the frame."""
    prints = [footprint(classes[o], b) for o, bs in boxes.items() for b in bs]
    if any(p[0] < 0 or p[1] < 0 or p[2] > size or p[3] > size for p in prints):
        return False
    for a, b in itertools.combinations(prints, 2):
        if a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]:
            return False
    return all(holds(r.predicate, a, b) for r in relations for a in boxes[r.subject] for b in boxes[r.object])


# -- whole scenes ---------------------------------------------------------------------------


def _cell_ok(pred: str, a: tuple[int, int], b: tuple[int, int], strict: bool) -> bool:
    """Whether cells ``a`` (subject) and ``b`` (object), as (col, row), can carry ``pred``."""
    (ac, ar), (bc, br) = a, b
    same_row, same_col = ar == br, ac == bc
    rules = {
        "left of": ac < bc and (same_row or not strict),
        "right of": ac > bc and (same_row or not strict),
        "above": ar < br and (same_col or not strict),
        "below": ar > br and (same_col or not strict),
        "on top of": same_col and ar == br - 1,
        "under": same_col and ar == br + 1,
        "next to": same_row and abs(ac - bc) == 1,
        "near": same_row and abs(ac - bc) == 1,
        "in front of": ar > br,
        "behind": ar < br,
    }
    return rules[pred]


def _shapes(n: int) -> list[tuple[int, int]]:
    """Grid shapes (cols, rows) with room for ``n`` cells: the largest cells first, then the fewest."""
    shapes = [(c, r) for c in range(1, 5) for r in range(1, 5) if c * r >= n]
    return sorted(shapes, key=lambda s: (-min(1 / s[0], 1 / s[1]), s[0] * s[1], s[1]))


def _assignments(
    ids: list[str],
    relations: Sequence[Relation],
    shape: tuple[int, int],
    strict: bool,
    rng: np.random.Generator,
    budget: list[int] | None = None,
) -> Iterator[dict[str, tuple[int, int]]]:
    """Every way to give each object its own cell with all relations allowed, in seeded order."""
    cells = [(c, r) for r in range(shape[1]) for c in range(shape[0])]
    order = [cells[i] for i in rng.permutation(len(cells))]
    assigned: dict[str, tuple[int, int]] = {}

    def consistent(oid: str, cell: tuple[int, int]) -> bool:
        for r in relations:
            if r.subject == oid and r.object in assigned:
                pair = (cell, assigned[r.object])
            elif r.object == oid and r.subject in assigned:
                pair = (assigned[r.subject], cell)
            else:
                continue
            if not _cell_ok(r.predicate, *pair, strict):
                return False
        return True

    def walk(i: int) -> Iterator[dict[str, tuple[int, int]]]:
        if i == len(ids):
            yield dict(assigned)
            return
        used = set(assigned.values())
        for cell in order:
            if budget is not None:
                if budget[1] <= 0:  # the search itself is exponential where nothing fits: bounded too
                    return
                budget[1] -= 1
            if cell not in used and consistent(ids[i], cell):
                assigned[ids[i]] = cell
                yield from walk(i + 1)
                del assigned[ids[i]]

    return walk(0)


def _subgrid(k: int, w: float, h: float, aspect: float) -> tuple[int, int]:
    """The (cols, rows) arrangement of ``k`` glyphs in a ``w`` × ``h`` cell that makes them largest."""
    best, best_side = (k, 1), -1.0
    for cols in range(1, k + 1):
        rows = -(-k // cols)
        if (cols - 1) * rows >= k:
            continue
        side = min((w / cols) / aspect, h / rows - LABEL_ROOM)
        if side > best_side + 1e-6:
            best, best_side = (cols, rows), side
    return best


def _boxes_in_cell(
    k: int,
    cell: tuple[float, float, float, float],
    aspect: float,
    align: str,
    jitter: float,
    rng: np.random.Generator,
) -> list[Box]:
    x0, y0, x1, y1 = cell
    cols, rows = _subgrid(k, x1 - x0, y1 - y0, aspect)
    sw, sh = (x1 - x0) / cols, (y1 - y0) / rows
    boxes = []
    for i in range(k):
        c, r = i % cols, i // cols
        # Centre a short last row, so a group of three reads as 2 + 1 centred, not ragged.
        in_row = min(cols, k - r * cols)
        sx0 = x0 + (c + (cols - in_row) / 2) * sw
        sy0 = y0 + r * sh
        scale = 0.88 - jitter * rng.uniform(0.0, 0.16)
        gh = max(8.0, min(sw / aspect, sh - LABEL_ROOM) * scale)
        gw = gh * aspect
        slack_x, slack_y = sw - gw, sh - LABEL_ROOM - gh
        fx = 0.5 + jitter * rng.uniform(-0.4, 0.4)
        fy = {"top": 0.0, "bottom": 1.0}.get(align, 0.5 + jitter * rng.uniform(-0.4, 0.4))
        bx, by = sx0 + slack_x * fx, sy0 + slack_y * fy
        boxes.append((round(bx), round(by), round(bx + gw), round(by + gh)))
    return boxes


def _align(oid: str, relations: Sequence[Relation]) -> str:
    """Things on top of others sit at the bottom of their cell, their supports at the top."""
    for r in relations:
        if (r.subject == oid and r.predicate == "on top of") or (r.object == oid and r.predicate == "under"):
            return "bottom"
        if (r.subject == oid and r.predicate == "under") or (r.object == oid and r.predicate == "on top of"):
            return "top"
    return "middle"


#: Candidate layouts one solve may check, and cells it may try while searching for them, before it gives
#: up on the relations it still has: the search is exponential in the worst case (contradictions, crowds),
#: and a prompt must not spend seconds here.
BUDGET = 400
SEARCH_BUDGET = 20_000
#: Free spots ``find_place`` checks against an instance's relations at each glyph size.
PLACES_TRIED = 300
CROWD_NEEDS = 4


def _try_layout(
    graph: SceneGraph, relations: Sequence[Relation], size: int, rng: np.random.Generator, budget: list[int]
) -> dict[str, list[Box]] | None:
    ids = [o.id for o in graph.objects]
    classes = {o.id: o.cls for o in graph.objects}
    inner = size - 2 * MARGIN
    for strict, shape in itertools.product((True, False), _shapes(len(ids))):
        cw, ch = inner / shape[0], inner / shape[1]
        for n, cells in enumerate(_assignments(ids, relations, shape, strict, rng, budget)):
            if n >= 24:  # enough alternatives; the next grid shape is a better bet
                break
            for jitter in (1.0, 1.0, 0.0):
                if budget[0] <= 0 or budget[1] <= 0:
                    return None
                budget[0] -= 1
                boxes = {}
                for obj in graph.objects:
                    c, r = cells[obj.id]
                    cell = (MARGIN + c * cw, MARGIN + r * ch, MARGIN + (c + 1) * cw, MARGIN + (r + 1) * ch)
                    aspect = ASPECT[glyph_kind(obj.supercategory)]
                    boxes[obj.id] = _boxes_in_cell(
                        obj.count, cell, aspect, _align(obj.id, relations), jitter, rng
                    )
                if fits(boxes, classes, relations, size):
                    return boxes
    return None


@lru_cache(maxsize=256)
def _solve(graph_json: str, size: int, seed: int) -> Layout:
    graph = SceneGraph.model_validate_json(graph_json)
    rng = np.random.default_rng(seed)
    relations = list(graph.relations)
    dropped: list[Relation] = []
    budget = [BUDGET, SEARCH_BUDGET]
    while True:
        boxes = _try_layout(graph, relations, size, rng, budget)
        if boxes is not None or not relations:
            break
        # Contradictory relations: give up the last mentioned until the rest can be drawn; with the budget
        # spent, all of them at once (one last, bounded try).
        if budget[0] <= 0 or budget[1] <= 0:
            dropped += reversed(relations)
            relations = []
            budget = [BUDGET // 10, SEARCH_BUDGET // 10]
        else:
            dropped.append(relations.pop())
    if boxes is None:  # only a crowd too large for the frame gets here
        raise ValueError(f"cannot lay out {graph.instance_count} instances on a {size} px canvas")
    return Layout(size=size, boxes=boxes, unsatisfied=dropped)


class SceneLayout(Handoff):
    """A layout as a typed hand-off (``"layout"``): what a layout stage gives the drafter and refiner."""

    handoff = "layout"

    size: int
    boxes: dict[str, list[tuple[int, int, int, int]]]

    @classmethod
    def of(cls, layout: Layout) -> SceneLayout:
        return cls(size=layout.size, boxes={k: [tuple(b) for b in v] for k, v in layout.boxes.items()})

    def to_layout(self) -> Layout:
        return Layout(size=self.size, boxes={k: [tuple(b) for b in v] for k, v in self.boxes.items()})


def solve_layout(graph: SceneGraph, size: int = 512, seed: int = 0) -> Layout:
    """Boxes for every instance of ``graph`` on a ``size`` px square; the same seed, the same boxes."""
    return _solve(graph.model_dump_json(), size, seed)


# -- one instance at a time ------------------------------------------------------------------


def find_place(
    cls: str,
    w: int,
    h: int,
    size: int,
    obstacles: Sequence[Box],
    needs: Sequence[Need] = (),
    prefer: tuple[float, float] | None = None,
    step: int = 8,
) -> Box | None:
    """A ``w`` × ``h`` glyph box for ``cls``, clear of ``obstacles`` (footprints), inside the frame,
    meeting every need; the nearest to ``prefer`` (a centre). Shrinks the glyph if nothing fits.
    """
    prefer = prefer or (size / 2, size / 2)
    for scale in (1.0, 0.85, 0.7, 0.55, 0.4):
        gw, gh = max(8, round(w * scale)), max(8, round(h * scale))
        fp = footprint(cls, (0, 0, gw, gh))  # the footprint's offsets from the box origin
        xs = np.arange(-fp[0], size - fp[2] + 1, step)
        ys = np.arange(-fp[1], size - fp[3] + 1, step)
        if not len(xs) or not len(ys):
            continue
        gx, gy = np.meshgrid(xs, ys)
        gx, gy = gx.ravel(), gy.ravel()
        free = np.ones(len(gx), dtype=bool)
        for o in obstacles:
            free &= ~((gx + fp[0] < o[2]) & (o[0] < gx + fp[2]) & (gy + fp[1] < o[3]) & (o[1] < gy + fp[3]))
        dist = (gx + gw / 2 - prefer[0]) ** 2 + (gy + gh / 2 - prefer[1]) ** 2
        # The nearest free spots first; with many relations to keep (a crowd), only so many of them: checking
        # every one of thousands cost seconds a stage, and a smaller glyph is the better next try.
        tried = None if len(needs) <= CROWD_NEEDS else PLACES_TRIED
        for i in np.flatnonzero(free)[np.argsort(dist[free], kind="stable")][:tried]:
            box = (int(gx[i]), int(gy[i]), int(gx[i]) + gw, int(gy[i]) + gh)
            if all(n.met(box) for n in needs):
                return box
    return None
