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
    kept = model._kept[2]
    assert kept is not None and kept.get_max_length() == CACHE_BLOCK
    # The kept cache is emptied and reused: the same bytes again, in the same buffers.
    assert model.generate_image(ctx, seed=3).tobytes() == first.tobytes()
    assert model._kept[2] is kept


def test_compiled_step_agrees_with_the_eager_one(folder):
    model = JanusModel(str(folder), decode="compiled")
    ctx = model.new_context()
    model.add_text(ctx, "<prompt>a red apple</prompt>")
    assert model.generate_image(ctx, seed=0).size == (32, 32)  # the whole image through the compiled step
    logits = []
    for step in (model._image_logits, model._step(model._image_logits, "compiled")):
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


def written(model, ctx, seed):  # -> what one context leads to: text at two temperatures, then an image
    """Text written twice in a row on ``ctx`` (the second from where the first left the context), then an
    image painted after both: a context the writing left wrong would show in the second text or the image."""
    before = ctx.snapshot()
    first = model.generate_text(ctx, stop=(), max_new_tokens=12, seed=seed)
    second = model.generate_text(ctx, stop=(), max_new_tokens=12, seed=seed, temperature=1.0)
    image = model.generate_image(ctx, seed=seed)
    return first.ids, second.ids, ctx.length, vars(ctx.usage.since(before)), image.tobytes()


def test_static_writing_writes_what_the_dynamic_one_does_and_leaves_the_same_context(folder):
    model = JanusModel(str(folder))
    out = {}
    for decode in ("dynamic", "static"):
        model.decode = decode
        out[decode] = [written(model, model.fork(ctx), seed) for ctx in contexts(model) for seed in (0, 1)]
    assert out["static"] == out["dynamic"]
    texts = [ids for run in out["dynamic"] for ids in run[:2]]
    assert sum(len(ids) for ids in texts) > 40 and len(set(texts)) > 4  # it wrote, and not one thing everywhere
    kept = model._kept[1]  # text keeps a batch-1 cache of its own beside the painting's batch-2 one
    longest = out["static"][-1][2]  # the longest context, after its two writes
    assert kept.get_max_length() >= longest > CACHE_BLOCK and model._kept[2] is not kept


def test_writing_nothing_copies_nothing_and_keeps_no_cache(folder):
    model = JanusModel(str(folder), decode="static")
    ctx = model.new_context()
    model.add_text(ctx, "<prompt>a red apple</prompt>")
    length = ctx.length
    assert model.generate_text(ctx, stop=(), max_new_tokens=0, seed=0).ids == ()
    assert ctx.length == length and 1 not in model._kept


def test_compiled_writing_agrees_with_the_eager_one(folder):
    model = JanusModel(str(folder), decode="compiled")
    ctx = model.new_context()
    model.add_text(ctx, "<prompt>a red apple</prompt>")
    assert model.generate_text(model.fork(ctx), stop=(), max_new_tokens=8, seed=0).ids  # through the compiled step
    logits = []
    for step in (model._text_logits, model._step(model._text_logits, "compiled")):
        cache, mask, positions = model._static_rows([ctx.state.cache], room=8)
        with torch.no_grad():
            embeds = model.model.get_input_embeddings()(torch.tensor([[model.bos]]))
            logits.append(step(embeds, mask, positions, cache)[1].clone())
    torch.testing.assert_close(logits[1], logits[0], rtol=1e-4, atol=1e-5)


def test_a_process_run_with_the_static_cache_makes_what_the_dynamic_one_does(folder, tmp_path):
    import strokeagent
    from strokeagent.testing.unified import tiny_process_policy

    runs = {}
    for decode in ("dynamic", "static"):
        toml = write_backend(folder, tmp_path / f"{decode}.toml")
        toml.write_text(toml.read_text() + f'decode = "{decode}"\n')
        traj = strokeagent.generate("a red apple", policy=tiny_process_policy(toml), seed=0, out=tmp_path / decode)
        # Every image, every token the stages wrote, and what each stage prefilled and generated.
        runs[decode] = ([r.sha256 for s in traj.steps for r in s.images],
                        [st.value.meta.get("process", {}).get("ops") for s in traj.steps for st in s.states],
                        [(t.stage, t.prefilled_tokens, t.generated_tokens) for t in traj.timings])  # fmt: skip
    assert runs["static"] == runs["dynamic"]
    images, ops, usage = runs["dynamic"]
    assert len(images) >= 2 and sum(g for _, _, g in usage) > 50  # it painted and wrote
    assert load_backend(tmp_path / "static.toml")._kept.keys() == {1, 2}  # both went through static caches


@pytest.mark.parametrize("decode", ["dynamic", "static"])
def test_text_is_chosen_on_the_device_with_no_copy_of_the_logits_per_token(folder, decode, monkeypatch):
    model = JanusModel(str(folder), decode=decode)
    ctx = model.new_context()
    model.add_text(ctx, "<prompt>a red apple</prompt>")
    copies = []
    real = torch.Tensor.cpu
    monkeypatch.setattr(torch.Tensor, "cpu", lambda self, *a, **k: copies.append(self.shape) or real(self, *a, **k))
    out = model.generate_text(ctx, stop=(), max_new_tokens=12, seed=1, temperature=1.0)
    assert len(out.ids) == 12 and copies == []  # on a GPU a copy is a wait and 400 KB a token at Janus-Pro size


@pytest.mark.parametrize(("decode", "text_decode"), [("static", "dynamic"), ("dynamic", "static")])
def test_text_can_have_a_mode_of_its_own(folder, decode, text_decode):
    model = JanusModel(str(folder), decode=decode, text_decode=text_decode)
    ctx = model.new_context()
    model.add_text(ctx, "<prompt>a red apple</prompt>")
    ours = (model.generate_text(model.fork(ctx), stop=(), max_new_tokens=8, seed=2).ids,
            model.generate_image(ctx, seed=2).tobytes())  # fmt: skip
    # Each went its own way (a kept static cache is the sign: batch 1 for text, 2 for images), to the same result.
    assert (1 in model._kept, 2 in model._kept) == (text_decode == "static", decode == "static")
    plain = JanusModel(str(folder))
    assert ours == (plain.generate_text(plain.fork(ctx), stop=(), max_new_tokens=8, seed=2).ids,
                    plain.generate_image(ctx, seed=2).tobytes())  # fmt: skip


def test_text_decode_is_checked_like_decode(folder, tmp_path):
    with pytest.raises(ValueError, match="text_decode 'fast' is not one of dynamic, static, compiled"):
        JanusModel(str(folder), text_decode="fast")
    toml = write_backend(folder, tmp_path / "janus.toml")
    toml.write_text(toml.read_text() + 'decode = "compiled"\ntext_decode = "dynamic"\n')
    model = load_backend(toml)
    assert (model.decode, model.text_decode) == ("compiled", "dynamic")
