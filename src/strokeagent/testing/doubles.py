"""The shapes stages: simple, deterministic stage doubles with a known cost (see ``strokeagent.testing``)."""

from __future__ import annotations

import asyncio

import numpy as np
from PIL import Image, ImageDraw

from strokeagent.core.policy import LoopSpec, Policy
from strokeagent.core.stages import Canvas, TrajectoryView
from strokeagent.core.state import Note, Plan, Reflection


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


class CountingNote(_Delayed):
    """A custom stage (``testing.note``): one ``run`` method that notes how many states came before it."""

    async def run(self, view: TrajectoryView) -> Note:
        await self._wait()
        seen = sum(len(s.states) for s in view.steps)
        return Note(text=f"{view.stage}: {len(view.steps)} step(s), {seen} state(s) so far, seed {view.seed % 1000}")


def test_policy(
    steps: int = 3,
    order: tuple[str, ...] = ("plan", "draft", "reflect", "refine"),  # "note" is a custom stage
    fail_rounds: int = 1,
    max_refines: int = 2,
    delay: float = 0.0,
    size: int = 64,
) -> Policy:
    """A policy of the shapes stages under any loop: the workhorse of the core's tests."""
    return Policy(
        name="testing",
        description="seeded rectangles; a scripted reflector",
        loop=LoopSpec(order=order, max_steps=max(steps, 1), max_refines=max_refines),
        stages={
            "plan": ScriptedPlanner(steps, delay),
            "draft": ShapesDrafter(size, delay),
            "reflect": ScriptedReflector(fail_rounds, delay),
            "refine": ShapesRefiner(delay),
            "note": CountingNote(delay),
        },
    )


test_policy.__test__ = False  # type: ignore[attr-defined]  # not a pytest test
