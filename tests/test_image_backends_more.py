"""More backend kinds on tiny random-weight diffusers pipelines: SDXL (two text encoders) and FLUX.1 Kontext
(an instruction editor with a flow-matching transformer), built offline, saved, and loaded by path."""

import os

import pytest
from PIL import Image

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from strokeagent.backends import load_backend  # noqa: E402
from strokeagent.backends.image import ImageRequest  # noqa: E402
from strokeagent.core.store import png_bytes  # noqa: E402


@pytest.fixture(scope="module")
def tiny_more(tmp_path_factory):
    """Tiny SDXL and FluxKontext folders and their backend descriptions, built once per module."""
    import torch

    from strokeagent.testing.diffusers import save_tiny

    torch.set_num_threads(1)  # what the descriptions ask for; a busy 2-core machine spins with more
    root = tmp_path_factory.mktemp("tiny-diffusers-more")
    for family in ("sdxl", "flux-kontext"):
        save_tiny(root / family, family)
        (root / f"{family}.toml").write_text(f'kind = "diffusers"\nmodel = "{root / family}"\nthreads = 1\n')
    return root


@pytest.fixture(scope="module")
def sdxl(tiny_more):
    return load_backend(tiny_more / "sdxl.toml")


@pytest.fixture(scope="module")
def kontext(tiny_more):
    return load_backend(tiny_more / "flux-kontext.toml")


def req(prompt="a red apple", seed=1, steps=2, size=64, **kw):
    return ImageRequest(prompt, width=size, height=size, steps=steps, seed=seed, **kw)


def test_sdxl_loads_by_path_and_derives_its_twins(sdxl):
    assert sdxl.pipeline_class == "StableDiffusionXLPipeline"
    assert sdxl.tasks == {"text-to-image", "image-to-image", "inpaint"}
    t2i, i2i = sdxl._pipes["text-to-image"], sdxl._pipes["image-to-image"]
    assert type(i2i).__name__ == "StableDiffusionXLImg2ImgPipeline"
    # from_pipe shares every module, both text encoders included: one copy of the weights.
    assert i2i.unet is t2i.unet and i2i.text_encoder_2 is t2i.text_encoder_2
    assert type(t2i.text_encoder_2).__name__ == "CLIPTextModelWithProjection"


def test_sdxl_pictures_converted_on_the_device_are_the_bytes_diffusers_makes(sdxl, monkeypatch):
    from conftest import picture, pixels_both_ways

    requests = [req(seed=3), req(seed=4, image=picture(1), strength=0.7)]
    on_device, by_pil, asked = pixels_both_ways(sdxl, monkeypatch, requests)
    assert asked == ["pt", "pt", "pil", "pil"]
    assert on_device == by_pil and on_device[0] != on_device[1]


def test_sdxl_text_to_image_repeats_by_seed(sdxl):
    a, b, c = sdxl.run([req(seed=5)]) + sdxl.run([req(seed=5)]) + sdxl.run([req(seed=6)])
    assert a.size == (64, 64)
    assert png_bytes(a) == png_bytes(b)
    assert png_bytes(a) != png_bytes(c)


def test_sdxl_image_to_image_and_one_call_per_batch(sdxl):
    base = sdxl.run([req(seed=1)])[0]
    [i2i] = sdxl.run([req(image=base, strength=0.5, steps=4, seed=2)])
    assert i2i.size == (64, 64) and png_bytes(i2i) != png_bytes(base)
    [again] = sdxl.run([req(image=base, strength=0.5, steps=4, seed=2)])
    assert png_bytes(again) == png_bytes(i2i)
    before = sdxl.steps_run
    images = sdxl.run([req("a red apple", seed=1), req("a blue cup", seed=2)])
    assert sdxl.steps_run - before == 2  # one pipeline call of 2 steps for both requests, not 2 + 2
    assert [im.size for im in images] == [(64, 64)] * 2 and png_bytes(images[0]) != png_bytes(images[1])


def test_flux_kontext_loads_by_path_as_an_editor(kontext):
    assert kontext.pipeline_class == "FluxKontextPipeline"
    # Kontext's input image is optional: the backend lets it draw from scratch as well as edit.
    assert kontext.tasks == {"edit", "text-to-image"}
    assert type(kontext._pipes["edit"].transformer).__name__ == "FluxTransformer2DModel"


def test_flux_kontext_edits_an_image_and_repeats_by_seed(kontext):
    source = Image.new("RGB", (64, 64), (200, 30, 30))
    a, b, c = (kontext.run([req("make it blue", image=source, edit=True, seed=s)])[0] for s in (3, 3, 4))
    assert a.size == (64, 64)
    assert png_bytes(a) == png_bytes(b)
    assert png_bytes(a) != png_bytes(c)
