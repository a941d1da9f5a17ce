"""``sketch.reflect``: inspect the plan against the prompt, and the canvas against the plan.

    >>> reflector = SketchReflector()
    >>> # reflection = await reflector.reflect(view, plan, canvas)
    >>> # reflection.image_conflicts -> ["expected 3 apples, 2 visible", "cup is purple, expected blue"]

The two checks of the paper's Inspect:

1. **Plan vs. prompt.** The plan's scene graph (or, with no planner, its
   instruction parsed) against the prompt's: every object with its class, count
   and colour, every relation; on the last step, every object planned somewhere.
2. **Image vs. plan.** Everything that should be on the canvas by now (all
   increments so far), checked from the RGB pixels alone through
   ``perceive.perceive`` (no document, no id buffer, no labels): visible counts
   per class, colours, relations by GenEval's rule, instances off the frame,
   covered or unrecognisable. Objects are those of the *prompt*: a plan that
   mis-stated one shows here as a wrong colour or class, for the refiner.
   Perception errs, so this check can miss a mistake or flag a right canvas
   (``benchmarks/inspector.py`` measures how often).

Each finding is a readable conflict and a structured violation in
``Reflection.meta["violations"]``, which the refiner acts on; violations name
instances by their pixel ``box``, which the refiner maps to its own drawing.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from strokeagent.core.stages import Canvas, TrajectoryView
from strokeagent.core.state import Plan, Reflection
from strokeagent.scene.geometry import holds
from strokeagent.scene.graph import SceneGraph, SceneObject
from strokeagent.scene.increments import Increment
from strokeagent.sketch.perceive import Found, perceive
from strokeagent.sketch.scenes import planned_ids, scene_of_plan, scene_of_prompt

#: An instance may lose this much of itself to the frame or to others before it counts as a problem.
TOLERANCE = 0.1
#: Covered this much (as perception estimates it), an instance is moved into clear view.
OCCLUDED = 0.2


def _name(obj: SceneObject, count: int) -> str:
    from strokeagent.scene.vocab import pluralize

    return obj.cls if count == 1 else pluralize(obj.cls)


def check_plan(plan: Plan, prompt: SceneGraph, view: TrajectoryView) -> list[str]:
    """Where the plan disagrees with the prompt (check 1)."""
    given = SceneGraph.handoff in plan.handoffs
    if not given and plan.instruction == prompt.prompt:
        return []  # no planner: the plan is the prompt
    planned = scene_of_plan(plan, view.prompt)
    conflicts = []
    mine = {o.id: o for o in planned.objects}
    for obj in prompt.objects:
        got = mine.get(obj.id)
        if got is None or got.cls != obj.cls:
            # A planner that gives no scene graph describes the scene so far: what it has not reached yet
            # is missing only once it says the scene is complete.
            if given or plan.done:
                conflicts.append(f"the plan leaves out the {_name(obj, obj.count)}")
        elif got.count != obj.count:
            conflicts.append(
                f"the plan has {got.count} {_name(obj, got.count)}, the prompt asks for {obj.count}"
            )
        elif got.color != obj.color:
            conflicts.append(
                f"the plan makes the {obj.cls} {got.color or 'uncoloured'}, the prompt says {obj.color or 'no colour'}"
            )
    asked = {o.id for o in prompt.objects}
    conflicts += [
        f"the plan adds a {o.cls} the prompt does not ask for" for o in planned.objects if o.id not in asked
    ]
    drawn_ids = {o.id for o in planned.objects}
    relations = set(planned.relations)
    wanted = set(prompt.relations) if (given or plan.done) else {
        r for r in prompt.relations if r.subject in drawn_ids and r.object in drawn_ids}  # fmt: skip
    if relations != wanted:
        conflicts.append("the plan's relations differ from the prompt's")
    if plan.done and Increment.handoff in plan.handoffs:
        covered = set(planned_ids(view, plan, planned))
        conflicts += [
            f"the plan ends without drawing the {o.cls}" for o in prompt.objects if o.id not in covered
        ]
    return conflicts


def _violation(kind: str, text: str, **fields: Any) -> dict[str, Any]:
    return {"kind": kind, "text": text, **fields}


def check_pixels(prompt: SceneGraph, expected: list[str], found: list[Found]) -> list[dict[str, Any]]:
    """Where the canvas, as ``perceive`` saw it, disagrees with what should be on it by now (check 2).

    Found instances are matched to the prompt's objects by class (and, between objects of one class, by
    colour); every violation names instances by their pixel box (``box``), never by a document id.
    """
    out: list[dict[str, Any]] = []
    asked = {o.id: o for o in prompt.objects}
    wanted = [asked[oid] for oid in expected if oid in asked]
    prompt_classes = {o.cls for o in prompt.objects}
    named = [f for f in found if f.cls is not None]
    for f in named:
        if f.counts and f.cls not in prompt_classes:
            out.append(
                _violation("unexpected", f"a {f.cls} is drawn that the prompt does not ask for", box=f.box)
            )
    assigned: dict[str, list[Found]] = {}
    for cls in dict.fromkeys(o.cls for o in wanted):
        objs = [o for o in wanted if o.cls == cls]
        pool = sorted((f for f in named if f.cls == cls and f.counts), key=lambda f: -f.visible_fraction)
        for o in sorted(objs, key=lambda o: o.color is None):  # coloured objects pick their colour first
            mine = [f for f in pool if o.color is None or f.color == o.color][: o.count]
            assigned[o.id] = mine
            pool = [f for f in pool if f not in mine]
        for o in objs:  # then the short ones take what is left, whatever its colour
            more = pool[: max(0, o.count - len(assigned[o.id]))]
            assigned[o.id] += more
            pool = [f for f in pool if f not in more]
        if pool and all(o.id in expected for o in prompt.objects if o.cls == cls):
            extra = sorted(pool, key=lambda f: f.visible_fraction)
            out.append(_violation("count", f"{len(extra)} {_name(objs[0], len(extra))} too many",
                                  object_id=objs[0].id, expected=objs[0].count, found=objs[0].count + len(extra),
                                  add=0, boxes=[], remove=[f.box for f in extra]))  # fmt: skip
        for f in named:
            if f.cls == cls and not f.counts:
                where = "off the frame" if f.inframe_fraction < 0.5 else "hidden"
                out.append(_violation("hidden", f"a {cls} is {where} ({f.visible_fraction:.0%} visible)",
                                      box=f.box, object_id=objs[0].id, found=round(f.visible_fraction, 3)))  # fmt: skip
    for f in found:
        if f.cls is None and (f.box[2] - f.box[0]) * (f.box[3] - f.box[1]) >= 100:
            out.append(_violation("unclear", "something is drawn that cannot be made out", box=f.box))
    for obj in wanted:
        shown = assigned.get(obj.id, [])
        if len(shown) < obj.count:
            out.append(_violation("count", f"expected {obj.count} {_name(obj, obj.count)}, {len(shown)} visible",
                                  object_id=obj.id, expected=obj.count, found=len(shown),
                                  add=obj.count - len(shown), boxes=[f.box for f in shown], remove=[]))  # fmt: skip
        for f in shown:
            if f.inframe_fraction < 1 - TOLERANCE:
                out.append(_violation("off_frame", f"a {obj.cls} is partly off the frame", box=f.box,
                                      object_id=obj.id, found=round(f.inframe_fraction, 3)))  # fmt: skip
            elif f.occluded_fraction > OCCLUDED:
                out.append(_violation("occluded", f"a {obj.cls} is partly covered", box=f.box, object_id=obj.id,
                                      found=round(f.occluded_fraction, 3)))  # fmt: skip
            if obj.color and f.color != obj.color:
                out.append(_violation("color", f"{obj.cls} is {f.color}, expected {obj.color}", box=f.box,
                                      object_id=obj.id, expected=obj.color, found=f.color))  # fmt: skip
    for r in prompt.relations:
        if r.subject not in assigned or r.object not in assigned:
            continue
        target = asked[r.object].cls
        for a in assigned[r.subject]:
            bad = next((b for b in assigned[r.object] if not holds(r.predicate, a.box, b.box)), None)
            if bad is not None:
                out.append(_violation("relation", f"{asked[r.subject].cls} is not {r.predicate} {target}",
                                      box=a.box, object_id=r.subject, expected=r.predicate,
                                      target=r.object, target_box=bad.box))  # fmt: skip
    return out


def corrected_instruction(violations: list[dict[str, Any]], prompt: SceneGraph) -> str:
    """What a refiner should do, in words: one sentence per fix."""
    asked = {o.id: o for o in prompt.objects}
    parts = []
    for v in violations:
        obj = asked.get(v.get("object_id", ""))
        kind = v["kind"]
        if kind == "color" and obj:
            parts.append(f"Recolour the {obj.cls} {obj.color}.")
        elif kind == "relation" and obj:
            parts.append(f"Move the {obj.cls} {v['expected']} the {asked[v['target']].cls}.")
        elif kind in ("hidden", "off_frame", "occluded") and obj:
            parts.append(f"Move the {obj.cls} into clear view.")
        elif kind == "count" and obj:
            if v["add"]:
                parts.append(f"Add {v['add']} {_name(obj, v['add'])}.")
            if v["remove"]:
                parts.append(f"Remove {len(v['remove'])} {_name(obj, len(v['remove']))}.")
        elif kind == "wrong_class" and obj:
            parts.append(f"Redraw the {v['found']} as a {obj.cls}.")
        elif kind == "unexpected":
            parts.append("Remove what the prompt does not ask for.")
        elif kind == "unclear":
            parts.append("Redraw what cannot be made out in clear view.")
    return " ".join(dict.fromkeys(parts))


class SketchReflector:
    """Inspects sketch canvases from their RGB pixels alone.

    Option: ``checks``, which of the paper's two checks to make (``["plan", "image"]``,
    the default); one each in two stages is the ``examples/two_inspections`` policy.
    """

    def __init__(self, checks: Sequence[str] = ("plan", "image")) -> None:
        unknown = [c for c in checks if c not in ("plan", "image")]
        if unknown or not checks:
            raise ValueError(f'checks must name "plan", "image" or both, got {list(checks)}')
        self.checks = tuple(checks)

    async def reflect(self, view: TrajectoryView, plan: Plan, image: Canvas) -> Reflection:
        prompt = scene_of_prompt(view.prompt)
        prompt_conflicts = check_plan(plan, prompt, view) if "plan" in self.checks else []
        expected = [
            oid
            for oid in planned_ids(view, plan, scene_of_plan(plan, view.prompt))
            if oid in {o.id for o in prompt.objects}
        ]
        if prompt_conflicts and plan.done:
            expected = [o.id for o in prompt.objects]  # the plan is wrong: hold the canvas to the prompt
        violations = check_pixels(prompt, expected, perceive(image.image)) if "image" in self.checks else []
        image_conflicts = [v["text"] for v in violations]
        ok = not prompt_conflicts and not image_conflicts
        fix = corrected_instruction(violations, prompt)
        if prompt_conflicts:
            fix = " ".join(filter(None, ["Follow the prompt: " + prompt.prompt + ".", fix]))
        return Reflection(
            prompt_conflicts=prompt_conflicts,
            image_conflicts=image_conflicts,
            corrected_instruction=None if ok else fix,
            ok=ok,
            meta={"violations": violations},
        )
