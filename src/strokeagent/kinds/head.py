"""The text half of the composite policy: a text head plans and reflects.

    [stages.plan]
    kind = "head.plan"
    backend = "../backends/vllm-qwen2.5-vl.toml"

    [stages.reflect]
    kind = "head.reflect"
    backend = "../backends/vllm-qwen2.5-vl.toml"   # the same file: one head, loaded once

Any ``TextHead`` works (``strokeagent.backends.heads``): an OpenAI-compatible server, a local
transformers model, a scripted double. The head fills small schemas with bounded
lengths (``PlanAnswer``, ``ReflectAnswer``; small models loop without bounds), and
the stages turn them into a ``Plan`` and a ``Reflection``. Every prompt the head
sees is written in this module, below. A head that sees images (``vision``) gets the
current canvas; one that does not is told so, and its image check stays empty.
"""

from __future__ import annotations

import inspect
from typing import Annotated, Any

from pydantic import BaseModel, Field

from strokeagent.backends import load_backend
from strokeagent.backends.heads import TextHead
from strokeagent.core.stages import Canvas, TrajectoryView
from strokeagent.core.state import Plan, Reflection
from strokeagent.errors import PolicyError

MAX_CONFLICTS = 3
Conflict = Annotated[str, Field(max_length=80)]  # every string bounded, or a small model can loop in one


class PlanAnswer(BaseModel):
    """What the head writes to plan a step (the paper's ``<ins>`` and ``<des>``)."""

    instruction: str = Field(min_length=1, max_length=120, description="what to add or change now")
    description: str = Field(min_length=1, max_length=200, description="the whole picture after this step")
    done: bool = Field(description="true when this step completes everything the prompt asks for")


class ReflectAnswer(BaseModel):
    """What the head writes to inspect a step: the plan against the prompt, the image against the plan."""

    prompt_conflicts: list[Conflict] = Field(default_factory=list, max_length=MAX_CONFLICTS)
    image_conflicts: list[Conflict] = Field(default_factory=list, max_length=MAX_CONFLICTS)
    corrected_instruction: str = Field(default="", max_length=120)
    ok: bool = True


# -- the prompts ----------------------------------------------------------------

PLAN_SYSTEM = (
    "You plan a picture the way a painter works: one small step at a time, each step building on "
    "the picture as it stands. Write the next step: 'instruction' says what to add or change now "
    "(one short sentence); 'description' describes the whole picture after this step; 'done' is "
    "true when, after this step, the picture has everything the prompt asks for. "
    "Answer only with the JSON object."
)

REFLECT_SYSTEM = (
    "You inspect a picture that is being painted step by step. Make two checks. First, the plan "
    "against the prompt: list in 'prompt_conflicts' what the plan gets wrong or leaves out that "
    "the prompt asks for in this step. Second, the image against the instruction: list in "
    "'image_conflicts' what the image gets wrong (missing objects, wrong colours, counts or "
    "positions). Each conflict is one short phrase. If there is any conflict, set 'ok' to false "
    "and write in 'corrected_instruction' one sentence that fixes it; otherwise set 'ok' to true "
    "and leave the lists empty. Answer only with the JSON object."
)

BLIND_NOTE = "You cannot see the image: make only the first check and leave 'image_conflicts' empty."


def plan_messages(view: TrajectoryView, sees_canvas: bool) -> list[dict[str, Any]]:
    lines = [f"Prompt: {view.prompt}", f"This is step {view.step + 1}."]
    done = [s.plan for s in view.steps[: view.step] if s.plan is not None]
    if done:
        lines.append("Steps so far:")
        lines += [f"{i}. {p.instruction}" for i, p in enumerate(done, 1)]
        lines.append(f"The picture now: {done[-1].description}")
    else:
        lines.append("Nothing is drawn yet.")
    if sees_canvas:
        lines.append("The attached image is the picture as it stands.")
    lines.append("Write the next step.")
    return [{"role": "system", "content": PLAN_SYSTEM}, {"role": "user", "content": "\n".join(lines)}]


