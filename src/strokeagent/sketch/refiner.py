"""``sketch.refine``: fix exactly what the reflection found, and touch nothing else.

    >>> refiner = SketchRefiner()
    >>> # fixed = await refiner.refine(view, plan, canvas, reflection)

Acting on ``Reflection.meta["violations"]`` (see ``reflector``):

* extra or unexpected instances are erased;
* a wrong colour is repainted in place with the named colour;
* an instance that is hidden, covered, off the frame, on the wrong side of its
  partner or of the wrong class is lifted and put back right: its planned slot
  if that is free and keeps its relations, else the nearest free place that
  does (``layout.find_place``), on top of everything; when the instances it
  relates to leave it no such place, they are lifted and put back too;
* missing instances are added the same way.

The reflection names instances by their pixel boxes (the inspector sees only
pixels); the refiner is the drawing hand, so it maps each box to the instance it
drew there (``on_document``: best overlap with each instance's visible pixels).
Objects are the prompt's (a plan that mis-stated one is corrected here).
Everything else keeps its document entry, so re-rendering leaves every pixel
outside the changed instances' old and new footprints as it was. The refiner
draws carefully but not perfectly: each instance it redraws slips with the
drafter's mistake model at ``mistake_rate`` (default 0.1), so a fix can fail and
the loop's ``max_refines`` bounds how often it tries again.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from strokeagent.core.stages import Canvas, TrajectoryView
from strokeagent.core.state import Plan, Reflection
from strokeagent.sketch.document import Box, SketchDocument
from strokeagent.sketch.drafter import check_mistake_options
from strokeagent.sketch.glyphs import render
from strokeagent.sketch.mistakes import MISTAKE_KINDS, applicable, make_mistake, mistake_probability
from strokeagent.sketch.palette import named_colors
from strokeagent.sketch.scenes import (
    layout_for,
    needs_for,
    place_instance,
    planned_ids,
    scene_of_plan,
    scene_of_prompt,
)

MOVE = ("hidden", "occluded", "off_frame", "relation", "wrong_class")


def _iou(a: Box, b: Box) -> float:
    w = min(a[2], b[2]) - max(a[0], b[0])
    h = min(a[3], b[3]) - max(a[1], b[1])
    if w <= 0 or h <= 0:
        return 0.0
    inter = w * h
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def on_document(
    violations: list[dict[str, Any]], doc: SketchDocument, expected: list[str]
) -> list[dict[str, Any]]:
    """The inspector's violations, which name instances by pixel box, on the hand's own drawing: each
    box goes to the drawn instance whose visible pixels it overlaps best (unmatched boxes are dropped);
    a missing instance the hand did draw (now hidden or off the frame) is moved rather than added again."""
    _, ids = render(doc)
    seen: dict[int, Box] = {}
    for d in doc.instances:
        ys, xs = np.nonzero(ids == d.iid)
        if len(xs):
            seen[d.iid] = (int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1)

    def match(box: Any) -> int | None:
        if box is None:
            return None
        box = tuple(box)
        scored = [(max(_iou(box, b), _iou(box, doc.get(i).box)), i) for i, b in seen.items()]
        best = max(scored, default=(0.0, None))
        return best[1] if best[0] >= 0.3 else None

    out: list[dict[str, Any]] = []
    moved: set[int] = set()
    for v in violations:
        if "instance" in v or v["kind"] == "count" and "boxes" not in v:
            out.append(v)  # already in document terms
            continue
        kind = v["kind"]
        if kind == "count":
            remove = [i for i in (match(b) for b in v["remove"]) if i is not None]
            add = v["add"]
            if add:
                shown = {match(b) for b in v["boxes"]}
                lost = [d.iid for d in doc.instances if d.object_id == v["object_id"] and d.iid not in shown]
                for iid in lost[:add]:
                    out.append({**v, "kind": "hidden", "instance": iid})
                    moved.add(iid)
                add -= len(lost[:add])
            out.append({**v, "add": add, "remove": remove})
            continue
        iid = match(v.get("box"))
        if iid is None or iid in moved:
            continue
        d = doc.get(iid)
        if kind in ("unexpected", "unclear"):
            # The hand knows what it drew: a misread instance of a wanted object is redrawn, the rest erased.
            kind = "hidden" if d.object_id in expected else "unexpected"
        fields = {"instance": iid}
        if kind == "relation":
            target = match(v.get("target_box"))
            if target is None:
                continue
            fields["target_instance"] = target
        if kind in MOVE:
            moved.add(iid)
        out.append({**v, **fields, "kind": kind, "object_id": d.object_id})
    return out


class SketchRefiner:
    """Moves, recolours, redraws, adds or erases only the violating instances.

    Options: ``mistake_rate`` (default 0.1: a careful hand, yet a hand), ``crowding``, ``mistakes``.
    """

    def __init__(
        self, mistake_rate: float = 0.1, crowding: float = 0.25, mistakes: Sequence[str] = MISTAKE_KINDS
    ) -> None:
        self.mistake_rate = mistake_rate
        self.crowding = crowding
        self.mistakes = check_mistake_options(mistake_rate, crowding, mistakes)

    async def refine(self, view: TrajectoryView, plan: Plan, image: Canvas, reflection: Reflection) -> Canvas:
        prompt = scene_of_prompt(view.prompt)
        doc = SketchDocument.from_meta(image.meta)
        violations = reflection.meta.get("violations", [])
        if not violations:
            return Canvas(image.image, dict(image.meta))
        ids_now = {o.id for o in prompt.objects}
        expected = [o for o in planned_ids(view, plan, scene_of_plan(plan, view.prompt)) if o in ids_now]
        if reflection.prompt_conflicts and plan.done:
            expected = [o.id for o in prompt.objects]

        violations = on_document(violations, doc, expected)
        erase = {i for v in violations if v["kind"] == "unexpected" for i in [v["instance"]]}
        erase |= {i for v in violations if v["kind"] == "count" for i in v["remove"]}
        movers = {v["instance"] for v in violations if v["kind"] in MOVE} - erase
        for v in violations:
            if v["kind"] == "color" and v["instance"] not in erase | movers:
                d = doc.get(v["instance"])
                doc = doc.replace(
                    d.model_copy(update={"color": v["expected"], "rgb": named_colors()[v["expected"]]})
                )
        for iid in erase:
            doc = doc.remove(iid)

        layout = layout_for(view, prompt, doc.size)
        among = set(expected)
        # Lift the movers, then put them (and any missing instances) back, anchors before subjects.
        lifted = {iid: doc.get(iid) for iid in movers}
        for iid in movers:
            doc = doc.remove(iid)
        for d in list(lifted.values()):
            # Partners sitting where this instance should go leave it nowhere: lift them too.
            obj = prompt.object(d.object_id)
            if place_instance(prompt, obj, d.index, doc, layout, among, strict=True) is None:
                partners = {r.object for r in prompt.relations if r.subject == obj.id}
                partners |= {r.subject for r in prompt.relations if r.object == obj.id}
                for other in [o for o in doc.instances if o.object_id in partners]:
                    lifted[other.iid] = other
                    doc = doc.remove(other.iid)
        todo: list[tuple[str, int, int | None]] = [
            (d.object_id, d.index, iid) for iid, d in sorted(lifted.items())
        ]
        for v in violations:
            if v["kind"] == "count" and v["add"]:
                taken = {d.index for d in doc.instances if d.object_id == v["object_id"]}
                taken |= {d.index for d in lifted.values() if d.object_id == v["object_id"]}
                free = [i for i in range(prompt.object(v["object_id"]).count) if i not in taken]
                todo += [(v["object_id"], i, None) for i in free[: v["add"]]]
        subjects = {r.subject for r in prompt.relations}
        todo.sort(key=lambda t: (t[0] in subjects, t[0], t[1]))

        rng = np.random.default_rng(view.seed)
        p = mistake_probability(len(todo), self.mistake_rate, self.crowding)
        for oid, index, iid in todo:
            obj = prompt.object(oid)
            drawn = place_instance(prompt, obj, index, doc, layout, among)
            assert drawn is not None  # not strict: always somewhere
            kinds = applicable(self.mistakes, doc, needs := needs_for(prompt, obj, doc, among))
            if self.mistake_rate > 0 and rng.random() < p and kinds:
                mistaken, _ = make_mistake(kinds[int(rng.integers(len(kinds)))], drawn, doc, needs, rng)
                if mistaken is None:
                    continue
                drawn = mistaken
            if iid is None:
                doc = doc.add(drawn)
            else:  # the same instance, moved or redrawn, now on top
                doc = doc.model_copy(
                    update={
                        "instances": [
                            *doc.instances,
                            drawn.model_copy(update={"iid": iid, "z": doc.top_z + 1}),
                        ]
                    }
                )
        rendered, _ = render(doc)
        return Canvas(rendered, doc.to_meta())
