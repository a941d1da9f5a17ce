"""The loop: a ``LoopSpec`` compiled into a LangGraph ``StateGraph``, one node per stage.

    >>> spec = LoopSpec(order=("plan", "draft", "reflect", "refine"), max_steps=3, max_refines=1)
    >>> spec.describe()
    'plan → draft → reflect ⟲ refine, up to 3 steps, 1 refine per step, stop when the planner says done'
    >>> LoopSpec(order=("draft", "refine"))
    Traceback (most recent call last):
    ...
    strokeagent.errors.LoopError: stage order draft → refine cannot run: refine needs reflect right before it (it fixes what reflect found); add reflect or drop refine

The whole method in one picture::

    plan ─► draft ─► reflect ──conflicts──► refine ─► reflect ...
     ▲                 │ ok (or max_refines reached)
     └── next step ◄───┴──► done ─► END

Graph state is one JSON dict, the ``Trajectory`` so far: everything else (the
step, the refine round) is derived from it, so a checkpoint is the whole truth
and a resumed run continues exactly where it stopped. Images are written to the
artifact store by the node that made them, before the checkpoint, so none is
lost when a process dies.

``StageNodes`` gives Python users the four nodes and the two routers to wire a
graph of their own (see ``notebooks/quickstart.ipynb``).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, TypedDict

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from strokeagent.core.stages import TrajectoryView, stage_seed
from strokeagent.core.state import STAGES, Plan, StageName, StageTiming, Step, Trajectory
from strokeagent.errors import LoopError

if TYPE_CHECKING:
    from langgraph.graph.state import CompiledStateGraph

    from strokeagent.core.policy import Policy
    from strokeagent.core.store import ArtifactStore

END_OF_STEP = "__end_of_step__"


class LoopState(TypedDict):
    """LangGraph state: the trajectory so far, as JSON (small: images are refs)."""

    trajectory: dict[str, Any]


class LoopSpec(BaseModel):
    """Stage order inside a step, the limits, and the stop rule.

    ``stop="planner"`` ends after the step whose plan says ``done``, or whose
    last reflection does (a model that closes the process after inspecting), or
    at ``max_steps``; ``stop="fixed"`` always runs ``max_steps`` steps. Without a
    plan stage, each step's plan is the prompt itself, marked done.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    order: tuple[StageName, ...] = STAGES
    max_steps: int = Field(default=5, ge=1, le=64)
    max_refines: int = Field(default=2, ge=0, le=16)
    stop: Literal["planner", "fixed"] = "planner"

    @field_validator("order", mode="before")
    @classmethod
    def _known_stages(cls, order: Any) -> Any:
        for name in order or ():
            if name not in STAGES:
                raise LoopError(f"unknown stage {name!r} in the stage order; use {', '.join(STAGES)}")
        return order

    def model_post_init(self, _: Any) -> None:
        reason = _why_order_cannot_run(self.order)
        if reason:
            raise LoopError(f"stage order {' → '.join(self.order) or '(empty)'} cannot run: {reason}")

    @classmethod
    def parse(cls, data: dict[str, Any], where: str = "loop") -> LoopSpec:
        """Validate ``data``; every problem becomes one ``LoopError`` line naming ``where``."""
        try:
            return cls.model_validate(data)
        except LoopError as e:
            raise LoopError(f"{where}: {e}") from None
        except ValidationError as e:
            err = e.errors()[0]
            field = ".".join(str(p) for p in err["loc"]) or "loop"
            raise LoopError(f"{where}: {field}: {err['msg']}") from None

    def describe(self) -> str:
        names = list(self.order)
        if "refine" in names:
            names.remove("refine")
            names[names.index("reflect")] = "reflect ⟲ refine"
        stop = "stop when the planner says done" if self.stop == "planner" else "always"
        refines = (
            f", {self.max_refines} refine{'s' if self.max_refines != 1 else ''} per step"
            if "refine" in self.order
            else ""
        )
        return f"{' → '.join(names)}, up to {self.max_steps} steps{refines}, {stop}"


def _why_order_cannot_run(order: tuple[str, ...]) -> str | None:
    if not order:
        return "it is empty; a step needs at least draft"
    if len(set(order)) != len(order):
        return "a stage appears twice; each stage runs once per step (refine repeats through reflect)"
    if "draft" not in order:
        return "there is no draft, so no image is ever made; add draft"
    if "plan" in order and order.index("plan") > order.index("draft"):
        return "plan comes after draft, but the draft draws the plan; put plan first"
    if "reflect" in order and order.index("reflect") < order.index("draft"):
        return "reflect comes before draft, so there is no image to inspect; put reflect after draft"
    if "refine" in order:
        i = order.index("refine")
        if i == 0 or order[i - 1] != "reflect":
            return "refine needs reflect right before it (it fixes what reflect found); add reflect or drop refine"
    return None


