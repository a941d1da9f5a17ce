"""Stage contracts, diffusers-style: a pytest mixin per role, configured by a subclass.

    class TestMyDrafter(DrafterContract):
        def make_stage(self):
            return MyDrafter(size=64)

``PlannerContract``, ``DrafterContract``, ``ReflectorContract`` and ``RefinerContract`` test the four
method roles; ``StageContract`` tests a custom ``run`` stage. Each runs the stage on views built as the
loop builds them (the step's earlier stages have run; images go through the run's store) and checks:

* it implements its role's protocol with an ``async`` method;
* the same view and seed give an equal result (an image: equal PNG bytes), and it is well formed;
* another seed gives a well-formed result too (it may differ);
* two runs at once (``asyncio.gather``, two run folders) give what they give one after the other.

What the stage under test works on comes from hooks: ``make_planner`` (None: the plan is the prompt,
as when a policy has no planner), ``make_drafter`` (the shapes drafter) and ``make_reflector`` (None: a
fixed reflection with one conflict). A sketch reflector needs a canvas the sketch drafter drew, a
unified model's refine its own plan, draft and inspection: override the hooks to give them.
"""

from __future__ import annotations

import asyncio
import hashlib
import inspect
import json
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from strokeagent.core.stages import ROLE_PROTOCOLS, Canvas, Stage, TrajectoryView, stage_seed
from strokeagent.core.state import ImageRef, Note, Plan, Reflection, StageUsage, State, Step, Trajectory
from strokeagent.core.store import ArtifactStore, png_bytes

#: What a stage of each role may return (the loop refuses anything else).
RETURNS: dict[str, tuple[type, ...]] = {
    "plan": (Plan,),
    "draft": (Canvas,),
    "reflect": (Reflection,),
    "refine": (Canvas,),
    "note": (Plan, Canvas, Reflection, Note),
}
#: The reflection a refiner gets when the contract has no reflector.
CONFLICT = Reflection(
    image_conflicts=["the apple is missing"], corrected_instruction="add the apple", ok=False
)


class _StageContract:
    role: ClassVar[str]  # "plan", "draft", "reflect", "refine", or "note" (a `run` stage)
    name: ClassVar[str] = ""  # the stage's name in its policy (default: its role)
    before: ClassVar[tuple[str, ...]] = ()  # what runs before it in its step: "plan", "draft", "reflect"
    step: ClassVar[int] = 0  # the step it is tested on; each earlier step is planned and drawn
    prompt: ClassVar[str] = "a red apple left of a blue cup"

    def make_stage(self) -> Any:
        raise NotImplementedError("return the stage under test")

    def make_planner(self) -> Any:
        return None

    def make_drafter(self) -> Any:
        from strokeagent.testing.doubles import ShapesDrafter

        return ShapesDrafter(size=64)

    def make_reflector(self) -> Any:
        return None

    # -- running it -----------------------------------------------------------------

    async def prepare(self, folder: Path, seed: int = 0) -> TrajectoryView:
        """The view the stage gets in a run of ``seed`` in ``folder``, once the stages before it have run."""
        store = ArtifactStore(folder / "images")
        traj = Trajectory(prompt=self.prompt, seed=seed, run_dir=str(folder))
        helpers = {
            "plan": self.make_planner(),
            "draft": self.make_drafter(),
            "reflect": self.make_reflector(),
        }
        for index in range(self.step + 1):
            traj = traj.model_copy(update={"steps": [*traj.steps, Step(index=index)]})
            for name in self.before if index == self.step else ("plan", "draft"):
                traj = await _add(traj, store, name, helpers[name])
        return _view(traj, store, self.name or self.role, self.role)

    async def call(self, stage: Any, view: TrajectoryView) -> Any:
        return await _call(stage, self.role, view)

    def check(self, result: Any, view: TrajectoryView) -> None:
        """A well-formed result for the role; subclasses add their own checks."""
        wanted = RETURNS[self.role]
        assert isinstance(result, wanted), f"a {self.role} stage returned a {type(result).__name__}"
        assert result.usage is None or isinstance(result.usage, StageUsage), "usage must be a StageUsage"
        if isinstance(result, Canvas):
            assert result.image.width > 0 and result.image.height > 0
            json.dumps([result.meta, result.handoffs])  # both go into trajectory.json
        else:
            assert type(result).model_validate_json(result.model_dump_json()) == result, "must survive JSON"
        if isinstance(result, Plan):
            assert result.instruction.strip(), "a plan needs an instruction"
        if isinstance(result, Reflection):
            assert result.ok == (not result.conflicts), "ok must mean no conflicts"
            assert result.ok or result.corrected_instruction, (
                "a reflection with conflicts must say what to do"
            )

    # -- the contract -----------------------------------------------------------------

    def test_implements_its_protocol_with_an_async_method(self) -> None:
        stage = self.make_stage()
        protocol, method = (
            (ROLE_PROTOCOLS[self.role], self.role) if self.role in ROLE_PROTOCOLS else (Stage, "run")
        )
        assert isinstance(stage, protocol), f"{type(stage).__name__} is not a {protocol.__name__}"
        assert inspect.iscoroutinefunction(getattr(stage, method)), f"{method} must be `async def`"

    def test_same_view_and_seed_give_an_equal_result(self, tmp_path: Path) -> None:
        async def twice() -> tuple[Any, Any, TrajectoryView]:
            stage, view = self.make_stage(), await self.prepare(tmp_path)
            return await self.call(stage, view), await self.call(stage, view), view

        a, b, view = asyncio.run(twice())
        self.check(a, view)
        assert_same(a, b, "the same view and seed gave another result")

    def test_another_seed_gives_a_well_formed_result(self, tmp_path: Path) -> None:
        async def once() -> tuple[Any, TrajectoryView]:
            view = await self.prepare(tmp_path, seed=1)
            return await self.call(self.make_stage(), view), view

        self.check(*asyncio.run(once()))  # it may differ from seed 0's

    def test_concurrent_runs_give_what_sequential_runs_give(self, tmp_path: Path) -> None:
        async def both() -> tuple[list[Any], list[Any]]:
            stage = self.make_stage()  # one object serves both runs, as in a server
            views = [await self.prepare(tmp_path / "a", seed=0), await self.prepare(tmp_path / "b", seed=1)]
            one_by_one = [await self.call(stage, v) for v in views]
            at_once = await asyncio.gather(*(self.call(stage, v) for v in views))
            return one_by_one, list(at_once)

        one_by_one, at_once = asyncio.run(both())
        for run, alone, together in zip("ab", one_by_one, at_once, strict=True):
            assert_same(alone, together, f"run {run} at once with another gave what it does not alone")


