"""The loop: a policy's ``LoopSpec`` compiled into a LangGraph ``StateGraph``, one node per stage.

The method in one picture (the default order; any order that can run compiles)::

    plan ─► draft ─► reflect ──conflicts──► refine ─► reflect ...
     ▲                 │ ok (or max_refines reached)
     └── next step ◄───┴──► done ─► END

Every stage is one node. The first stage of the order opens a new step. A
refine stage follows the inspections right before it (its *group*): when one of
them found conflicts and rounds are left, the refine runs and the group inspects
its image again; otherwise the loop goes on past the refine. After the last
stage, the loop ends (the planner or an inspection said done, or ``max_steps``)
or starts the next step.

Graph state is one JSON dict, the ``Trajectory`` so far: everything else (the
step, the round) is derived from it, so a checkpoint is the whole truth and a
resumed run continues exactly where it stopped. Images are written to the
artifact store by the node that made them, before the checkpoint, so none is
lost when a process dies.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypedDict

from strokeagent.core.policy import LoopSpec, Policy, StageSpec
from strokeagent.core.stages import Canvas, TrajectoryView, current_reflection, stage_seed
from strokeagent.core.state import (
    Candidate,
    ImageRef,
    Note,
    Plan,
    Reflection,
    StageTiming,
    StageUsage,
    State,
    Step,
    Trajectory,
)
from strokeagent.errors import LoopError, StageOutputError

if TYPE_CHECKING:
    from langgraph.graph.state import CompiledStateGraph

    from strokeagent.core.store import ArtifactStore

#: What each role must return, for the one-line error when a stage returns something else.
_RETURNS = {"plan": (Plan,), "draft": (Canvas,), "reflect": (Reflection,), "refine": (Canvas,),
            "note": (Plan, Canvas, Reflection, Note)}  # fmt: skip


class LoopState(TypedDict):
    """LangGraph state: the trajectory so far, as JSON (small: images are refs)."""

    trajectory: dict[str, Any]


@dataclass
class StageNodes:
    """The stage nodes and routers for one policy and one artifact store.

    Each node reads the trajectory, calls its stage with a ``TrajectoryView``,
    stores any image, records the stage's time and what it reported, and returns
    the new trajectory. ``compile`` wires them; ``build_graph`` gives the graph
    uncompiled, to add to.
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

    def node(self, name: str) -> Callable[[LoopState], Awaitable[LoopState]]:
        return _Callable(lambda state: self.run_stage(name, state))

    # -- one stage ----------------------------------------------------------------

    async def run_stage(self, name: str, state: LoopState) -> LoopState:
        traj = self.trajectory(state)
        spec = self.policy.stages[name]
        steps = list(traj.steps)
        if name == self.spec.order[0]:
            steps.append(self._new_step(traj, len(steps)))
        step = steps[-1]
        traj = traj.model_copy(update={"steps": steps})
        view = TrajectoryView(
            trajectory=traj,
            step=step.index,
            stage=name,
            seed=stage_seed(traj.seed, step.index, name, self._round(step, name, spec)),
            store=self.store,
            role=spec.role or "note",
        )
        start = time.perf_counter()
        results = [await self._call(name, spec, view)]
        for k in range(1, spec.samples):
            sample_view = _reseeded(view, stage_seed(traj.seed, step.index, f"{name}#{k}", self._round(step, name, spec)))
            results.append(await self._call(name, spec, sample_view))
        candidates: list[Candidate] = []
        if spec.samples > 1:
            candidates = await self._select(spec, view, results)
            result = results[next(i for i, c in enumerate(candidates) if c.chosen)]
        else:
            result = results[0]
        seconds = time.perf_counter() - start
        value = self._value(result)
        states = [*step.states, State(stage=name, value=value, candidates=candidates)]
        steps[-1] = step.model_copy(update={"states": states})
        notes = traj.notes
        if isinstance(result, Plan):
            notes = [*notes, *(n for n in result.notes if n not in notes)]
        timing = _timing(step.index, name, seconds, results)
        new = traj.model_copy(update={"steps": steps, "notes": notes, "timings": [*traj.timings, timing]})
        data = new.model_dump(mode="json")
        self._last = (data, new)
        return {"trajectory": data}

    def _new_step(self, traj: Trajectory, index: int) -> Step:
        if any(role == "plan" for n, role in self.policy.roles.items() if n in self.spec.order):
            return Step(index=index)
        # No planner: every step draws the prompt itself.
        plan = Plan(instruction=traj.prompt, description=traj.prompt, done=True)
        return Step(index=index, states=[State(stage="plan", value=plan, by="loop")])

    @staticmethod
    def _round(step: Step, name: str, spec: StageSpec) -> int:
        if spec.role == "refine":  # the first refinement is the step's second image
            return len(step.images)
        return sum(1 for s in step.states if s.stage == name and s.by == "stage")

    async def _call(self, name: str, spec: StageSpec, view: TrajectoryView) -> Any:
        impl, role, method = spec.impl, spec.role, spec.method  # the method was chosen when the policy loaded
        plan = view.plan
        if method == "plan":
            result = await impl.plan(view)
        elif method == "draft":
            result = await impl.draft(view, plan)
        elif method == "reflect":
            result = await impl.reflect(view, plan, view.open(_canvas(view, name)))
        elif method == "refine":
            result = await impl.refine(view, plan, view.open(_canvas(view, name)), view.reflection)
        else:
            result = await impl.run(view)
        if not isinstance(result, _RETURNS[role or "note"]):
            wanted = " or ".join(t.__name__ for t in _RETURNS[role or "note"])
            raise StageOutputError(
                f"stage {name} ({type(impl).__name__}) returned a {type(result).__name__}; as a {role} stage it "
                f"must return a {wanted}"
            )
        return result

    async def _select(self, spec: StageSpec, view: TrajectoryView, results: list[Canvas]) -> list[Candidate]:
        """Score every sample, store them all, and mark the best (the first of equals)."""
        if isinstance(spec.select, str):
            judge = self.policy.stages[spec.select].impl
            scores = []
            for canvas in results:
                r = await judge.reflect(view, view.plan, canvas)
                scores.append(0.0 if r.ok else -float(len(r.conflicts) or 1))
            why = f"{spec.select}: minus the conflicts found"
        else:
            scores = [float(s) for s in await spec.select.scores(view, results)]  # type: ignore[union-attr]
            why = type(spec.select).__name__
        if len(scores) != len(results):
            raise StageOutputError(f"the selector gave {len(scores)} scores for {len(results)} samples")
        best = max(range(len(scores)), key=lambda i: (scores[i], -i))
        return [
            Candidate(image=self.store.put(c.image, c.meta), score=s, chosen=i == best, why=why)
            for i, (c, s) in enumerate(zip(results, scores, strict=True))
        ]

    def _value(self, result: Any) -> Plan | Reflection | Note | ImageRef:
        if isinstance(result, Canvas):
            ref = self.store.put(result.image, result.meta)
            return ref.model_copy(update={"handoffs": result.handoffs}) if result.handoffs else ref
        return result

    def compile(self, *, checkpointer: Any = None, pause_before: tuple[str, ...] = ()) -> CompiledStateGraph:
        """The standard graph of these nodes, compiled.

        ``pause_before`` names stages to interrupt before (human in the loop): the
        run stops there, and ``resume`` continues it (with a user's edits, if any).
        """
        for stage in pause_before:
            if stage not in self.spec.order:
                raise LoopError(f"cannot pause before {stage!r}: the loop has {', '.join(self.spec.order)}")
        return build_graph(self).compile(checkpointer=checkpointer, interrupt_before=list(pause_before) or None)

    # -- routing ---------------------------------------------------------------------

    def groups(self) -> dict[str, list[str]]:
        """Each refine stage and the inspections right before it, whose conflicts it fixes."""
        order, roles = self.spec.order, self.policy.roles
        out = {}
        for i, name in enumerate(order):
            if roles[name] == "refine":
                j = i
                while j > 0 and roles[order[j - 1]] == "reflect":
                    j -= 1
                out[name] = list(order[j:i])
        return out

    def after_inspections(self, refine: str) -> Callable[[LoopState], str]:
        """The router after a refine's inspections: ``refine`` on conflicts with rounds left, else past it."""

        def route(state: LoopState) -> str:
            step = self.trajectory(state).steps[-1]
            found = current_reflection(step)
            rounds = sum(1 for s in step.states if s.stage == refine and s.by == "stage")
            if found is not None and not found.ok and rounds < self.spec.max_refines:
                return refine
            return self.after(refine, state)

        return route

    def after(self, name: str, state: LoopState) -> str:
        """The stage after ``name`` in the order, or (after the last) the next step's first stage or END."""
        i = self.spec.order.index(name)
        return self.spec.order[i + 1] if i + 1 < len(self.spec.order) else self.after_step(state)

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