@dataclass
class StageNodes:
    """The four stage nodes and the routers for one policy and one artifact store.

    Each node reads the trajectory, calls its stage with a ``TrajectoryView``,
    stores any image, records the stage's time, and returns the new trajectory.
    Wire them yourself with ``nodes.node("plan")`` and ``nodes.after_reflect``,
    or let ``compile_loop`` do it.
    """

    policy: Policy
    store: ArtifactStore
    # The last trajectory this object wrote or read, with the JSON it came from: the next node and the
    # routers get that very dict back from LangGraph, and validating it again on every transition cost
    # more than the rest of the framework's own work.
    _last: tuple[dict[str, Any], Trajectory] | None = field(default=None, init=False, repr=False)

    @property
    def spec(self) -> LoopSpec:
        return self.policy.loop

    def trajectory(self, state: LoopState | dict[str, Any]) -> Trajectory:
        """The ``Trajectory`` in ``state``, validated once per version."""
        data = state["trajectory"]
        if self._last is not None and self._last[0] is data:
            return self._last[1]
        traj = Trajectory.model_validate(data)
        self._last = (data, traj)
        return traj

    def node(self, stage: StageName) -> Callable[[LoopState], Awaitable[LoopState]]:
        return _StageNode(
            {"plan": self.plan, "draft": self.draft, "reflect": self.reflect, "refine": self.refine}[stage]
        )

    async def plan(self, state: LoopState) -> LoopState:
        traj = self.trajectory(state)
        index = len(traj.steps)
        view = self._view(traj, index, "plan", 0)
        plan, seconds = await _timed(self.policy.planner.plan(view))  # type: ignore[union-attr]
        steps = [*traj.steps, Step(index=index, plan=plan)]
        notes = [*traj.notes, *(n for n in plan.notes if n not in traj.notes)]
        return self._out(traj.model_copy(update={"notes": notes}), steps, "plan", index, seconds)

    async def draft(self, state: LoopState) -> LoopState:
        traj = self.trajectory(state)
        steps = list(traj.steps)
        if "plan" not in self.spec.order:
            # No planner: every step draws the prompt itself.
            steps.append(
                Step(index=len(steps), plan=Plan(instruction=traj.prompt, description=traj.prompt, done=True))
            )
        step = steps[-1]
        view = self._view(traj.model_copy(update={"steps": steps}), step.index, "draft", 0)
        canvas, seconds = await _timed(self.policy.drafter.draft(view, step.plan))  # type: ignore[arg-type]
        ref = self.store.put(canvas.image, canvas.meta)
        steps[-1] = step.model_copy(update={"images": [ref]})
        return self._out(traj, steps, "draft", step.index, seconds)

    async def reflect(self, state: LoopState) -> LoopState:
        traj = self.trajectory(state)
        step = traj.steps[-1]
        view = self._view(traj, step.index, "reflect", len(step.reflections))
        image = view.open(step.image)  # type: ignore[arg-type]
        reflection, seconds = await _timed(self.policy.reflector.reflect(view, step.plan, image))  # type: ignore[union-attr,arg-type]
        steps = [*traj.steps[:-1], step.model_copy(update={"reflections": [*step.reflections, reflection]})]
        return self._out(traj, steps, "reflect", step.index, seconds)

    async def refine(self, state: LoopState) -> LoopState:
        traj = self.trajectory(state)
        step = traj.steps[-1]
        view = self._view(traj, step.index, "refine", len(step.images))
        image = view.open(step.image)  # type: ignore[arg-type]
        canvas, seconds = await _timed(
            self.policy.refiner.refine(view, step.plan, image, step.reflections[-1])  # type: ignore[union-attr,arg-type]
        )
        ref = self.store.put(canvas.image, canvas.meta)
        steps = [*traj.steps[:-1], step.model_copy(update={"images": [*step.images, ref]})]
        return self._out(traj, steps, "refine", step.index, seconds)

    def compile(
        self, *, checkpointer: Any = None, pause_before: tuple[StageName, ...] = ()
    ) -> CompiledStateGraph:
        """The standard graph of these nodes, compiled.

        ``pause_before`` names stages to interrupt before (human in the loop): the
        run stops there, and ``resume`` continues it.
        """
        for stage in pause_before:
            if stage not in self.spec.order:
                raise LoopError(f"cannot pause before {stage!r}: the loop has {', '.join(self.spec.order)}")
        graph = build_graph(self)
        return graph.compile(checkpointer=checkpointer, interrupt_before=list(pause_before) or None)

    # -- routing -------------------------------------------------------------

    def after_reflect(self, state: LoopState) -> str:
        """``refine`` when the image has conflicts and rounds are left; else what follows the step."""
        step = self.trajectory(state).steps[-1]
        reflection = step.reflections[-1]
        if (
            not reflection.ok
            and "refine" in self.spec.order
            and len(step.refinements) < self.spec.max_refines
        ):
            return "refine"
        return self._next_in_order("refine" if "refine" in self.spec.order else "reflect", state)

    def after_step(self, state: LoopState) -> str:
        """The first stage of the next step, or ``END``."""
        from langgraph.graph import END

        traj = self.trajectory(state)
        step = traj.steps[-1]
        said_done = (step.plan is not None and step.plan.done) or (
            bool(step.reflections) and step.reflections[-1].done
        )
        done = len(traj.steps) >= self.spec.max_steps or (self.spec.stop == "planner" and said_done)
        return END if done else self.spec.order[0]

    def _next_in_order(self, stage: StageName, state: LoopState) -> str:
        i = self.spec.order.index(stage)
        return self.spec.order[i + 1] if i + 1 < len(self.spec.order) else self.after_step(state)

    # -- helpers -------------------------------------------------------------

    def _view(self, traj: Trajectory, step: int, stage: StageName, round_: int) -> TrajectoryView:
        return TrajectoryView(
            trajectory=traj,
            step=step,
            stage=stage,
            seed=stage_seed(traj.seed, step, stage, round_),
            store=self.store,
        )

    def _out(
        self, traj: Trajectory, steps: list[Step], stage: StageName, step: int, seconds: float
    ) -> LoopState:
        # Unified models say what the call cost in tokens; read right after the await, before any other stage runs.
        usage = getattr(self.policy.stage(stage), "last_usage", None)
        prefilled, generated = usage if usage is not None else (None, None)
        timing = StageTiming(
            step=step, stage=stage, seconds=seconds, prefilled_tokens=prefilled, generated_tokens=generated
        )
        new = traj.model_copy(update={"steps": steps, "timings": [*traj.timings, timing]})
        data = new.model_dump(mode="json")
        self._last = (data, new)
        return {"trajectory": data}


