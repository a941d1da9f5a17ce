"""Emu3 through transformers, as a ``UnifiedModel`` on one KV cache.

    >>> model = Emu3Model("~/models/Emu3-Gen-hf", size=512)          # doctest: +SKIP
    >>> ctx = model.new_context(); model.add_text(ctx, "<prompt>a red apple</prompt>")  # doctest: +SKIP
    >>> image = model.generate_image(ctx, seed=0, guidance=4.0)      # doctest: +SKIP

The folder is a transformers-format checkpoint (``BAAI/Emu3-Gen-hf`` or
``BAAI/Emu3-Chat-hf``): ``Emu3ForConditionalGeneration`` and its
``Emu3Processor``, loaded with ``local_files_only``. Emu3 is one causal language
model whose vocabulary holds text *and* the codes of its VQ image tokenizer, so
the context operations Janus uses fit it unchanged: loading and text are
``CausalModel``'s (``strokeagent.unified.causal``: prefilled, replayed and
written on a ``DynamicCache``); only images go in and out differently:

- ``add_image`` prefills what ``Emu3Processor`` writes for an image:
  ``<|image start|>H*W<|image token|>``, the VQ codes of the image row by row,
  each row closed by an end-of-line token, then ``<|extra_201|><|image end|>``.
- ``generate_image`` paints in a fork of the context after the same
  ``<|image start|>H*W<|image token|>`` prefix, beside a tiny unconditional
  branch (BOS and that prefix) for classifier-free guidance on log-probabilities,
  as transformers' unbatched guidance does. The grid is forced: each position
  of a row draws among the visual tokens only, and each row ends with the
  end-of-line token (transformers' examples force the same layout with a
  ``prefix_allowed_tokens_fn``), and draws from the ``top_k`` best codes
  (2048, as Emu3's own examples sample). The codes are decoded by the VQ and both forks
  dropped; the process stages add the image back with ``add_image``, the same
  representation a resumed run re-reads from the PNG.
- Emu3 paints any side that is a multiple of its VQ's spatial factor (8): ``size``
  (default 720, Emu3-Gen's 720×720 area) unless ``generate_image`` asks for
  another. It cannot edit: a refinement is a new image conditioned on the whole
  context. ``steps`` is ignored (one pass per image token).
"""

from __future__ import annotations

from typing import Any

from strokeagent.errors import PolicyError
from strokeagent.unified.causal import CausalModel, pick
from strokeagent.unified.protocol import Context


class Emu3Model(CausalModel):
    """An Emu3 checkpoint folder, loaded once; see the module docstring."""

    family = "Emu3"
    example = "BAAI/Emu3-Gen-hf"
    architecture = "Emu3ForConditionalGeneration"

    def __init__(
        self, path: str, device: str = "cpu", dtype: str = "float32", size: int = 720, top_k: int = 2048
    ) -> None:
        super().__init__(path, device, dtype)
        tok = self.tokenizer
        # Where text generation stops: the model opens an image.
        self.boi = tok.convert_tokens_to_ids(tok.boi_token)
        self.image_token = self.model.config.image_token_id
        mapping = self.model.vocabulary_mapping
        self.eol, self.visual = mapping.eol_token_id, self.torch.tensor(mapping.image_tokens)
        self.spatial = self.model.model.vqmodel.vision_spatial_factor
        self.native_size: int | None = None  # any multiple of `spatial`
        self.size = self._check_size(size, PolicyError)
        self.top_k = min(top_k, len(self.visual)) if top_k > 0 else len(self.visual)

    def add_image(self, ctx: Context, image) -> None:  # noqa: ANN001 - a PIL image
        inputs = self.processor(
            images=[image.convert("RGB")], text=[self.processor.image_token], return_tensors="pt"
        )
        ids = self._after_bos(inputs.input_ids[0].tolist())
        pixels = inputs.pixel_values.to(self.device, self.model.dtype)
        self._prefill(ctx, ids, pixel_values=pixels, image_sizes=inputs.image_sizes)

    def generate_image(
        self,
        ctx: Context,
        *,
        seed: int,
        guidance: float = 4.0,
        steps: int | None = None,
        size: int | None = None,
    ):  # -> PIL.Image.Image
        side = self._check_size(size or self.size, ValueError)
        rows = cols = side // self.spatial
        torch = self.torch
        gen = torch.Generator(device="cpu").manual_seed(seed)
        # [BOS, <|image start|>, "H*W", <|image token|>]: the unconditional branch; the context continues after BOS.
        prompt = self.processor(
            text=[""], return_for_image_generation=True, image_area=side * side
        ).input_ids[0]
        cond, uncond = self.fork(ctx), self._blank_context()
        self._prefill(cond, self._after_bos(prompt))
        self._prefill(uncond, prompt)
        ctx.usage.prefilled += len(self._after_bos(prompt)) + len(prompt)
        tokens: list[int] = []
        total = rows * (cols + 1)
        for i in range(total):
            if i % (cols + 1) == cols:
                token = self.eol  # every row ends with an end-of-line token, whatever the model would say
            else:
                c, u = (torch.log_softmax(self._image_logits(b), -1) for b in (cond, uncond))
                scores = (u + guidance * (c - u))[self.visual]
                scores[scores < scores.topk(self.top_k).values[-1]] = float("-inf")  # Emu3 samples the top k
                token = int(self.visual[pick(torch, scores, 1.0, gen)])
            tokens.append(token)
            if i + 1 < total:
                for branch in (cond, uncond):
                    self._step_text(branch, token)
        ctx.usage.generated += total
        self.drop(cond)
        self.drop(uncond)
        codes = self.model.vocabulary_mapping.convert_bpe2img(torch.tensor(tokens).view(1, rows, cols + 1))
        with torch.no_grad():
            pixels = self.model.model.vqmodel.decode(codes.to(self.device))
        images = self.processor.postprocess(list(pixels.float().cpu()), return_tensors="PIL.Image.Image")
        return images["pixel_values"][0]

    def _forward(self, ctx: Context, **inputs: Any) -> None:
        super()._forward(ctx, **inputs)
        # Text never holds a visual token outside an image: the model opens one with <|image start|> first.
        ctx.state.logits[:, self.visual] = float("-inf")

    def _after_bos(self, ids: list[int]) -> list[int]:
        """The processor starts every sample with BOS; a context has its own."""
        return ids[1:] if ids and ids[0] == self.bos else ids

    def _image_logits(self, ctx: Context) -> Any:
        with self.torch.no_grad():
            return self.model.lm_head(ctx.state.hidden)[0].float().cpu()

    def _check_size(self, side: int, error: type[Exception]) -> int:
        if side <= 0 or side % self.spatial:
            raise error(
                f"Emu3 paints sides that are a positive multiple of {self.spatial}px; asked for {side}px"
            )
        return side
