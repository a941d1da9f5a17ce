"""Speed on a GPU: the framework's figures at real model sizes, random weights, one process, one JSON object.

    $ python benchmarks/gpu.py                       # SD 1.5-sized pipeline and Janus-Pro-1B-sized model, cuda
    $ python benchmarks/gpu.py --tiny --device cpu   # the same code on the tiny test models (CPU, < 2 min)
    $ python benchmarks/gpu.py --profile prof/      # also where each part's time goes (torch.profiler tables)

On a bare GPU machine (torch and transformers only), install what it needs from the wheels that
``benchmarks/gpu_wheels.sh`` downloads first; that script prints the command.

Every model is built from a config with random weights (nothing is downloaded), saved to a temporary
folder and loaded by path through the project's own loading code, as a real checkpoint would be:

- Stable Diffusion 1.5's shapes (UNet 320/640/1280/1280, cross-attention 768; VAE 128/256/512/512;
  CLIP text encoder 768 × 12 layers), float16 on a GPU, 512×512, ``--steps`` steps (20; issue 16 measured at 30:
  ``--steps 30 --skip-unified`` measures the diffusion figures so; the whole run at 30 would take about 20 s
  more than at 20, estimated from the parts of an H200 run at 20, too close to its 6 minutes).
- Janus-Pro-1B's shapes (``benchmarks/context_reuse.py``), bfloat16 on a GPU, 384×384, 576 image tokens.

Measured, in this order (``--tiny``: the tiny pipelines and Janus of ``strokeagent.testing``, 64×64, 4 steps):

``backend_batched_vs_raw``
    Eight text-to-image requests sent at once to ``DiffusersBackend`` (micro-batched into one call), images per
    second, over diffusers' own pipeline called on a batch of eight (best of ``--repeats`` each; the backend
    converts pictures on the device where diffusers' default does it on the CPU, so above 1.0 can happen). Where a gap
    lies, in ``backend``: the backend's own call without the batcher (``backend_run_direct_s``), diffusers'
    call on the batcher's launcher thread (``raw_on_launcher_thread_s``) and once on a thread that never
    ran the pipeline (``raw_on_new_thread_s``: PyTorch's cuDNN execution plans and cuBLAS handles are per
    thread, and the batches used to run on each event loop's own worker threads). What ``independent = true``
    costs (each request its own call, so that its bytes never depend on its neighbours): the same eight
    requests as eight calls (``independent_8_s``), over the backend's one call (``independent_vs_batched``).
    What encoding image-to-image's eight init images in one VAE call saves: the backend's call of eight
    image-to-image requests at strength 0.5 as it runs on a GPU (``image_to_image_8_s``) and with each init
    image encoded in a call of its own, as diffusers' pipeline does when each image has its own generator and the
    backend does on the CPU (``image_to_image_8_encoding_one_by_one_s``), and how far apart their pixels are
    (``image_to_image_encode_largest_pixel_difference``, 0-255). (Channels-last weights, measured here in
    runs 5 and 6 at 0.919x and 0.926x the default's speed, were rejected and are no longer timed.)
``trajectory_ratio``
    One trajectory's wall time over the time inside its stages: ``sketch.plan``, ``diffusion.draft`` (text to
    image, then image to image), a scripted reflect that fails once a step, ``diffusion.refine``
    (image to image); 3 steps. 1.0 would be no framework cost at all. The median of three runs; each run's
    ratio and milliseconds beside its stages are in ``trajectories`` (``trajectory_ratios``,
    ``trajectory_beside_ms``). Where the rest went, for the median run, in ``trajectories``: before the first
    stage, between stages, after the last (``trajectory_*_s``); from the same trajectory run again untimed, what storing each image took on the event loop
    (``trajectory_image_put_ms``, in the gap after its stage) and its PNG on the writer thread
    (``trajectory_png_ms``: the last is the run's last wait).
``concurrent_vs_raw``
    Eight such trajectories at once in one process (their requests micro-batched), after eight others warmed
    the shapes they batch: denoising steps per second, counted from the trajectories, over diffusers'
    batch-of-8 image-steps per second (text to image at ``--steps``; the trajectories run image to image at
    fewer steps, whose fixed costs, the VAE's encode and decode, weigh more per step). In ``trajectories``:
    each batch's size, wait and run, the device's idle time between calls (``concurrent_gaps_ms``), and
    ``concurrent_vs_same_calls``: the same pipeline calls made one after another with no trajectory around
    them, over the eight trajectories' wall time (1.0: the framework costs nothing beside the calls).
``unified_image_tokens_per_s``
    ``JanusModel.generate_image`` with classifier-free guidance (5.0): image tokens per second, one image at a
    time, in the fastest of the ``decode`` modes timed (``--decode``; by default ``dynamic`` and ``static`` on
    a CPU, ``compiled`` on cuda, ``dynamic`` too if it fails), which ``unified.unified_image_decode`` names. Each mode's own figure is in
    ``unified.unified_image_tokens_per_s_by_decode``; the warm-up image's seconds (with ``compiled``, its
    compile) in ``unified.unified_image_first_s``, and before it ``compiled``'s first step alone (the compile,
    without the CUDA graphs the warm-up image records) in ``unified.unified_image_compile_s``; a mode that failed,
    in ``unified.unified_image_errors``.
``unified_text_tokens_per_s``
    ``JanusModel.generate_text`` from the prompt, greedy, no stop string, up to 64 tokens: tokens per second
    (``unified.unified_text_tokens`` says how many it wrote: a random model may open an image or end early), in
    the fastest of ``dynamic`` and the modes that painted (``unified.unified_text_decode``; each mode's figure
    in ``unified.unified_text_tokens_per_s_by_decode``, its first call, with ``compiled`` its compile, in
    ``unified.unified_text_first_s``). ``unified.unified_text_tokens_per_s_long_context``: the same after two
    images (about 1,170 tokens of context at Janus-Pro-1B size), as the process run's plans and reflections write
    (``unified.unified_text_long_context_tokens`` of them).
``transformers_text_tokens_per_s``
    transformers' own ``generate`` from the same prompt ids, greedy, exactly 64 new tokens.
``transformers_image_tokens_per_s``
    transformers' own ``generate(..., generation_mode="image", do_sample=True, guidance_scale=5.0)`` from the
    same prompt and ``<begin_of_image>``, and its ``decode_image_tokens``: one image (``--images``).
``unified_image_vs_transformers``
    ``unified_image_tokens_per_s`` over ``transformers_image_tokens_per_s``: above 1.0 is faster than
    transformers (ours also turns the pixels into a PIL image; theirs stops at the decoded tensor).
``unified_prefill_saved``
    The process policy over 3 steps with the shared KV context: the share of prefill it saves against
    re-encoding the trajectory in every stage (counted from the run's recorded usage, as context_reuse.py
    prints it as "re-encode by count"; ``--tiny`` also runs the re-encoding and checks the two agree).
    It paints in the fastest decode mode (``unified.unified_process_decode``) and writes in the fastest text
    mode (``unified.unified_process_text_decode``): the counts do not depend on the modes, the run's seconds do.
    Text's compile costs about what the image step's did; where that would pass ``--within``, text is timed
    and written in the plain loop only (named in ``skipped``). ``unified.unified_shared_calls`` lists its stage calls in order.
``unified.compiled_text_vs_eager``, ``unified.compiled_image_vs_eager``
    With ``compiled`` among the modes: its text and image steps against the same steps run eagerly, fed the
    same tokens for 16 steps, the largest difference of the logits over the largest logit. Random weights paint
    noise either way; this says the CUDA graphs keep the static cache right. For scale, ``left_behind_*``: the
    same for an eager step whose cache updates are undone.
``unified.sampling_on_device_ms``, ``unified.sampling_on_cpu_ms``, ``unified.sampling_on_cpu_one_thread_ms``
    Choosing one sampled text token where the logits are (as ``generate_text`` does) and after copying them
    to the CPU (as it did until 2026-11-27), there with torch's CPU threads as they are and with one.
``unified.convolutions_model_thread_s``, ``unified.convolutions_new_thread_s``
    Janus's convolutions (a VQ decode and the vision encoder reading the result) on the model's own, warm
    thread and on a thread that never ran the model: what a call pays for the GPU state that belongs to a
    thread (PyTorch's cuDNN execution plans, cuBLAS handles).

With ``--profile FOLDER``, each part runs once more under ``torch.profiler`` after it is timed, one table per
part: ``backend-raw``, ``backend-concurrent``, ``trajectory``, ``concurrent-call`` (one of the eight's
image-to-image calls, with the time inside the text encoder, the UNet and the VAE's encode and decode: where a
call's fixed cost goes), and ``janus-image``, ``janus-text-prompt``, ``janus-text-long`` (within ``--within``).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import os
import platform
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

from arguments import positive_int, torch_device

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("DIFFUSERS_VERBOSITY", "error")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")

PROMPT = "a red apple left of a blue cup, a green ball on the right"
PROMPT_TEXT = f"<prompt>{PROMPT}</prompt>"  # the prompt in the process format's tags
BATCH = 8
TEXT_TOKENS = 64
TRAJECTORY_RUNS = 3  # the single trajectory's ratio is the median of these


def host_cpus(torch) -> dict:  # noqa: ANN001
    """The CPUs this process may use: a launch-bound GPU loop shares them with torch's CPU threads, which
    spin-wait after each CPU operator; a container's quota below its visible cores would show here."""
    quota = None
    for path in ("/sys/fs/cgroup/cpu.max", "/sys/fs/cgroup/cpu/cpu.cfs_quota_us"):
        try:
            quota = Path(path).read_text().strip()
            break
        except OSError:
            continue
    affinity = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
    return {"visible": os.cpu_count(), "affinity": affinity, "cgroup_quota": quota,
            "torch_threads": torch.get_num_threads()}  # fmt: skip


