"""The typed state of one process-driven generation.

    >>> plan = Plan(instruction="draw a red apple on the left", description="a red apple")
    >>> step = Step(index=0, states=[State(stage="plan", value=plan)])
    >>> Trajectory(prompt="a red apple", seed=0, steps=[step]).current_step.plan.instruction
    'draw a red apple on the left'

One trajectory is ``s1, v1, s2, v2, ... vK`` in the paper's terms: text states
(``Plan``, ``Reflection``, ``Note``) and visual states (``ImageRef``), interleaved
in the order the stages made them, grouped into ``Step``s. Every ``State`` names
the stage that made it (``plan``, ``draft``, or any stage a user added) and who
wrote it (a stage, the loop, or a user's edit at a pause). Images never live here
as pixels: an ``ImageRef`` names a PNG in the run's content-addressed store, so
the state stays small enough to checkpoint after every stage.

What one stage hands to a later one (a scene graph, a layout) is a *typed
hand-off*: a pydantic model with a ``handoff`` name, carried in the ``handoffs``
of the state that gives it and read back with ``TrajectoryView.handoff(Type)``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

#: The method's four stages; any other stage name is a user's.
METHOD_STAGES: tuple[str, ...] = ("plan", "draft", "reflect", "refine")
#: What a stage is to the loop: it plans, draws, inspects, fixes what an inspection found, or notes.
Role = Literal["plan", "draft", "reflect", "refine", "note"]
ROLES: tuple[Role, ...] = ("plan", "draft", "reflect", "refine", "note")


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class StageUsage(_Frozen):
    """What one stage call cost: tokens through a model, denoising steps of an image model.

    A stage reports it with its result (``Plan(..., usage=StageUsage(...))``); the loop
    records it in the stage's ``StageTiming``.
    """

    prefilled_tokens: int = Field(default=0, ge=0)
    generated_tokens: int = Field(default=0, ge=0)
    denoising_steps: int = Field(default=0, ge=0)


class Handoff(_Frozen):
    """A typed value one stage gives to later ones. Subclasses set ``handoff``, their name in the trajectory."""

    handoff: ClassVar[str] = ""


def handoffs_of(*values: BaseModel) -> dict[str, Any]:
    """The ``handoffs`` of a result that gives ``values``: ``Plan(..., handoffs=handoffs_of(scene, increment))``."""
    out = {}
    for v in values:
        name = getattr(type(v), "handoff", "")
        if not name:
            raise TypeError(f"{type(v).__name__} is not a hand-off type (it needs a `handoff` name)")
        out[name] = v.model_dump(mode="json")
    return out


class ImageRef(_Frozen):
    """A PNG in the artifact store, by the SHA-256 of its pixels (``strokeagent.core.store.pixel_digest``).

    ``meta`` is small JSON that the stage which made the image attaches to it
    (the stroke canvas keeps its document there); it plays no part in the address.
    """

    type: Literal["image"] = "image"
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    width: int = Field(gt=0)
    height: int = Field(gt=0)
    meta: dict[str, Any] = Field(default_factory=dict)
    handoffs: dict[str, Any] = Field(default_factory=dict)

    @property
    def filename(self) -> str:
        return f"{self.sha256}.png"


class Plan(_Frozen):
    """The paper's ``<ins>`` and ``<des>``: what to do now, and the whole scene so far.

    ``done`` means this step completes the scene: the loop ends after it (under
    the ``planner`` stop rule). ``notes`` is what the planner dropped or changed
    from the prompt; the loop copies them into ``Trajectory.notes``.
    """

    type: Literal["plan"] = "plan"
    instruction: str
    description: str = ""
    done: bool = False
    notes: list[str] = Field(default_factory=list)
    meta: dict[str, Any] = Field(default_factory=dict)
    handoffs: dict[str, Any] = Field(default_factory=dict)
    usage: StageUsage | None = None


class Reflection(_Frozen):
    """The paper's Inspect: the plan checked against the prompt, the image against the plan.

    ``ok`` is true when both checks pass; otherwise ``corrected_instruction`` says
    what a refiner should do. ``done`` says the picture is complete: a unified
    model decides to stop after its inspection, so the loop ends after this step
    (under the ``planner`` stop rule) instead of asking for one more plan.
    """

    type: Literal["reflection"] = "reflection"
    prompt_conflicts: list[str] = Field(default_factory=list)
    image_conflicts: list[str] = Field(default_factory=list)
    corrected_instruction: str | None = None
    ok: bool = True
    done: bool = False
    meta: dict[str, Any] = Field(default_factory=dict)
    handoffs: dict[str, Any] = Field(default_factory=dict)
    usage: StageUsage | None = None

    @property
    def conflicts(self) -> list[str]:
        return [*self.prompt_conflicts, *self.image_conflicts]


class Note(_Frozen):
    """A text state that is neither a plan nor an inspection: a critique, a layout, a remark."""

    type: Literal["note"] = "note"
    text: str
    meta: dict[str, Any] = Field(default_factory=dict)
    handoffs: dict[str, Any] = Field(default_factory=dict)
    usage: StageUsage | None = None


Value = Annotated[Plan | Reflection | Note | ImageRef, Field(discriminator="type")]


class Candidate(_Frozen):
    """One of the samples an image stage drew; ``chosen`` is the one the trajectory goes on with."""

    image: ImageRef
    score: float
    chosen: bool = False
    why: str = ""


class State(_Frozen):
    """One text or visual state, tagged with the stage that made it and who wrote it."""

    stage: str
    value: Value
    by: Literal["stage", "loop", "user"] = "stage"
    candidates: list[Candidate] = Field(default_factory=list)


class Step(_Frozen):
    """One step: its states in the order they were made (a plan, a draft, inspections, refinements...)."""

    index: int = Field(ge=0)
    states: list[State] = Field(default_factory=list)

    @model_validator(mode="before")
    @classmethod
    def _from_fixed_slots(cls, data: Any) -> Any:
        """Read the fixed-slot layout of run folders written before states (``plan``, ``images``, ``reflections``)."""
        if not isinstance(data, dict) or not ({"plan", "images", "reflections"} & set(data)):
            return data
        data = dict(data)
        plan, images, reflections = data.pop("plan", None), data.pop("images", []), data.pop("reflections", [])
        def typed(value: Any, kind: str) -> Any:
            return {"type": kind, **value} if isinstance(value, dict) else value

        states: list[Any] = [] if plan is None else [{"stage": "plan", "value": typed(plan, "plan")}]
        for i, image in enumerate(images):
            states.append({"stage": "draft" if i == 0 else "refine", "value": typed(image, "image")})
            if i < len(reflections):
                states.append({"stage": "reflect", "value": typed(reflections[i], "reflection")})
        data["states"] = [*states, *data.get("states", [])]
        return data

    def values(self, kind: type[Any]) -> list[Any]:
        return [s.value for s in self.states if isinstance(s.value, kind)]

    @property
    def plan(self) -> Plan | None:
        """The step's plan: the newest, so a user's edit replaces the planner's."""
        plans = self.values(Plan)
        return plans[-1] if plans else None

    @property
    def images(self) -> list[ImageRef]:
        return self.values(ImageRef)

    @property
    def reflections(self) -> list[Reflection]:
        return self.values(Reflection)

    @property
    def notes(self) -> list[Note]:
        return self.values(Note)

    @property
    def draft(self) -> ImageRef | None:
        return self.images[0] if self.images else None

    @property
    def refinements(self) -> list[ImageRef]:
        return self.images[1:]

    @property
    def image(self) -> ImageRef | None:
        """The step's latest image: the last refinement, else the draft."""
        return self.images[-1] if self.images else None


