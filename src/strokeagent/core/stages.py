"""Stages: narrow async objects with one method each.

    >>> class Critique:                                        # any stage: one async method, named run
    ...     async def run(self, view: TrajectoryView) -> Note:
    ...         return Note(text=f"{len(view.steps)} steps so far")
    >>> isinstance(Critique(), Stage)
    True

Every stage receives a read-only ``TrajectoryView``: the prompt, the states so
far, this call's seed, typed hand-offs from earlier stages, and a way to open
images from the run's store. What it returns decides what it is in the
trajectory: a ``Plan`` or a ``Note`` is a text state, a ``Canvas`` a visual state,
a ``Reflection`` an inspection whose conflicts route to the next refine. The loop
stores images and records timings, so a stage never touches the run folder.

The method's four stages keep their own narrow protocols (``Planner.plan``,
``Drafter.draft``, ``Reflector.reflect``, ``Refiner.refine``), and one object may
implement all four (a unified model sharing its context).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, TypeVar, runtime_checkable

from strokeagent.core.state import (
    Handoff,
    ImageRef,
    Note,
    Plan,
    Reflection,
    Role,
    StageUsage,
    State,
    Step,
    Trajectory,
)

if TYPE_CHECKING:
    from PIL import Image

    from strokeagent.core.store import ArtifactStore

H = TypeVar("H", bound=Handoff)


@dataclass(frozen=True)
class Canvas:
    """An image as a stage sees it and returns it: pixels, the ``meta`` its maker attached,
    the hand-offs it gives (``handoffs_of``), and what making it cost."""

    image: Image.Image
    meta: dict[str, Any] = field(default_factory=dict)
    handoffs: dict[str, Any] = field(default_factory=dict)
    usage: StageUsage | None = None


StageResult = Plan | Canvas | Reflection | Note


@dataclass(frozen=True)
class TrajectoryView:
    """What a stage may read: the trajectory so far, and this call's seed.

    ``seed`` is derived from the run seed, the step, the stage and the round, so a
    stage that draws its randomness from it gives the same bytes whether the run
    went straight through or was resumed.
    """

    trajectory: Trajectory
    step: int
    stage: str
    seed: int
    store: ArtifactStore
    role: Role = "note"

    @property
    def prompt(self) -> str:
        return self.trajectory.prompt

    @property
    def steps(self) -> list[Step]:
        return self.trajectory.steps

    @property
    def current(self) -> Step | None:
        """The step this stage works in (None before a step's first stage has run)."""
        steps = self.trajectory.steps
        return steps[self.step] if self.step < len(steps) else None

    @property
    def states(self) -> list[State]:
        """This step's states so far, in the order they were made."""
        return self.current.states if self.current is not None else []

    @property
    def plan(self) -> Plan | None:
        """This step's plan (the newest, so a user's edit counts), if one was made."""
        return self.current.plan if self.current is not None else None

    @property
    def canvas(self) -> ImageRef | None:
        """The newest image so far (None before the first draft)."""
        return self.trajectory.canvas

    @property
    def reflection(self) -> Reflection | None:
        """What the inspections of this step's newest image found, as one reflection (for a refiner)."""
        return current_reflection(self.current) if self.current is not None else None

    def handoff(self, kind: type[H]) -> H | None:
        """The newest ``kind`` an earlier stage gave, or None (see ``handoffs``)."""
        found = self.handoffs(kind)
        return found[-1] if found else None

    def handoffs(self, kind: type[H]) -> list[H]:
        """Every ``kind`` given so far, oldest first; a state another state of its stage replaced
        later in the same step (a user's edit, a refinement) no longer gives anything."""
        out: list[H] = []
        for step in self.trajectory.steps[: self.step + 1]:
            latest = {s.stage: i for i, s in enumerate(step.states)}
            for i, s in enumerate(step.states):
                data = s.value.handoffs.get(kind.handoff)
                if data is not None and latest[s.stage] == i:
                    out.append(kind.model_validate(data))
        return out

    def open(self, ref: ImageRef) -> Canvas:
        return Canvas(self.store.open(ref), dict(ref.meta), dict(ref.handoffs))


def current_reflection(step: Step) -> Reflection | None:
    """The inspections since ``step``'s newest image, merged; of each stage only its newest counts (a user's edit
    replaces what the stage found)."""
    found: dict[str, Reflection] = {}
    for s in reversed(step.states):
        if isinstance(s.value, ImageRef):
            break
        if isinstance(s.value, Reflection) and s.stage not in found:
            found[s.stage] = s.value
    return merge_reflections(list(reversed(found.values()))) if found else None


def merge_reflections(reflections: Sequence[Reflection]) -> Reflection:
    """Several inspections of one image as one: every conflict, the last correction, the meta lists joined."""
    if len(reflections) == 1:
        return reflections[0]
    meta: dict[str, Any] = {}
    for r in reflections:
        for key, value in r.meta.items():
            meta[key] = [*meta[key], *value] if isinstance(value, list) and isinstance(meta.get(key), list) else value
    corrections = [r.corrected_instruction for r in reflections if r.corrected_instruction]
    return Reflection(
        prompt_conflicts=[c for r in reflections for c in r.prompt_conflicts],
        image_conflicts=[c for r in reflections for c in r.image_conflicts],
        corrected_instruction=" ".join(corrections) if corrections else None,
        ok=all(r.ok for r in reflections),
        done=any(r.done for r in reflections),
        meta=meta,
    )


def stage_seed(run_seed: int, step: int, stage: str, round_: int = 0) -> int:
    """A 63-bit seed for one stage call, stable across processes and resumes."""
    digest = hashlib.sha256(f"{run_seed}:{step}:{stage}:{round_}".encode()).digest()
    return int.from_bytes(digest[:8], "big") >> 1


@runtime_checkable
class Stage(Protocol):
    """Any stage: one async method, ``run``, returning a ``Plan``, ``Canvas``, ``Reflection`` or ``Note``."""

    async def run(self, view: TrajectoryView) -> StageResult: ...


@runtime_checkable
class Planner(Protocol):
    async def plan(self, view: TrajectoryView) -> Plan:
        """Write this step's instruction and the running description; set ``done`` on the last step."""
        ...


@runtime_checkable
class Drafter(Protocol):
    async def draft(self, view: TrajectoryView, plan: Plan) -> Canvas:
        """Draw the plan: from scratch on step 0, else by editing ``view.canvas``."""
        ...


@runtime_checkable
class Reflector(Protocol):
    async def reflect(self, view: TrajectoryView, plan: Plan, image: Canvas) -> Reflection:
        """Check the plan against the prompt and the image against the plan."""
        ...


@runtime_checkable
class Refiner(Protocol):
    async def refine(self, view: TrajectoryView, plan: Plan, image: Canvas, reflection: Reflection) -> Canvas:
        """Fix what the reflection found, and nothing else."""
        ...


@runtime_checkable
class Selector(Protocol):
    """Scores an image stage's samples; the highest score is chosen (ties: the first)."""

    async def scores(self, view: TrajectoryView, candidates: Sequence[Canvas]) -> list[float]: ...


#: The protocol of each method role, and the method it names.
ROLE_PROTOCOLS: dict[str, type] = {"plan": Planner, "draft": Drafter, "reflect": Reflector, "refine": Refiner}
