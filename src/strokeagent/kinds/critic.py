"""``critic.reflect``: a reflect stage made from any critic.

    [stages.reflect]
    kind = "critic.reflect"
    critic = "sketch"
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from strokeagent.core.stages import Canvas, TrajectoryView
from strokeagent.core.state import Plan, Reflection
from strokeagent.critics import build_critic


def judged_against(view: TrajectoryView, plan: Plan | None) -> str:
    """The whole prompt on the step the planner marks done (or with no planner), else the plan's running
    description (``<des>``): later objects are not drawn yet."""
    if plan is None or plan.done or not plan.description or plan.instruction == view.prompt:
        return view.prompt
    return plan.description


class CriticReflector:
    """The reflect stage made from any critic.

    In a policy file::

        [stages.reflect]
        kind = "critic.reflect"
        critic = { kind = "geneval", detector = "models/detr-resnet-50", clip = "models/clip-vit-l-14" }

    On the step the planner marks done (or with no planner) the image is judged
    against the whole prompt; before that, against the plan's running
    description (``<des>``), since later objects are not drawn yet. Conflicts are
    the critic's violations; the verdict is kept in ``meta["verdict"]``.
    """

    def __init__(self, critic: Any = "sketch") -> None:
        self.critic = build_critic(critic, where="critic.reflect: critic")

    async def reflect(self, view: TrajectoryView, plan: Plan, image: Canvas) -> Reflection:
        target = judged_against(view, plan)
        verdict = await self.critic.score(image, target)
        conflicts = [v.message for v in verdict.violations]
        return Reflection(
            image_conflicts=conflicts,
            corrected_instruction=("fix: " + "; ".join(conflicts)) if conflicts else None,
            ok=verdict.correct,
            meta={"verdict": verdict.model_dump(mode="json"), "judged_against": target},
        )


class CriticSelector:
    """Picks among an image stage's samples with any critic: the highest verdict score wins.

        [stages.draft]
        kind = "sketch.draft"
        samples = 4
        select = { kind = "critic", critic = "sketch" }

    Each sample is judged against what ``CriticReflector`` judges it against (the whole
    prompt on the last step, else the plan's running description).
    """

    def __init__(self, critic: Any = "sketch") -> None:
        self.critic = build_critic(critic, where="select: critic")

    async def scores(self, view: TrajectoryView, candidates: Sequence[Canvas]) -> list[float]:
        target = judged_against(view, view.plan)
        return [(await self.critic.score(c, target)).score for c in candidates]
