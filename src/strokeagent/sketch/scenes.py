"""What the sketch stages share about a prompt: its parsed graph, increments, layout, and placing.

    >>> scene_of_prompt("a photo of two apples").objects[0].count
    2

Parsing is cached per prompt: every stage of every step asks for the same graph.
"""

from __future__ import annotations

from functools import lru_cache

from strokeagent.core.stages import TrajectoryView, stage_seed
from strokeagent.core.state import Plan
from strokeagent.scene import Increment, SceneGraph, parse_prompt, plan_increments
from strokeagent.scene.graph import SceneObject
from strokeagent.sketch.document import Box, Drawn, SketchDocument
from strokeagent.sketch.glyphs import footprint
from strokeagent.sketch.layout import Layout, Need, SceneLayout, find_place, solve_layout
from strokeagent.sketch.palette import rgb_for


@lru_cache(maxsize=512)
def scene_of_prompt(prompt: str) -> SceneGraph:
    return parse_prompt(prompt)


@lru_cache(maxsize=512)
def increments_of_prompt(prompt: str, max_steps: int) -> tuple[Increment, ...]:
    return tuple(plan_increments(scene_of_prompt(prompt), max_steps))


def scene_of_plan(plan: Plan, prompt: str) -> SceneGraph:
    """The scene the plan asks for: the scene graph it gives (the sketch planner's), else its description
    (or instruction) parsed, its objects named as the prompt's objects of the same class are, so that
    any planner's plan can be drawn, inspected and fixed in the prompt's terms."""
    given = plan.handoffs.get(SceneGraph.handoff)
    if given is not None:
        return SceneGraph.model_validate(given)
    return _aligned(plan.description or plan.instruction, prompt)


@lru_cache(maxsize=512)
def _aligned(text: str, prompt_text: str) -> SceneGraph:
    derived, prompt = scene_of_prompt(text), scene_of_prompt(prompt_text)
    free = list(prompt.objects)
    names: dict[str, str] = {}
    for o in derived.objects:
        match = next((p for p in free if p.cls == o.cls), None)
        if match is not None:
            free.remove(match)
            names[o.id] = match.id
    taken = set(names.values())
    spare = (f"x{i}" for i in range(len(derived.objects)) if f"x{i}" not in taken)
    for o in derived.objects:
        names.setdefault(o.id, next(spare))
    objects = [o.model_copy(update={"id": names[o.id]}) for o in derived.objects]
    relations = [r.model_copy(update={"subject": names[r.subject], "object": names[r.object]}) for r in derived.relations]
    return derived.model_copy(update={"objects": objects, "relations": relations})


def planned_ids(view: TrajectoryView, plan: Plan, graph: SceneGraph) -> list[str]:
    """Object ids that should be on the canvas once ``plan`` is drawn: every increment so far.

    With no increment given with the plan (no sketch planner), that is the plan's whole scene.
    """
    if Increment.handoff not in plan.handoffs:
        return [o.id for o in graph.objects]
    ids: list[str] = []
    plans = [s.plan for s in view.steps[: view.step] if s.plan is not None]
    for p in [*plans, plan]:
        for oid in p.handoffs.get(Increment.handoff, {}).get("object_ids", []):
            if oid not in ids:
                ids.append(oid)
    return ids


def layout_for(view: TrajectoryView, graph: SceneGraph, size: int) -> Layout:
    """The layout a layout stage gave (``sketch.layout``), else one solved per run from the run seed, so
    that every step and every stage agree on the plan."""
    given = view.handoff(SceneLayout)
    if given is not None and given.size == size and all(o.id in given.boxes for o in graph.objects):
        return given.to_layout()
    return solve_layout(graph, size, seed=stage_seed(view.trajectory.seed, 0, "layout"))


def needs_for(graph: SceneGraph, obj: SceneObject, doc: SketchDocument, among: set[str]) -> list[Need]:
    """The relations an instance of ``obj`` must keep with the instances already on ``doc``."""
    needs = []
    for r in graph.relations:
        if r.subject == obj.id and r.object in among:
            needs += [Need(r.predicate, d.box, True) for d in doc.instances if d.object_id == r.object]
        elif r.object == obj.id and r.subject in among:
            needs += [Need(r.predicate, d.box, False) for d in doc.instances if d.object_id == r.subject]
    return needs


def _clear(box: Box, cls: str, obstacles: list[Box], size: int) -> bool:
    fp = footprint(cls, box)
    if fp[0] < 0 or fp[1] < 0 or fp[2] > size or fp[3] > size:
        return False
    return not any(fp[0] < o[2] and o[0] < fp[2] and fp[1] < o[3] and o[1] < fp[3] for o in obstacles)


def place_instance(
    graph: SceneGraph,
    obj: SceneObject,
    index: int,
    doc: SketchDocument,
    layout: Layout,
    among: set[str],
    strict: bool = False,
) -> Drawn | None:
    """An instance of ``obj`` drawn right: its planned slot if that is still free and keeps its
    relations to what is drawn, else the nearest place that does. When no place does: None if
    ``strict``, else the nearest free place."""
    slot = layout.boxes[obj.id][min(index, len(layout.boxes[obj.id]) - 1)]
    obstacles = [footprint(d.cls, d.box) for d in doc.instances]
    needs = needs_for(graph, obj, doc, among)
    box: Box | None = slot
    if not (_clear(slot, obj.cls, obstacles, doc.size) and all(n.met(slot) for n in needs)):
        w, h = slot[2] - slot[0], slot[3] - slot[1]
        centre = ((slot[0] + slot[2]) / 2, (slot[1] + slot[3]) / 2)
        box = find_place(obj.cls, w, h, doc.size, obstacles, needs, prefer=centre)
        if box is None and strict:
            return None
        if box is None:  # keeping the relations is impossible here: at least keep it visible
            box = find_place(obj.cls, w, h, doc.size, obstacles, prefer=centre) or slot
    return Drawn(
        iid=0,
        object_id=obj.id,
        index=index,
        cls=obj.cls,
        supercategory=obj.supercategory,
        color=obj.color,
        rgb=rgb_for(obj.color, obj.cls),
        box=box,
    )