class _StageNode:
    """A stage node as a callable object, not a bound method: LangGraph scans a function's bytecode
    for subgraphs when it compiles, which was most of the cost of compiling a loop for every run."""

    def __init__(self, run: Callable[[LoopState], Awaitable[LoopState]]) -> None:
        self.run = run

    async def __call__(self, state: LoopState) -> LoopState:
        return await self.run(state)


class _Router:
    """A router as an async callable: LangGraph runs a sync one in a worker thread on every call, and that
    thread hop cost more than the routing itself."""

    def __init__(self, route: Callable[[LoopState], str]) -> None:
        self.route = route

    async def __call__(self, state: LoopState) -> str:
        return self.route(state)


async def _timed(call: Awaitable[Any]) -> tuple[Any, float]:
    start = time.perf_counter()
    result = await call
    return result, time.perf_counter() - start


def build_graph(nodes: StageNodes):  # -> StateGraph
    """The uncompiled ``StateGraph`` for ``nodes.policy.loop``: add to it, then compile."""
    from langgraph.graph import END, START, StateGraph

    spec = nodes.spec
    graph = StateGraph(LoopState)
    for stage in spec.order:
        graph.add_node(stage, nodes.node(stage))
    graph.add_edge(START, spec.order[0])
    ends = {name: name for name in spec.order} | {END: END}
    for i, stage in enumerate(spec.order):
        if stage == "reflect":
            graph.add_conditional_edges(stage, _Router(nodes.after_reflect), ends)
        elif stage == "refine":
            graph.add_edge(stage, "reflect")
        elif i + 1 < len(spec.order):
            graph.add_edge(stage, spec.order[i + 1])
        else:
            graph.add_conditional_edges(stage, _Router(nodes.after_step), ends)
    return graph


def compile_loop(
    policy: Policy,
    store: ArtifactStore,
    *,
    checkpointer: Any = None,
    pause_before: tuple[StageName, ...] = (),
) -> CompiledStateGraph:
    """Compile ``policy.loop`` into a runnable LangGraph graph (``StageNodes.compile`` keeps the nodes at hand)."""
    return StageNodes(policy, store).compile(checkpointer=checkpointer, pause_before=pause_before)


def recursion_limit(spec: LoopSpec) -> int:
    """LangGraph's superstep budget: every stage of every step, every refine round, with room to spare."""
    return spec.max_steps * (len(spec.order) + 2 * spec.max_refines) + 8