def reflect_messages(view: TrajectoryView, plan: Plan, sees_image: bool) -> list[dict[str, Any]]:
    system = REFLECT_SYSTEM if sees_image else f"{REFLECT_SYSTEM} {BLIND_NOTE}"
    lines = [
        f"Prompt: {view.prompt}",
        f"Step {view.step + 1} instruction: {plan.instruction}",
        f"The picture should now show: {plan.description or plan.instruction}",
    ]
    if sees_image:
        lines.append("The attached image is what was painted.")
    lines.append("Inspect it.")
    return [{"role": "system", "content": system}, {"role": "user", "content": "\n".join(lines)}]


# -- the stages -----------------------------------------------------------------


def _head(backend: Any, kind: str) -> TextHead:
    """A head object, or the backend description (a file, or a bundled name) that builds one."""
    head = load_backend(backend) if isinstance(backend, str) else backend
    chat = getattr(head, "chat", None)
    if not isinstance(head, TextHead) or not inspect.iscoroutinefunction(chat):
        raise PolicyError(
            f"{kind}: backend {backend!r} gives a {type(head).__name__}, which is not a text head "
            "(it needs `async def chat(messages, images, *, schema)`)"
        )
    return head


def _sees_images(head: Any) -> bool:
    return bool(getattr(head, "vision", True))


class HeadPlanner:
    """``head.plan``: the head writes each step's instruction, the running description, and ``done``.

    ``show_canvas`` sends the current picture along (when the head sees images).
    """

    def __init__(self, backend: Any, show_canvas: bool = True) -> None:
        self.head = _head(backend, "head.plan")
        self.show_canvas = show_canvas

    async def plan(self, view: TrajectoryView) -> Plan:
        images = []
        if self.show_canvas and _sees_images(self.head) and view.canvas is not None:
            images = [view.open(view.canvas).image]
        answer = await self.head.chat(plan_messages(view, bool(images)), images, schema=PlanAnswer)
        answer = PlanAnswer.model_validate(answer.model_dump())  # a foreign schema class is re-checked
        instruction = " ".join(answer.instruction.split()) or view.prompt
        return Plan(
            instruction=instruction,
            description=" ".join(answer.description.split()) or instruction,
            done=answer.done,
            meta={"head": str(self.head)},
        )


class HeadReflector:
    """``head.reflect``: the head checks the plan against the prompt and the image against the plan.

    The conflicts are the evidence: the reflection is ok exactly when none is listed
    (a head that says "not ok" but names nothing is noted in ``meta``). A conflict
    without a corrected instruction asks the refiner to redo the step's instruction.
    """

    def __init__(self, backend: Any) -> None:
        self.head = _head(backend, "head.reflect")

    async def reflect(self, view: TrajectoryView, plan: Plan, image: Canvas) -> Reflection:
        sees = _sees_images(self.head)
        answer = await self.head.chat(
            reflect_messages(view, plan, sees), [image.image] if sees else [], schema=ReflectAnswer
        )
        answer = ReflectAnswer.model_validate(answer.model_dump())
        prompt_conflicts = _clean(answer.prompt_conflicts)
        image_conflicts = _clean(answer.image_conflicts) if sees else []
        ok = not (prompt_conflicts or image_conflicts)
        corrected = " ".join(answer.corrected_instruction.split()) or None
        meta: dict[str, Any] = {"head": str(self.head)}
        if ok != answer.ok:
            meta["head_said_ok"] = answer.ok
        return Reflection(
            prompt_conflicts=prompt_conflicts,
            image_conflicts=image_conflicts,
            corrected_instruction=None if ok else corrected or plan.instruction,
            ok=ok,
            meta=meta,
        )


def _clean(items: list[str]) -> list[str]:
    return list(dict.fromkeys(" ".join(i.split()) for i in items if i.strip()))
