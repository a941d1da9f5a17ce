"""Janus as a trainee: process samples to token streams, and the loss of one packed batch.

    >>> trainee = JanusTrainee.from_pretrained("tiny-janus")               # doctest: +SKIP
    >>> streams = trainee.streams(sample, root="data/")                     # doctest: +SKIP
    >>> loss, parts = trainee(trainee.collate([streams], max_tokens=2048), image_weight=1.0)  # doctest: +SKIP

Janus reads images through its SigLIP encoder and paints them as VQ codes
through its generation head, and the process stages use it that way: a painted
image is generated in a fork of the context and then added back *as read*
(``JanusModel.add_image``). Training mirrors that exactly, with two kinds of
stream per sample:

* the **reading stream**: the whole sample, every image as ``<begin_of_image>``,
  one placeholder per patch (filled with encoder features) and
  ``<end_of_image>``. Text targets are the text of segments marked ``loss`` and
  the ``<begin_of_image>`` that opens a painted image: the modality switch the
  model must make by itself.
* one **painting stream** per painted image: the reading stream's prefix up to
  that image, ``<begin_of_image>``, then the image's VQ codes through the
  generation embeddings; the generation head is trained to predict each next
  code (``vq_token_loss``).

The module wraps the transformers model, so accelerate (DDP, FSDP) wraps the
whole loss computation: ``forward`` is what runs under ``accelerator.prepare``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from strokeagent.errors import TrainError
from strokeagent.train.losses import text_loss, vq_token_loss
from strokeagent.train.packing import Stream


class JanusTrainee(nn.Module):
    """A ``JanusForConditionalGeneration`` and its processor, with the process-training loss."""

    def __init__(self, model: Any, processor: Any) -> None:
        super().__init__()
        self.janus = model
        self.processor = processor
        tok = processor.tokenizer
        self.tokenizer = tok
        self.boi = tok.convert_tokens_to_ids(tok.boi_token)
        self.eoi = tok.convert_tokens_to_ids(tok.eoi_token)
        self.image_token = model.config.image_token_id
        self.bos, self.eos = tok.bos_token_id, tok.eos_token_id
        self.pad = tok.pad_token_id if tok.pad_token_id is not None else self.eos
        self.num_image_tokens = model.config.vision_config.num_image_tokens
        # FSDP's transformer-based auto wrap reads this from the module it is given: the vision
        # encoder's layers (Janus's own list) and the language model's decoder layers.
        language = model.model.language_model
        self._no_split_modules = list(
            dict.fromkeys([*(model._no_split_modules or []), *(language._no_split_modules or [])])
        )

    @classmethod
    def from_pretrained(cls, path: str | Path, dtype: str = "float32") -> JanusTrainee:
        from transformers import AutoProcessor, JanusForConditionalGeneration

        if not (Path(path) / "config.json").is_file():
            raise TrainError(
                f"no model at {path} (no config.json); point `model` at a transformers-format Janus folder"
            )
        model = JanusForConditionalGeneration.from_pretrained(
            path, dtype=getattr(torch, dtype), local_files_only=True, use_safetensors=True
        )
        return cls(model, AutoProcessor.from_pretrained(path, local_files_only=True))

    def freeze_frozen_parts(self) -> None:
        """Janus keeps its VQ model and SigLIP encoder fixed while the language model learns."""
        inner = self.base_janus.model
        for part in (inner.vqmodel, inner.vision_model):
            part.requires_grad_(False)

    def add_lora(self, options: Any) -> None:
        """peft LoRA adapters (``LoraOptions``) on the language model's projections only."""
        from peft import LoraConfig, get_peft_model

        lora = LoraConfig(r=options.r, lora_alpha=options.alpha, lora_dropout=options.dropout)
        # A regex, not names: the same projection names exist in the (frozen) vision tower.
        lora.target_modules = rf".*language_model.*\.({'|'.join(options.target_modules)})"
        self.janus = get_peft_model(self.janus, lora)

    def save_pretrained(self, folder: str | Path, state_dict: dict[str, torch.Tensor] | None = None) -> None:
        """A transformers Janus folder (safetensors, processor, tokenizer); with LoRA, merged, plus ``adapter/``.

        ``state_dict`` is this module's full state dict when the caller gathered it (FSDP shards it).
        """
        folder = Path(folder)
        janus = self.janus
        if hasattr(janus, "merge_and_unload"):  # peft: keep the adapter, and save a merged copy as the model
            import copy

            janus.save_pretrained(folder / "adapter")
            copy.deepcopy(janus).merge_and_unload().save_pretrained(folder)
        else:
            full = self.state_dict() if state_dict is None else state_dict
            # A tied parameter (lm_head and the embeddings) comes out of an FSDP gather as two copies:
            # keep the name transformers keeps for it, so every launcher writes the same file.
            named = list(janus.named_parameters(remove_duplicate=False))
            first: dict[int, str] = {}
            for name, param in named:
                first.setdefault(id(param), name)
            copies = {name for name, param in named if first[id(param)] != name}
            weights = {
                k.removeprefix("janus."): v
                for k, v in full.items()
                if k.startswith("janus.") and k.removeprefix("janus.") not in copies
            }
            janus.save_pretrained(folder, state_dict=weights)
        self.processor.save_pretrained(folder)

    def tie_weights(self) -> None:
        """Tie lm_head to the embeddings again: accelerate's FSDP calls this after moving the model to meta."""
        self.base_janus.tie_weights()

    @property
    def base_janus(self) -> Any:
        """The transformers model under any peft wrapper."""
        model = self.janus
        return model.get_base_model() if hasattr(model, "get_base_model") else model

    # -- samples to streams ------------------------------------------------------

    def pixels(self, image: Any) -> torch.Tensor:
        """The processor's pixels for one PIL image (3, H, W): what the encoder and the VQ model read."""
        return self.processor.image_processor(image.convert("RGB"), return_tensors="pt").pixel_values[0]

    @torch.no_grad()
    def codes(self, pixels: torch.Tensor) -> list[list[int]]:
        """The VQ codes of a batch of images (N, 3, H, W), by the model's frozen VQ encoder."""
        vq = self.base_janus.model.vqmodel
        out = vq.encode(pixels.to(vq.device, vq.dtype))
        return out.image_tokens.view(pixels.shape[0], -1).tolist()

    def all_streams(self, samples: Any, root: str | Path, chunk: int = 32) -> list[Stream]:
        """Streams of every sample; each distinct painted image is VQ-encoded once, in batches."""
        from PIL import Image

        painted = sorted(
            {seg["image"] for s in samples for seg in s["segments"] if seg["kind"] == "image" and seg["loss"]}
        )
        codes: dict[str, list[int]] = {}
        for i in range(0, len(painted), chunk):
            names = painted[i : i + chunk]
            batch = []
            for name in names:
                with Image.open(Path(root) / name) as im:
                    batch.append(self.pixels(im))
            codes.update(zip(names, self.codes(torch.stack(batch)), strict=True))
        return [stream for s in samples for stream in self.streams(s, root, codes)]

    def streams(
        self, sample: dict[str, Any], root: str | Path, codes: dict[str, list[int]] | None = None
    ) -> list[Stream]:
        """The reading stream and one painting stream per painted image of ``sample``.

        ``codes`` maps image paths to their VQ codes when known (``all_streams``); else they are encoded here.
        """
        from PIL import Image

        ids, labels, pixels = [self.bos], [-100], []
        paint_at: list[tuple[int, int, list[int]]] = []  # (position of its boi, images before it, its codes)
        for seg in sample["segments"]:
            if seg["kind"] == "text":
                tokens = self.tokenizer(seg["text"], add_special_tokens=False).input_ids
                ids += tokens
                labels += tokens if seg["loss"] else [-100] * len(tokens)
                continue
            with Image.open(Path(root) / seg["image"]) as im:
                px = self.pixels(im)
            if seg["loss"]:
                known = (codes or {}).get(seg["image"])
                paint_at.append(
                    (len(ids), len(pixels), known if known is not None else self.codes(px[None])[0])
                )
            ids += [self.boi, *[self.image_token] * self.num_image_tokens, self.eoi]
            labels += [self.boi if seg["loss"] else -100] + [-100] * (self.num_image_tokens + 1)
            pixels.append(px)
        reading = Stream(ids=ids, text_targets=labels[1:] + [-100], pixels=pixels, kind="reading")
        out = [reading]
        for at, n_before, image_codes in paint_at:
            prefix = ids[:at] + [self.boi] + [self.pad] * (len(image_codes) - 1)
            n = len(prefix)
            out.append(
                Stream(
                    ids=prefix,
                    image_targets=[-100] * at + image_codes,
                    gen_codes=[-1] * (at + 1) + image_codes[:-1],
                    pixels=pixels[:n_before],
                    kind="painting",
                )
            )
            assert len(out[-1]) == n
        return out

    # -- batches -------------------------------------------------------------------

    def collate(self, rows: list[list[Stream]], max_tokens: int) -> dict[str, torch.Tensor]:
        """Packed rows to tensors of width ``max_tokens``; positions restart at 0 per stream (and per pad)."""
        b = len(rows)
        ids = torch.full((b, max_tokens), self.pad, dtype=torch.long)
        pos = torch.zeros((b, max_tokens), dtype=torch.long)
        text = torch.full((b, max_tokens), -100, dtype=torch.long)
        image = torch.full((b, max_tokens), -100, dtype=torch.long)
        gen = torch.full((b, max_tokens), -1, dtype=torch.long)
        pixels: list[torch.Tensor] = []
        samples = sum(s.kind == "reading" for row in rows for s in row)
        tokens = sum(len(s) for row in rows for s in row)
        for r, row in enumerate(rows):
            at = 0
            for s in row:
                n = len(s)
                ids[r, at : at + n] = torch.tensor(s.ids)
                pos[r, at : at + n] = torch.arange(n)
                text[r, at : at + n] = torch.tensor(s.text_targets)
                image[r, at : at + n] = torch.tensor(s.image_targets)
                gen[r, at : at + n] = torch.tensor(s.gen_codes)
                pixels += s.pixels
                at += n
        batch = {
            "input_ids": ids,
            "position_ids": pos,
            "text_targets": text,
            "image_targets": image,
            "gen_codes": gen,
        }
        batch["pixel_values"] = torch.stack(pixels) if pixels else torch.zeros(0)
        # Counts for throughput: samples (reading streams) and real (non-padding) tokens.
        batch["samples"], batch["tokens"] = torch.tensor(samples), torch.tensor(tokens)
        return batch

    # -- the loss ------------------------------------------------------------------

    def forward(self, batch: dict[str, torch.Tensor], image_weight: float = 1.0) -> tuple[torch.Tensor, dict]:
        """``CE(text) + image_weight · CE(VQ codes)`` over one packed batch; and the two parts."""
        janus = self.base_janus
        ids = batch["input_ids"]
        embeds = janus.get_input_embeddings()(ids)
        # Every part runs on every batch, whatever it holds: DDP needs a gradient for every trainable
        # parameter on each rank, and FSDP needs every rank in each sharded module's all-gather (a rank
        # that skipped the encoder would hang or crash the others). A batch without images encodes one
        # blank image and keeps none of it (the encoder cannot run on zero images).
        pixels = batch["pixel_values"]
        blank = not pixels.numel()
        if blank:
            vision = janus.config.vision_config
            pixels = embeds.new_zeros(1, vision.num_channels, vision.image_size, vision.image_size)
        feats = janus.model.get_image_features(pixels.to(embeds.dtype)).pooler_output
        feats = feats[:0] if blank else feats
        where = (ids == self.image_token).unsqueeze(-1)
        embeds = embeds.masked_scatter(where, feats.reshape(-1, embeds.shape[-1]).to(embeds.dtype))
        painted = batch["gen_codes"] >= 0
        gen = janus.prepare_embeddings_for_image_generation(batch["gen_codes"][painted])
        embeds = embeds.masked_scatter(painted.unsqueeze(-1), gen.to(embeds.dtype))
        # No attention mask and restarting positions: transformers builds the packed block-diagonal mask.
        hidden = janus.model.language_model(
            inputs_embeds=embeds, position_ids=batch["position_ids"], use_cache=False
        ).last_hidden_state
        t_at = batch["text_targets"] != -100
        i_at = batch["image_targets"] != -100
        lm_head = janus.get_output_embeddings()
        text = text_loss(lm_head(hidden[t_at]), batch["text_targets"][t_at])
        image = vq_token_loss(janus.model.generation_head(hidden[i_at]), batch["image_targets"][i_at])
        loss = text + image_weight * image
        counts = {"text_tokens": int(t_at.sum()), "image_tokens": int(i_at.sum())}
        return loss, {"text": text.detach(), "image": image.detach(), **counts}
