"""Test doubles that ship with the library: simple, deterministic stages with a known cost.

    >>> policy = test_policy(steps=2)
    >>> traj = generate("three shapes", policy=policy, seed=1)   # doctest: +SKIP
    >>> len(traj.steps)                                            # doctest: +SKIP
    2

The shapes stages draw seeded rectangles on a small canvas; the scripted
reflector finds a conflict in the first ``fail_rounds`` inspections of every
step. ``delay`` makes each call take a known time (for the overhead benchmark
and for killing a run mid-way). Policy files can use them as kinds
``testing.plan``, ``testing.draft``, ``testing.reflect``, ``testing.refine``.

Doubles for the other interfaces live beside their builders and are
re-exported here where they are light: ``ScriptedTextHead`` (a text head that
answers from a script). Tiny random-weight models: ``strokeagent.testing.diffusers``
(pipelines), ``strokeagent.testing.heads`` (chat and vision heads),
``strokeagent.testing.unified`` (Janus), ``strokeagent.testing.critics`` (detectors,
CLIP, and the critic conformance suite).
"""

from __future__ import annotations

import asyncio

import numpy as np
from PIL import Image, ImageDraw

from strokeagent.core.loop import LoopSpec
from strokeagent.core.policy import Policy
from strokeagent.core.stages import Canvas, TrajectoryView
from strokeagent.core.state import Plan, Reflection
from strokeagent.testing.heads import HeadCall, ScriptedTextHead  # noqa: F401 - the text-head double, here too


class _Delayed:
    def __init__(self, delay: float = 0.0) -> None:
        if delay < 0:
            raise ValueError("delay must be >= 0 seconds")
        self.delay = delay

    async def _wait(self) -> None:
        if self.delay:
            await asyncio.sleep(self.delay)


class ScriptedPlanner(_Delayed):
    """Plans ``steps`` steps: "add shape 1", "add shape 2", ...; the last is done."""

    def __init__(self, steps: int = 3, delay: float = 0.0) -> None:
        super().__init__(delay)
        self.steps = steps

    async def plan(self, view: TrajectoryView) -> Plan:
        await self._wait()
        n = view.step + 1
        return Plan(
            instruction=f"add shape {n}",
            description=f"{view.prompt}: {n} of {self.steps} shapes",
            done=n >= self.steps,
            notes=["shapes are drawn as rectangles"],
        )


