"""One bench sample: a (prompt, policy, seed) run in its own folder, resumed if it was cut short, then judged.

The local bench (``runner``) and the Ray bench (``cluster``) run samples with this same code, so their
records are the same.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from strokeagent.core.policy import Policy
from strokeagent.core.stages import Canvas
from strokeagent.critics import Critic, build_critic
from strokeagent.errors import BenchError
from strokeagent.scene.geneval import SuiteItem


@dataclass(frozen=True)
class Sample:
    index: int  # row of the suite
    policy: Policy
    seed: int
    item: SuiteItem

    @property
    def key(self) -> str:
        return f"{self.policy.name}/{self.index:05d}-s{self.seed}"

    @property
    def run_seed(self) -> int:
        """The run's seed: its own per row. One seed for every prompt would put every prompt's
        random drafting mistakes on the same draws, and the rows would not be independent samples."""
        return self.seed * 1_000_003 + self.index



def finished(run_dir: Path) -> bool:
    try:
        return json.loads((run_dir / "run.json").read_text()).get("status") == "finished"
    except (OSError, json.JSONDecodeError):
        return False


async def _trajectory(sample: Sample, run_dir: Path) -> Any:
    """The finished trajectory of a sample's run: read, resumed, or run from the start."""
    from strokeagent.runs.api import RunFolder, agenerate, aresume_to_end

    if finished(run_dir):
        return RunFolder.open(run_dir).read_trajectory()
    if (run_dir / "run.json").is_file():
        # Killed, failed or paused: go on from its checkpoint (or from run.json, if it had none). A run that
        # fails again keeps every image it made; the bench records the failure.
        return await aresume_to_end(run_dir, policy=sample.policy)
    if run_dir.exists():
        shutil.rmtree(run_dir)  # killed before it wrote run.json: no stage had run, nothing was made
    run_dir.parent.mkdir(parents=True, exist_ok=True)
    return await agenerate(sample.item.prompt, sample.policy, seed=sample.run_seed, out=run_dir)


class Judge:
    """The bench's critic; ``auto`` picks the sketch critic and refuses other images with advice."""

    def __init__(self, critic: Any) -> None:
        self.auto = critic == "auto"
        self.critic: Critic = build_critic("sketch" if self.auto else critic, where="--critic")

    async def __call__(self, canvas: Canvas, item: SuiteItem) -> Any:
        from strokeagent.critics.sketch import is_sketch

        if self.auto and not is_sketch(canvas):
            raise BenchError(
                "this policy's images are not stroke canvases, so the sketch critic cannot judge them; "
                "pass --critic geneval --detector MODEL_DIR --clip CLIP_DIR (or another critic)"
            )
        # Prompt lists carry no clauses: the critic reads the prompt itself.
        return await self.critic.score(canvas, item.prompt, scene=item if item.include else None)


async def run_sample(sample: Sample, out: Path, judge: Judge) -> dict[str, Any]:
    run_dir = out / "runs" / sample.key
    traj = await _trajectory(sample, run_dir)
    if traj.final_image is None:
        raise BenchError(f"the run in {run_dir} finished without a final image")
    from strokeagent.core.store import ArtifactStore

    canvas = Canvas(ArtifactStore(run_dir / "images").open(traj.final_image), dict(traj.final_image.meta))
    verdict = await judge(canvas, sample.item)
    stage_seconds = traj.stage_seconds()
    return {
        "key": sample.key,
        "policy": sample.policy.name,
        "index": sample.index,
        "seed": sample.seed,
        "run_seed": sample.run_seed,
        # GenEval's own fields, so its summary script reads this file too.
        "filename": f"runs/{sample.key}/final.png",
        "tag": sample.item.tag,
        "prompt": sample.item.prompt,
        "correct": verdict.correct,
        "reason": verdict.reason,
        "metadata": sample.item.to_json(),
        "score": verdict.score,
        "violations": [v.kind for v in verdict.violations],
        "critic": verdict.critic,
        "steps": len(traj.steps),
        "refines": sum(len(step.refinements) for step in traj.steps),
        "stage_seconds": {k: round(v, 6) for k, v in stage_seconds.items()},
        "seconds": round(sum(stage_seconds.values()), 6),
    }
