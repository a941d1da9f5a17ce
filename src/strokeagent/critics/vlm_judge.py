"""The VLM judge: a text head looks at the image and says whether it matches the prompt.

    >>> critic = VlmJudgeCritic(head="backends/qwen2-vl.toml")        # doctest: +SKIP
    >>> (await critic.score(image, "a photo of two red apples")).correct   # doctest: +SKIP
    True

Any ``TextHead`` will do (an OpenAI-compatible server, local transformers, a
scripted double): it gets the image and a checklist, and answers in the
``JudgeAnswer`` schema. With a GenEval row or a scene graph, the checklist
names every object, count, colour and relation; otherwise only the prompt.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from strokeagent.backends.heads import TextHead
from strokeagent.critics import Verdict, Violation, as_canvas

SYSTEM = (
    "You are a strict judge of text-to-image results. Look at the image and decide whether it shows "
    "exactly what the prompt asks: every object, how many, their colours and where they stand. "
    "List each problem as a short sentence."
)


class JudgeAnswer(BaseModel):
    """What the head must answer."""

    correct: bool
    score: float = Field(ge=0.0, le=1.0, description="how well the image matches, 0 to 1")
    violations: list[str] = Field(default_factory=list, max_length=8)


def checklist(prompt: str, scene: Any) -> list[str]:
    """The clauses to check, as sentences: ``["2 × apple, red", "apple left of cup"]``."""
    if scene is None:
        return []
    from strokeagent.critics.canvas import clauses_of

    include, exclude = clauses_of(scene)
    lines = []
    for req in include:
        line = f"{req.get('count', 1)} × {req['class']}" + (f", {req['color']}" if req.get("color") else "")
        if req.get("position"):
            rel, target = req["position"]
            line = f"{req['class']} {rel} {include[target]['class']}"
        lines.append(line)
    lines += [f"fewer than {req['count']} × {req['class']}" for req in exclude]
    return lines


class VlmJudgeCritic:
    """A critic made of a text head: ``VlmJudgeCritic(head=my_head)`` or a backend description path."""

    name = "vlm-judge"

    def __init__(self, head: Any) -> None:
        if isinstance(head, str):
            from strokeagent.backends import load_backend

            head = load_backend(head)
        if not isinstance(head, TextHead):
            raise ValueError(f"{type(head).__name__} is not a text head (it needs `async def chat(...)`)")
        self.head = head

    async def score(self, image: Any, prompt: str, *, scene: Any = None) -> Verdict:
        items = checklist(prompt, scene)
        text = f"Prompt: {prompt}"
        if items:
            text += "\nCheck each of:\n" + "\n".join(f"- {line}" for line in items)
        messages = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": text}]
        answer = await self.head.chat(messages, [as_canvas(image).image], schema=JudgeAnswer)
        problems = [v.strip() for v in answer.violations if v.strip()]
        correct = answer.correct and not problems
        if not correct and not problems:
            problems = ["the judge says the image does not match the prompt"]
        return Verdict(
            critic=self.name,
            correct=correct,
            score=answer.score,
            violations=[Violation(kind="mismatch", message=p) for p in problems],
        )