def _canvas(view: TrajectoryView, name: str) -> ImageRef:
    if view.canvas is None:
        raise StageOutputError(f"stage {name} inspects or fixes an image, but nothing has been drawn yet")
    return view.canvas


def _reseeded(view: TrajectoryView, seed: int) -> TrajectoryView:
    return TrajectoryView(view.trajectory, view.step, view.stage, seed, view.store, view.role)


def _timing(step: int, name: str, seconds: float, results: list[Any]) -> StageTiming:
    usages = [r.usage for r in results if getattr(r, "usage", None) is not None]
    total = StageUsage(
        prefilled_tokens=sum(u.prefilled_tokens for u in usages),
        generated_tokens=sum(u.generated_tokens for u in usages),
        denoising_steps=sum(u.denoising_steps for u in usages),
    )
    reported = bool(usages)
    return StageTiming(
        step=step,
        stage=name,
        seconds=seconds,
        prefilled_tokens=total.prefilled_tokens if reported else None,
        generated_tokens=total.generated_tokens if reported else None,
        denoising_steps=total.denoising_steps if reported else None,
        samples=len(results),
    )


class _Callable:
    """A node or router as a callable object, not a bound method or a function: LangGraph scans a function's
    bytecode for subgraphs when it compiles (most of the cost of compiling a loop for every run), and runs a
    sync router in a worker thread on every call."""

    def __init__(self, run: Callable[[LoopState], Any]) -> None:
        self.run = run

    async def __call__(self, state: LoopState) -> Any:
        out = self.run(state)
        return await out if isinstance(out, Awaitable) else out


