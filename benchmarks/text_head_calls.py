"""The text head's calls per step, and their cost, against a vLLM server.

    $ python benchmarks/text_head_calls.py --url http://127.0.0.1:8000/v1 --model smollm2
    $ python benchmarks/text_head_calls.py            # starts vLLM on SmolLM2 (CPU) itself

Runs the composite policy's text half (``head.plan``, ``head.reflect``) with the shapes
drafter and refiner (microseconds), so the time measured is the head's. Each prompt is one
run; runs go one after another, then all at once (vLLM batches concurrent requests).
Prints one JSON object: calls per step, seconds per call, and prompts per minute both ways.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
from pathlib import Path

from arguments import positive_int

from strokeagent.backends.openai_head import OpenAIHead
from strokeagent.core.policy import LoopSpec, Policy
from strokeagent.errors import RunError
from strokeagent.kinds.head import HeadPlanner, HeadReflector
from strokeagent.runs.api import agenerate
from strokeagent.testing import ShapesDrafter, ShapesRefiner

PROMPTS = [
    "a red apple left of a blue cup",
    "two dogs below a yellow kite",
    "a green chair right of a black cat",
    "three birds above a white boat",
    "a pink umbrella and a brown bench",
    "an orange clock above a purple vase",
    "a cake left of a knife",
    "a horse below a cloud",
]


class TimedHead(OpenAIHead):
    """The OpenAI head, timing every chat call."""

    def __init__(self, **options) -> None:  # noqa: ANN003
        super().__init__(**options)
        self.seconds: list[float] = []

    async def chat(self, messages, images=(), *, schema):  # noqa: ANN001, ANN201
        started = time.perf_counter()
        try:
            return await super().chat(messages, images, schema=schema)
        finally:
            self.seconds.append(time.perf_counter() - started)


def policy(head: TimedHead, max_steps: int) -> Policy:
    return Policy(
        name="text-head-bench",
        loop=LoopSpec(max_steps=max_steps, max_refines=1),
        stages={
            "plan": HeadPlanner(head),
            "draft": ShapesDrafter(size=64),
            "reflect": HeadReflector(head),
            "refine": ShapesRefiner(),
        },
    )


async def run_all(head: TimedHead, prompts: list[str], max_steps: int, concurrent: bool, out: Path) -> dict:
    head.seconds.clear()
    calls_before = head.calls
    started = time.perf_counter()

    async def one(i: int, prompt: str):  # noqa: ANN202 - a Trajectory, or the error's message
        try:
            return await agenerate(prompt, policy(head, max_steps), seed=i, out=out / f"{concurrent}-{i}")
        except RunError as e:
            return str(e)

    if concurrent:
        outcomes = await asyncio.gather(*(one(i, p) for i, p in enumerate(prompts)))
    else:
        outcomes = [await one(i, p) for i, p in enumerate(prompts)]
    wall = time.perf_counter() - started
    trajectories = [t for t in outcomes if not isinstance(t, str)]
    failures = [t for t in outcomes if isinstance(t, str)]
    steps = sum(len(t.steps) for t in trajectories)
    refines = sum(len(s.refinements) for t in trajectories for s in t.steps)
    return {
        "mode": "concurrent" if concurrent else "sequential",
        "prompts": len(prompts),
        "failed_runs": len(failures),
        "first_failure": failures[0] if failures else None,
        "steps": steps,
        "refines": refines,
        "chat_calls": len(head.seconds),
        "http_requests": head.calls - calls_before,
        "calls_per_step": round(len(head.seconds) / max(steps, 1), 2),
        "seconds_per_call_median": round(statistics.median(head.seconds), 2),
        "seconds_per_call_max": round(max(head.seconds), 2),
        "wall_seconds": round(wall, 1),
        "prompts_per_minute": round(60 * len(prompts) / wall, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", help="a running OpenAI-compatible server; else start vLLM on SmolLM2")
    parser.add_argument("--model", default="smollm2")
    parser.add_argument("--vision", action="store_true", help="the model reads images")
    parser.add_argument("--prompts", type=positive_int, default=4)
    parser.add_argument("--max-steps", type=positive_int, default=3)
    args = parser.parse_args()
    server = None
    url = args.url
    if url is None:
        from strokeagent.backends.smollm2 import smollm2_folder
        from strokeagent.backends.vllm_local import VllmServer, ensure_vllm_venv

        server = VllmServer(smollm2_folder(), served_name=args.model, python=ensure_vllm_venv()).start()
        url = server.base_url
    try:
        head = TimedHead(base_url=url, model=args.model, vision=args.vision, max_tokens=512, timeout=300)
        prompts = PROMPTS[: args.prompts]
        with tempfile.TemporaryDirectory() as tmp:
            results = [
                asyncio.run(run_all(head, prompts, args.max_steps, concurrent, Path(tmp)))
                for concurrent in (False, True)
            ]
        report = {"url": url, "model": args.model, "max_steps": args.max_steps, "runs": results}
        if server is not None:
            report["vllm_startup_seconds"] = round(server.startup_seconds or 0, 1)
        print(json.dumps(report, indent=2))
    finally:
        if server is not None:
            server.stop()


if __name__ == "__main__":
    main()
