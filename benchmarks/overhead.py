"""The framework's own cost: per stage transition, and against stages of known length.

    $ python benchmarks/overhead.py            # ~20 s on 2 cores

Measured on the shapes test doubles (``strokeagent.testing``), streaming the
run with ``astream``:

1. *Per transition*: stages that sleep 0 s. The gap between two stage events,
   minus the time inside the stage, is what the framework spent: LangGraph's
   step, the SQLite checkpoint write, storing the image, validating the state.
   Start-up (opening the checkpoint database, compiling the graph) and finish
   (the film strip, the final files) are reported apart, once per run.
2. *Ratio*: stages that take 100 ms (``delay=0.1``); the whole run's wall time,
   start-up and finish included, over the time spent inside the stages.
3. *Ratio with GPU-sized images*: the shape of ``benchmarks/gpu.py``'s trajectory (3 steps, a
   reflection that fails once a step: 15 stages, 6 images) with a drafter and a refiner that wait
   100 ms in a worker thread, as a GPU call does, and return 512×512 noise, which is what
   random-weight pipelines paint and the slowest image to encode as PNG (about 12 ms here). Its time
   beside the stages is split: the last gap (the wait for the last PNG), the other gaps, start-up and finish.
4. *Eight at once*: eight such trajectories in one process, their drafts and refinements sent to one
   ``MicroBatcher`` (default settings) whose call costs what a GPU's does: 100 ms plus 10 ms per image.
   Images per second against that call's own rate at a batch of eight (44.4/s): how close batching
   across trajectories, and the framework around it, come to the "pipeline". Again with 64² images:
   on a 2-core machine, encoding 48 noise PNGs of 512² is most of what separates the two.

Measured on the project's 2-core machine, 2026-11-26, nothing else running, 7 runs: per transition
1.79-2.21 ms (median 1.90); start-up 9-12 ms; finish 7.5-9 ms; ratio 1.032-1.043, bare LangGraph
1.015-1.020. Goals: under 2 ms per transition (met in 5 of 7 runs), ratio under 1.02 (not met).
2026-11-27, the same machine, this code against the code before images were written off the critical path
and the batcher counted rounds (two runs each, interleaved): gpu.py's trajectory shape 1.167 and 1.167 against
1.392 and 1.411; eight at once 0.525 and 0.543 against 0.364 and 0.359; with 64² images 0.890 and 0.852
against 0.850 and 0.837. Later that day, once the film strip linked its images instead of embedding them (two
runs): per transition 0.52-0.53 ms, start-up 4.3-4.7 ms, finish 3.5-3.8 ms, ratio 1.016-1.017, bare LangGraph
1.009, gpu.py's shape 1.088-1.095, eight at once 0.650-0.651 (0.660-0.665 in two later runs, after the batcher
timed each call on its launcher thread only; not interleaved), with 64² images 0.88-0.90; the film strip alone,
interleaved against the embedding one: gpu.py's shape 1.091 and 1.091 against 1.148 and 1.149. Later still,
the project's own PNG encoder against Pillow's (two runs each, interleaved): gpu.py's shape 1.071 and 1.067
against 1.090 and 1.092; eight at once 0.689 and 0.681 against 0.688 and 0.669. Three runs after it: per transition
0.47-0.49 ms, start-up 3.4-4.5 ms, finish 2.8-3.2 ms, ratio 1.016-1.018, bare LangGraph 1.008-1.012, gpu.py's
shape 1.072-1.082, eight at once 0.661-0.662, with 64² images 0.88-0.91.
Later still, PNGs compressed in pieces on threads (``zlib_stream``), interleaved against the code before
(eight at once alone, three values each, two rounds): 0.738, 0.695, 0.729 and 0.715, 0.677, 0.704 against
0.626, 0.635, 0.605 and 0.633, 0.633, 0.599; the same code with one piece per image 0.641, 0.652, 0.622 and
0.664, 0.658, 0.614, so the pieces are the difference. Three runs after it: per transition 0.54-0.56 ms,
start-up 4.9-6.9 ms, finish 3.8-4.8 ms, ratio 1.017-1.020, bare LangGraph 1.009, gpu.py's shape
1.070-1.092 (the last PNG's wait 12.5-16.5 ms: on two cores the pieces share them with the run), eight at
once 0.719-0.754, with 64² images 0.87-0.89.
Three more after a run's events came to be driven from a task of their own (``_OwnTask``; interleaved
before it, that cost 0.02-0.04 ms a transition): per transition 0.52-0.56 ms, start-up 4.4-5.2 ms, finish
3.5-4.0 ms, ratio 1.018, bare LangGraph 1.009, gpu.py's shape 1.063-1.083, eight at once 0.731-0.755, with 64²
images 0.88-0.90.
After the live trajectory.json moved to the writer thread (8fb1cab) and png_bytes came to join its file once:
eight at once interleaved against the live view written on the event loop (same process, four rounds):
0.775, 0.773, 0.786, 0.786 against 0.731, 0.763, 0.721, 0.768. Three runs of the whole benchmark: per
transition 0.52-0.61 ms, start-up 4.7-5.6 ms, finish 3.6-3.7 ms, ratio 1.017-1.019, bare LangGraph 1.009,
gpu.py's shape 1.064-1.070 (the last PNG's wait 10.3-13.1 ms), eight at once 0.770-0.778, with 64² images
0.87-0.89. Then a new run's checkpoint database came to answer LangGraph's first read itself (start-up
0.8-1.2 ms shorter, interleaved); three runs of that code: per transition 0.50-0.52 ms, start-up 3.9-5.3 ms,
finish 3.6-4.4 ms, ratio 1.018-1.019, bare LangGraph 1.009, gpu.py's shape 1.063-1.081 (the last PNG's wait
11.2-13.3 ms), eight at once 0.751-0.763, with 64² images 0.88-0.89 (the README's table): the same machine gives
eight at once 0.75-0.79 from one set of runs to the next, so compare interleaved figures.
Then the image store came to keep an image's packed bytes (``Pixels``, the ones its digest reads) instead of a
copy of the image, and the PNG encoder to read those bytes in place: one fresh megabyte fewer per image put on the
event loop and one fewer packing on the writer. Two rounds of processes, alternated with the code before (7 runs of
gpu.py's shape, 4 of eight at once, each): beside the stages 31.9 and 34.5 ms against 34.6 and 36.9 (medians);
eight at once 0.800-0.832 against 0.758-0.807. Same PNG bytes and digests (44 images and a palette image hashed
before and after).
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import TypedDict

import numpy as np
from PIL import Image

from strokeagent.backends.image import ImageRequest, MicroBatcher
from strokeagent.core.policy import LoopSpec, Policy
from strokeagent.core.stages import Canvas
from strokeagent.runs.api import agenerate, astream
from strokeagent.testing import test_policy
from strokeagent.testing.doubles import ScriptedPlanner, ScriptedReflector


async def one_run(policy: Policy, out: Path, prompt: str = "benchmark", seed: int = 0) -> dict:
    """One run streamed: its wall time over the time inside its stages, and where the rest went."""
    start = previous = time.perf_counter()
    gaps, first = [], None
    async for event in astream(prompt, policy, seed=seed, out=out):
        now = time.perf_counter()
        if first is None:
            first = now - start - event.seconds
        elif event.seconds:
            gaps.append(now - previous - event.seconds)
        else:  # the last event repeats the last stage, after the run's finishing writes
            finish = now - previous
        previous = now
        traj = event.trajectory
    wall = time.perf_counter() - start
    inside = sum(t.seconds for t in traj.timings)
    return {
        "start": first,  # before the first stage began: the checkpoint database, the graph
        "transition": statistics.median(gaps),  # between two stages, the median
        "transitions": sum(gaps),  # between stages, in all
        "gaps": gaps,  # between stages, each: the one before stage k is gaps[k - 1]
        "finish": finish,  # after the last stage: the final files, the film strip
        "ratio": wall / inside if inside else float("nan"),
        "wall": wall,
        "inside": inside,
        "stages": len(traj.timings),
        "steps": len(traj.steps),
    }


#: What the batched "pipeline" of measurement 4 costs: a fixed part and a part per image, as on a GPU.
CALL_S, PER_IMAGE_S = 0.1, 0.01


def call_seconds(images: int) -> float:
    return CALL_S + PER_IMAGE_S * images


def noise(seed: int, size: int = 512) -> Image.Image:
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8))


class NoisePainter:
    """Draft and refine like a GPU backend: 100 ms in a worker thread, then a seeded 512² noise image.

    With a ``batcher``, the call goes through it instead (a batch of n costs 100 ms + 10 ms per image).
    """

    def __init__(self, batcher: MicroBatcher | None = None, size: int = 512) -> None:
        self.batcher, self.size = batcher, size

    async def _paint(self, seed: int) -> Canvas:
        if self.batcher is not None:
            request = ImageRequest("noise", width=self.size, height=self.size, seed=seed)
            [image] = await self.batcher.submit([request])
            return Canvas(image)
        await asyncio.to_thread(time.sleep, CALL_S)
        return Canvas(noise(seed, self.size))

    async def draft(self, view, plan) -> Canvas:  # noqa: ANN001
        return await self._paint(view.seed)

    async def refine(self, view, plan, image, reflection) -> Canvas:  # noqa: ANN001
        return await self._paint(view.seed)


def gpu_like_call(requests: list[ImageRequest]) -> list[Image.Image]:
    """100 ms + 10 ms per image in all, making the noise included (on a GPU, the pipeline's own output)."""
    end = time.perf_counter() + call_seconds(len(requests))
    images = [noise(r.seed, r.width) for r in requests]
    time.sleep(max(0.0, end - time.perf_counter()))
    return images


def gpu_shaped_policy(batcher: MicroBatcher | None = None, size: int = 512) -> Policy:
    painter = NoisePainter(batcher, size)
    return Policy(
        name="gpu-shaped",
        description="benchmarks/gpu.py's trajectory shape, 100 ms stages in a thread, 512² noise images",
        loop=LoopSpec(order=("plan", "draft", "reflect", "refine"), max_steps=3, max_refines=1, stop="fixed"),
        stages={
            "plan": ScriptedPlanner(3),
            "draft": painter,
            "reflect": ScriptedReflector(1),
            "refine": painter,
        },  # fmt: skip
    )


async def eight_at_once(root: Path, size: int = 512) -> tuple[float, list[int]]:
    """Images per second of eight gpu-shaped trajectories sharing one batcher, over the call's batch-8 rate."""
    batcher = MicroBatcher(gpu_like_call, max_batch=8)
    policy = gpu_shaped_policy(batcher, size)
    start = time.perf_counter()
    runs = (agenerate("benchmark", policy=policy, seed=i, out=root / f"{i}") for i in range(8))
    trajs = await asyncio.gather(*runs)
    seconds = time.perf_counter() - start
    images = sum(len(s.images) for t in trajs for s in t.steps)
    return images / seconds / (8 / call_seconds(8)), batcher.stats.sizes


class FloorState(TypedDict):
    n: int


async def langgraph_floor(delay: float, stages: int) -> float:
    """The same ratio for bare LangGraph: two nodes that only sleep, an in-memory checkpointer, no files.

    What any LangGraph loop pays on this machine; the framework's own cost is the difference.
    """
    from langgraph.checkpoint.memory import InMemorySaver
    from langgraph.graph import END, START, StateGraph

    inside: list[float] = []

    class Sleep:
        async def __call__(self, state: FloorState) -> FloorState:
            start = time.perf_counter()
            await asyncio.sleep(delay)
            inside.append(time.perf_counter() - start)
            return {"n": state["n"] + 1}

    class Route:
        async def __call__(self, state: FloorState) -> str:
            return END if state["n"] >= stages else "a"

    graph = StateGraph(FloorState)
    graph.add_node("a", Sleep())
    graph.add_node("b", Sleep())
    graph.add_edge(START, "a")
    graph.add_edge("a", "b")
    graph.add_conditional_edges("b", Route(), {"a": "a", END: END})
    compiled = graph.compile(checkpointer=InMemorySaver())
    start = time.perf_counter()
    async for _ in compiled.astream(
        {"n": 0}, {"configurable": {"thread_id": "floor"}}, stream_mode="updates"
    ):
        pass
    return (time.perf_counter() - start) / sum(inside)


def main(repeats: int = 5, steps: int = 10) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        shapes = lambda delay, n: test_policy(steps=n, fail_rounds=1, max_refines=1, delay=delay)  # noqa: E731
        asyncio.run(one_run(shapes(0.0, 1), root / "warm-up"))
        fast = [asyncio.run(one_run(shapes(0.0, steps), root / f"fast-{i}")) for i in range(repeats)]
        slow = [asyncio.run(one_run(shapes(0.1, 4), root / f"slow-{i}")) for i in range(3)]
        floor = [asyncio.run(langgraph_floor(0.1, int(slow[0]["stages"]))) for _ in range(3)]
        shaped_runs = [asyncio.run(one_run(gpu_shaped_policy(), root / f"gpu-{i}")) for i in range(repeats)]
        shaped = [r["ratio"] for r in shaped_runs]
        eights = [asyncio.run(eight_at_once(root / f"eight-{i}")) for i in range(3)]
        small = [asyncio.run(eight_at_once(root / f"small-{i}", size=64)) for i in range(3)]

    def med(runs: list[dict[str, float]], key: str) -> float:
        return statistics.median(r[key] for r in runs)

    print(f"python {sys.version.split()[0]}; {steps} steps x 5 stages per run, {repeats} runs (median)")
    print(
        f"per stage transition (LangGraph + checkpoint + image store): {med(fast, 'transition') * 1000:.2f} ms"
    )
    print(
        f"once per run: start-up {med(fast, 'start') * 1000:.1f} ms, finish {med(fast, 'finish') * 1000:.1f} ms"
    )
    print(
        f"whole-run wall / in-stage time, 100 ms stages, {int(slow[0]['stages'])} stages: {med(slow, 'ratio'):.4f}"
    )
    print(
        f"  the same for bare LangGraph (sleeping nodes, in-memory checkpointer): {statistics.median(floor):.4f}"
    )
    print(
        f"the same with gpu.py's trajectory shape and 512² noise images (15 stages, 6 images): "
        f"{statistics.median(shaped):.4f} (runs: {', '.join(f'{r:.4f}' for r in sorted(shaped))})"
    )
    print(
        f"  of which the wait for the last PNG (the last gap): "
        f"{statistics.median(r['gaps'][-1] for r in shaped_runs) * 1000:.1f} ms; the other gaps "
        f"{statistics.median(sum(r['gaps'][:-1]) for r in shaped_runs) * 1000:.1f} ms, start-up and finish "
        f"{statistics.median(r['start'] + r['finish'] for r in shaped_runs) * 1000:.1f} ms (medians)"
    )
    print(
        f"eight of those at once, one batcher, a call of 100 ms + 10 ms an image: "
        f"{statistics.median(r for r, _ in eights):.3f} of the call's batch-8 rate "
        f"(runs: {', '.join(f'{r:.3f}' for r, _ in sorted(eights))}; batches of the median run: "
        f"{sorted(eights)[1][1]})"
    )
    print(
        f"  the same with 64² images (next to no PNG encoding, copying, hashing): "
        f"{statistics.median(r for r, _ in small):.3f} (runs: {', '.join(f'{r:.3f}' for r, _ in sorted(small))})"
    )


if __name__ == "__main__":
    main()
