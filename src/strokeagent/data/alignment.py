"""Subset 3, image–instruction alignment: a step's canvas, right or perturbed, and what is wrong with it.

    >>> from strokeagent.scene import parse_prompt
    >>> from strokeagent.data.multiturn import multi_turn_steps
    >>> graph = parse_prompt("two red apples left of a blue cup")
    >>> steps = multi_turn_steps(graph, np.random.default_rng(0), size=256, seed=0, edit_rate=0)
    >>> doc, kind = perturb(graph, steps, 1, "color", np.random.default_rng(0))
    >>> kind, [v["kind"] for v in measure(graph, steps, 1, doc)]
    ('color', ['color', 'color'])

A perturbation breaks the canvas of one step in one of the ways a painter (and
the sketch drafter's mistake model) goes wrong:

* ``count``: one instance too few (or, for a single object, one too many);
* ``color``: a coloured object repainted in another named colour;
* ``position``: one instance moved to the wrong side of its partner (the
  drafter's ``jitter`` mistake);
* ``missing``: an object of the step left out entirely.

The explanation is never assumed from the perturbation: it is *measured* on the
perturbed canvas by the sketch reflector's image check (pixels and id buffer),
with its corrected instruction. A perturbation that measures as harmless is
labelled aligned.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from strokeagent.data.multiturn import Step
from strokeagent.scene import SceneGraph
from strokeagent.sketch.document import SketchDocument
from strokeagent.sketch.glyphs import footprint, render
from strokeagent.sketch.layout import find_place
from strokeagent.sketch.measure import check_document, inspect
from strokeagent.sketch.mistakes import make_mistake
from strokeagent.sketch.palette import color_names, rgb_for
from strokeagent.sketch.scenes import needs_for

PERTURBATIONS = ("count", "color", "position", "missing")


def expected_ids(steps: list[Step], k: int) -> list[str]:
    """Objects that should be on the canvas after step ``k``."""
    out: list[str] = []
    for step in steps[: k + 1]:
        out += [oid for oid in step.object_ids if oid not in out]
    return out


def applicable(graph: SceneGraph, steps: list[Step], k: int) -> list[str]:
    ids = steps[k].object_ids
    kinds = ["count", "missing"] if ids else []
    if any(graph.object(o).color for o in ids):
        kinds.append("color")
    drawn = set(expected_ids(steps, k))
    if any(
        r.subject in ids and r.object in drawn or r.object in ids and r.subject in drawn
        for r in graph.relations
    ):
        kinds.append("position")
    return kinds


def perturb(
    graph: SceneGraph, steps: list[Step], k: int, kind: str, rng: np.random.Generator
) -> tuple[SketchDocument, str]:
    """Step ``k``'s document broken by ``kind``; and the kind applied."""
    doc = steps[k].document
    ids = list(steps[k].object_ids)
    if kind == "color":
        ids = [o for o in ids if graph.object(o).color]
    oid = ids[int(rng.integers(len(ids)))]
    obj = graph.object(oid)
    mine = [d for d in doc.instances if d.object_id == oid]
    if kind == "missing":
        for d in mine:
            doc = doc.remove(d.iid)
    elif kind == "count" and len(mine) > 1:
        doc = doc.remove(mine[int(rng.integers(len(mine)))].iid)
    elif kind == "count":
        d = mine[0]
        w, h = d.box[2] - d.box[0], d.box[3] - d.box[1]
        box = find_place(d.cls, w, h, doc.size, [footprint(x.cls, x.box) for x in doc.instances])
        if box is None:  # no room for another: one too few instead
            doc = doc.remove(d.iid)
        else:
            doc = doc.add(d.model_copy(update={"box": box, "index": obj.count}))
    elif kind == "color":
        other = [c for c in color_names() if c != obj.color]
        colour = other[int(rng.integers(len(other)))]
        for d in mine:
            doc = doc.replace(d.model_copy(update={"rgb": rgb_for(colour, d.cls)}))
    elif kind == "position":
        d = mine[int(rng.integers(len(mine)))]
        rest = doc.remove(d.iid)
        among = set(expected_ids(steps, k))
        needs = needs_for(graph, obj, rest, among)
        moved, _ = make_mistake("jitter", d, rest, needs, rng) if needs else (None, False)
        if moved is not None:
            doc = doc.replace(moved)
    else:
        raise ValueError(f"unknown perturbation {kind!r}; use one of {', '.join(PERTURBATIONS)}")
    return doc, kind


def measure(graph: SceneGraph, steps: list[Step], k: int, doc: SketchDocument) -> list[dict[str, Any]]:
    """The reflector's image check of ``doc`` against everything planned up to step ``k``."""
    image, _ = render(doc)
    return check_document(graph, expected_ids(steps, k), doc, inspect(image, doc))
