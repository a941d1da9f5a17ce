"""BAGEL (the paper's base model) through a user's checkout of its repository, as a ``UnifiedModel``.

    >>> model = BagelModel(checkout="~/src/Bagel", path="~/models/BAGEL-7B-MoT")   # doctest: +SKIP

BAGEL is not on PyPI or in transformers: point ``checkout`` at a clone of
https://github.com/ByteDance-Seed/Bagel (its ``requirements.txt`` installed,
flash-attn included) and ``path`` at the weights (``ByteDance-Seed/BAGEL-7B-MoT``:
``llm_config.json``, ``vit_config.json``, ``ae.safetensors``, ``ema.safetensors``
and the tokenizer). Nothing of BAGEL is copied here: the adapter imports the
checkout's modules and drives the building blocks its ``InterleaveInferencer``
uses (``update_context_text``, ``update_context_image``, ``gen_text``,
``gen_image``), with BAGEL's ``NaiveCache`` as the context.

How the context operations map onto BAGEL:

- The context is three BAGEL gen-contexts, as ``interleave_inference`` keeps
  them: the full one; the text-CFG one (the full one before the newest text);
  the image-CFG one (the texts only).
- ``add_text`` is one ``update_context_text`` (BAGEL wraps each text in
  ``<|im_start|>…<|im_end|>``); ``add_image`` is ``update_context_image`` (VAE and
  ViT tokens).
- ``generate_text`` runs BAGEL's ``gen_text`` on a copy of the cache (as BAGEL
  does), cuts the text at the first stop string and adds it back with
  ``update_context_text``: BAGEL cannot stop on a string, so its own words are
  prefilled once more (and counted as prefilled).
- ``generate_image`` is ``gen_image`` (rectified flow, ``steps`` timesteps,
  ``guidance`` the text CFG scale); BAGEL can edit, because the previous image
  is in the context as VAE tokens, so a refinement is an edit.
- Token counts come from BAGEL's own ``kv_lens``; an image's generated count is
  its latent tokens (painted over ``steps`` passes).
- BAGEL's inference code casts attention inputs to bfloat16 itself, so every
  call runs under bfloat16 autocast on the model's device (CPU too). Its VAE
  samples the posterior: ``add_image`` encodes under a fixed seed, so an image
  always becomes the same context tokens. Its ``generate_text`` stops before
  keeping the end-of-turn token: an answer shorter than the cap ended its turn.

Verified against the public repository (commit 056b5fd) with a tiny random-weight
BAGEL on CPU (``tiny_inferencer``): docs/bagel-check.md.
"""

from __future__ import annotations

import copy
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from strokeagent.core.threads import OwnThread
from strokeagent.errors import PolicyError
from strokeagent.unified.protocol import Context, TextOutput

_CHECKOUT_FILES = ("inferencer.py", "modeling/bagel/bagel.py", "data/transforms.py")
_WEIGHT_FILES = ("llm_config.json", "vit_config.json", "ae.safetensors", "ema.safetensors")


@dataclass
class _BagelState:
    full: dict[str, Any]  # BAGEL gen-context: kv_lens, ropes, past_key_values
    cfg_text: dict[str, Any]
    cfg_img: dict[str, Any]


def check_checkout(checkout: str | Path) -> Path:
    """The checkout folder, or a one-line ``PolicyError`` saying what is missing."""
    folder = Path(checkout).expanduser()
    missing = [f for f in _CHECKOUT_FILES if not (folder / f).is_file()]
    if missing:
        raise PolicyError(
            f"no BAGEL checkout at {folder} (missing {missing[0]}); "
            f"`git clone https://github.com/ByteDance-Seed/Bagel {folder}` and install its requirements, "
            "or set `checkout` to where it is"
        )
    return folder


