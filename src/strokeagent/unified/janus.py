"""Janus and Janus-Pro through transformers, as a ``UnifiedModel`` on one KV cache.

    >>> model = JanusModel("~/models/Janus-Pro-1B")                 # doctest: +SKIP
    >>> ctx = model.new_context(); model.add_text(ctx, "<prompt>a red apple</prompt>")  # doctest: +SKIP
    >>> image = model.generate_image(ctx, seed=0, guidance=5.0)     # doctest: +SKIP

The folder is a transformers-format checkpoint (``deepseek-community/Janus-Pro-1B``
or ``-7B``): ``JanusForConditionalGeneration`` and its ``JanusProcessor``, loaded
with ``local_files_only``. Loading and the text operations are
``CausalModel``'s (``strokeagent.unified.causal``), on one ``DynamicCache``.
Janus reads images through its SigLIP encoder and paints them token by token
through its VQ head, so:

- ``add_image`` prefills ``<begin_of_image>``, one ``<image_placeholder>`` per
  vision patch (filled with the encoder's features) and ``<end_of_image>``.
- ``generate_image`` paints in a fork of the context (the conditional branch)
  beside a tiny unconditional branch ``[BOS, <begin_of_image>]`` for
  classifier-free guidance, decodes the VQ tokens, and drops both forks. The
  process stages then add the painted image back with ``add_image``: the same
  representation a resumed run re-reads from the PNG, so live and rebuilt
  contexts agree bit for bit.
- Janus cannot edit an image: a refinement is a new image conditioned on the
  whole context (the prompt, the plans, the previous images, the inspection and
  the corrected instruction). ``steps`` is ignored (Janus paints one token per
  image patch); ``size`` must be the model's native size.
"""

from __future__ import annotations

from strokeagent.unified.causal import CausalModel, pick
from strokeagent.unified.protocol import Context


class JanusModel(CausalModel):
    """A Janus checkpoint folder, loaded once; see the module docstring."""

    family = "Janus"
    example = "deepseek-community/Janus-Pro-1B"
    architecture = "JanusForConditionalGeneration"

    def __init__(self, path: str, device: str = "cpu", dtype: str = "float32") -> None:
        super().__init__(path, device, dtype)
        tok = self.tokenizer
        self.boi = tok.convert_tokens_to_ids(tok.boi_token)
        self.eoi = tok.convert_tokens_to_ids(tok.eoi_token)
        self.image_token = self.model.config.image_token_id
        self.num_image_tokens = self.model.config.vision_config.num_image_tokens
        vq = self.model.config.vq_config
        self.native_size: int | None = vq.num_patches * 2 ** (len(vq.channel_multiplier) - 1)

    def add_image(self, ctx: Context, image) -> None:  # noqa: ANN001 - a PIL image
        pixels = self.processor.image_processor(image.convert("RGB"), return_tensors="pt").pixel_values
        ids = [self.boi, *[self.image_token] * self.num_image_tokens, self.eoi]
        self._prefill(ctx, ids, pixel_values=pixels.to(self.device, self.model.dtype))

    def generate_image(
        self,
        ctx: Context,
        *,
        seed: int,
        guidance: float = 5.0,
        steps: int | None = None,
        size: int | None = None,
    ):  # -> PIL.Image.Image
        if size is not None and size != self.native_size:
            raise ValueError(f"Janus paints {self.native_size}px images only; asked for {size}px")
        torch = self.torch
        gen = torch.Generator(device="cpu").manual_seed(seed)
        cond = self.fork(ctx)
        uncond = self._blank_context()
        # Janus masks all but BOS and the image start in its unconditional branch; keep just those.
        uncond_ids = [t for t in (self.bos, self.boi) if t is not None]
        self._prefill(cond, [self.boi])
        self._prefill(uncond, uncond_ids)
        ctx.usage.prefilled += 1 + len(uncond_ids)
        tokens: list[int] = []
        head = self.model.model.generation_head
        for i in range(self.num_image_tokens):
            c, u = (head(h).float().cpu() for h in (cond.state.hidden, uncond.state.hidden))
            scores = u + guidance * (c - u)
            token = pick(torch, scores[0], 1.0, gen)
            tokens.append(token)
            if i + 1 < self.num_image_tokens:
                embeds = self.model.prepare_embeddings_for_image_generation(
                    torch.tensor([[token]], device=self.device)
                )
                for branch in (cond, uncond):
                    self._forward(branch, inputs_embeds=embeds)
        ctx.usage.generated += len(tokens)
        self.drop(cond)
        self.drop(uncond)
        with torch.no_grad():
            decoded = self.model.decode_image_tokens(torch.tensor([tokens], device=self.device))
        pixels = self.processor.image_processor.postprocess(
            list(decoded.permute(0, 3, 1, 2).float().cpu()), return_tensors="pt"
        ).pixel_values[0]
        from PIL import Image

        return Image.fromarray(pixels.permute(1, 2, 0).to(torch.uint8).numpy(), "RGB")
