"""Janus and Janus-Pro through transformers, as a ``UnifiedModel`` on one KV cache.

    >>> model = JanusModel("~/models/Janus-Pro-1B")                 # doctest: +SKIP
    >>> ctx = model.new_context(); model.add_text(ctx, "<prompt>a red apple</prompt>")  # doctest: +SKIP
    >>> image = model.generate_image(ctx, seed=0, guidance=5.0)     # doctest: +SKIP

The folder is a transformers-format checkpoint (``deepseek-community/Janus-Pro-1B``
or ``-7B``): ``JanusForConditionalGeneration`` and its ``JanusProcessor``, loaded
with ``local_files_only``. Janus reads images through its SigLIP encoder and
paints them token by token through its VQ head, so:

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

import copy
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from strokeagent.errors import PolicyError
from strokeagent.unified.protocol import Context, TextOutput

_DTYPES = {"float32", "bfloat16", "float16"}


@dataclass
class _JanusState:
    cache: Any  # transformers DynamicCache
    logits: Any = None  # next-token text logits after the last position (1, vocab)
    hidden: Any = None  # the last position's hidden state, for the image head


class JanusModel:
    """A Janus checkpoint folder, loaded once; see the module docstring."""

    def __init__(self, path: str, device: str = "cpu", dtype: str = "float32") -> None:
        folder = Path(path).expanduser()
        if not (folder / "config.json").is_file():
            raise PolicyError(
                f"no Janus model at {folder} (no config.json); download a transformers-format checkpoint, e.g. "
                f"`hf download deepseek-community/Janus-Pro-1B --local-dir {folder}`, or set `path` to where it is"
            )
        if dtype not in _DTYPES:
            raise ValueError(f"dtype {dtype!r} is not one of {', '.join(sorted(_DTYPES))}")
        import torch
        from transformers import AutoProcessor, JanusForConditionalGeneration

        self.torch = torch
        self.device = torch.device("cuda" if device == "auto" and torch.cuda.is_available() else
                                   "cpu" if device == "auto" else device)  # fmt: skip
        self.model = JanusForConditionalGeneration.from_pretrained(
            folder, dtype=getattr(torch, dtype), local_files_only=True
        ).to(self.device)
        self.model.eval()
        self.processor = AutoProcessor.from_pretrained(folder, local_files_only=True)
        tok = self.tokenizer = self.processor.tokenizer
        self.boi = tok.convert_tokens_to_ids(tok.boi_token)
        self.eoi = tok.convert_tokens_to_ids(tok.eoi_token)
        self.image_token = self.model.config.image_token_id
        self.bos, self.eos = tok.bos_token_id, tok.eos_token_id
        self.num_image_tokens = self.model.config.vision_config.num_image_tokens
        vq = self.model.config.vq_config
        self.native_size: int | None = vq.num_patches * 2 ** (len(vq.channel_multiplier) - 1)
        self.path = str(folder)

    # -- contexts --------------------------------------------------------------

    def new_context(self) -> Context:
        from transformers import DynamicCache

        ctx = Context(state=_JanusState(DynamicCache(config=self.model.config.text_config)))
        if self.bos is not None:
            self._prefill(ctx, [self.bos])
        return ctx

    def fork(self, ctx: Context) -> Context:
        state = _JanusState(copy.deepcopy(ctx.state.cache), ctx.state.logits, ctx.state.hidden)
        return Context(length=ctx.length, usage=ctx.snapshot(), state=state)

    def drop(self, ctx: Context) -> None:
        ctx.state = None

    # -- adding ----------------------------------------------------------------

    def add_text(self, ctx: Context, text: str) -> None:
        if text:
            self._prefill(ctx, self.tokenizer(text, add_special_tokens=False).input_ids)

    def add_image(self, ctx: Context, image) -> None:  # noqa: ANN001 - a PIL image
        pixels = self.processor.image_processor(image.convert("RGB"), return_tensors="pt").pixel_values
        ids = [self.boi, *[self.image_token] * self.num_image_tokens, self.eoi]
        self._prefill(ctx, ids, pixel_values=pixels.to(self.device, self.model.dtype))

    def add_tokens(self, ctx: Context, ids: tuple[int, ...]) -> None:
        for token in ids:
            self._step_text(ctx, token)
            ctx.usage.generated += 1

    # -- generating ------------------------------------------------------------

    def generate_text(
        self, ctx: Context, *, stop: tuple[str, ...], max_new_tokens: int, seed: int, temperature: float = 0.0
    ) -> TextOutput:
        torch = self.torch
        gen = torch.Generator(device="cpu").manual_seed(seed)
        ids: list[int] = []
        while len(ids) < max_new_tokens:
            logits = ctx.state.logits[0].float().cpu()
            # Placeholders only stand for encoder features; ids past the tokenizer decode to nothing.
            logits[self.image_token] = float("-inf")
            logits[len(self.tokenizer) :] = float("-inf")
            token = _pick(torch, logits, temperature, gen)
            if token == self.boi:
                return TextOutput(self._decode(ids), tuple(ids), "image")
            ids.append(token)
            self.add_tokens(ctx, (token,))
            if token == self.eos:
                return TextOutput(self._decode(ids[:-1]), tuple(ids), "eos")
            text = self._decode(ids)
            hit = next((s for s in stop if text.endswith(s)), None)
            if hit is not None:
                return TextOutput(text, tuple(ids), "stop", hit)
        return TextOutput(self._decode(ids), tuple(ids), "length")

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
        uncond = Context(state=_JanusState(_empty_cache(self)))
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
            token = _pick(torch, scores[0], 1.0, gen)
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

    # -- the model -------------------------------------------------------------

    def _prefill(self, ctx: Context, ids: list[int], pixel_values: Any = None) -> None:
        torch = self.torch
        input_ids = torch.tensor([ids], device=self.device)
        if pixel_values is None:
            self._forward(ctx, inputs_embeds=self.model.get_input_embeddings()(input_ids))
        else:
            self._forward(ctx, input_ids=input_ids, pixel_values=pixel_values)
        ctx.usage.prefilled += len(ids)

    def _step_text(self, ctx: Context, token: int) -> None:
        ids = self.torch.tensor([[token]], device=self.device)
        self._forward(ctx, inputs_embeds=self.model.get_input_embeddings()(ids))

    def _forward(self, ctx: Context, **inputs: Any) -> None:
        """One forward of the language model over new positions, appending to the cache."""
        with self.torch.no_grad():
            out = self.model.model(cache=ctx.state.cache, use_cache=True, **inputs)
            hidden = out.last_hidden_state[:, -1, :]
            ctx.state.hidden = hidden
            ctx.state.logits = self.model.lm_head(hidden)
        ctx.length += out.last_hidden_state.shape[1]

    def _decode(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=False)


def _empty_cache(model: JanusModel) -> Any:
    from transformers import DynamicCache

    return DynamicCache(config=model.model.config.text_config)


def _pick(torch: Any, logits: Any, temperature: float, gen: Any) -> int:
    """Greedy at temperature 0, else a draw from the tempered distribution with ``gen``."""
    if temperature <= 0:
        return int(torch.argmax(logits))
    probs = torch.softmax(logits / temperature, dim=-1)
    return int(torch.multinomial(probs, 1, generator=gen))