def log(message: str) -> None:
    print(f"[gpu.py {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# -- building the models ------------------------------------------------------------------------------


def sd15_components(device: str):  # -> dict of SD 1.5-shaped components, random weights
    import torch
    from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    from strokeagent.testing.diffusers import tiny_clip_tokenizer

    tokenizer = tiny_clip_tokenizer()  # a small vocabulary; the encoder keeps SD 1.5's 49408 rows
    torch.manual_seed(0)
    with torch.device(device):  # random init where the weights will run: seconds, not a minute on the CPU
        unet = UNet2DConditionModel(sample_size=64, cross_attention_dim=768, attention_head_dim=8)
        vae = AutoencoderKL(
            block_out_channels=[128, 256, 512, 512],
            down_block_types=["DownEncoderBlock2D"] * 4,
            up_block_types=["UpDecoderBlock2D"] * 4,
            layers_per_block=2,
            latent_channels=4,
            sample_size=512,
        )
        text_encoder = CLIPTextModel(
            CLIPTextConfig(
                bos_token_id=tokenizer.bos_token_id,
                eos_token_id=tokenizer.eos_token_id,
                pad_token_id=tokenizer.pad_token_id,
                hidden_size=768,
                intermediate_size=3072,
                num_attention_heads=12,
                num_hidden_layers=12,
                vocab_size=49408,
                max_position_embeddings=77,
                projection_dim=768,
            )
        )
    scheduler = DDIMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                              clip_sample=False, set_alpha_to_one=False, steps_offset=1)  # fmt: skip
    return {"unet": unet, "vae": vae, "text_encoder": text_encoder, "tokenizer": tokenizer,
            "scheduler": scheduler, "safety_checker": None, "feature_extractor": None}  # fmt: skip


def build_sd(tiny: bool, device: str, folder: Path) -> Path:
    from diffusers import StableDiffusionPipeline

    from strokeagent.testing.diffusers import save_tiny_sd

    if tiny:
        return save_tiny_sd(folder)
    import torch

    pipe = StableDiffusionPipeline(**sd15_components(device), requires_safety_checker=False)
    pipe.to(torch.float16).save_pretrained(folder, safe_serialization=True)
    del pipe
    return folder


def sd_description(folder: Path, path: Path, device: str, dtype: str) -> Path:
    """A ``kind = "diffusers"`` backend description of the pipeline in ``folder``, on ``device`` in ``dtype``,
    batching up to eight requests (on the CPU with one torch thread)."""
    threads = "threads = 1\n" if device == "cpu" else ""
    path.write_text(f'kind = "diffusers"\nmodel = "{folder.as_posix()}"\ndtype = "{dtype}"\n'
                    f'device = "{device}"\nmax_batch = {BATCH}\n{threads}', encoding="utf-8")  # fmt: skip
    return path


def janus_description(folder: Path, path: Path, device: str, dtype: str) -> Path:
    """A ``kind = "janus"`` backend description of the model in ``folder``, on ``device`` in ``dtype``."""
    from strokeagent.testing.unified import write_backend

    write_backend(folder, path)
    path.write_text(path.read_text() + f'device = "{device}"\ndtype = "{dtype}"\n', encoding="utf-8")
    return path


def build_janus(tiny: bool, device: str, folder: Path) -> Path:
    from context_reuse import build  # benchmarks/ is this script's folder, first on sys.path

    return build("tiny" if tiny else "pro-1b", folder, device)


# -- measuring ----------------------------------------------------------------------------------------


def best_of(repeats: int, fn) -> float:  # noqa: ANN001
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


#: The prefix of ``by_model``'s profiler ranges.
PART = "model: "


@contextmanager
def wrapping(owner, name: str, around) -> Iterator[None]:  # noqa: ANN001
    """Inside the block, ``owner.name`` is ``around(owner.name)``; afterwards as before (an instance's method
    wrapped on the instance is deleted from it again, which gives the class's back)."""
    own = name in vars(owner)
    original = getattr(owner, name)
    setattr(owner, name, around(original))
    try:
        yield
    finally:
        if own:
            setattr(owner, name, original)
        else:
            delattr(owner, name)


