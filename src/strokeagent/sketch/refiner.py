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

Objects are the prompt's (a plan that mis-stated one is corrected here).
Everything else keeps its document entry, so re-rendering leaves every pixel
outside the changed instances' old and new footprints as it was. The refiner
draws carefully: by default it makes no mistakes at all (``mistake_rate=0``),
so one round fixes what reflect found; a rate above 0 uses the drafter's model.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from strokeagent.core.stages import Canvas, TrajectoryView
from strokeagent.core.state import Plan, Reflection
from strokeagent.sketch.document import SketchDocument
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


class SketchRefiner:
    """Moves, recolours, redraws, adds or erases only the violating instances.

    Options: ``mistake_rate`` (default 0: a careful hand), ``crowding``, ``mistakes``.
    """

    def __init__(
        self, mistake_rate: float = 0.0, crowding: float = 0.25, mistakes: Sequence[str] = MISTAKE_KINDS
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
