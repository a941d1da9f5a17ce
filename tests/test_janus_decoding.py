"""The Janus backend's ``decode`` option: a static KV cache (and its compiled step) paints what the dynamic one does."""

from __future__ import annotations

import pytest

pytest.importorskip("transformers", reason="the janus adapter needs the transformers extra")
torch = pytest.importorskip("torch")

from strokeagent.backends import load_backend  # noqa: E402
from strokeagent.errors import PolicyError  # noqa: E402
from strokeagent.testing.unified import build_tiny_janus, write_backend  # noqa: E402
from strokeagent.unified.janus import CACHE_BLOCK, JanusModel  # noqa: E402


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return build_tiny_janus(tmp_path_factory.mktemp("tiny-janus") / "model")


def contexts(model):  # -> the contexts the comparisons paint from
    """Empty but for BOS, a prompt, a prompt and an image, and one longer than a cache block."""
    bare = model.new_context()
    prompt = model.new_context()
    model.add_text(prompt, "<prompt>a red apple left of a blue cup</prompt>")
    with_image = model.fork(prompt)
    model.add_image(with_image, model.generate_image(prompt, seed=7))
    long = model.fork(with_image)
    model.add_text(long, "<plan>the apple, then the cup</plan>" * 8)
    assert long.length > CACHE_BLOCK  # the kept static cache has to grow for this one
    return [bare, prompt, with_image, long]


def test_static_cache_paints_the_same_bytes_as_the_dynamic_one(folder):
    model = JanusModel(str(folder))
    assert model.decode == "dynamic"  # the default: recorded runs keep their bytes
    painted = {}
    for decode in ("dynamic", "static"):
        model.decode = decode
        painted[decode] = [model.generate_image(ctx, seed=seed, guidance=5.0).tobytes()
                           for ctx in contexts(model) for seed in (0, 1, 2)]  # fmt: skip
    assert painted["static"] == painted["dynamic"]
    assert len(set(painted["dynamic"][:3])) == 3  # the seeds paint apart: the comparison can tell


def test_static_painting_leaves_the_context_and_its_usage_as_dynamic_does(folder):
    model = JanusModel(str(folder), decode="static")
    ctx = model.new_context()
    model.add_text(ctx, "<prompt>a cat</prompt>")
    length, before, logits = ctx.length, ctx.snapshot(), ctx.state.logits.clone()
    first = model.generate_image(ctx, seed=3)
    assert ctx.length == length and torch.equal(ctx.state.logits, logits)
    assert ctx.usage.since(before).prefilled == 1 + 2 and ctx.usage.since(before).generated == 16
    kept = model._kept_cache
    assert kept is not None and kept.get_max_length() == CACHE_BLOCK
    # The kept cache is emptied and reused: the same bytes again, in the same buffers.
    assert model.generate_image(ctx, seed=3).tobytes() == first.tobytes()
    assert model._kept_cache is kept


def test_compiled_step_agrees_with_the_eager_one(folder):
    model = JanusModel(str(folder), decode="compiled")
    ctx = model.new_context()
    model.add_text(ctx, "<prompt>a red apple</prompt>")
    assert model.generate_image(ctx, seed=0).size == (32, 32)  # the whole image through the compiled step
    logits = []
    for step in (model._image_logits, model._step()):
        cache, mask, positions = model._guidance_pair(ctx, [model.bos], room=model.num_image_tokens)
        with torch.no_grad():
            embeds = model.model.get_input_embeddings()(torch.tensor([[model.boi]])).expand(2, -1, -1)
            logits.append(step(embeds, mask, positions, cache).clone())
    # Compiled kernels may round differently from eager ones; on this CPU they painted the same bytes.
    torch.testing.assert_close(logits[1], logits[0], rtol=1e-4, atol=1e-5)


def test_decode_is_a_backend_option_checked_when_it_loads(folder, tmp_path):
    toml = write_backend(folder, tmp_path / "janus.toml")
    toml.write_text(toml.read_text() + 'decode = "static"\n')
    assert load_backend(toml).decode == "static"
    toml.write_text(toml.read_text().replace('"static"', '"fast"'))
    with pytest.raises(PolicyError, match="decode 'fast' is not one of dynamic, static, compiled"):
        load_backend(toml)