class BagelModel(OwnThread):
    """A BAGEL checkout and its weights, loaded once; see the module docstring."""

    def __init__(
        self,
        checkout: str,
        path: str,
        device: str = "cuda",
        size: int = 1024,
        cfg_img_scale: float = 1.5,
        timestep_shift: float = 3.0,
    ) -> None:
        repo = check_checkout(checkout)
        weights = Path(path).expanduser()
        missing = [f for f in _WEIGHT_FILES if not (weights / f).is_file()]
        if missing:
            raise PolicyError(
                f"no BAGEL weights at {weights} (missing {missing[0]}); "
                f"`hf download ByteDance-Seed/BAGEL-7B-MoT --local-dir {weights}`, or set `path` to where they are"
            )
        if str(repo) not in sys.path:
            sys.path.insert(0, str(repo))  # BAGEL's modules import each other as top-level packages
        self.native_size: int | None = None  # any multiple of 16 up to its latent limit
        self.size, self.cfg_img_scale, self.timestep_shift = size, cfg_img_scale, timestep_shift
        self.inferencer = load_inferencer(weights, device)
        self.tokenizer = self.inferencer.tokenizer
        self.ids = self.inferencer.new_token_ids

    @classmethod
    def from_inferencer(cls, inferencer: Any, size: int = 1024, cfg_img_scale: float = 1.5) -> BagelModel:
        """Wrap an ``InterleaveInferencer`` built elsewhere (a notebook, a test with a tiny model)."""
        self = cls.__new__(cls)
        self.native_size, self.size, self.cfg_img_scale, self.timestep_shift = None, size, cfg_img_scale, 3.0
        self.inferencer, self.tokenizer, self.ids = inferencer, inferencer.tokenizer, inferencer.new_token_ids
        return self

    # -- contexts --------------------------------------------------------------

    def new_context(self) -> Context:
        empty = self.inferencer.init_gen_context()
        return Context(state=_BagelState(empty, copy.deepcopy(empty), copy.deepcopy(empty)))

    def fork(self, ctx: Context) -> Context:
        return Context(length=ctx.length, usage=ctx.snapshot(), state=copy.deepcopy(ctx.state))

    def drop(self, ctx: Context) -> None:
        ctx.state = None

    # -- adding ----------------------------------------------------------------

    def add_text(self, ctx: Context, text: str) -> None:
        s = ctx.state
        before = _kv_len(s.full) + _kv_len(s.cfg_img)
        with self._autocast():
            s.cfg_text = copy.deepcopy(s.full)
            s.full = self.inferencer.update_context_text(text, s.full)
            s.cfg_img = self.inferencer.update_context_text(text, s.cfg_img)
        ctx.usage.prefilled += _kv_len(s.full) + _kv_len(s.cfg_img) - before
        ctx.length = _kv_len(s.full)

    def add_image(self, ctx: Context, image) -> None:  # noqa: ANN001 - a PIL image
        import torch

        s = ctx.state
        before = _kv_len(s.full)
        image = self.inferencer.vae_transform.resize_transform(image.convert("RGB"))
        # BAGEL's VAE samples its posterior: a fixed seed makes an image's tokens one value, so a
        # context replayed from a trajectory equals the live one whatever ran before.
        with self._autocast(), torch.random.fork_rng(devices=_cuda_devices()):
            torch.manual_seed(0)
            s.full = self.inferencer.update_context_image(image, s.full, vae=True, vit=True)
        s.cfg_text = copy.deepcopy(s.full)
        ctx.usage.prefilled += _kv_len(s.full) - before
        ctx.length = _kv_len(s.full)

    def add_tokens(self, ctx: Context, ids: tuple[int, ...]) -> None:
        # BAGEL keeps generated text by prefilling it again; replay does the same.
        self.add_text(ctx, self.tokenizer.decode(list(ids)))

    # -- generating ------------------------------------------------------------

    def generate_text(
        self, ctx: Context, *, stop: tuple[str, ...], max_new_tokens: int, seed: int, temperature: float = 0.0
    ) -> TextOutput:
        import torch

        torch.manual_seed(seed)  # BAGEL samples from torch's global generator
        s = ctx.state
        with self._autocast():
            inputs = self.inferencer.model.prepare_start_tokens(s.full["kv_lens"], s.full["ropes"], self.ids)
            cache = copy.deepcopy(s.full["past_key_values"])
            out = self.inferencer.model.generate_text(
                past_key_values=cache,
                max_length=max_new_tokens + 1,  # its first row is the start token it was given
                do_sample=temperature > 0,
                temperature=max(temperature, 1e-5),
                end_token_id=self.ids["eos_token_id"],
                **inputs,
            )
        ids = [int(t) for t in out[1:, 0]]
        # BAGEL stops *before* keeping the end token: a short answer is one that ended its turn.
        reason, matched = ("eos" if len(ids) < max_new_tokens else "length"), None
        ctx.usage.generated += len(ids) + (reason == "eos")
        if self.ids["start_of_image"] in ids:
            ids, reason = ids[: ids.index(self.ids["start_of_image"])], "image"
        text = self.tokenizer.decode(ids)
        cuts = [(text.find(s) + len(s), s) for s in stop if s in text]
        if cuts:
            end, matched = min(cuts)
            text, reason = text[:end], "stop"
            ids = self.tokenizer.encode(text)
        self.add_text(ctx, text)
        return TextOutput(text, tuple(ids), reason, matched)  # type: ignore[arg-type]

    def generate_image(
        self,
        ctx: Context,
        *,
        seed: int,
        guidance: float = 4.0,
        steps: int | None = None,
        size: int | None = None,
    ):  # -> PIL.Image.Image
        import torch

        side = size or self.size
        if side % 16:
            raise ValueError(f"BAGEL paints sides that are multiples of 16; asked for {side}")
        torch.manual_seed(seed)
        s = ctx.state
        with self._autocast():
            image = self.inferencer.gen_image(
                (side, side),
                s.full,
                cfg_text_precontext=s.cfg_text,
                cfg_img_precontext=s.cfg_img,
                cfg_text_scale=guidance,
                cfg_img_scale=self.cfg_img_scale,
                num_timesteps=steps or 50,
                timestep_shift=self.timestep_shift,
            )
        model = self.inferencer.model
        ctx.usage.generated += (side // model.latent_downsample) ** 2
        return image

    def _autocast(self):  # noqa: ANN202
        import torch

        # BAGEL's inference code casts attention inputs to bfloat16 itself (flash-attn's dtype), so the
        # rest must run under bfloat16 autocast too, on whatever device the model is (CPU included).
        device = next(self.inferencer.model.parameters()).device.type
        return torch.autocast(device_type=device, dtype=torch.bfloat16)


def _cuda_devices() -> list[int]:
    import torch

    return list(range(torch.cuda.device_count())) if torch.cuda.is_available() else []


def _kv_len(gen_context: dict[str, Any]) -> int:
    return int(gen_context["kv_lens"][0])


#: What BAGEL's ``app.py`` hard-codes about BAGEL-7B-MoT. A folder saved by ``BagelTrainee`` from
#: another shape (a tiny test model) says its own in ``bagel.json``.
BAGEL_7B_SHAPE: dict[str, Any] = {
    "vae": {
        "resolution": 256, "in_channels": 3, "downsample": 8, "ch": 128, "out_ch": 3, "ch_mult": [1, 2, 4, 4],
        "num_res_blocks": 2, "z_channels": 16, "scale_factor": 0.3611, "shift_factor": 0.1159,
    },
    "vae_transform": [1024, 512, 16],  # longest side, shortest side, stride
    "vit_transform": [980, 224, 14],
    "vit_max_num_patch_per_side": 70,
    "max_latent_size": 64,
}  # fmt: skip


def load_inferencer(weights: Path, device: str, dtype: Any = None) -> Any:
    """BAGEL's model, VAE, tokenizer and transforms, built as its ``app.py`` builds them, on one device.

    ``dtype``: a torch dtype; bfloat16 (BAGEL's) when not given.
    """
    import json

    import torch
    from accelerate import init_empty_weights, load_checkpoint_and_dispatch
    from data.data_utils import add_special_tokens  # the checkout's modules
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
    from modeling.qwen2 import Qwen2Tokenizer
    from safetensors.torch import load_file
    from transformers import PreTrainedTokenizerFast

    dtype = dtype or torch.bfloat16
    shape = BAGEL_7B_SHAPE
    if (weights / "bagel.json").is_file():
        shape = {**shape, **json.loads((weights / "bagel.json").read_text())}
    llm_config = Qwen2Config.from_json_file(str(weights / "llm_config.json"))
    llm_config.qk_norm, llm_config.tie_word_embeddings = True, False
    llm_config.layer_module = "Qwen2MoTDecoderLayer"
    vit_config = SiglipVisionConfig.from_json_file(str(weights / "vit_config.json"))
    vit_config.rope = False
    vit_config.num_hidden_layers -= 1  # BAGEL drops SigLIP's last layer
    vae_config = AutoEncoderParams(**shape["vae"])
    vae_model = AutoEncoder(vae_config)
    missing, _ = vae_model.load_state_dict(load_file(str(weights / "ae.safetensors")), strict=False)
    if missing:  # BAGEL loads non-strictly (the release has extra keys); a missing one is a wrong file
        raise PolicyError(f"{weights / 'ae.safetensors'} is not this VAE's weights (no {missing[0]})")
    config = BagelConfig(
        visual_gen=True,
        visual_und=True,
        llm_config=llm_config,
        vit_config=vit_config,
        vae_config=vae_config,
        vit_max_num_patch_per_side=shape["vit_max_num_patch_per_side"],
        connector_act="gelu_pytorch_tanh",
        latent_patch_size=2,
        max_latent_size=shape["max_latent_size"],
    )
    with init_empty_weights():
        model = Bagel(Qwen2ForCausalLM(llm_config), SiglipVisionModel(vit_config), config)
        model.vit_model.vision_model.embeddings.convert_conv2d_to_linear(vit_config, meta=True)
    model = load_checkpoint_and_dispatch(
        model,
        checkpoint=str(weights / "ema.safetensors"),
        device_map={"": device},
        dtype=dtype,
        force_hooks=True,
    ).eval()
    # BAGEL ships Qwen2's slow tokenizer files; a folder saved from a fast tokenizer has tokenizer.json.
    slow = (weights / "vocab.json").is_file() and (weights / "merges.txt").is_file()
    tokenizer_class = Qwen2Tokenizer if slow else PreTrainedTokenizerFast
    tokenizer, new_token_ids, _ = add_special_tokens(tokenizer_class.from_pretrained(str(weights)))
    return InterleaveInferencer(
        model=model,
        vae_model=vae_model.to(device, dtype).eval(),
        tokenizer=tokenizer,
        vae_transform=ImageTransform(*shape["vae_transform"]),
        vit_transform=ImageTransform(*shape["vit_transform"]),
        new_token_ids=new_token_ids,
    )


def tiny_inferencer(checkout: str | Path, seed: int = 0) -> Any:
    """A random-weight BAGEL of a few MB, built from the checkout's own modules (tests, docs/bagel-check.md).

    The shapes are BAGEL-7B-MoT's in miniature: a 2-layer Mixture-of-Transformers Qwen2 (width 64,
    QK-norm, grouped-query attention), a 1-layer SigLIP (56-pixel images, 14-pixel patches: 4 per
    side), the FLUX-style VAE (16 latent channels, 8× down) and 2×2 latent patches, so a 64-pixel
    image is 16 latent tokens. The tokenizer is a 300-token byte-level BPE trained in memory.
    """
    folder = check_checkout(checkout)
    if str(folder) not in sys.path:
        sys.path.insert(0, str(folder))
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

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer, bpe.decoder = pre_tokenizers.ByteLevel(add_prefix_space=False), decoders.ByteLevel()
    corpus = ["<prompt>a red apple</prompt><ins>Draw a red apple.</ins><des>A red apple.</des>"
              "<inspect><plan_check>ok</plan_check><image_check>ok</image_check></inspect><refine></refine>"]  # fmt: skip
    alphabet = pre_tokenizers.ByteLevel.alphabet()
    bpe.train_from_iterator(
        corpus * 4,
        trainers.BpeTrainer(vocab_size=300, initial_alphabet=alphabet, special_tokens=["<|endoftext|>"]),
    )
    fast = PreTrainedTokenizerFast(tokenizer_object=bpe, eos_token="<|endoftext|>", pad_token="<|endoftext|>")
    tokenizer, new_ids, _ = add_special_tokens(fast)
    torch.manual_seed(seed)
    llm = Qwen2Config(
        vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=4096, qk_norm=True,
        tie_word_embeddings=False, layer_module="Qwen2MoTDecoderLayer", freeze_und=False,
    )  # fmt: skip
    vit = SiglipVisionConfig(
        hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=4,
        image_size=56, patch_size=14, rope=False,
    )  # fmt: skip
    ae = AutoEncoderParams(
        resolution=64, in_channels=3, downsample=8, ch=32, out_ch=3, ch_mult=[1, 1, 1, 1],
        num_res_blocks=1, z_channels=16, scale_factor=0.3611, shift_factor=0.1159,
    )  # fmt: skip
    config = BagelConfig(
        visual_gen=True, visual_und=True, llm_config=llm, vit_config=vit, vae_config=ae,
        vit_max_num_patch_per_side=4, connector_act="gelu_pytorch_tanh", latent_patch_size=2, max_latent_size=8,
    )  # fmt: skip
    model = Bagel(Qwen2ForCausalLM(llm), SiglipVisionModel(vit), config).eval()
    model.vit_model.vision_model.embeddings.convert_conv2d_to_linear(vit)
    # BAGEL zero-initialises its flow head (for training from scratch); a random one makes the
    # painted image depend on the context, as a trained head's does.
    torch.nn.init.normal_(model.llm2vae.weight, std=0.02)
    return InterleaveInferencer(
        model,
        AutoEncoder(ae).eval(),
        tokenizer,
        ImageTransform(64, 32, 16),
        ImageTransform(56, 28, 14),
        new_ids,
    )