@contextmanager
def by_model(pipe) -> Iterator[None]:  # noqa: ANN001
    """Inside the block, each of ``pipe``'s models runs in a profiler range of its own name, so ``profiled``
    adds a table of how long the text encoder, the UNet and the VAE's encode and decode took."""
    from torch.profiler import record_function

    def in_range(label: str):  # noqa: ANN202
        def around(call):  # noqa: ANN001, ANN202
            def run(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
                with record_function(label):
                    return call(*args, **kwargs)

            return run

        return around

    with ExitStack() as stack:
        for name, methods in (("text_encoder", ("forward",)), ("unet", ("forward",)), ("vae", ("encode", "decode"))):
            model = getattr(pipe, name, None)
            for method in methods if model is not None else ():
                stack.enter_context(wrapping(model, method, in_range(f"{PART}{name}.{method}")))
        yield


def profiled(path: Path | None, fn) -> None:  # noqa: ANN001
    """``fn`` once more, under ``torch.profiler``: where its time went, by operator, written to ``path``.

    The operators by their own CPU time, and on a GPU by their own GPU time. Run after the timed repeats,
    so the figures do not pay for the profiler.
    """
    if path is None:
        return
    import torch
    from torch.profiler import ProfilerActivity, profile

    cuda = torch.cuda.is_available()
    try:  # the batcher's launcher and the stages' worker threads too, not only this one (torch >= 2.7)
        config = torch._C._profiler._ExperimentalConfig(profile_all_threads=True)
    except TypeError:
        config = None
    activities = [ProfilerActivity.CPU, *([ProfilerActivity.CUDA] if cuda else [])]
    with profile(activities=activities, experimental_config=config) as prof:
        start = time.perf_counter()
        fn()
        if cuda:
            torch.cuda.synchronize()
        wall = time.perf_counter() - start
    averages = prof.key_averages()
    threads = "every thread" if config is not None else "the calling thread only (torch < 2.7)"
    tables = [
        f"{path.stem}: {wall:.3f} s under the profiler, CPU operators of {threads}",
        averages.table(sort_by="self_cpu_time_total", row_limit=30),
    ]
    if cuda:
        tables.append(averages.table(sort_by="self_device_time_total", row_limit=30))
    parts = [e for e in averages if e.key.startswith(PART)]  # set by ``by_model``
    if parts:
        rows = [f"{e.key[len(PART):]:<22} {e.count:>5} calls {e.cpu_time_total / 1000:>9.1f} ms CPU"
                + (f" {e.device_time_total / 1000:>9.1f} ms {torch.cuda.get_device_name()}" if cuda else "")
                for e in parts]  # fmt: skip
        tables.append("By model (the time inside each, its operators included):\n" + "\n".join(rows))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n\n".join(tables) + "\n", encoding="utf-8")
    log(f"profile: {path}")


def on_new_thread(fn) -> float:  # noqa: ANN001
    """Seconds ``fn()`` takes on a thread that never ran anything: what per-thread GPU state costs the first call."""
    timed: list[float] = []

    def timing() -> None:
        start = time.perf_counter()
        fn()
        timed.append(time.perf_counter() - start)

    fresh = threading.Thread(target=timing, name="gpu.py-new-thread")
    fresh.start()
    fresh.join()
    return timed[0]


def measure_backend(backend, size: int, steps: int, repeats: int, profile: Path | None = None) -> dict:  # noqa: ANN001
    """Eight concurrent requests through the backend against one batch-of-8 call of the pipeline itself."""
    import torch

    from strokeagent.backends.image import ImageRequest

    requests = [
        ImageRequest(f"{PROMPT}, {i}", width=size, height=size, steps=steps, seed=i) for i in range(BATCH)
    ]
    pipe = backend._pipes["text-to-image"]

    def raw():  # noqa: ANN202 - the eight PIL images
        return pipe(prompt=[r.prompt for r in requests], height=size, width=size, num_inference_steps=steps,
                    generator=[torch.Generator("cpu").manual_seed(r.seed) for r in requests],
                    output_type="pil").images  # fmt: skip

    async def concurrent() -> None:
        await asyncio.gather(*(backend.generate([r]) for r in requests))

    drafts = raw()  # warm-up (allocations, kernel choices); the image-to-image requests' init images below
    asyncio.run(concurrent())
    calls = backend.batch_stats.calls
    raw_s = best_of(repeats, raw)
    batched_s = best_of(repeats, lambda: asyncio.run(concurrent()))
    calls_per_8 = (backend.batch_stats.calls - calls) / repeats
    # Where a gap between the two lies: the backend's own call (its arguments, callback and conversions) on this
    # thread without the batcher, and the raw call on the thread the batcher launches from.
    direct_s = best_of(repeats, lambda: backend.run(requests))
    launcher = backend._batcher.executor
    on_launcher_s = best_of(repeats, lambda: launcher.submit(raw).result())
    # Where the batches ran before the launcher: the default executor of each event loop, a new thread each time.
    new_thread_s = on_new_thread(raw)
    # `independent = true` (each request its own call: bytes that never depend on neighbours): the same eight
    # requests as eight calls of one, after one call of one has warmed that shape.
    backend.independent = True
    try:
        backend.run(requests[:1])
        independent_s = best_of(1, lambda: backend.run(requests))
    finally:
        backend.independent = False
    encode = image_to_image_encode(backend, drafts, size, steps, repeats)
    if profile is not None:
        profiled(profile / "backend-raw.txt", raw)
        profiled(profile / "backend-concurrent.txt", lambda: asyncio.run(concurrent()))
    return {
        **encode,
        "raw_batch8_s": raw_s,
        "backend_8_concurrent_s": batched_s,
        "backend_run_direct_s": direct_s,
        "raw_on_launcher_thread_s": on_launcher_s,
        "raw_on_new_thread_s": new_thread_s,
        "backend_calls_per_8": calls_per_8,
        "independent_8_s": independent_s,
        "independent_vs_batched": independent_s / direct_s,  # what independent = true costs 8 requests
        "raw_images_per_s": BATCH / raw_s,
        "raw_image_steps_per_s": BATCH * steps / raw_s,
        "backend_images_per_s": BATCH / batched_s,
    }


def image_to_image_encode(backend, drafts: list, size: int, steps: int, repeats: int) -> dict:  # noqa: ANN001
    """The backend's call of eight image-to-image requests with their init images encoded in one VAE call (as it
    runs on a GPU) and one call each (as diffusers does with a generator per image, and the backend on the CPU):
    the lever that run 6's profile of an image-to-image call pointed at (103 ms of device time in 8 calls of the
    VAE's encoder)."""
    from strokeagent.backends.image import ImageRequest

    requests = [
        ImageRequest(f"{PROMPT}, {i}", width=size, height=size, steps=steps, seed=i, image=im, strength=0.5)
        for i, im in enumerate(drafts)
    ]
    default = backend._encode_together  # on a GPU, together; on the CPU, one by one (faster there)
    try:
        backend._encode_together = True
        together = backend.run(requests)  # warm-up of the image-to-image shape
        together_s = best_of(repeats, lambda: backend.run(requests))
        backend._encode_together = False
        one_by_one = backend.run(requests)
        one_by_one_s = best_of(repeats, lambda: backend.run(requests))
    finally:
        backend._encode_together = default
    return {
        "image_to_image_8_s": together_s,
        "image_to_image_8_encoding_one_by_one_s": one_by_one_s,
        "image_to_image_encode_largest_pixel_difference": largest_difference(together, one_by_one),
    }


def largest_difference(a: list, b: list) -> int:
    """The largest difference of one pixel channel between two lists of images (0-255)."""
    import numpy as np

    return max(int(np.abs(np.asarray(x, dtype=int) - np.asarray(y, dtype=int)).max()) for x, y in zip(a, b, strict=True))


def diffusion_policy(backend_toml: Path, size: int, steps: int):  # -> Policy
    from strokeagent.core.policy import LoopSpec, Policy
    from strokeagent.kinds.diffusion import DiffusionDrafter, DiffusionRefiner
    from strokeagent.sketch import SketchPlanner
    from strokeagent.testing.doubles import ScriptedReflector

    return Policy(
        name="gpu-benchmark",
        description="sketch plan, diffusion draft and image-to-image refine, scripted reflect",
        loop=LoopSpec(order=("plan", "draft", "reflect", "refine"), max_steps=3, max_refines=1, stop="fixed"),
        stages={
            "plan": SketchPlanner(max_steps=3),
            "draft": DiffusionDrafter(
                str(backend_toml), mode="image-to-image", size=size, steps=steps, strength=0.6
            ),  # fmt: skip
            "reflect": ScriptedReflector(fail_rounds=1),
            "refine": DiffusionRefiner(
                str(backend_toml), mode="image-to-image", size=size, steps=steps, strength=0.5
            ),  # fmt: skip
        },
    )


def measure_trajectories(  # noqa: ANN201
    policy, backend, root: Path, raw_image_steps_per_s: float, profile: Path | None = None  # noqa: ANN001
):  # fmt: skip
    from overhead import one_run  # benchmarks/: the framework-overhead benchmark's split of one run

    import strokeagent

    strokeagent.generate(PROMPT, policy=policy, seed=100, out=root / "warm-up")
    # The same trajectory's time in its stages moved by a third between runs on the H200 (3.6-5.3 s at 30 steps,
    # benchmarks/trajectory_gaps.py), and the ratio with it: the median of three runs, each run's figures kept.
    ones = [asyncio.run(one_run(policy, root / f"one-{i}", PROMPT, seed=0)) for i in range(TRAJECTORY_RUNS)]
    one = sorted(ones, key=lambda r: r["ratio"])[len(ones) // 2]
    # The same trajectory again, not timed, with what storing each image cost on the event loop (its digest
    # and copy, in the gap after its stage) and its PNG on the writer thread (the last one is the run's last wait).
    from strokeagent.core import store

    puts: list[float] = []
    pngs: list[float] = []
    with recording(store.ArtifactStore, "put", puts), recording(store.Pixels, "png", pngs):
        asyncio.run(one_run(policy, root / "one-recorded", PROMPT, seed=0))

    async def many(seeds: range):  # noqa: ANN202
        return await asyncio.gather(
            *(strokeagent.agenerate(PROMPT, policy=policy, seed=i, out=root / f"many-{i}") for i in seeds)
        )

    # Warm-up: the batch sizes and image-to-image shapes of eight at once (kernel choices per shape), as the
    # raw batch was warmed before it was timed.
    asyncio.run(many(range(BATCH, 2 * BATCH)))
    stats = backend.batch_stats
    batches = len(stats.sizes)
    batcher, calls = backend._batcher, []
    run = batcher._run
    batcher._run = lambda requests: (calls.append(list(requests)), run(requests))[1]  # what each call was
    start = time.perf_counter()
    try:
        trajs = asyncio.run(many(range(BATCH)))
    finally:
        batcher._run = run
    many_s = time.perf_counter() - start
    # The same pipeline calls again, one after another on the launcher thread, with no trajectory around them:
    # what eight at once would take if the framework cost nothing between and beside the calls.
    same_s = best_of(1, lambda: [batcher.executor.submit(backend.run, c).result() for c in calls])
    sizes, waits = stats.sizes[batches:], stats.waits[batches:]
    starts, runs = stats.starts[batches:], stats.runs[batches:]
    if profile is not None:
        profiled(profile / "trajectory.txt", lambda: strokeagent.generate(PROMPT, policy=policy, seed=0,
                                                                        out=root / "profiled"))  # fmt: skip
        # One of the eight's image-to-image calls (the last: eight refinements): where a call's fixed cost
        # goes (the VAE's encode and decode, the prompts, the conversions) beside its denoising steps.
        with by_model(backend._pipes["text-to-image"]):  # its twins share the models
            profiled(profile / "concurrent-call.txt", lambda: batcher.executor.submit(backend.run, calls[-1]).result())
    image_steps = sum(t.denoising_steps or 0 for traj in trajs for t in traj.timings)
    return {
        "trajectory_ratio": one["ratio"],
        "trajectory_ratios": [r["ratio"] for r in ones],
        # The framework's milliseconds beside the stages, each run: steadier than the ratio (see above).
        "trajectory_beside_ms": [round((r["wall"] - r["inside"]) * 1000, 1) for r in ones],
        "trajectory_wall_s": one["wall"],
        "trajectory_in_stages_s": one["inside"],
        # Where the rest of the wall time went: before the first stage, between stages, after the last.
        "trajectory_start_s": one["start"],
        "trajectory_transitions_s": one["transitions"],
        "trajectory_finish_s": one["finish"],
        "trajectory_gaps_ms": [round(g * 1000, 1) for g in one["gaps"]],  # the last waits for the last PNG
        "trajectory_image_put_ms": [round(t * 1000, 2) for t in puts],
        "trajectory_png_ms": [round(t * 1000, 2) for t in pngs],
        "trajectory_stages": one["stages"],
        "trajectory_steps": one["steps"],
        "concurrent_vs_raw": image_steps / many_s / raw_image_steps_per_s,
        "concurrent_vs_same_calls": same_s / many_s,
        "concurrent_same_calls_s": same_s,
        "concurrent_wall_s": many_s,
        "concurrent_image_steps": image_steps,
        # How the eight shared pipeline calls: requests per call, how long each call waited for company, how
        # long each ran, and the device's idle time between calls: the framework's work between rounds.
        "concurrent_batch_sizes": sizes,
        "concurrent_batch_waits_ms": [round(w * 1000, 1) for w in waits],
        "concurrent_batch_runs_ms": [round(r * 1000, 1) for r in runs],
        "concurrent_busy_s": sum(runs),
        "concurrent_gaps_ms": [round((starts[i + 1] - starts[i] - runs[i]) * 1000, 1) for i in range(len(runs) - 1)],
        "concurrent_before_first_call_s": starts[0] - start if starts else None,
        "concurrent_after_last_call_s": start + many_s - starts[-1] - runs[-1] if starts else None,
    }


def recording(owner, name: str, seconds: list[float]):  # noqa: ANN001, ANN201
    """Inside the block (``with recording(...):``), each call of ``owner.name`` appends how long it took to
    ``seconds``."""

    def around(call):  # noqa: ANN001, ANN202
        def timed(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
            start = time.perf_counter()
            try:
                return call(*args, **kwargs)
            finally:
                seconds.append(time.perf_counter() - start)

        return timed

    return wrapping(owner, name, around)


def failure(e: Exception) -> str:
    return f"{type(e).__name__}: {(str(e).splitlines() or [''])[0]}"


def synchronize(model) -> None:  # noqa: ANN001
    if model.device.type == "cuda":
        model.torch.cuda.synchronize()


def on_model_thread(model, fn, *args):  # noqa: ANN001, ANN201
    """``fn(*args)`` on the model's own thread, where the process stages call it."""
    return model.executor.submit(fn, *args).result()


def prompt_ids(model) -> list[int]:  # noqa: ANN001
    """What ``new_context`` and ``add_text`` prefill for the prompt: transformers' ``generate`` gets the same."""
    return [model.bos, *model.tokenizer(PROMPT_TEXT, add_special_tokens=False).input_ids]


def prompt_context(model):  # noqa: ANN001, ANN201
    ctx = model.new_context()
    model.add_text(ctx, PROMPT_TEXT)
    return ctx


def measure_image_tokens(model, images: int, decodes: list[str]) -> dict:  # noqa: ANN001
    """``generate_image`` in each ``decode`` mode: one warm-up image where there is something to warm, then timed.

    The first mode warms the GPU (CUDA context, kernels, allocator) for the others; ``compiled`` also warms
    its own compile and CUDA graphs. A mode that fails is reported by its error and left out of the best; if
    every mode asked for fails, ``dynamic`` (the plain loop) is timed too, so that the run still has a figure.
    """
    ctx = prompt_context(model)
    rates, first, errors, compile_s = {}, {}, {}, {}
    tried = list(decodes)
    for decode in tried:  # grows by "dynamic" below when everything asked for failed
        model.decode = decode
        try:
            if decode == "compiled":
                compile_s[decode] = first_compiled_step(model, ctx)
            if decode == "compiled" or not rates:  # the first mode that works warms the GPU for the others
                start = time.perf_counter()
                model.generate_image(ctx, seed=99, guidance=5.0)
                first[decode] = time.perf_counter() - start
            synchronize(model)
            start = time.perf_counter()
            for seed in range(images):  # each returns a PIL image: it has waited for the GPU
                model.generate_image(ctx, seed=seed, guidance=5.0)
            rates[decode] = images * model.num_image_tokens / (time.perf_counter() - start)
        except Exception as e:  # a benchmark reports what failed and goes on
            errors[decode] = failure(e)
            log(f"decode {decode!r} failed: {errors[decode]}")
        log(f"image tokens, {decode}: {rates.get(decode, 0):.1f}/s")
        if decode == tried[-1] and not rates and "dynamic" not in tried:
            tried.append("dynamic")
    if not rates:
        raise SystemExit(f"no decode mode painted an image: {errors}")
    best = max(rates, key=rates.__getitem__)
    return {"unified_image_tokens_per_s": rates[best], "unified_image_decode": best,
            "unified_image_tokens_per_s_by_decode": rates, "unified_image_first_s": first,
            "unified_image_errors": errors, "unified_image_s": model.num_image_tokens / rates[best],
            "unified_image_compile_s": compile_s,
            "unified_image_tokens": model.num_image_tokens}  # fmt: skip


def painting_inputs(model, ctx, room: int):  # noqa: ANN001, ANN201 - (embeds, mask, positions, cache)
    """What ``generate_image`` feeds its first painting step from ``ctx``: the image start's embedding for both
    guidance rows, and the guidance pair with ``room`` positions free. Call it under ``no_grad``, as
    ``generate_image`` does: an embedding with a grad would make a compiled step compile again."""
    torch = model.torch
    cache, mask, positions = model._guidance_pair(ctx, [t for t in (model.bos,) if t is not None], room=room)
    embeds = model.model.get_input_embeddings()(torch.tensor([[model.boi]], device=model.device))
    return embeds.expand(2, -1, -1), mask, positions, cache


def first_compiled_step(model, ctx) -> float:  # noqa: ANN001
    """The compiled image step's first call alone, from ``ctx``: its compile (and one run), apart from the CUDA
    graphs that the warm-up image then records and replays on the same cache."""
    step = model._step(model._image_logits, "compiled")
    with model.torch.no_grad():
        embeds, mask, positions, cache = painting_inputs(model, ctx, room=model.num_image_tokens)
        start = time.perf_counter()
        step(embeds, mask, positions, cache)
        synchronize(model)
        seconds = time.perf_counter() - start
    model._kept[2] = cache  # kept, as generate_image keeps it: the warm-up image paints on these addresses
    return seconds


def random_codes(model):  # noqa: ANN001, ANN201 - a (1, num_image_tokens) tensor on the model's device
    """A seeded random image's VQ codes: something for the decoder and the vision encoder to work on."""
    torch = model.torch
    codes = model.model.config.vq_config.num_embeddings
    tokens = torch.randint(0, codes, (1, model.num_image_tokens), generator=torch.Generator().manual_seed(0))
    return tokens.to(model.device)


def context_after_two_images(model):  # noqa: ANN001, ANN201
    """The prompt, then a seeded random picture read twice: where a process run's plans and reflections write."""
    ctx = prompt_context(model)
    picture = model.decode_tokens(random_codes(model))
    for _ in range(2):
        model.add_image(ctx, picture)
    return ctx


def measure_text_tokens(model, count: int, repeats: int, decodes: list[str]) -> dict:  # noqa: ANN001
    """Greedy text from the prompt: ``generate_text`` in each ``decode`` mode against transformers' ``generate``.

    ``count`` tokens each, and ours again after two images (a process run's plans and reflections write
    there). Each mode's first call is its warm-up (with ``compiled``, its compile), timed apart; a mode that
    fails is reported and left out of the best.
    """
    import copy

    torch = model.torch
    ctx = prompt_context(model)
    ids = torch.tensor([prompt_ids(model)], device=model.device)
    config = copy.deepcopy(model.model.generation_config)
    config.update(do_sample=False, max_new_tokens=count, min_new_tokens=count)  # no EOS before `count`
    made: dict[str, int] = {}
    long = context_after_two_images(model)

    def ours(where, key: str) -> None:  # noqa: ANN001
        # No stop string; a random model may still open an image or write EOS early: the rate counts what it made.
        made[key] = len(model.generate_text(model.fork(where), stop=(), max_new_tokens=count, seed=0).ids)

    def theirs() -> None:
        out = model.model.generate(ids, attention_mask=torch.ones_like(ids), generation_config=config)
        synchronize(model)
        made["theirs"] = out.shape[1] - ids.shape[1]

    theirs()  # warm-up
    theirs_s = best_of(repeats, theirs)
    rates, long_rates, first, errors = {}, {}, {}, {}
    kept = model.text_decode
    for decode in decodes:
        model.text_decode = decode
        try:
            start = time.perf_counter()
            ours(ctx, "ours")
            ours(long, "long")
            first[decode] = time.perf_counter() - start
            rates[decode] = made["ours"] / best_of(repeats, lambda: ours(ctx, "ours"))
            long_rates[decode] = made["long"] / best_of(repeats, lambda: ours(long, "long"))
        except Exception as e:  # a benchmark reports what failed and goes on
            errors[decode] = failure(e)
            log(f"text with decode {decode!r} failed: {errors[decode]}")
    model.text_decode = kept
    if not rates:
        raise SystemExit(f"no decode mode wrote text: {errors}")
    best = max(rates, key=rates.__getitem__)
    return {"unified_text_tokens_per_s": rates[best], "unified_text_decode": best,
            "unified_text_tokens_per_s_by_decode": rates, "unified_text_first_s": first,
            "unified_text_errors": errors, "unified_text_tokens": made["ours"],
            "transformers_text_tokens_per_s": made["theirs"] / theirs_s,
            "transformers_text_tokens": made["theirs"],
            "unified_text_tokens_per_s_long_context": long_rates[best],
            "unified_text_tokens_per_s_long_context_by_decode": long_rates,
            "unified_text_long_context_tokens": made["long"],
            "unified_text_long_context_length": long.length}  # fmt: skip


def measure_compiled_agreement(model, kinds=("text", "image"), steps: int = 16) -> dict:  # noqa: ANN001
    """``compiled``'s text and image steps against the same steps run eagerly, each fed the same seeded tokens
    from the prompt for ``steps`` steps: the largest difference of their logits over the largest logit.

    Random weights paint noise whether the cache is right or not: this is what says the CUDA graphs update the
    static cache. Rounding gives a little (bfloat16, other kernels); for scale, ``left_behind_*_vs_eager`` is the
    same against an eager step whose cache updates are undone (``cache_left_behind``), as a step whose graphs
    copied the cache in would leave it.
    """
    torch = model.torch
    ctx = prompt_context(model)
    draw = torch.Generator().manual_seed(0)
    text_ids = torch.randint(0, len(model.tokenizer), (steps,), generator=draw).tolist()
    codes = torch.randint(0, model.model.config.vq_config.num_embeddings, (steps,), generator=draw).tolist()
    embed, device = model.model.get_input_embeddings(), model.device

    def text(step):  # noqa: ANN001, ANN202
        cache, mask, positions = model._static_rows([ctx.state.cache], room=steps)
        return torch.cat([step(embed(torch.tensor([[t]], device=device)), mask, positions + i, cache)[1].float()
                          .clone() for i, t in enumerate(text_ids)])  # fmt: skip

    def image(step):  # noqa: ANN001, ANN202
        embeds, mask, positions, cache = painting_inputs(model, ctx, room=steps)
        out = []
        for i, code in enumerate(codes):
            out.append(step(embeds, mask, positions + i, cache).clone())
            embeds = model.model.prepare_embeddings_for_image_generation(
                torch.tensor([[code]], device=device)
            ).expand(2, -1, -1)
        return torch.cat(out)

    result = {}
    with torch.no_grad():
        for kind, run, eager in (("text", text, model._text_logits), ("image", image, model._image_logits)):
            if kind not in kinds:
                continue
            reference = run(eager)
            for name, step in (("compiled", model._step(eager, "compiled")), ("left_behind", cache_left_behind(eager))):
                off = (run(step) - reference).abs().max() / reference.abs().max()
                result[f"{name}_{kind}_vs_eager"] = float(off)
    return result


def cache_left_behind(eager):  # noqa: ANN001, ANN201
    """``eager`` with each call's cache updates undone: the scale of the error a step that loses them makes."""

    def step(embeds, mask, positions, cache):  # noqa: ANN001, ANN202
        saved = [(layer.keys.clone(), layer.values.clone(), layer.cumulative_length.clone())
                 for layer in cache.layers]  # fmt: skip
        out = eager(embeds, mask, positions, cache)
        for layer, (keys, values, length) in zip(cache.layers, saved, strict=True):
            layer.keys.copy_(keys)
            layer.values.copy_(values)
            layer.cumulative_length.copy_(length)
        return out

    return step


def measure_sampling(model, draws: int = 50) -> dict:  # noqa: ANN001
    """Choosing one text token (masking, temperature 1, a seeded draw), in ms: where the logits are, as
    ``generate_text`` now does, and copied to the CPU first, as it did until 2026-11-27 — there with torch's
    CPU threads as they are and with one. On the H200 the sampled text of a process run took 77-115 ms a
    token against 34 ms greedy: is it the handful of CPU operators per token?
    """
    from strokeagent.unified.causal import pick

    torch = model.torch
    ctx = prompt_context(model)
    logits, vocab = ctx.state.logits, ctx.state.logits.shape[-1]
    mask = model._unwritable(vocab)
    cpu_mask = mask.cpu()
    gens = {"device": torch.Generator(device=model.device).manual_seed(0), "cpu": torch.Generator().manual_seed(0)}

    def on_device() -> None:
        pick(torch, logits[0].float().masked_fill(mask, float("-inf")), 1.0, gens["device"])

    def on_cpu() -> None:
        pick(torch, logits[0].float().cpu().masked_fill(cpu_mask, float("-inf")), 1.0, gens["cpu"])

    def per_draw_ms(fn) -> float:  # noqa: ANN001
        fn()
        return 1000 * best_of(3, lambda: [fn() for _ in range(draws)]) / draws

    out = {"sampling_on_device_ms": per_draw_ms(on_device), "sampling_on_cpu_ms": per_draw_ms(on_cpu)}
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        out["sampling_on_cpu_one_thread_ms"] = per_draw_ms(on_cpu)
    finally:
        torch.set_num_threads(threads)
    out["cpu_threads"] = threads
    return out


def measure_new_thread(model) -> dict:  # noqa: ANN001
    """The model's convolutions (its VQ decoder and vision encoder) on its own, warm thread and on a new one.

    PyTorch keeps cuDNN execution plans in a thread-local cache, and cuBLAS handles per thread: the new thread
    shows what a call pays where it meets the model for the first time (as the process stages did on the
    worker threads of each run's event loop before the model had a thread of its own).
    """
    tokens = random_codes(model)
    ctx = on_model_thread(model, prompt_context, model)

    def convolutions() -> None:
        model.add_image(model.fork(ctx), model.decode_tokens(tokens))
        synchronize(model)

    on_model_thread(model, convolutions)  # warm on the model's thread, then timed there
    warm = on_model_thread(model, lambda: best_of(1, convolutions))
    return {"convolutions_model_thread_s": warm, "convolutions_new_thread_s": on_new_thread(convolutions)}


def measure_transformers_image(model, images: int) -> dict:  # noqa: ANN001
    """transformers' own image mode (static cache, batch-2 guidance, 5.0) and its VQ decode, same prompt.

    Best of ``images``, no warm-up of its own: the same language model has already painted and written.
    """
    import copy

    torch = model.torch
    ids = torch.tensor([[*prompt_ids(model), model.boi]], device=model.device)

    def theirs() -> None:
        config = copy.deepcopy(model.model.generation_config)  # generate resets guidance_scale in it
        config.update(do_sample=True, guidance_scale=5.0)
        config.generation_kwargs = {"boi_token_id": model.boi}  # the hub's checkpoints carry it; ours do not
        with torch.no_grad():
            tokens = model.model.generate(ids, attention_mask=torch.ones_like(ids), generation_mode="image",
                                          generation_config=config)  # fmt: skip
            model.model.decode_image_tokens(tokens)
        synchronize(model)

    torch.manual_seed(0)
    seconds = best_of(images, theirs)
    return {
        "transformers_image_tokens_per_s": model.num_image_tokens / seconds,
        "transformers_image_s": seconds,
    }


def measure_prefill(backend_toml: Path, root: Path, tiny: bool, budget_s: float) -> dict[str, float]:
    """context_reuse.py's measurement: shared context over 3 steps against re-encoding every stage."""
    from context_reuse import reencode_by_count, totals  # benchmarks/ is this script's folder

    import strokeagent
    from strokeagent.testing.unified import tiny_process_policy

    policy = tiny_process_policy(backend_toml, max_steps=3, max_refines=1)
    start = time.perf_counter()
    for seed in range(20):  # the first seed whose trajectory paints 3 steps (a random model may close early)
        policy.stage("plan").max_live = 4
        t0 = time.perf_counter()
        shared = strokeagent.generate(PROMPT, policy=policy, seed=seed, out=root / f"shared-{seed}")
        shared_s = time.perf_counter() - t0
        painted = sum(1 for s in shared.steps if not s.plan.meta["process"].get("closed"))
        if painted == 3 or time.perf_counter() - start > budget_s:
            break
    prefilled, by_count = totals(shared)["prefilled"], reencode_by_count(shared)
    by_stage: dict[str, dict[str, float]] = {}  # where the shared run's time went, stage by stage
    for t in shared.timings:
        row = by_stage.setdefault(t.stage, {"calls": 0, "seconds": 0.0, "prefilled": 0, "generated": 0})
        row["calls"] += 1
        row["seconds"] = round(row["seconds"] + t.seconds, 3)
        row["prefilled"] += t.prefilled_tokens or 0
        row["generated"] += t.generated_tokens or 0
    out = {
        "unified_prefill_saved": 1 - prefilled / by_count,
        "unified_shared_by_stage": by_stage,
        # Call by call, in order (stage, step, seconds, prefilled, generated): one slow call shows apart.
        "unified_shared_calls": [
            [t.stage, t.step, round(t.seconds, 3), t.prefilled_tokens, t.generated_tokens]
            for t in shared.timings
        ],
        "unified_seeds_tried": seed + 1,
        "unified_prefilled_shared": prefilled,
        "unified_prefilled_reencode": by_count,
        "unified_seed": seed,
        "unified_painted_steps": painted,
        "unified_shared_run_s": shared_s,
    }
    if tiny:  # cheap here: run the re-encoding too, and check it agrees with the count
        policy.stage("plan").max_live = 0
        again = strokeagent.generate(PROMPT, policy=policy, seed=seed, out=root / f"reencode-{seed}")
        # The rebuild replays generated text a token a forward (bit-exact); a stateless server prefills it.
        replayed = sum(t.generated_tokens or 0 for t in again.timings) - sum(
            t.generated_tokens or 0 for t in shared.timings
        )
        measured = sum(t.prefilled_tokens or 0 for t in again.timings) + replayed
        out["unified_prefilled_reencode_measured"] = measured
        out["unified_count_off_by"] = by_count - measured  # 1 here: the count takes one more token
        out["unified_same_bytes"] = again.final_image.sha256 == shared.final_image.sha256
    return out


# -- the command --------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true", help="the tiny test models (a CPU run in under 2 min)")
    parser.add_argument("--device", type=torch_device, default=None, help="cpu or cuda (default: cuda if available)")
    parser.add_argument("--steps", type=positive_int, default=None, help="denoising steps (default 20; 4 with --tiny)")
    parser.add_argument("--repeats", type=positive_int, default=None, help="best of (default 2; 3 with --tiny)")
    parser.add_argument(
        "--images", type=positive_int, default=None, help="Janus images timed (default 1; 3 with --tiny)"
    )
    parser.add_argument(
        "--decode",
        default=None,
        help="Janus decode modes timed, comma-separated (default: dynamic,static; on cuda compiled)",
    )
    parser.add_argument("--skip-unified", action="store_true", help="diffusion figures only")
    parser.add_argument(
        "--within",
        type=float,
        default=None,
        help="seconds the whole run should take (default 330 at real sizes): past them the Janus profile is "
        "skipped (named in 'skipped') and the process run tries no further seed",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help="also write the JSON object here (and the figures so far after each part)",
    )
    parser.add_argument(
        "--profile",
        type=Path,
        default=None,
        help="also profile each part once (torch.profiler) into this folder",
    )
    args = parser.parse_args(argv)
    # Refused now rather than after minutes of measuring: a JSON path in no folder, a profile folder that is a file.
    if args.out is not None and (args.out.is_dir() or not args.out.parent.is_dir()):
        parser.error(f"--out {args.out}: give a file path in a folder that exists")
    if args.profile is not None and args.profile.exists() and not args.profile.is_dir():
        parser.error(f"--profile {args.profile}: that is a file; give a folder (made if missing)")
    if args.profile is not None:
        try:
            args.profile.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            parser.error(f"--profile {args.profile}: cannot make that folder ({e.strerror})")
    began = time.perf_counter()
    from strokeagent.extras import ExtraMissing, require

    try:  # the diffusion half needs diffusers, the unified half transformers: one line, not a traceback
        require(
            ("diffusers", "transformers"), "benchmarks/gpu.py", modules=("torch", "diffusers", "transformers")
        )
    except ExtraMissing as e:
        raise SystemExit(f"error: {e}") from None

    import torch

    import strokeagent
    from strokeagent.unified.janus import DECODES

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    tiny = args.tiny
    steps = args.steps or (4 if tiny else 20)
    repeats = args.repeats or (3 if tiny else 2)
    images = args.images or (3 if tiny else 1)
    size = 64 if tiny else 512
    # On a GPU only `compiled` by default: `dynamic` (the plain loop, about transformers' own speed) cost 66 s of
    # an H200 run (2026-11-27), which the 6 minutes cannot spare; --decode dynamic,compiled times both.
    decodes = (args.decode or ("compiled" if device == "cuda" else "dynamic,static")).split(",")
    if any(d not in DECODES for d in decodes):
        raise SystemExit(f"--decode {args.decode}: each must be one of {', '.join(DECODES)}")
    within = args.within if args.within is not None else (600.0 if tiny else 330.0)  # the issue allows 360 s
    sd_dtype = "float32" if device == "cpu" else "float16"
    lm_dtype = "float32" if device == "cpu" else "bfloat16"
    if device == "cpu":
        torch.set_num_threads(1)  # a small model on a shared CPU: one thread is fastest and steadiest
    result: dict = {
        "device": torch.cuda.get_device_name(0)
        if device == "cuda"
        else f"cpu ({platform.processor() or 'unknown'})",
        "torch": torch.__version__,
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "sizes": "tiny" if tiny else "sd15 + janus-pro-1b",
        "python": platform.python_version(),
        # The kernel tells a sandboxed machine's runtime apart (gVisor reports 4.4.0, a Firecracker VM its own):
        # compiles spawn processes and write files, which a sandbox can slow.
        "kernel": platform.release(),
        "host_cpus": host_cpus(torch),
        "strokeagent": getattr(strokeagent, "__version__", "?"),
        "settings": {
            "size": size,
            "steps": steps,
            "repeats": repeats,
            "batch": BATCH,
            "janus_images": images,
            "sd_dtype": sd_dtype,
            "janus_dtype": lm_dtype,
            "janus_decodes": decodes,
            "text_tokens": TEXT_TOKENS,
        },  # fmt: skip
    }
    seconds: dict[str, float] = {}

    def keep(part: str) -> None:
        """The figures so far in ``--out`` after each part: a run cut short by a time limit still leaves them."""
        if args.out is not None:
            so_far = {
                **result,
                "seconds": {k: round(v, 2) for k, v in seconds.items()},
                "unfinished_after": part,
            }
            args.out.write_text(json.dumps(so_far, indent=1, default=float) + "\n", encoding="utf-8")

    with tempfile.TemporaryDirectory(prefix="gpu-bench-") as tmp:
        root = Path(tmp)
        from strokeagent.backends import forget_backends, load_backend

        t = time.perf_counter()
        sd_toml = sd_description(build_sd(tiny, device, root / "sd"), root / "sd.toml", device, sd_dtype)
        backend = load_backend(sd_toml)  # the policy's stages load the same instance
        seconds["build_sd"] = time.perf_counter() - t
        log(f"SD built and loaded in {seconds['build_sd']:.1f} s")

        t = time.perf_counter()
        raw = measure_backend(backend, size, steps, repeats, args.profile)
        result["backend_batched_vs_raw"] = raw["backend_images_per_s"] / raw["raw_images_per_s"]
        result["backend"] = raw
        seconds["backend"] = time.perf_counter() - t
        keep("backend")
        log(f"backend: {result['backend_batched_vs_raw']:.3f}; independent = true costs "
            f"{raw['independent_vs_batched']:.2f}x for 8 requests; 8 image-to-image requests "
            f"{raw['image_to_image_8_s'] * 1000:.0f} ms, with their init images encoded one by one "
            f"{raw['image_to_image_8_encoding_one_by_one_s'] * 1000:.0f} ms (pixels differ by up to "
            f"{raw['image_to_image_encode_largest_pixel_difference']}); in {seconds['backend']:.1f} s")

        t = time.perf_counter()
        traj = measure_trajectories(
            diffusion_policy(sd_toml, size, steps),
            backend,
            root / "runs",
            raw["raw_image_steps_per_s"],
            args.profile,
        )
        result["trajectory_ratio"] = traj.pop("trajectory_ratio")
        result["concurrent_vs_raw"] = traj.pop("concurrent_vs_raw")
        result["trajectories"] = traj
        seconds["trajectories"] = time.perf_counter() - t
        keep("trajectories")
        log(f"trajectories: {result['trajectory_ratio']:.3f}, {result['concurrent_vs_raw']:.3f} "
            f"in {seconds['trajectories']:.1f} s; one: {traj['trajectory_start_s']:.3f} s before the first stage, "
            f"{traj['trajectory_transitions_s']:.3f} s between stages, {traj['trajectory_finish_s']:.3f} s after "
            f"the last; eight: {traj['concurrent_busy_s']:.2f} s of {traj['concurrent_wall_s']:.2f} s in pipeline "
            f"calls, the same calls alone {traj['concurrent_same_calls_s']:.2f} s")  # fmt: skip
        forget_backends()
        del backend
        if device == "cuda":
            torch.cuda.empty_cache()

        if not args.skip_unified:
            t = time.perf_counter()
            janus_folder = build_janus(tiny, device, root / "janus")
            janus_toml = janus_description(janus_folder, root / "janus.toml", device, lm_dtype)
            model = load_backend(janus_toml)
            seconds["build_janus"] = time.perf_counter() - t
            log(f"Janus built and loaded in {seconds['build_janus']:.1f} s")

            t = time.perf_counter()
            # Every call on the model's own thread, as the process stages make them: CUDA graphs recorded here
            # are the ones the process run replays.
            tokens = on_model_thread(model, measure_image_tokens, model, images, decodes)
            result["unified_image_tokens_per_s"] = tokens.pop("unified_image_tokens_per_s")
            seconds["image_tokens"] = time.perf_counter() - t
            result["unified"] = tokens
            keep("image_tokens")
            log(f"image tokens: {result['unified_image_tokens_per_s']:.1f}/s ({tokens['unified_image_decode']}) "
                f"in {seconds['image_tokens']:.1f} s; first step (compile) {tokens['unified_image_compile_s']}, "
                f"first image {tokens['unified_image_first_s']}")  # fmt: skip

            t = time.perf_counter()
            # Text in the plain loop and in each mode that painted (the same static cache and compile). Text's compile
            # costs about what the image step's did (the same trunk): if that would pass `within`, text stays in the
            # plain loop, here and in the process run (`text_decode`), and only the image step is compiled.
            text_decodes = list(dict.fromkeys(["dynamic", *tokens["unified_image_tokens_per_s_by_decode"]]))
            compile_s = tokens["unified_image_compile_s"].get("compiled", 0.0) + tokens["unified_image_first_s"].get(
                "compiled", 0.0
            )  # the image step's compile, then its first image (recording its CUDA graphs)
            if "compiled" in text_decodes and time.perf_counter() - began + compile_s > within:
                text_decodes.remove("compiled")
                model.text_decode = "dynamic"
                result.setdefault("skipped", []).append(
                    f"compiled text: its compile (about {compile_s:.0f} s, as the image step's) would pass {within:.0f} s"
                )
            theirs = {
                **on_model_thread(model, measure_text_tokens, model, TEXT_TOKENS, repeats, text_decodes),
                **on_model_thread(model, measure_transformers_image, model, images),
            }
            for key in (
                "unified_text_tokens_per_s",
                "transformers_text_tokens_per_s",
                "transformers_image_tokens_per_s",
            ):
                result[key] = theirs.pop(key)
            result["unified_image_vs_transformers"] = (
                result["unified_image_tokens_per_s"] / result["transformers_image_tokens_per_s"]
            )
            tokens.update(theirs)
            seconds["transformers"] = time.perf_counter() - t
            keep("transformers")
            if args.profile is not None and time.perf_counter() - began > within:
                result.setdefault("skipped", []).append(f"the Janus profile: {within:.0f} s were used up")
            elif args.profile is not None:
                model.decode = tokens["unified_image_decode"]
                ctx = on_model_thread(model, prompt_context, model)
                on_model_thread(model, profiled, args.profile / "janus-image.txt",
                                lambda: model.generate_image(ctx, seed=0, guidance=5.0))  # fmt: skip
                # Text from the prompt, and where a process run writes it, two images into the context: on the
                # H200 compiled text wrote 67 tokens/s from the first and 254/s from the second (not explained).
                model.text_decode = tokens["unified_text_decode"]
                long = on_model_thread(model, context_after_two_images, model)
                for name, where in (("prompt", ctx), ("long", long)):
                    on_model_thread(model, profiled, args.profile / f"janus-text-{name}.txt",
                                    lambda where=where: model.generate_text(
                                        model.fork(where), stop=(), max_new_tokens=TEXT_TOKENS, seed=0))  # fmt: skip
            log(f"text tokens: {result['unified_text_tokens_per_s']:.1f}/s ({tokens['unified_text_decode']}; "
                f"{tokens['unified_text_tokens_per_s_long_context']:.1f}/s after "
                f"{tokens['unified_text_long_context_length']} tokens of context), transformers "
                f"{result['transformers_text_tokens_per_s']:.1f}/s; image tokens: transformers "
                f"{result['transformers_image_tokens_per_s']:.1f}/s, ours "
                f"{result['unified_image_vs_transformers']:.2f}x; in {seconds['transformers']:.1f} s")  # fmt: skip

            t = time.perf_counter()
            tokens.update(on_model_thread(model, measure_sampling, model))
            # Whatever `compiled` painted or wrote: is it right?
            kinds = [k for k, rates in (("image", tokens["unified_image_tokens_per_s_by_decode"]),
                                        ("text", tokens["unified_text_tokens_per_s_by_decode"])) if "compiled" in rates]  # fmt: skip
            if kinds:
                tokens.update(on_model_thread(model, measure_compiled_agreement, model, kinds))
                log("compiled against eager, 16 steps, of the largest logit: " + ", ".join(
                    f"{k} {tokens[f'compiled_{k}_vs_eager']:.2g} (a cache left behind: "
                    f"{tokens[f'left_behind_{k}_vs_eager']:.2g})" for k in kinds))  # fmt: skip
            log(f"sampling a text token: {tokens['sampling_on_device_ms']:.2f} ms on the device, "
                f"{tokens['sampling_on_cpu_ms']:.2f} ms on the CPU ({tokens['cpu_threads']} threads), "
                f"{tokens['sampling_on_cpu_one_thread_ms']:.2f} ms with one thread")  # fmt: skip
            seconds["checks"] = time.perf_counter() - t
            t = time.perf_counter()
            tokens.update(measure_new_thread(model))
            seconds["new_thread"] = time.perf_counter() - t
            keep("new_thread")
            log(f"convolutions: {tokens['convolutions_model_thread_s']:.2f} s on the model's thread, "
                f"{tokens['convolutions_new_thread_s']:.2f} s on a new one")  # fmt: skip

            # The process run paints in the fastest mode: the same loaded model (load_backend keeps it). What it
            # prefills does not depend on the mode; how long it takes does.
            model.decode = tokens["unified_process_decode"] = tokens["unified_image_decode"]
            model.text_decode = tokens["unified_process_text_decode"] = tokens["unified_text_decode"]
            t = time.perf_counter()
            # A seed whose random model closes before its third step is followed by the next, while time is left.
            budget_s = min(30 if tiny else 120, max(0.0, within - (t - began)))
            try:
                prefill = measure_prefill(janus_toml, root / "process", tiny, budget_s)
            except Exception as e:
                if model.decode == "dynamic":
                    raise
                # A mode that painted alone may still fail in a whole run: the run's figure matters more.
                tokens["unified_process_error"] = failure(e)
                log(f"process run with decode {model.decode!r} failed ({tokens['unified_process_error']}); "
                    "again with 'dynamic'")  # fmt: skip
                model.decode = tokens["unified_process_decode"] = "dynamic"
                model.text_decode = tokens["unified_process_text_decode"] = "dynamic"
                prefill = measure_prefill(janus_toml, root / "process-dynamic", tiny, budget_s)
            result["unified_prefill_saved"] = prefill.pop("unified_prefill_saved")
            result["unified"] = {**tokens, **prefill}
            seconds["prefill"] = time.perf_counter() - t
            log(f"prefill saved: {result['unified_prefill_saved']:.3f} in {seconds['prefill']:.1f} s")
            forget_backends()
    seconds["total"] = time.perf_counter() - began
    result["seconds"] = {k: round(v, 2) for k, v in seconds.items()}
    text = json.dumps(result, indent=1, default=float)
    print(text, flush=True)
    if args.out is not None:
        args.out.write_text(text + "\n", encoding="utf-8")
    return result


if __name__ == "__main__":
    main()