class PlannerContract(_StageContract):
    role = "plan"


class DrafterContract(_StageContract):
    role, before = "draft", ("plan",)


class ReflectorContract(_StageContract):
    role, before = "reflect", ("plan", "draft")


class RefinerContract(_StageContract):
    role, before = "refine", ("plan", "draft", "reflect")

    def check(self, result: Any, view: TrajectoryView) -> None:
        super().check(result, view)
        assert result.image.size == view.open(view.canvas).image.size, "a refinement keeps the image's size"


class StageContract(_StageContract):
    """A custom stage: one ``async def run(view)``, here after the step's plan (set ``before``)."""

    role, name, before = "note", "note", ("plan",)


def comparable(result: Any) -> Any:
    """What must be equal between two results: a canvas by its PNG bytes (as a hash, to print short)."""
    if isinstance(result, Canvas):
        digest = hashlib.sha256(png_bytes(result.image)).hexdigest()
        return (digest, result.meta, result.handoffs, result.usage)
    return result


def assert_same(a: Any, b: Any, what: str) -> None:
    """``a`` and ``b`` are equal results, else one line says where they differ."""
    if comparable(a) == comparable(b):
        return
    if not (isinstance(a, Canvas) and isinstance(b, Canvas)):
        raise AssertionError(f"{what}: {a!r} then {b!r}")
    found = [f"{name}: {x!r} then {y!r}" for name in ("meta", "handoffs", "usage")
             if (x := getattr(a, name)) != (y := getattr(b, name))]  # fmt: skip
    if png_bytes(a.image) != png_bytes(b.image):
        if (a.image.mode, a.image.size) != (b.image.mode, b.image.size):
            found.append(f"image: {a.image.mode} {a.image.size} then {b.image.mode} {b.image.size}")
        else:
            diff = np.abs(np.asarray(a.image, dtype=int) - np.asarray(b.image, dtype=int))
            found.append(f"pixels: {int((diff > 0).sum())} values differ, by up to {int(diff.max())} levels")
    raise AssertionError(f"{what}: " + "; ".join(found))


def _view(traj: Trajectory, store: ArtifactStore, name: str, role: str) -> TrajectoryView:
    """The view the loop gives stage ``name`` now: its seed from the run seed, the step and its round."""
    step = traj.steps[-1]
    round_ = len(step.images) if role == "refine" else sum(s.stage == name for s in step.states)
    seed = stage_seed(traj.seed, step.index, name, round_)
    return TrajectoryView(traj, step.index, name, seed, store, role)  # type: ignore[arg-type]


async def _call(stage: Any, role: str, view: TrajectoryView) -> Any:
    if role == "plan":
        return await stage.plan(view)
    if role == "draft":
        return await stage.draft(view, view.plan)
    if role == "reflect":
        return await stage.reflect(view, view.plan, view.open(view.canvas))
    if role == "refine":
        return await stage.refine(view, view.plan, view.open(view.canvas), view.reflection)
    return await stage.run(view)


async def _add(traj: Trajectory, store: ArtifactStore, name: str, helper: Any) -> Trajectory:
    """``traj`` with what stage ``name`` (``helper``) made appended to its step, as the loop stores it."""
    by = "stage"
    if helper is not None:
        value = await _call(helper, name, _view(traj, store, name, name))
        if isinstance(value, Canvas):
            ref: ImageRef = store.put(value.image, value.meta)
            value = ref.model_copy(update={"handoffs": value.handoffs}) if value.handoffs else ref
    elif name == "plan":  # no planner: the loop plans the prompt itself
        value, by = Plan(instruction=traj.prompt, description=traj.prompt, done=True), "loop"
    elif name == "reflect":
        value = CONFLICT
    else:
        raise ValueError(f"the contract needs a stage for {name}")
    step = traj.steps[-1]
    step = step.model_copy(update={"states": [*step.states, State(stage=name, value=value, by=by)]})
    return traj.model_copy(update={"steps": [*traj.steps[:-1], step]})