def _shape(rng: np.random.Generator, size: int) -> tuple[list[int], tuple[int, int, int]]:
    x0, y0 = (int(v) for v in rng.integers(0, size * 3 // 4, 2))
    w, h = (int(v) for v in rng.integers(size // 8, size // 4, 2))
    colour = tuple(int(v) for v in rng.integers(0, 256, 3))
    return [x0, y0, x0 + w, y0 + h], colour  # type: ignore[return-value]


class ShapesDrafter(_Delayed):
    """Adds one seeded rectangle per step to the canvas (a blank one on step 0)."""

    def __init__(self, size: int = 64, delay: float = 0.0) -> None:
        super().__init__(delay)
        self.size = size

    async def draft(self, view: TrajectoryView, plan: Plan) -> Canvas:
        await self._wait()
        if view.canvas is None:
            image, shapes = Image.new("RGB", (self.size, self.size), "white"), []
        else:
            previous = view.open(view.canvas)
            image, shapes = previous.image, list(previous.meta.get("shapes", []))
        box, colour = _shape(np.random.default_rng(view.seed), self.size)
        ImageDraw.Draw(image).rectangle(box, fill=colour, outline="black")
        return Canvas(image, {"shapes": [*shapes, {"box": box, "instruction": plan.instruction}]})


class ScriptedReflector(_Delayed):
    """Finds one conflict in the first ``fail_rounds`` inspections of each step, then none."""

    def __init__(self, fail_rounds: int = 1, delay: float = 0.0) -> None:
        super().__init__(delay)
        self.fail_rounds = fail_rounds

    async def reflect(self, view: TrajectoryView, plan: Plan, image: Canvas) -> Reflection:
        await self._wait()
        round_ = len(view.current.reflections) if view.current else 0
        if round_ < self.fail_rounds:
            return Reflection(
                image_conflicts=[f"shape {view.step + 1} is too faint"],
                corrected_instruction=f"redraw shape {view.step + 1} darker",
                ok=False,
            )
        return Reflection(ok=True)


class ShapesRefiner(_Delayed):
    """Darkens the newest shape: a visible, seeded change confined to its box."""

    def __init__(self, delay: float = 0.0) -> None:
        super().__init__(delay)

    async def refine(self, view: TrajectoryView, plan: Plan, image: Canvas, reflection: Reflection) -> Canvas:
        await self._wait()
        out = image.image.copy()
        shapes = image.meta.get("shapes", [])
        if shapes:
            shade = int(np.random.default_rng(view.seed).integers(0, 64))
            ImageDraw.Draw(out).rectangle(shapes[-1]["box"], fill=(shade, shade, shade), outline="black")
        return Canvas(out, dict(image.meta))


def test_policy(
    steps: int = 3,
    order: tuple[str, ...] = ("plan", "draft", "reflect", "refine"),
    fail_rounds: int = 1,
    max_refines: int = 2,
    delay: float = 0.0,
    size: int = 64,
) -> Policy:
    """A policy of the shapes stages under any loop: the workhorse of the core's tests."""
    return Policy(
        name="testing",
        description="seeded rectangles; a scripted reflector",
        loop=LoopSpec(order=order, max_steps=max(steps, 1), max_refines=max_refines),  # type: ignore[arg-type]
        planner=ScriptedPlanner(steps, delay),
        drafter=ShapesDrafter(size, delay),
        reflector=ScriptedReflector(fail_rounds, delay),
        refiner=ShapesRefiner(delay),
    )


test_policy.__test__ = False  # type: ignore[attr-defined]  # not a pytest test


# -- conformance -------------------------------------------------------------
#
# Contract tests any stage implementation can run, diffusers-style: subclass the
# mixin in a pytest class and give the stage to test.
#
#     class TestMyDrafter(DrafterContract):
#         def make_stage(self):
#             return MyDrafter(...)


class _StageContract:
    stage: str
    prompt = "a photo of a red apple left of a blue cup"

    def make_stage(self):  # noqa: ANN201 - whatever stage is under test
        raise NotImplementedError("return the stage under test")

    def view(self, tmp_path, traj=None, step: int = 0, round_: int = 0) -> TrajectoryView:
        from strokeagent.core.stages import stage_seed
        from strokeagent.core.state import Trajectory
        from strokeagent.core.store import ArtifactStore

        traj = traj or Trajectory(prompt=self.prompt, seed=0)
        store = ArtifactStore(tmp_path / "images")
        return TrajectoryView(traj, step, self.stage, stage_seed(0, step, self.stage, round_), store)  # type: ignore[arg-type]

    def test_implements_its_protocol_with_an_async_method(self) -> None:
        import inspect

        from strokeagent.core.stages import STAGE_PROTOCOLS

        stage = self.make_stage()
        assert isinstance(stage, STAGE_PROTOCOLS[self.stage])  # type: ignore[index]
        assert inspect.iscoroutinefunction(getattr(stage, self.stage))

    def drafted(self, tmp_path) -> tuple[TrajectoryView, Plan, Canvas]:
        """A first-step view with one drawn canvas stored in it (for reflect and refine)."""
        from strokeagent.core.state import Step, Trajectory

        drafter = ShapesDrafter(size=64)
        plan = Plan(instruction=self.prompt, description=self.prompt, done=True)
        base = self.view(tmp_path, Trajectory(prompt=self.prompt, seed=0, steps=[Step(index=0, plan=plan)]))
        canvas = asyncio.run(drafter.draft(base, plan))
        ref = base.store.put(canvas.image, canvas.meta)
        traj = base.trajectory.model_copy(update={"steps": [Step(index=0, plan=plan, images=[ref])]})
        return self.view(tmp_path, traj), plan, base.open(ref)


class PlannerContract(_StageContract):
    stage = "plan"

    def test_plans_the_first_step_deterministically(self, tmp_path) -> None:
        a = asyncio.run(self.make_stage().plan(self.view(tmp_path)))
        b = asyncio.run(self.make_stage().plan(self.view(tmp_path)))
        assert isinstance(a, Plan) and a.instruction.strip()
        assert a == b


class DrafterContract(_StageContract):
    stage = "draft"

    def plan_for(self, view: TrajectoryView) -> Plan:
        return Plan(instruction=view.prompt, description=view.prompt, done=True)

    def test_draws_from_scratch_deterministically(self, tmp_path) -> None:
        from strokeagent.core.store import png_bytes

        view = self.view(tmp_path)
        a = asyncio.run(self.make_stage().draft(view, self.plan_for(view)))
        b = asyncio.run(self.make_stage().draft(view, self.plan_for(view)))
        assert isinstance(a, Canvas) and a.image.width > 0 and a.image.height > 0
        assert png_bytes(a.image) == png_bytes(b.image), "same seed must give the same bytes"


class ReflectorContract(_StageContract):
    stage = "reflect"

    def test_reflects_consistently(self, tmp_path) -> None:
        view, plan, canvas = self.drafted(tmp_path)
        r = asyncio.run(self.make_stage().reflect(view, plan, canvas))
        assert isinstance(r, Reflection)
        assert r.ok == (not r.conflicts), "ok must mean no conflicts"
        if not r.ok:
            assert r.corrected_instruction, "a reflection with conflicts must say what to do"
        assert r == asyncio.run(self.make_stage().reflect(view, plan, canvas))


class RefinerContract(_StageContract):
    stage = "refine"

    def test_refines_to_an_image_of_the_same_size(self, tmp_path) -> None:
        view, plan, canvas = self.drafted(tmp_path)
        reflection = Reflection(
            image_conflicts=["the apple is missing"], corrected_instruction="add the apple", ok=False
        )
        out = asyncio.run(self.make_stage().refine(view, plan, canvas, reflection))
        assert isinstance(out, Canvas) and out.image.size == canvas.image.size
