"""The BAGEL adapter. BAGEL is not on PyPI: the tiny-model test runs only beside a checkout.

Set ``STROKEAGENT_BAGEL_CHECKOUT`` to a clone of https://github.com/ByteDance-Seed/Bagel whose
requirements (torchvision, flash-attn, transformers 4.49, opencv) import in this environment.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

import pytest

import strokeagent
from strokeagent.errors import PolicyError
from strokeagent.unified.bagel import BagelModel

CHECKOUT = os.environ.get("STROKEAGENT_BAGEL_CHECKOUT")


def test_a_missing_checkout_or_weights_is_one_clear_line(tmp_path):
    with pytest.raises(PolicyError, match=r"no BAGEL checkout at .*missing inferencer.py.*git clone") as e:
        BagelModel(checkout=str(tmp_path / "nowhere"), path=str(tmp_path / "weights"))
    assert "\n" not in str(e.value)
    for name in ("inferencer.py", "modeling/bagel/bagel.py", "data/transforms.py"):
        (tmp_path / "Bagel" / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "Bagel" / name).write_text("")
    with pytest.raises(PolicyError, match=r"no BAGEL weights at .*missing llm_config.json.*BAGEL-7B-MoT"):
        BagelModel(checkout=str(tmp_path / "Bagel"), path=str(tmp_path / "weights"))


def _tiny_inferencer(checkout: Path):
    """A random-weight BAGEL a few MB in size, built from the checkout's own modules."""
    sys.path.insert(0, str(checkout))
    try:
        import torch
        from data.data_utils import add_special_tokens
        from data.transforms import ImageTransform
        from inferencer import InterleaveInferencer
        from modeling.autoencoder import AutoEncoder, AutoEncoderParams
        from modeling.bagel import (
            Bagel,
            BagelConfig,
            Qwen2Config,
            Qwen2ForCausalLM,
            SiglipVisionConfig,
            SiglipVisionModel,
        )
        from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
        from transformers import PreTrainedTokenizerFast
    except ImportError as e:
        pytest.skip(f"the BAGEL checkout at {checkout} does not import here: {e}")
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer, tok.decoder = pre_tokenizers.ByteLevel(add_prefix_space=False), decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=300, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  special_tokens=["<|endoftext|>"])  # fmt: skip
    tok.train_from_iterator(
        ["<ins>draw a red apple</ins><des>a red apple</des><inspect>ok</inspect>"] * 4, trainer
    )
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|endoftext|>", pad_token="<|endoftext|>")
    tokenizer, new_ids, _ = add_special_tokens(fast)
    torch.manual_seed(0)
    llm = Qwen2Config(vocab_size=len(tokenizer) + 8, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, qk_norm=True, tie_word_embeddings=False,
                      layer_module="Qwen2MoTDecoderLayer", freeze_und=False)  # fmt: skip
    vit = SiglipVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=4,
                             image_size=56, patch_size=14, rope=False)  # fmt: skip
    ae = AutoEncoderParams(resolution=64, in_channels=3, downsample=8, ch=32, out_ch=3, ch_mult=[1, 1, 1, 1],
                           num_res_blocks=1, z_channels=16, scale_factor=0.3611, shift_factor=0.1159)  # fmt: skip
    config = BagelConfig(visual_gen=True, visual_und=True, llm_config=llm, vit_config=vit, vae_config=ae,
                         latent_patch_size=2, max_latent_size=64)  # fmt: skip
    model = Bagel(Qwen2ForCausalLM(llm), SiglipVisionModel(vit), config).eval()
    model.vit_model.vision_model.embeddings.convert_conv2d_to_linear(vit)
    vae = AutoEncoder(ae).eval()
    return InterleaveInferencer(
        model, vae, tokenizer, ImageTransform(64, 32, 16), ImageTransform(56, 28, 14), new_ids
    )


@pytest.mark.skipif(
    not CHECKOUT,
    reason="no BAGEL checkout: set STROKEAGENT_BAGEL_CHECKOUT to a clone of ByteDance-Seed/Bagel",
)
def test_a_tiny_bagel_runs_the_four_stages_on_its_kv_cache():
    from strokeagent.loop import LoopSpec
    from strokeagent.policy import Policy
    from strokeagent.unified.process import ProcessStages

    model = BagelModel.from_inferencer(_tiny_inferencer(Path(CHECKOUT).expanduser()), size=64)
    ctx = model.new_context()
    model.add_text(ctx, "<prompt>a red apple</prompt>")
    text_tokens = len(model.tokenizer.encode("<prompt>a red apple</prompt>")) + 2  # <|im_start|> … <|im_end|>
    assert ctx.length == text_tokens and ctx.usage.prefilled == 2 * text_tokens  # full + image-CFG contexts
    first = model.generate_image(ctx, seed=1, guidance=4.0, steps=3)
    assert (
        first.size == (64, 64)
        and ctx.usage.generated == (64 // model.inferencer.model.latent_downsample) ** 2
    )
    assert model.generate_image(ctx, seed=1, guidance=4.0, steps=3).tobytes() == first.tobytes()

    stages = ProcessStages(model, max_text_tokens=8, temperature=1.0, image_steps=3, size=64,
                           on_unreadable_inspection="conflict", format={"preamble": ""})  # fmt: skip
    policy = Policy("bagel-tiny", LoopSpec(max_steps=2, max_refines=1), stages, stages, stages, stages)
    out = Path(tempfile.mkdtemp())
    a = strokeagent.generate("a red apple", policy=policy, seed=0, out=out / "a")
    b = strokeagent.generate("a red apple", policy=policy, seed=0, out=out / "b")
    assert [t.stage for t in a.timings[:4]] == ["plan", "draft", "reflect", "refine"]
    assert all(t.prefilled_tokens is not None for t in a.timings)
    assert a.final_image.sha256 == b.final_image.sha256
