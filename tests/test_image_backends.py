"""Image backends on tiny random-weight diffusers pipelines, built offline and loaded by path."""

import asyncio
import os
import shutil
import threading
import time

import numpy as np
import pytest
from PIL import Image

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from conftest import picture, pixels_both_ways, run_cli  # noqa: E402

from strokeagent.backends import forget_backends, load_backend  # noqa: E402
from strokeagent.backends.image import ImageBackendError, ImageRequest, MicroBatcher  # noqa: E402
from strokeagent.core.policy import load_policy  # noqa: E402
from strokeagent.core.store import pixel_digest, png_bytes  # noqa: E402
from strokeagent.errors import PolicyError  # noqa: E402
from strokeagent.runs.api import generate  # noqa: E402


@pytest.fixture(scope="session")
def tiny(tmp_path_factory):
    """Tiny SD and InstructPix2Pix folders and their backend descriptions, built once per session."""
    import torch

    from strokeagent.testing.diffusers import save_tiny

    torch.set_num_threads(1)  # what the descriptions below ask for; a busy 2-core machine spins with more
    root = tmp_path_factory.mktemp("tiny-diffusers")
    save_tiny(root / "sd", "sd")
    save_tiny(root / "pix2pix", "pix2pix")
    (root / "sd.toml").write_text(
        f'kind = "diffusers"\nmodel = "{root / "sd"}"\nbatch_window_ms = 20\nthreads = 1\n'
    )
    (root / "pix.toml").write_text(f'kind = "diffusers"\nmodel = "{root / "pix2pix"}"\nthreads = 1\n')
    return root


@pytest.fixture(scope="session")
def sd(tiny):
    return load_backend(tiny / "sd.toml")


@pytest.fixture(scope="session")
def pix(tiny):
    return load_backend(tiny / "pix.toml")


def req(prompt="a red apple", seed=1, steps=3, size=64, **kw):
    return ImageRequest(prompt, width=size, height=size, steps=steps, seed=seed, **kw)


# -- requests ------------------------------------------------------------------


def test_requests_know_their_task_and_refuse_bad_values():
    img = Image.new("RGB", (64, 64))
    assert req().task == "text-to-image"
    assert req(image=img).task == "image-to-image"
    assert req(image=img, mask=Image.new("L", (64, 64))).task == "inpaint"
    assert req(image=img, edit=True).task == "edit"
    with pytest.raises(ValueError, match=r"^width and height must be multiples of 8 from 8 up, got 60×64$"):
        ImageRequest("x", width=60, height=64)
    with pytest.raises(ValueError, match=r"^a mask or an edit needs an input image$"):
        ImageRequest("x", edit=True)
    with pytest.raises(ValueError, match=r"^an image request needs a non-empty prompt$"):
        ImageRequest(" ")
    r = req(image=img, strength=0.3, negative_prompt="blur")
    back = ImageRequest.from_json(r.to_json())
    assert back == r and back.image.tobytes() == img.tobytes()
    with pytest.raises(ValueError, match=r"^unknown request field 'colour'"):
        ImageRequest.from_json({"prompt": "x", "colour": "red"})


# -- the diffusers backend -----------------------------------------------------


def test_loads_by_path_and_derives_image_to_image_and_inpainting(sd, pix):
    assert sd.pipeline_class == "StableDiffusionPipeline"
    assert sd.tasks == {"text-to-image", "image-to-image", "inpaint"}
    # from_pipe shares the modules: one copy of the weights.
    assert sd._pipes["image-to-image"].unet is sd._pipes["text-to-image"].unet
    assert sd._pipes["inpaint"].vae is sd._pipes["text-to-image"].vae
    assert pix.pipeline_class == "StableDiffusionInstructPix2PixPipeline" and pix.tasks == {"edit"}


def test_same_seed_same_bytes_other_seed_other_bytes(sd):
    a, b, c = sd.run([req(seed=5)]) + sd.run([req(seed=5)]) + sd.run([req(seed=6)])
    assert a.size == (64, 64)
    assert png_bytes(a) == png_bytes(b)
    assert png_bytes(a) != png_bytes(c)


