"""Tiny random-weight diffusers pipelines, built offline, for tests and benchmarks.

    >>> folder = save_tiny_sd("/tmp/tiny-sd")            # doctest: +SKIP
    >>> backend = DiffusersBackend(model=str(folder))     # doctest: +SKIP

Nothing is downloaded: every component is built from a config after
``torch.manual_seed(0)`` (as diffusers' own tests do in ``get_dummy_components``),
the CLIP tokenizer from an in-memory vocabulary. The pipelines are saved with
``save_pretrained`` so tests load them by path through the backend's real
loading code. A 64×64 call with 2–4 steps takes about 0.1 s on one CPU core.

    python -m strokeagent.testing.diffusers ~/.cache/strokeagent/tiny-sd            # what backends/tiny-sd.toml names
    python -m strokeagent.testing.diffusers ~/.cache/strokeagent/tiny-pix2pix pix2pix
    python -m strokeagent.testing.diffusers ~/.cache/strokeagent/tiny-sdxl sdxl
    python -m strokeagent.testing.diffusers ~/.cache/strokeagent/tiny-kontext flux-kontext
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

#: Sizes from OFFLINE-MODELS.md: the smallest that still run every code path.
CROSS_DIM = 32


def _byte_symbols() -> set[str]:
    """The 256 printable symbols byte-level BPE maps bytes to (GPT-2's table: printable bytes keep their
    character, the rest are shifted past 255)."""
    printable = [
        *range(ord("!"), ord("~") + 1),
        *range(ord("¡"), ord("¬") + 1),
        *range(ord("®"), ord("ÿ") + 1),
    ]
    shifted = [b for b in range(256) if b not in printable]
    return {chr(b) for b in printable} | {chr(256 + i) for i in range(len(shifted))}


def tiny_clip_tokenizer():  # -> CLIPTokenizer
    """A CLIP tokenizer whose vocabulary is every byte-level symbol (with its ``</w>`` form): any text encodes."""
    from transformers import CLIPTokenizer

    symbols = sorted(_byte_symbols())
    vocab: dict[str, int] = {}
    for s in [*symbols, *(f"{s}</w>" for s in symbols), "<|startoftext|>", "<|endoftext|>"]:
        vocab.setdefault(s, len(vocab))
    # One merge keeps the BPE machinery honest without making the vocabulary large.
    merges = [("a", "n</w>")]
    vocab.setdefault("an</w>", len(vocab))
    return CLIPTokenizer(vocab=vocab, merges=merges, model_max_length=77)


def _sd_components(unet_in_channels: int = 4) -> dict[str, Any]:
    import torch
    from diffusers import DDIMScheduler, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    tokenizer = tiny_clip_tokenizer()
    torch.manual_seed(0)
    unet = UNet2DConditionModel(
        block_out_channels=(32, 64),
        layers_per_block=1,
        sample_size=32,
        in_channels=unet_in_channels,
        out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=CROSS_DIM,
        norm_num_groups=32,
    )
    vae = _tiny_vae()
    torch.manual_seed(0)
    text_encoder = CLIPTextModel(
        CLIPTextConfig(
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
            hidden_size=CROSS_DIM,
            intermediate_size=37,
            num_attention_heads=4,
            num_hidden_layers=2,
            vocab_size=len(tokenizer),
            max_position_embeddings=77,
            projection_dim=CROSS_DIM,
        )
    )
    scheduler = DDIMScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        clip_sample=False,
        set_alpha_to_one=False,
        steps_offset=1,
    )
    return {
        "unet": unet,
        "vae": vae,
        "text_encoder": text_encoder,
        "tokenizer": tokenizer,
        "scheduler": scheduler,
        "safety_checker": None,
        "feature_extractor": None,
    }


def tiny_sd_pipeline():  # -> StableDiffusionPipeline
    """A Stable Diffusion 1.5-shaped text-to-image pipeline with random weights (~1 MB)."""
    from diffusers import StableDiffusionPipeline

    return StableDiffusionPipeline(**_sd_components(), requires_safety_checker=False)


def tiny_pix2pix_pipeline():  # -> StableDiffusionInstructPix2PixPipeline
    """An InstructPix2Pix instruction-editing pipeline: the SD shape with 8 UNet input channels."""
    from diffusers import StableDiffusionInstructPix2PixPipeline

    return StableDiffusionInstructPix2PixPipeline(
        **_sd_components(unet_in_channels=8), requires_safety_checker=False
    )


def _tiny_vae(**extra: Any) -> Any:
    """The SD-family tiny VAE: two blocks of 32 and 64 channels, 4 latent channels."""
    import torch
    from diffusers import AutoencoderKL

    torch.manual_seed(0)
    return AutoencoderKL(
        block_out_channels=[32, 64],
        in_channels=3,
        out_channels=3,
        down_block_types=["DownEncoderBlock2D", "DownEncoderBlock2D"],
        up_block_types=["UpDecoderBlock2D", "UpDecoderBlock2D"],
        latent_channels=4,
        norm_num_groups=32,
        **extra,
    )


def _clip_text_config(tokenizer: Any, hidden_size: int = CROSS_DIM):  # -> CLIPTextConfig
    from transformers import CLIPTextConfig

    return CLIPTextConfig(
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        hidden_size=hidden_size,
        intermediate_size=37,
        num_attention_heads=4,
        num_hidden_layers=2,
        vocab_size=len(tokenizer),
        max_position_embeddings=77,
        projection_dim=hidden_size,
        hidden_act="gelu",
    )


def tiny_sdxl_pipeline():  # -> StableDiffusionXLPipeline
    """A Stable Diffusion XL-shaped text-to-image pipeline with random weights: two CLIP text encoders (the
    second with a projection, whose pooled output and the size/crop conditioning feed the UNet's
    ``text_time`` embedding), their hidden states concatenated as the cross-attention input."""
    import torch
    from diffusers import (
        EulerDiscreteScheduler,
        StableDiffusionXLPipeline,
        UNet2DConditionModel,
    )
    from transformers import CLIPTextModel, CLIPTextModelWithProjection

    tokenizer, tokenizer_2 = tiny_clip_tokenizer(), tiny_clip_tokenizer()
    time_dim = 8  # six size/crop numbers, each embedded in time_dim, plus the pooled text (CROSS_DIM)
    torch.manual_seed(0)
    unet = UNet2DConditionModel(
        block_out_channels=(32, 64),
        layers_per_block=1,
        sample_size=32,
        in_channels=4,
        out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        attention_head_dim=(2, 4),
        use_linear_projection=True,
        addition_embed_type="text_time",
        addition_time_embed_dim=time_dim,
        transformer_layers_per_block=(1, 2),
        projection_class_embeddings_input_dim=6 * time_dim + CROSS_DIM,
        cross_attention_dim=2 * CROSS_DIM,  # both encoders' hidden states, side by side
        norm_num_groups=32,
    )
    vae = _tiny_vae(sample_size=128)
    torch.manual_seed(0)
    text_encoder = CLIPTextModel(_clip_text_config(tokenizer))
    torch.manual_seed(0)
    text_encoder_2 = CLIPTextModelWithProjection(_clip_text_config(tokenizer_2))
    scheduler = EulerDiscreteScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        steps_offset=1,
        timestep_spacing="leading",
    )
    return StableDiffusionXLPipeline(
        vae=vae,
        text_encoder=text_encoder,
        text_encoder_2=text_encoder_2,
        tokenizer=tokenizer,
        tokenizer_2=tokenizer_2,
        unet=unet,
        scheduler=scheduler,
        add_watermarker=False,
    )


def tiny_t5_tokenizer():  # -> T5Tokenizer
    """A sentencepiece-free T5 tokenizer: every printable ASCII character (and its word-start form) is a piece."""
    from transformers import T5Tokenizer

    pieces = ["<pad>", "</s>", "<unk>", "\u2581"]
    for c in map(chr, range(ord("!"), ord("~") + 1)):
        pieces += [c, f"\u2581{c}"]
    return T5Tokenizer(vocab=[(p, -float(i)) for i, p in enumerate(pieces)], extra_ids=0)


def tiny_flux_kontext_pipeline():  # -> FluxKontextPipeline
    """A FLUX.1 Kontext-shaped instruction-editing pipeline with random weights: CLIP (pooled) and T5 (sequence)
    text encoders, a one-double-block, one-single-block FluxTransformer2DModel, and a VAE with FLUX's settings
    (no quant convs, its shift and scaling factors). Kontext resizes every input image, and sizes its output, to
    about a megapixel whatever the request asks (the backend then resizes to the request's size), so the VAE is
    4 channels wide, downsamples 16× (the real one: 8×) and has no mid-block attention: a 2-step edit then
    takes about 1 s on one CPU core."""
    import torch
    from diffusers import (
        AutoencoderKL,
        FlowMatchEulerDiscreteScheduler,
        FluxKontextPipeline,
        FluxTransformer2DModel,
    )
    from transformers import CLIPTextModel, T5Config, T5EncoderModel

    tokenizer, tokenizer_2 = tiny_clip_tokenizer(), tiny_t5_tokenizer()
    torch.manual_seed(0)
    transformer = FluxTransformer2DModel(
        patch_size=1,
        in_channels=4 * 4,  # 4 latent channels, packed 2×2
        num_layers=1,
        num_single_layers=1,
        attention_head_dim=16,
        num_attention_heads=2,
        joint_attention_dim=CROSS_DIM,
        pooled_projection_dim=CROSS_DIM,
        axes_dims_rope=[4, 4, 8],
        guidance_embeds=True,
    )
    torch.manual_seed(0)
    text_encoder = CLIPTextModel(_clip_text_config(tokenizer))
    torch.manual_seed(0)
    text_encoder_2 = T5EncoderModel(
        T5Config(
            vocab_size=len(tokenizer_2),
            d_model=CROSS_DIM,
            d_kv=8,
            d_ff=37,
            num_layers=2,
            num_heads=4,
            relative_attention_num_buckets=8,
            pad_token_id=tokenizer_2.pad_token_id,
            eos_token_id=tokenizer_2.eos_token_id,
            decoder_start_token_id=tokenizer_2.pad_token_id,
        )
    )
    torch.manual_seed(0)
    vae = AutoencoderKL(
        in_channels=3,
        out_channels=3,
        block_out_channels=(4, 4, 4, 4, 4),
        down_block_types=["DownEncoderBlock2D"] * 5,
        up_block_types=["UpDecoderBlock2D"] * 5,
        layers_per_block=1,
        latent_channels=4,
        norm_num_groups=4,
        sample_size=64,
        use_quant_conv=False,
        use_post_quant_conv=False,
        mid_block_add_attention=False,
        shift_factor=0.0609,
        scaling_factor=1.5035,
    )
    return FluxKontextPipeline(
        scheduler=FlowMatchEulerDiscreteScheduler(),
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        text_encoder_2=text_encoder_2,
        tokenizer_2=tokenizer_2,
        transformer=transformer,
    )


BUILDERS = {
    "sd": tiny_sd_pipeline,
    "pix2pix": tiny_pix2pix_pipeline,
    "sdxl": tiny_sdxl_pipeline,
    "flux-kontext": tiny_flux_kontext_pipeline,
}


def save_tiny(folder: str | Path, family: str = "sd") -> Path:
    """Build the ``family`` pipeline and ``save_pretrained`` it (safetensors) into ``folder``; return it."""
    if family not in BUILDERS:
        raise ValueError(f"unknown tiny pipeline {family!r}; choose from {', '.join(BUILDERS)}")
    folder = Path(folder).expanduser()
    BUILDERS[family]().save_pretrained(folder, safe_serialization=True)
    return folder


def save_tiny_sd(folder: str | Path) -> Path:
    return save_tiny(folder, "sd")


def save_tiny_pix2pix(folder: str | Path) -> Path:
    return save_tiny(folder, "pix2pix")


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    if not args or len(args) > 2:
        raise SystemExit(f"usage: python -m strokeagent.testing.diffusers FOLDER [{'|'.join(BUILDERS)}]")
    print(save_tiny(args[0], args[1] if len(args) > 1 else "sd"))


if __name__ == "__main__":
    main()
