"""BAGEL as a trainee: a process sample to one packed stream, and the loss of a packed batch.

    >>> trainee = BagelTrainee.from_pretrained("~/models/BAGEL-7B-MoT", checkout="~/src/Bagel")  # doctest: +SKIP
    >>> streams = trainee.all_streams(samples, root="data/")                      # doctest: +SKIP
    >>> loss, parts = trainee(trainee.collate([streams[:2]], max_tokens=8192))    # doctest: +SKIP

The interface is the trainer's (``trainee = "bagel"``, ``dtype = "bfloat16"`` in a
training config): ``from_pretrained``, ``freeze_frozen_parts``, ``all_streams``,
``collate``, ``forward`` and ``save_pretrained``, which writes a folder the ``bagel``
backend loads by path. The
forward pass is BAGEL's own modules (its checkout, as ``strokeagent.unified.bagel``
imports it); the losses are strokeagent's (``text_loss``, ``rectified_flow_loss``
with ``sample_timesteps``), not BAGEL's training loop.

A sample is laid out exactly as the ``bagel`` adapter feeds it at inference:

* a text segment is ``<|im_start|> text <|im_end|>`` (one ``add_text``), causal;
  a ``loss`` segment is labelled (its tokens and the closing ``<|im_end|>``);
* an image the model only reads is its clean VAE latents then its ViT patches,
  each between ``<|vision_start|>``/``<|vision_end|>`` (one ``add_image``);
* an image the model must **paint** comes first as noised latents, attending to
  everything before it and hidden from everything after it (BAGEL's ``noise``
  attention split), then clean as above, as the adapter adds a painted image
  back. The ``<|im_end|>`` before it is labelled ``<|vision_start|>``: the
  modality switch (BAGEL's ``special_token_label``).

So one stream per sample trains both heads, unlike Janus's painting streams:
BAGEL's attention splits keep the noised copy out of the reading context. The
flow loss noises each painted image at its own time ``t`` (logit-normal,
shifted by BAGEL's ``timestep_shift``); the head predicts ``noise - x0``,
BAGEL's convention. BAGEL reads packed sequences with one attention mask per
sample and no padding, so ``collate`` concatenates every stream of the batch.

BAGEL's training layers assume bfloat16 parameters (as under its FSDP mixed
precision), so the ``Bagel`` module is held in bf16. Verified on a tiny random
BAGEL on CPU only: docs/bagel-check.md.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from strokeagent.errors import TrainError
from strokeagent.train.losses import rectified_flow_loss, sample_timesteps, text_loss
from strokeagent.train.packing import Stream

TEXT, VIT, VAE = 0, 1, 2  # what fills a stream position


@dataclass
class BagelStream(Stream):
    """One sample as BAGEL reads it: ``ids`` hold text ids (0 where an image token goes).

    ``kinds[i]`` says what fills position ``i`` (``TEXT``/``VIT``/``VAE``);
    ``positions`` are BAGEL's rope ids (an image shares one); ``splits`` the
    attention blocks ``(length, "causal" | "full" | "noise")``; ``vit`` the ViT
    patches ``(patches, position ids)`` and ``latents`` the VAE images ``(tokens, position ids, painted)``, in order.
    """

    kinds: list[int] = field(default_factory=list)
    positions: list[int] = field(default_factory=list)
    splits: list[tuple[int, str]] = field(default_factory=list)
    vit: list[tuple[torch.Tensor, torch.Tensor]] = field(default_factory=list)
    latents: list[tuple[torch.Tensor, torch.Tensor, bool]] = field(default_factory=list)


def import_checkout(checkout: str | Path | None) -> Path:
    """Put a BAGEL checkout on ``sys.path`` (its modules import each other as top-level packages)."""
    from strokeagent.unified.bagel import check_checkout

    where = checkout or os.environ.get("STROKEAGENT_BAGEL_CHECKOUT")
    if not where:
        raise TrainError(
            "training BAGEL needs its code: pass checkout= or set STROKEAGENT_BAGEL_CHECKOUT "
            "to a clone of https://github.com/ByteDance-Seed/Bagel"
        )
    folder = check_checkout(where)
    if str(folder) not in sys.path:
        sys.path.insert(0, str(folder))
    return folder


class BagelTrainee(nn.Module):
    """BAGEL's ``Bagel`` module, its VAE, tokenizer and transforms, with the process-training loss."""

    def __init__(
        self,
        model: Any,
        vae: Any,
        tokenizer: Any,
        new_token_ids: dict[str, int],
        vae_transform: Any,
        vit_transform: Any,
    ) -> None:
        super().__init__()
        self.bagel, self.vae = model, vae
        self.tokenizer, self.ids = tokenizer, new_token_ids
        self.vae_transform, self.vit_transform = vae_transform, vit_transform
        # BAGEL's training layers assume bfloat16 parameters (its own training runs under FSDP bf16
        # mixed precision: they index-put bf16 projections into buffers shaped like their input).
        self.bagel.to(torch.bfloat16)
        # They pick their code path by `self.training`: packed training attention, not the KV cache.
        self.bagel.train()
        self.vae.eval()
        # FSDP's transformer-based auto wrap reads this: the decoder layers BAGEL builds (MoT ones for
        # BAGEL-7B-MoT) and the SigLIP encoder layers.
        layers = [*model.language_model.model.layers, *model.vit_model.vision_model.encoder.layers]
        self._no_split_modules = sorted({type(layer).__name__ for layer in layers})

    @classmethod
    def from_pretrained(
        cls, path: str | Path, dtype: str = "bfloat16", checkout: str | Path | None = None
    ) -> BagelTrainee:
        """Load BAGEL weights (``BAGEL-7B-MoT`` layout) with the checkout's loader; ``dtype`` must be bfloat16."""
        if dtype != "bfloat16":
            raise TrainError(
                f"BAGEL trains in bfloat16 (its layers assume bf16 parameters), not {dtype}; "
                'set dtype = "bfloat16" in the training config'
            )
        import_checkout(checkout)
        from strokeagent.unified.bagel import load_inferencer

        device = "cuda" if torch.cuda.is_available() else "cpu"
        return cls.from_inferencer(load_inferencer(Path(path).expanduser(), device, getattr(torch, dtype)))

    @classmethod
    def from_inferencer(cls, inferencer: Any) -> BagelTrainee:
        """The parts of an ``InterleaveInferencer`` (a tiny test model, a notebook's)."""
        i = inferencer
        return cls(i.model, i.vae_model, i.tokenizer, i.new_token_ids, i.vae_transform, i.vit_transform)

    def freeze_frozen_parts(self) -> None:
        """BAGEL's default recipe: the VAE stays fixed; the LLM, ViT and connectors learn."""
        self.vae.requires_grad_(False)

    def save_pretrained(self, folder: str | Path, state_dict: dict[str, torch.Tensor] | None = None) -> None:
        """A BAGEL weights folder (``BAGEL-7B-MoT`` layout) that the ``bagel`` backend loads by path.

        ``ema.safetensors`` (the ``Bagel`` module), ``ae.safetensors``, ``llm_config.json``,
        ``vit_config.json``, the tokenizer, and ``bagel.json``: the shapes BAGEL's loader would
        otherwise assume (7B's). ``state_dict`` is this module's full state dict when the caller
        gathered it (FSDP shards it).
        """
        import copy
        import dataclasses
        import json

        from safetensors.torch import save_file

        from strokeagent.core.store import atomic_write

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        full = self.state_dict() if state_dict is None else state_dict
        weights = {
            k.removeprefix("bagel."): v.contiguous() for k, v in full.items() if k.startswith("bagel.")
        }
        save_file(weights, str(folder / "ema.safetensors"), metadata={"format": "pt"})
        vae = {k.removeprefix("vae."): v.contiguous() for k, v in full.items() if k.startswith("vae.")}
        save_file(vae, str(folder / "ae.safetensors"), metadata={"format": "pt"})
        m = self.bagel
        m.config.llm_config.to_json_file(str(folder / "llm_config.json"))
        vit = copy.deepcopy(m.config.vit_config)
        vit.num_hidden_layers += 1  # the release's convention: BAGEL's loader drops SigLIP's last layer
        vit.to_json_file(str(folder / "vit_config.json"))
        self.tokenizer.save_pretrained(str(folder))

        def transform(t: Any) -> list[int]:
            return [t.resize_transform.max_size, t.resize_transform.min_size, t.stride]

        shape = {
            "vae": dataclasses.asdict(m.config.vae_config),
            "vae_transform": transform(self.vae_transform),
            "vit_transform": transform(self.vit_transform),
            "vit_max_num_patch_per_side": m.vit_max_num_patch_per_side,
            "max_latent_size": m.max_latent_size,
        }
        atomic_write(folder / "bagel.json", json.dumps(shape, indent=1) + "\n")

    # -- samples to streams ------------------------------------------------------

    @torch.no_grad()
    def latent(self, image: Any) -> tuple[torch.Tensor, torch.Tensor]:
        """An image's VAE latent as BAGEL's tokens ``(h·w, p·p·c)`` and their position ids.

        BAGEL's VAE samples its posterior; a fixed seed makes an image's latent one value,
        as the adapter's ``add_image`` does.
        """
        from data.data_utils import patchify

        m = self.bagel
        pixels = self.vae_transform(image.convert("RGB"))
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            z = self.vae.encode(pixels[None].to(_device(self.vae), _dtype(self.vae)))[0]
        tokens = patchify(z.float().cpu(), m.latent_patch_size)
        where = m.get_flattened_position_ids(
            pixels.shape[1], pixels.shape[2], m.latent_downsample, max_num_patches_per_side=m.max_latent_size
        )
        return tokens, where

    def vit_patches(self, image: Any) -> tuple[torch.Tensor, torch.Tensor]:
        """An image's ViT patches ``(n, p·p·3)`` and their position ids, as ``update_context_image`` makes them."""
        from data.data_utils import patchify

        m = self.bagel
        pixels = self.vit_transform(image.convert("RGB"))
        where = m.get_flattened_position_ids(
            pixels.shape[1],
            pixels.shape[2],
            m.vit_patch_size,
            max_num_patches_per_side=m.vit_max_num_patch_per_side,
        )
        return patchify(pixels, m.vit_patch_size), where

    def all_streams(self, samples: Any, root: str | Path) -> list[BagelStream]:
        """Streams of every sample; each distinct image is VAE-encoded once."""
        latents: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
        return [self.streams(s, root, latents)[0] for s in samples]

    def streams(
        self,
        sample: dict[str, Any],
        root: str | Path,
        latents: dict[str, tuple[torch.Tensor, torch.Tensor]] | None = None,
    ) -> list[BagelStream]:
        """The sample's one stream (a list, as ``JanusTrainee.streams`` returns); ``latents`` caches encodings."""
        from PIL import Image

        latents = {} if latents is None else latents
        s = BagelStream(ids=[])
        rope = 0
        segments = sample["segments"]
        for n, seg in enumerate(segments):
            if seg["kind"] == "text":
                after = segments[n + 1] if n + 1 < len(segments) else None
                switch = after is not None and after["kind"] == "image" and after["loss"]
                tokens = self.tokenizer.encode(seg["text"])
                ids = [self.ids["bos_token_id"], *tokens, self.ids["eos_token_id"]]
                targets = [*tokens, self.ids["eos_token_id"]] if seg["loss"] else [-100] * len(ids[1:])
                targets.append(self.ids["start_of_image"] if switch else -100)
                _add(s, ids, targets, [TEXT] * len(ids), list(range(rope, rope + len(ids))), "causal")
                rope += len(ids)
                continue
            if seg["image"] not in latents:
                with Image.open(Path(root) / seg["image"]) as im:
                    latents[seg["image"]] = self.latent(im)
            tokens, where = latents[seg["image"]]
            painted = [True, False] if seg["loss"] else [False]
            for noised in painted:  # a painted image: noised (the flow target), then clean, as read back
                _add(
                    s,
                    *self._image(len(tokens), VAE),
                    [rope] * (len(tokens) + 2),
                    "noise" if noised else "full",
                )
                s.latents.append((tokens, where, noised))
                rope += 0 if noised else 1  # BAGEL paints at the rope id the clean image then takes
            with Image.open(Path(root) / seg["image"]) as im:
                vit = self.vit_patches(im)
            _add(s, *self._image(len(vit[0]), VIT), [rope] * (len(vit[0]) + 2), "full")
            s.vit.append(vit)
            rope += 1
        return [s]

    def _image(self, n: int, kind: int) -> tuple[list[int], list[int], list[int]]:
        """``<|vision_start|>``, ``n`` image tokens, ``<|vision_end|>``: ids, targets, kinds."""
        ids = [self.ids["start_of_image"], *[0] * n, self.ids["end_of_image"]]
        return ids, [-100] * (n + 2), [TEXT, *[kind] * n, TEXT]

    # -- batches -------------------------------------------------------------------

    def collate(self, rows: list[list[BagelStream]], max_tokens: int) -> dict[str, Any]:
        """Every stream of the batch as one packed sequence (BAGEL needs no padding; rows bound its length)."""
        from data.data_utils import prepare_attention_mask_per_sample

        streams = [s for row in rows for s in row]
        kinds = torch.tensor([k for s in streams for k in s.kinds])
        where = torch.arange(len(kinds))
        latents = [latent for s in streams for latent in s.latents]
        image_of = []  # for each VAE token: which painted image it belongs to (-1: a clean one)
        k = 0
        for tokens, _, noised in latents:
            image_of += [k if noised else -1] * len(tokens)
            k += int(noised)
        vit = [v for s in streams for v in s.vit]  # (patches, their position ids)
        batch = {
            "length": len(kinds),
            "sample_lens": [len(s) for s in streams],
            "masks": [
                prepare_attention_mask_per_sample([n for n, _ in s.splits], [m for _, m in s.splits])
                for s in streams
            ],
            "positions": torch.tensor([p for s in streams for p in s.positions]),
            "text_ids": torch.tensor([i for s in streams for i in s.ids])[kinds == TEXT],
            "text_at": where[kinds == TEXT],
            "text_targets": torch.tensor([t for s in streams for t in s.text_targets]),
            "vit_at": where[kinds == VIT],
            "vit_tokens": torch.cat([p for p, _ in vit]) if vit else torch.zeros(0),
            "vit_positions": torch.cat([w for _, w in vit]) if vit else torch.zeros(0, dtype=torch.long),
            "vit_lens": torch.tensor([len(p) for p, _ in vit], dtype=torch.int),
            "vae_at": where[kinds == VAE],
            # (empty, of the right shapes, for a batch with no image at all)
            "latents": torch.cat([t for t, _, _ in latents] or [torch.zeros(0, self.bagel.patch_latent_dim)]),
            "latent_positions": torch.cat([w for _, w, _ in latents] or [torch.zeros(0, dtype=torch.long)]),
            "painted": torch.tensor(
                [noised for t, _, noised in latents for _ in range(len(t))], dtype=torch.bool
            ),
            "image_of": torch.tensor(image_of, dtype=torch.long),
            "painted_images": torch.tensor(k),
        }
        # Counts for throughput: samples (one stream each) and tokens (no padding here).
        batch["samples"], batch["tokens"] = torch.tensor(len(streams)), torch.tensor(len(kinds))
        return batch

    # -- the loss ------------------------------------------------------------------

    def forward(self, batch: dict[str, Any], image_weight: float = 1.0) -> tuple[torch.Tensor, dict]:
        """``CE(text) + image_weight · MSE(flow velocity)`` over one packed batch; and the two parts."""
        m = self.bagel
        painted = batch["painted"]
        x0 = batch["latents"][painted].float()
        k = int(batch["painted_images"])
        t = sample_timesteps(k, shift=m.timestep_shift).to(x0.device)[batch["image_of"][painted]]
        noise = torch.randn_like(x0)
        seen: dict[str, torch.Tensor] = {}

        def head(x_t: torch.Tensor, t: torch.Tensor, _cond: Any) -> torch.Tensor:
            seen["hidden"] = hidden = self._hidden(batch, x_t, t)
            return m.llm2vae(hidden[batch["vae_at"][painted]])

        # Nothing painted: the same forward, and a zero that keeps the flow head in the graph.
        image = rectified_flow_loss(head, x0, noise, t) if k else head(x0, t, None).sum() * 0.0
        hidden = seen["hidden"]
        targets = batch["text_targets"]
        at = targets != -100
        text = text_loss(m.language_model.lm_head(hidden[at]), targets[at])
        loss = text + image_weight * image
        counts = {"text_tokens": int(at.sum()), "image_tokens": int(painted.sum())}
        return loss, {"text": text.detach(), "image": image.detach(), **counts}

    def _hidden(self, batch: dict[str, Any], x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """BAGEL's last hidden states over the packed sequence, painted latents at ``x_t`` (time ``t``)."""
        m = self.bagel
        device = batch["positions"].device
        # BAGEL's packed training attention casts to bfloat16 itself; the rest runs under bf16 autocast.
        with torch.autocast(device_type=device.type, dtype=torch.bfloat16), _math_attention_on_cpu(device):
            text = m.language_model.model.embed_tokens(batch["text_ids"])
            seq = text.new_zeros(batch["length"], m.hidden_size)
            seq[batch["text_at"]] = text
            if len(batch["vit_lens"]):
                lens = batch["vit_lens"]
                vit = m.vit_model(
                    packed_pixel_values=batch["vit_tokens"],
                    packed_flattened_position_ids=batch["vit_positions"],
                    cu_seqlens=nn.functional.pad(torch.cumsum(lens, 0), (1, 0)).to(torch.int32),
                    max_seqlen=int(lens.max()),
                )
                seq[batch["vit_at"]] = (m.connector(vit) + m.vit_pos_embed(batch["vit_positions"])).to(
                    seq.dtype
                )
            latents = batch["latents"].clone().to(x_t.dtype)
            latents[batch["painted"]] = x_t
            times = torch.zeros(len(latents), device=device, dtype=x_t.dtype)
            times[batch["painted"]] = t.to(x_t.dtype)
            vae = m.vae2llm(latents) + m.time_embedder(times) + m.latent_pos_embed(batch["latent_positions"])
            seq[batch["vae_at"]] = vae.to(seq.dtype)
            moe = {}
            if m.use_moe:  # Mixture-of-Transformers: text and ViT through the understanding expert
                und = torch.cat([batch["text_at"], batch["vit_at"]])
                moe = {"packed_und_token_indexes": und, "packed_gen_token_indexes": batch["vae_at"]}
            return m.language_model(
                packed_sequence=seq,
                sample_lens=batch["sample_lens"],
                attention_mask=batch["masks"],
                packed_position_ids=batch["positions"],
                **moe,
            )


@contextmanager
def _math_attention_on_cpu(device: torch.device) -> Iterator[None]:
    """BAGEL's training attention pins the memory-efficient SDPA kernel, which exists only on CUDA;
    on CPU let it fall back to the math kernel (the same attention), for as long as the forward runs."""
    if device.type != "cpu":
        yield
        return
    from modeling.bagel import qwen2_navit
    from torch.nn.attention import SDPBackend

    pinned = qwen2_navit.sdpa_kernel
    qwen2_navit.sdpa_kernel = lambda backends: pinned([*backends, SDPBackend.MATH])
    try:
        yield
    finally:
        qwen2_navit.sdpa_kernel = pinned


def _add(
    s: BagelStream, ids: list[int], targets: list[int], kinds: list[int], positions: list[int], mode: str
) -> None:
    s.ids += ids
    s.text_targets += targets
    s.image_targets += [-100] * len(ids)
    s.gen_codes += [-1] * len(ids)
    s.kinds += kinds
    s.positions += positions
    s.splits.append((len(ids), mode))


def _device(module: nn.Module) -> torch.device:
    return next(module.parameters()).device


def _dtype(module: nn.Module) -> torch.dtype:
    return next(module.parameters()).dtype