def test_a_batch_runs_one_pipeline_call_per_shape(sd):
    before = sd.steps_run
    images = sd.run([req(seed=1), req("a cup", seed=2, steps=2), req("a dog", seed=3)])
    # Two shapes (3 steps, 2 steps): two pipeline calls, so 3 + 2 step callbacks, not 3 + 2 + 3.
    assert sd.steps_run - before == 5
    assert [im.size for im in images] == [(64, 64)] * 3
    # Each request keeps its own generator: its image is the one it makes alone (to the last bit or one level).
    alone = np.asarray(sd.run([req("a dog", seed=3)])[0], dtype=int)
    assert np.abs(alone - np.asarray(images[2], dtype=int)).max() <= 1
    assert np.abs(alone - np.asarray(images[0], dtype=int)).max() > 10


def test_pictures_converted_on_the_device_are_the_bytes_diffusers_makes(sd, monkeypatch):
    mask = Image.fromarray(((np.indices((64, 64)).sum(0) // 8) % 2 * 255).astype(np.uint8), "L")
    requests = [req(seed=3), req(seed=4, image=picture(1), strength=0.7),
                req(seed=5, image=picture(2), mask=mask, strength=0.9)]  # fmt: skip
    on_device, by_pil, asked = pixels_both_ways(sd, monkeypatch, requests)
    assert asked == ["pt", "pt", "pt", "pil", "pil", "pil"]
    assert on_device == by_pil
    assert len(set(on_device)) == 3


def test_the_conversions_on_the_device_are_diffusers_own_to_the_bit(sd):
    import torch
    from diffusers.image_processor import VaeImageProcessor as Processor

    images = [picture(seed) for seed in range(3)]
    theirs = Processor.numpy_to_pt(Processor.pil_to_numpy(images))
    assert torch.equal(sd._to_unit(images), theirs)
    # Every half-way value (k + 0.5 of 255) and its neighbours, in the pipelines' float16 and float32: rounding
    # half to even, as numpy does.
    ramp = torch.arange(0, 1021, dtype=torch.float32) / 1020
    for dtype in (torch.float32, torch.float16):
        out = ramp.to(dtype).reshape(1, 1, 1, -1).expand(2, 3, 4, -1)
        mine = [im.tobytes() for im in sd._to_pil(out)]
        assert mine == [im.tobytes() for im in Processor.numpy_to_pil(Processor.pt_to_numpy(out))]


def test_image_to_image_encodes_a_batchs_init_images_in_one_vae_call(sd, monkeypatch):
    import torch

    vae = sd._pipes["image-to-image"].vae
    encode, calls = vae.encode, []

    def counted(image, *a, **kw):  # noqa: ANN001, ANN002, ANN003, ANN202
        assert not torch.is_grad_enabled()  # no activations kept for a backward pass that never comes
        calls.append(len(image))
        return encode(image, *a, **kw)

    monkeypatch.setattr(vae, "encode", counted)
    requests = [req(f"a cup {i}", seed=i, image=picture(i), strength=0.5, steps=6) for i in range(4)]
    # On the CPU, diffusers' own path (a VAE call per image, each latent drawn from its image's generator): the
    # batched call is slower there. On a GPU, one call.
    assert not sd._encode_together
    theirs, [their_first] = sd.run(requests), sd.run(requests[:1])
    assert calls == [1, 1, 1, 1, 1]
    monkeypatch.setattr(sd, "_encode_together", True)
    together, [first] = sd.run(requests), sd.run(requests[:1])
    assert calls == [1, 1, 1, 1, 1, 4, 1]
    assert png_bytes(first) == png_bytes(their_first)  # a batch of one: the pipeline's own bytes
    for mine, their in zip(together, theirs, strict=True):  # a batch: within the batch's numerics
        assert np.abs(np.asarray(mine, dtype=int) - np.asarray(their, dtype=int)).max() <= 1
    assert len({png_bytes(im) for im in together}) == 4


def test_concurrent_callers_share_one_batch(sd):
    async def go():
        batcher = MicroBatcher(sd.run, window_s=0.05, max_batch=8)
        results = await asyncio.gather(*(batcher.submit([req(f"apple {i}", seed=i)]) for i in range(4)))
        return batcher.stats, results

    stats, results = asyncio.run(go())
    assert stats.sizes == [4] and stats.calls == 1
    assert len({png_bytes(im) for [im] in results}) == 4


def test_strength_counts_only_through_the_steps_it_leaves():
    img = Image.new("RGB", (64, 64))
    half, bit_more, more = (req(image=img, steps=10, strength=s) for s in (0.5, 0.52, 0.6))
    assert half.denoising_steps == bit_more.denoising_steps == 5 and more.denoising_steps == 6
    assert half.shape() == bit_more.shape() != more.shape()
    assert half.shape(exact_strength=True) != bit_more.shape(exact_strength=True)  # other pipelines
    assert req(strength=0.5).shape() == req(strength=0.9).shape()  # text-to-image has no strength
    assert req(steps=4).denoising_steps == 4


def test_strengths_that_leave_the_same_steps_share_one_call(sd):
    base = sd.run([req(seed=1)])[0]
    half = req(image=base, steps=10, strength=0.5, seed=2)
    bit_more = req("a blue cup", image=base, steps=10, strength=0.52, seed=3)
    before = sd.steps_run
    together = sd.run([half, bit_more])
    assert sd.steps_run - before == 5  # one call of int(10 × 0.5) = int(10 × 0.52) = 5 steps, not 5 + 5
    for r, image in zip((half, bit_more), together, strict=True):
        [alone] = sd.run([r])  # at its own strength, in a batch of one
        assert np.abs(np.asarray(alone, dtype=int) - np.asarray(image, dtype=int)).max() <= 1
    before = sd.steps_run
    sd.run([half, req(image=base, steps=10, strength=0.6, seed=4)])
    assert sd.steps_run - before == 5 + 6  # 5 and 6 steps: two calls


def fake_run(requests):
    return [Image.new("RGB", (8, 8), (r.seed, 0, 0)) for r in requests]


def test_one_caller_alone_does_not_wait_the_window():
    async def go():
        batcher = MicroBatcher(fake_run, window_s=0.2, max_batch=8)
        t0 = time.monotonic()
        for i in range(6):
            await batcher.submit([req(seed=i)])
        sequential = time.monotonic() - t0
        together = await asyncio.gather(*(batcher.submit([req(seed=10 + i)]) for i in range(4)))
        return batcher.stats, sequential, together

    stats, sequential, together = asyncio.run(go())
    assert stats.sizes == [1] * 6 + [4] and stats.callers == [1] * 6 + [4]
    # Only the first waits the window (nothing to go by yet); its batches of one tell the others not to.
    assert stats.waits[0] >= 0.19 and max(stats.waits[1:]) < 0.05
    assert sequential < 6 * 0.2 / 2
    assert [im.getpixel((0, 0))[0] for [im] in together] == [10, 11, 12, 13]


def test_every_batch_runs_on_the_batchers_one_launcher_thread_across_event_loops():
    threads = []

    def run(requests):
        threads.append(threading.current_thread())
        return fake_run(requests)

    batcher = MicroBatcher(run, window_s=0.01, max_batch=2)

    async def go():
        await asyncio.gather(*(batcher.submit([req(seed=i)]) for i in range(5)))
        await asyncio.to_thread(lambda: None)  # the loop's default executor: some other thread

    asyncio.run(go())
    asyncio.run(go())  # a new event loop, a new default executor: the same launcher
    assert len(threads) == 6 and len(set(threads)) == 1
    assert threads[0] is not threading.main_thread() and threads[0].name.startswith("strokeagent-launcher")


def slow(seconds):
    def run(requests):  # a pipeline call that takes `seconds`
        time.sleep(seconds)
        return fake_run(requests)

    return run


def test_a_batch_waits_for_the_callers_it_expects_and_no_longer():
    async def late(batcher, seed, delay):
        await asyncio.sleep(delay)
        return await batcher.submit([req(seed=seed)])

    async def round_of(batcher, delays):
        return await asyncio.gather(*(late(batcher, i, d) for i, d in enumerate(delays)))

    async def go():
        # Calls of 0.3 s: a batch waits for company at most share × 0.3 s = 0.15 s.
        batcher = MicroBatcher(slow(0.3), window_s=0.3, max_batch=8, memory=2, share=0.5)
        await round_of(batcher, [0, 0, 0, 0])  # the first batch waits the window: 4 callers
        await round_of(batcher, [0, 0, 0, 0.03])  # the fourth is expected: waited for, 30 ms
        for _ in range(3):
            await round_of(batcher, [0, 0, 0])  # the fourth is gone: 2 batches wait in vain, then none
        await round_of(batcher, [0] * 9)  # more than max_batch: a full batch goes at once
        return batcher.stats

    stats = asyncio.run(go())
    assert stats.sizes == [4, 4, 3, 3, 3, 8, 1]
    w = stats.waits
    assert w[0] >= 0.29 and 0.02 <= w[1] < 0.14 and 0.14 <= w[2] < 0.25 and 0.14 <= w[3] < 0.25
    assert w[4] < 0.05 and w[5] < 0.05


def test_a_convoy_of_seven_and_one_heals_into_batches_of_eight():
    async def caller(batcher, i):
        if i == 7:
            await asyncio.sleep(0.15)  # misses the first batch (it waited 0.1 s for more after the seven)
        for k in range(3):
            await batcher.submit([req(seed=i)])
            await asyncio.sleep(0.02 if (i, k) == (7, 0) else 0.16)  # then the eighth hurries back

    async def go():
        # Calls of 0.2 s: a batch waits for company at most 0.1 s (margins of 60 to 80 ms for a busy machine).
        batcher = MicroBatcher(slow(0.2), window_s=0.1, max_batch=8, share=0.5)
        for _ in range(3):  # one caller alone first: the batcher learns to expect one
            await batcher.submit([req()])
        await asyncio.gather(*(caller(batcher, i) for i in range(8)))
        return batcher.stats

    stats = asyncio.run(go())
    # Seven go at once, as expected; the eighth arrives while they run and runs alone, and the seven come back
    # while it runs. Counting batches, the seven would go again without the eighth (7, 1, 7, 1, ...);
    # counting rounds (a batch and the callers that missed it), the batcher waits for eight.
    assert stats.sizes[3:] == [7, 1, 8, 8]


def test_runs_that_start_together_a_few_milliseconds_apart_make_one_batch():
    async def caller(batcher, i):
        await asyncio.sleep(0.01 if i == 7 else 0)  # the eighth's start-up took 10 ms longer
        return await batcher.submit([req(seed=i)])

    async def go():
        batcher = MicroBatcher(slow(0.2), window_s=0.1, max_batch=8, share=0.5)
        for _ in range(3):  # one caller alone first: the batcher expects one
            await batcher.submit([req()])
        together = await asyncio.gather(*(caller(batcher, i) for i in range(8)))
        return batcher.stats, together

    stats, together = asyncio.run(go())
    # More callers than expected: the load grows, so the batch waits while they keep coming (7 and 1 without it).
    assert stats.sizes == [1, 1, 1, 8] and stats.waits[3] < 0.1  # it went when full, not at the 0.1 s wait's end
    assert [im.getpixel((0, 0))[0] for [im] in together] == list(range(8))


def test_a_short_run_lets_a_batch_wait_only_a_share_of_it():
    async def go():
        batcher = MicroBatcher(fake_run, window_s=0.5, max_batch=8, memory=1)
        await asyncio.gather(*(batcher.submit([req(seed=i)]) for i in range(3)))  # nothing to go by: 0.5 s
        assert batcher.longest_wait() < 0.01  # the call took a moment: waiting longer would cost more
        t0 = time.monotonic()
        await asyncio.gather(*(batcher.submit([req(seed=i)]) for i in range(2)))  # one of 3 missing
        return batcher.stats, time.monotonic() - t0

    stats, second = asyncio.run(go())
    assert stats.sizes == [3, 2] and stats.waits[0] >= 0.49 and second < 0.25


def test_independent_requests_keep_their_bytes_whatever_runs_beside_them(tiny, tmp_path):
    description = tmp_path / "independent.toml"
    description.write_text(
        f'kind = "diffusers"\nmodel = "{tiny / "sd"}"\nindependent = true\nbatch_window_ms = 50\nthreads = 1\n'
    )
    backend = load_backend(description)
    prompts = ["a dog", "a red apple", "a blue cup", "a cat"]

    async def go():
        [alone] = await backend.generate([req("a dog", seed=3)])
        calls = backend.batch_stats.calls
        together = await asyncio.gather(
            *(backend.generate([req(p, seed=3 + i)]) for i, p in enumerate(prompts))
        )
        return alone, together, backend.batch_stats.calls - calls

    alone, together, calls = asyncio.run(go())
    assert png_bytes(alone) == png_bytes(together[0][0])
    assert calls == 4 and backend.batch_stats.sizes[-4:] == [1] * 4
    before = backend.steps_run
    backend.run([req(seed=1), req(seed=2)])  # the service's batches are split too
    assert backend.steps_run - before == 3 + 3
    description.write_text(f'kind = "diffusers"\nmodel = "{tiny / "sd"}"\nindependent = "yes"\n')
    with pytest.raises(PolicyError, match=r"independent must be true or false, got 'yes'$"):
        load_backend(description)


def test_image_to_image_inpaint_and_step_progress(sd):
    base = sd.run([req(seed=1)])[0]
    seen = []
    sd.on_step = lambda step, total: seen.append((step, total))
    try:
        [i2i] = sd.run([req(image=base, strength=0.5, steps=4)])
    finally:
        sd.on_step = None
    assert seen == [(1, 2), (2, 2)]  # 4 steps at strength 0.5 run the last 2
    keep = Image.new("L", (64, 64), 0)
    keep.paste(255, (0, 0, 32, 64))  # repaint the left half only
    [inp] = sd.run([req(image=base, mask=keep, steps=3)])
    assert i2i.size == inp.size == (64, 64)
    assert png_bytes(i2i) != png_bytes(base) and png_bytes(inp) != png_bytes(base)


def test_instruction_editing_and_what_a_backend_cannot_do(sd, pix):
    base = sd.run([req(seed=1)])[0]
    [edited] = pix.run([req("make it blue", image=base, edit=True)])
    assert edited.size == (64, 64) and png_bytes(edited) != png_bytes(base)
    with pytest.raises(
        ImageBackendError,
        match=r"^image backend pix2pix \(StableDiffusionInstructPix2PixPipeline\) cannot do text-to-image; it can do edit$",
    ):
        asyncio.run(pix.generate([req()]))


# -- refused when the policy loads ---------------------------------------------


def write_policy(path, draft: str, refine: str, plan='kind = "testing.plan"\nsteps = 2') -> str:
    path.write_text(
        f"""name = "t"
[loop]
order = ["plan", "draft", "reflect", "refine"]
max_steps = 3
max_refines = 1
[stages.plan]
{plan}
[stages.draft]
{draft}
[stages.reflect]
kind = "testing.reflect"
[stages.refine]
{refine}
"""
    )
    return str(path)


def test_bad_descriptions_are_refused_at_load(tiny, tmp_path):
    missing = tmp_path / "missing.toml"
    missing.write_text(f'kind = "diffusers"\nmodel = "{tmp_path / "nowhere"}"\n')
    with pytest.raises(
        PolicyError,
        match=rf"^{missing}: diffusers refused its options: model folder {tmp_path / 'nowhere'} does not exist",
    ):
        load_backend(missing)
    wrong = tmp_path / "wrong.toml"
    wrong.write_text('kind = "diffuser"\nmodel = "x"\n')
    with pytest.raises(PolicyError, match=r"unknown backend kind 'diffuser'"):
        load_backend(wrong)
    refine_sd = f'kind = "diffusion.refine"\nbackend = "{tiny / "sd.toml"}"\nsize = 64\nsteps = 2'
    # An editing-only model cannot draw step 1 from scratch.
    policy = write_policy(
        tmp_path / "a.toml", f'kind = "diffusion.draft"\nbackend = "{tiny / "pix.toml"}"', refine_sd
    )
    with pytest.raises(PolicyError, match=r"backend pix2pix cannot do text-to-image \(it can do edit\)"):
        load_policy(policy)
    # A text-to-image model asked to edit.
    edit_sd = f'kind = "diffusion.refine"\nbackend = "{tiny / "sd.toml"}"\nmode = "edit"'
    policy = write_policy(
        tmp_path / "b.toml", f'kind = "diffusion.draft"\nbackend = "{tiny / "sd.toml"}"', edit_sd
    )
    with pytest.raises(
        PolicyError,
        match=r"diffusion.refine: backend sd cannot do edit \(it can do image-to-image, inpaint, text-to-image\)",
    ):
        load_policy(policy)


def test_the_bundled_tiny_description_loads_from_the_home_cache(tiny, monkeypatch, tmp_path):
    monkeypatch.setenv("HOME", str(tmp_path))
    shutil.copytree(tiny / "sd", tmp_path / ".cache" / "strokeagent" / "tiny-sd")
    backend = load_backend("tiny-sd")
    assert backend.pipeline_class == "StableDiffusionPipeline"
    assert backend.source == str(tmp_path / ".cache" / "strokeagent" / "tiny-sd")
    forget_backends()


# -- the composite stages, end to end ------------------------------------------


def composite_policy(tiny, tmp_path) -> str:
    draft = f'kind = "diffusion.draft"\nbackend = "{tiny / "sd.toml"}"\nedit_backend = "{tiny / "pix.toml"}"\nsize = 64\nsteps = 3'
    refine = (
        f'kind = "diffusion.refine"\nbackend = "{tiny / "sd.toml"}"\nsize = 64\nsteps = 4\nstrength = 0.5'
    )
    return write_policy(tmp_path / "composite.toml", draft, refine)


def test_composite_draws_then_edits_then_refines_and_repeats_by_seed(tiny, tmp_path):
    policy = composite_policy(tiny, tmp_path)
    traj = generate("a red apple left of a blue cup", policy=policy, seed=3, out=tmp_path / "r1")
    assert [len(s.images) for s in traj.steps] == [2, 2]
    tasks = [[im.meta["diffusion"]["task"] for im in s.images] for s in traj.steps]
    assert tasks == [["text-to-image", "image-to-image"], ["edit", "image-to-image"]]
    step2 = traj.steps[1].images
    assert step2[0].meta["diffusion"]["prompt"] == "add shape 2"  # the editor gets the step's instruction
    assert (
        step2[1].meta["diffusion"]["prompt"]
        == "redraw shape 2 darker. a red apple left of a blue cup: 2 of 2 shapes"
    )
    final = tmp_path / "r1" / "final.png"
    assert final.is_file() and (tmp_path / "r1" / "index.html").is_file()
    assert pixel_digest(Image.open(final)) == traj.final_image.sha256
    again = generate("a red apple left of a blue cup", policy=policy, seed=3, out=tmp_path / "r2")
    assert again.final_image.sha256 == traj.final_image.sha256
    other = generate("a red apple left of a blue cup", policy=policy, seed=4, out=tmp_path / "r3")
    assert other.final_image.sha256 != traj.final_image.sha256


def test_sketch_then_paint_keeps_the_sketch_document(tiny, tmp_path):
    draft = f'kind = "hybrid.draft"\nbackend = "{tiny / "sd.toml"}"\nsize = 64\nsteps = 4\nstrength = 0.75'
    refine = f'kind = "diffusion.refine"\nbackend = "{tiny / "pix.toml"}"\nsize = 64\nsteps = 2'
    policy = write_policy(tmp_path / "hybrid.toml", draft, refine, plan='kind = "sketch.plan"')
    traj = generate("a red apple left of a blue cup", policy=policy, seed=0, out=tmp_path / "h")
    assert [s.plan.instruction for s in traj.steps] == [
        "Draw a blue cup.",
        "Add a red apple to the left of the cup.",
    ]
    draft2 = traj.steps[1].images[0]
    # The second sketch added to the first: both objects are in the document the painting carries.
    assert sorted(i["cls"] for i in draft2.meta["sketch"]["instances"]) == ["apple", "cup"]
    assert draft2.meta["diffusion"] == {
        "backend": "sd",
        "task": "image-to-image",
        "prompt": traj.steps[1].plan.description,
        "seed": draft2.meta["diffusion"]["seed"],
        "steps": 4,
        "strength": 0.75,
    }
    assert traj.steps[1].images[1].meta["diffusion"]["task"] == "edit"


@pytest.mark.slow
def test_composite_from_the_cli(tiny, tmp_path):
    policy = composite_policy(tiny, tmp_path)
    r = run_cli(
        "run", "a red apple", "--policy", policy, "--seed", "3", "--out", str(tmp_path / "cli"), timeout=300
    )
    assert r.returncode == 0, r.stderr
    assert "done: 2 step(s)" in r.stderr
    assert (tmp_path / "cli" / "final.png").is_file() and (tmp_path / "cli" / "trajectory.json").is_file()