def build_graph(nodes: StageNodes):  # -> StateGraph
    """The uncompiled ``StateGraph`` for ``nodes.policy``: add to it, then compile."""
    from langgraph.graph import END, START, StateGraph

    spec = nodes.spec
    order = spec.order
    graph = StateGraph(LoopState)
    for name in order:
        graph.add_node(name, nodes.node(name))
    graph.add_edge(START, order[0])
    ends = {name: name for name in order} | {END: END}
    groups = nodes.groups()
    last_of_group = {members[-1]: refine for refine, members in groups.items()}
    for i, name in enumerate(order):
        if name in last_of_group:
            graph.add_conditional_edges(name, _Callable(nodes.after_inspections(last_of_group[name])), ends)
        elif name in groups:
            graph.add_edge(name, groups[name][0])
        elif i + 1 < len(order):
            graph.add_edge(name, order[i + 1])
        else:
            graph.add_conditional_edges(name, _Callable(nodes.after_step), ends)
    return graph


def compile_loop(
    policy: Policy, store: ArtifactStore, *, checkpointer: Any = None, pause_before: tuple[str, ...] = ()
) -> CompiledStateGraph:
    """Compile ``policy`` into a runnable LangGraph graph (``StageNodes.compile`` keeps the nodes at hand)."""
    return StageNodes(policy, store).compile(checkpointer=checkpointer, pause_before=pause_before)