class StageTiming(_Frozen):
    step: int
    stage: str
    seconds: float
    # What the stage reported with its result; None when it reported nothing.
    prefilled_tokens: int | None = None
    generated_tokens: int | None = None
    denoising_steps: int | None = None
    samples: int = 1


class Trajectory(_Frozen):
    """A whole run: the prompt, every step, the final image, timings and versions."""

    prompt: str
    seed: int
    steps: list[Step] = Field(default_factory=list)
    final_image: ImageRef | None = None
    timings: list[StageTiming] = Field(default_factory=list)
    versions: dict[str, str] = Field(default_factory=dict)
    policy: str = ""
    notes: list[str] = Field(default_factory=list)  # what the run dropped or changed from the prompt
    run_dir: str | None = None  # the run folder whose images/ holds every ImageRef

    def open_image(self, ref: ImageRef):  # -> PIL.Image.Image
        """The pixels of ``ref`` from this run's folder: ``traj.open_image(traj.final_image)``."""
        from PIL import Image

        if self.run_dir is None:
            raise ValueError("this trajectory has no run folder; its images cannot be opened")
        with Image.open(Path(self.run_dir) / "images" / ref.filename) as im:
            im.load()
            return im.copy()

    @property
    def current_step(self) -> Step | None:
        return self.steps[-1] if self.steps else None

    @property
    def canvas(self) -> ImageRef | None:
        """The newest image of the whole trajectory, which the next stage builds on."""
        for step in reversed(self.steps):
            if step.image is not None:
                return step.image
        return None

    def stage_seconds(self) -> dict[str, float]:
        """Total seconds spent inside each stage."""
        totals: dict[str, float] = {}
        for t in self.timings:
            totals[t.stage] = totals.get(t.stage, 0.0) + t.seconds
        return totals

    def denoising_steps(self) -> int:
        """Denoising steps spent on this trajectory's final image, every sample and refinement counted."""
        return sum(t.denoising_steps or 0 for t in self.timings)
