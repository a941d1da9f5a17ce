"""``sketch.reflect``: inspect the plan against the prompt, and the canvas against the plan.

    >>> reflector = SketchReflector()
    >>> # reflection = await reflector.reflect(view, plan, canvas)
    >>> # reflection.image_conflicts -> ["expected 3 apples, 2 visible", "cup is purple, expected blue"]

The two checks of the paper's Inspect:

1. **Plan vs. prompt.** The plan's scene graph (or, with no planner, its
   instruction parsed) against the prompt's: every object with its class, count
   and colour, every relation; on the last step, every object planned somewhere.
2. **Image vs. plan.** Everything that should be on the canvas by now (all
   increments so far), checked from the pixels and the id buffer through
   ``measure.inspect``: visible counts, colours, relations by GenEval's rule,
   instances off the frame or covered. Objects are those of the *prompt*: a plan
   that mis-stated one shows here as a wrong colour or class, for the refiner.

Each finding is a readable conflict and a structured violation in
``Reflection.meta["violations"]``, which the refiner acts on.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from strokeagent.core.stages import Canvas, TrajectoryView
from strokeagent.core.state import Plan, Reflection
from strokeagent.scene.graph import SceneGraph, SceneObject
from strokeagent.scene.increments import Increment
from strokeagent.sketch.document import SketchDocument
from strokeagent.sketch.measure import Seen, holds, inspect
from strokeagent.sketch.scenes import planned_ids, scene_of_plan, scene_of_prompt

#: An instance may lose this much of itself to the frame or to others before it counts as a problem.
TOLERANCE = 0.1


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


def check_image(
    prompt: SceneGraph, expected: list[str], doc: SketchDocument, seen: list[Seen]
) -> list[dict[str, Any]]:
    """Where the canvas disagrees with what should be on it by now (check 2)."""
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
    return " ".join(dict.fromkeys(parts))


class SketchReflector:
    """Inspects sketch canvases from their pixels and id buffers.

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
        doc = SketchDocument.from_meta(image.meta)
        expected = [
            oid
            for oid in planned_ids(view, plan, scene_of_plan(plan, view.prompt))
            if oid in {o.id for o in prompt.objects}
        ]
        if prompt_conflicts and plan.done:
            expected = [o.id for o in prompt.objects]  # the plan is wrong: hold the canvas to the prompt
        violations = check_image(prompt, expected, doc, inspect(image.image, doc)) if "image" in self.checks else []
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
