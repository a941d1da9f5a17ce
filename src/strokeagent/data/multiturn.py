"""Subset 1, multi-turn generation: a scene graph built increment by increment on the stroke canvas.

    >>> from strokeagent.scene import parse_prompt
    >>> steps = multi_turn_steps(parse_prompt("a red apple left of a blue cup"), np.random.default_rng(0),
    ...                          size=128, seed=0, edit_rate=0.0)
    >>> [s.instruction for s in steps]
    ['Draw a blue cup.', 'Add a red apple to the left of the blue cup.']

Each increment of ``scene.plan_increments`` (layout, main objects, related
objects, attributes) becomes one step: its instruction, the running
description, and the canvas with that increment drawn right (no mistakes).
With probability ``edit_rate`` one step is rewritten as an edit, so the data
also teaches instructions that change what is drawn:

* ``modify``: a coloured object is first drawn in another colour, then the next
  step says "Make the cup blue.";
* ``swap``: an object is first drawn as another class of its supercategory,
  then "Replace the cat with a dog.";
* ``remove``: an extra object the prompt does not ask for is added after a
  step, then "Remove the bird.".

The descriptions always say what the canvas holds at that step; the last step
holds exactly the prompt's scene. Steps are rendered with the stroke canvas;
the document of each step travels in ``Step.document`` for the other subsets.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from strokeagent.scene import SceneGraph, plan_increments
from strokeagent.scene.graph import SceneObject
from strokeagent.scene.increments import noun_phrase
from strokeagent.scene.vocab import COCO_CLASSES
from strokeagent.sketch.document import Drawn, SketchDocument
from strokeagent.sketch.glyphs import footprint
from strokeagent.sketch.layout import find_place, solve_layout
from strokeagent.sketch.palette import color_names, rgb_for
from strokeagent.sketch.scenes import place_instance

EDITS = ("modify", "swap", "remove")


@dataclass(frozen=True)
class Step:
    """One rendered step: what it says, the canvas document after it, and which edit it is part of."""

    instruction: str
    description: str
    document: SketchDocument
    object_ids: tuple[str, ...] = ()
    edit: str | None = None  # "modify" | "swap" | "remove" on both steps of an edit


def _other_class(obj: SceneObject, rng: np.random.Generator) -> str:
    same = sorted(c for c, sup in COCO_CLASSES.items() if sup == obj.supercategory and c != obj.cls)
    pool = same or sorted(c for c in COCO_CLASSES if c != obj.cls)
    return pool[int(rng.integers(len(pool)))]


def _as(obj: SceneObject, **changes) -> SceneObject:  # noqa: ANN003
    return obj.model_copy(update=changes)


def multi_turn_steps(
    graph: SceneGraph,
    rng: np.random.Generator,
    *,
    size: int,
    seed: int,
    edit_rate: float = 0.3,
    max_steps: int = 5,
) -> list[Step]:
    """The graph's increments drawn one step each, maybe with one edit (see the module docstring)."""
    increments = plan_increments(graph, max_steps)
    layout = solve_layout(graph, size, seed=seed)
    edit = EDITS[int(rng.integers(len(EDITS)))] if rng.random() < edit_rate else None
    coloured = [i for i, inc in enumerate(increments) for oid in inc.object_ids if graph.object(oid).color]
    drawable = [i for i, inc in enumerate(increments) if inc.object_ids]
    if edit == "modify" and not coloured:
        edit = "swap" if drawable else None
    if edit == "swap" and not drawable:
        edit = None
    at = None
    if edit == "modify":
        at = coloured[int(rng.integers(len(coloured)))]
    elif edit in ("swap", "remove") and drawable:
        at = drawable[int(rng.integers(len(drawable)))]
    else:
        edit = None

    doc = SketchDocument(size=size, background=graph.background)
    among: set[str] = set()
    steps: list[Step] = []
    for i, inc in enumerate(increments):
        among |= set(inc.object_ids)
        if i != at or edit == "remove":
            doc = _draw(graph, inc.object_ids, doc, layout, among)
            steps.append(Step(inc.instruction, inc.description, doc, tuple(inc.object_ids)))
            if i == at:  # remove: an extra object after this step, then its removal
                steps += _remove_detour(doc, steps[-1], graph, rng)
                doc = steps[-1].document
            continue
        oid = inc.object_ids[0]
        obj = graph.object(oid)
        if edit == "modify":
            other = [c for c in color_names() if c != obj.color]
            wrong = _as(obj, color=other[int(rng.integers(len(other)))])
            fix = f"Make {noun_phrase(obj, definite=True)} {obj.color}."
        else:
            cls = _other_class(obj, rng)
            wrong = _as(obj, cls=cls, noun=cls, supercategory=COCO_CLASSES[cls])
            fix = f"Replace {noun_phrase(wrong, definite=True)} with {noun_phrase(obj)}."
        first = _draw(graph, inc.object_ids, doc, layout, among)
        new = [d for d in first.instances if d.object_id == oid]
        shown = first
        for d in new:
            shown = shown.replace(d.model_copy(update={"cls": wrong.cls, "supercategory": wrong.supercategory,
                                                       "color": wrong.color, "rgb": rgb_for(wrong.color, wrong.cls)}))  # fmt: skip
        said, meant = noun_phrase(obj), noun_phrase(wrong)
        steps.append(Step(_reword(inc.instruction, said, meant), _reword(inc.description, said, meant), shown,
                          tuple(inc.object_ids), edit))  # fmt: skip
        steps.append(Step(fix, inc.description, first, (), edit))
        doc = first
    return steps


def _reword(text: str, said: str, meant: str) -> str:
    """``said`` replaced by ``meant``, also where a sentence starts with it (capitalised)."""
    return text.replace(said, meant).replace(said[:1].upper() + said[1:], meant[:1].upper() + meant[1:])


def _draw(graph: SceneGraph, ids: list[str], doc: SketchDocument, layout, among: set[str]) -> SketchDocument:  # noqa: ANN001
    for oid in ids:
        obj = graph.object(oid)
        for index in range(obj.count):
            drawn = place_instance(graph, obj, index, doc, layout, among)
            assert drawn is not None  # not strict: always somewhere
            doc = doc.add(drawn)
    return doc


def _remove_detour(
    doc: SketchDocument, last: Step, graph: SceneGraph, rng: np.random.Generator
) -> list[Step]:
    asked = {o.cls for o in graph.objects}
    pool = sorted(c for c in COCO_CLASSES if c not in asked)
    cls = pool[int(rng.integers(len(pool)))]
    extra = SceneObject(id="extra", noun=cls, cls=cls, supercategory=COCO_CLASSES[cls])
    side = max(16, doc.size // 5)
    box = find_place(cls, side, side, doc.size, [footprint(d.cls, d.box) for d in doc.instances])
    if box is None:  # a full canvas: no room for a detour
        return []
    drawn = Drawn(iid=0, object_id="extra", cls=cls, supercategory=extra.supercategory,
                  rgb=rgb_for(None, cls), box=box)  # fmt: skip
    with_extra = doc.add(drawn)
    description = f"{last.description.rstrip('.')} and {noun_phrase(extra)}."
    return [
        Step(f"Add {noun_phrase(extra)}.", description, with_extra, (), "remove"),
        Step(f"Remove {noun_phrase(extra, definite=True)}.", last.description, doc, (), "remove"),
    ]
