"""``critic.reflect``: a reflect stage made from any critic.

    [stages.reflect]
    kind = "critic.reflect"
    critic = "sketch"
"""

from __future__ import annotations

from typing import Any

from strokeagent.core.stages import Canvas, TrajectoryView
from strokeagent.core.state import Plan, Reflection
from strokeagent.critics import build_critic


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
        whole = plan.done or not plan.description or plan.instruction == view.prompt
        target = view.prompt if whole else plan.description
        verdict = await self.critic.score(image, target)
        conflicts = [v.message for v in verdict.violations]
        return Reflection(
            image_conflicts=conflicts,
            corrected_instruction=("fix: " + "; ".join(conflicts)) if conflicts else None,
            ok=verdict.correct,
            meta={"verdict": verdict.model_dump(mode="json"), "judged_against": target},
        )
