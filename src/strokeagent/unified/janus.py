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
- ``generate_image`` paints beside a tiny unconditional branch ``[BOS, <begin_of_image>]``
  for classifier-free guidance: both branches run as one batch-2 forward per token
  (the context's cache and the unconditional one, left-padded and masked, in a new
  cache; the context itself is only read), the token is sampled on the device,
  and the VQ tokens are decoded. The process stages then add the painted image back with ``add_image``: the same
  representation a resumed run re-reads from the PNG, so live and rebuilt
  contexts agree bit for bit.
- ``decode`` (a backend option) picks how the per-token forwards of painting and writing
  run: ``"dynamic"`` (the default) grows a ``DynamicCache``; ``"static"`` copies the
  context (for painting, the guidance pair) into a preallocated ``StaticCache`` (one kept
  for each batch size, as long as the longest context so far, in blocks of ``CACHE_BLOCK``)
  so that every step has the same shapes, and appends the written text to the context when
  it stops; ``"compiled"`` is ``"static"`` with the one-token steps through ``torch.compile``
  (CUDA graphs on a GPU; the first image and the first text each pay a compile). ``"static"``
  paints and writes what ``"dynamic"`` does and leaves the same context, on the CPU in
  float32; ``"compiled"`` agrees within rounding (``tests/test_janus_decoding.py``).
  ``text_decode`` gives text a mode of its own (by default text follows ``decode``):
  ``decode = "compiled"`` with ``text_decode = "dynamic"`` pays one compile, not two.
- Janus cannot edit an image: a refinement is a new image conditioned on the
  whole context (the prompt, the plans, the previous images, the inspection and
  the corrected instruction). ``steps`` is ignored (Janus paints one token per
  image patch); ``size`` must be the model's native size.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from strokeagent.unified.causal import CausalModel
from strokeagent.unified.protocol import Context

DECODES = ("dynamic", "static", "compiled")
#: A kept static cache grows in whole blocks: each new length is one more CUDA graph to record.
CACHE_BLOCK = 256


class JanusModel(CausalModel):
    """A Janus checkpoint folder, loaded once; see the module docstring."""

    family = "Janus"
    example = "deepseek-community/Janus-Pro-1B"
    architecture = "JanusForConditionalGeneration"

    def __init__(
        self,
        path: str,
        device: str = "cpu",
        dtype: str = "float32",
        decode: str = "dynamic",
        text_decode: str | None = None,
    ) -> None:
        for key, value in (("decode", decode), ("text_decode", text_decode or decode)):
            if value not in DECODES:
                raise ValueError(f"{key} {value!r} is not one of {', '.join(DECODES)}")
        super().__init__(path, device, dtype)
        tok = self.tokenizer
        self.boi = tok.convert_tokens_to_ids(tok.boi_token)
        self.eoi = tok.convert_tokens_to_ids(tok.eoi_token)
        self.image_token = self.model.config.image_token_id
        self.num_image_tokens = self.model.config.vision_config.num_image_tokens
        vq = self.model.config.vq_config
        self.native_size: int | None = vq.num_patches * 2 ** (len(vq.channel_multiplier) - 1)
        self.decode = decode
        # Text's own mode, when it should differ: e.g. compile the image step only, as a short run's few text
        # tokens would not pay back a second compile.
        self.text_decode = text_decode
        self._compiled: dict[str, Any] = {}  # each compiled step, built on its first use, not at load
        self._kept: dict[int, Any] = {}  # the static cache of each batch size between uses: see _static_cache

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
        gen = torch.Generator(device=self.device).manual_seed(seed)
        # Janus masks all but BOS and the image start in its unconditional branch; keep just those.
        uncond_ids = [t for t in (self.bos, self.boi) if t is not None]
        static = self.decode != "dynamic"
        room = self.num_image_tokens if static else 0
        cache, mask, positions = self._guidance_pair(ctx, uncond_ids[:-1], room=room)
        ctx.usage.prefilled += 1 + len(uncond_ids)
        step = self._step(self._image_logits, self.decode)
        tokens = []
        with torch.no_grad():  # also for the first embedding: a compiled step would compile again for it
            embeds = self.model.get_input_embeddings()(torch.tensor([[self.boi]], device=self.device))
            for i in range(self.num_image_tokens):
                if not static:  # a static cache's mask already spans every position it will hold
                    mask = torch.cat([mask, mask.new_ones(2, 1)], dim=1)
                # Both branches in one forward: row 0 conditional, row 1 unconditional (left-padded, masked).
                c, u = step(embeds.expand(2, -1, -1), mask, positions + i, cache)
                # Sampled on the device, kept there: no copy to the CPU (and no wait for the GPU) per token.
                token = torch.multinomial(torch.softmax(u + guidance * (c - u), dim=-1), 1, generator=gen)
                tokens.append(token)
                if i + 1 < self.num_image_tokens:
                    embeds = self.model.prepare_embeddings_for_image_generation(token[None])
        ctx.usage.generated += len(tokens)
        if static:
            self._kept[2] = cache
        del cache
        return self.decode_tokens(torch.cat(tokens)[None])

    def decode_tokens(self, tokens):  # -> PIL.Image.Image; tokens: (1, num_image_tokens) VQ codes
        """The VQ decoder's picture of painted tokens."""
        torch = self.torch
        with torch.no_grad():
            decoded = self.model.decode_image_tokens(tokens)
        pixels = self.processor.image_processor.postprocess(
            list(decoded.permute(0, 3, 1, 2).float().cpu()), return_tensors="pt"
        ).pixel_values[0]
        from PIL import Image

        return Image.fromarray(pixels.permute(1, 2, 0).to(torch.uint8).numpy(), "RGB")

    def _image_logits(self, embeds, mask, positions, cache):  # noqa: ANN001, ANN202 - tensors, a cache
        """One painting step for both guidance rows: the image head's logits, (2, codebook), in float32."""
        out = self.model.model.language_model(
            inputs_embeds=embeds, attention_mask=mask, position_ids=positions, cache=cache, use_cache=True
        )
        return self.model.model.generation_head(out.last_hidden_state[:, -1, :]).float()

    def _text_logits(self, embeds, mask, positions, cache):  # noqa: ANN001, ANN202 - tensors, a cache
        """One writing step: the last position's hidden state and the text head's logits, (1, vocab)."""
        out = self.model.model.language_model(
            inputs_embeds=embeds, attention_mask=mask, position_ids=positions, cache=cache, use_cache=True
        )
        hidden = out.last_hidden_state[:, -1, :]
        return hidden, self.model.lm_head(hidden)

    def _step(self, eager, decode: str):  # noqa: ANN001, ANN202 - ``_image_logits`` or ``_text_logits`` in ``decode``
        if decode != "compiled":
            return eager
        name = eager.__name__
        if name not in self._compiled:
            # "reduce-overhead" is CUDA graphs, which a static cache makes possible; the CPU has no graphs.
            # Dynamic shapes: one compile serves every cache length as the context grows (CUDA graphs still
            # record one graph per length); specialised shapes would compile twice, then go dynamic anyway.
            mode = "reduce-overhead" if self.device.type == "cuda" else None
            self._compiled[name] = self.torch.compile(eager, mode=mode, fullgraph=True, dynamic=True)
        return self._compiled[name]

    @contextmanager
    def _writer(self, ctx: Context, room: int) -> Iterator[Callable[[int], Any]]:
        """With a static ``decode``, text is written on a copy of the context in a static cache, as images are
        painted; when the block ends, the written positions are appended to the context's own cache."""
        decode = self.text_decode or self.decode
        if decode == "dynamic" or room < 1:  # nothing to write: no cache to copy the context into
            with super()._writer(ctx, room) as write:
                yield write
            return
        torch = self.torch
        start = ctx.state.cache.get_seq_length()
        cache, mask, positions = self._static_rows([ctx.state.cache], room)
        step = self._step(self._text_logits, decode)
        written, last = 0, None

        def write(token: int) -> Any:
            nonlocal written, last
            with torch.no_grad():
                embeds = self.model.get_input_embeddings()(torch.tensor([[token]], device=self.device))
                last = step(embeds, mask, positions + written, cache)
            written += 1
            ctx.usage.generated += 1
            return last[1]

        try:
            yield write
        finally:
            if written:
                # Copies: CUDA graphs write their outputs, and the kept cache, over again on the next replay.
                end = start + written
                for i, layer in enumerate(cache.layers):
                    ctx.state.cache.update(layer.keys[:, :, start:end].clone(),
                                           layer.values[:, :, start:end].clone(), i)  # fmt: skip
                ctx.state.hidden, ctx.state.logits = (t.clone() for t in last)  # type: ignore[union-attr]
                ctx.length += written
            self._kept[1] = cache

    def _static_cache(self, rows: int, length: int):  # -> a StaticCache of ``rows`` with room for ``length``
        """The kept cache of ``rows``, emptied, if it is long enough; else a new one, ``length`` rounded up to a
        block.

        Keeping it keeps the addresses that CUDA graphs replay on (a new cache means a new recording).
        It is taken while painting, so a painter in another thread meanwhile gets its own.
        """
        from transformers import StaticCache

        kept = self._kept.pop(rows, None)
        if kept is not None and kept.get_max_length() >= length:
            kept.reset()
            return kept
        del kept  # freed before its successor is allocated
        blocks = -(-length // CACHE_BLOCK)
        return StaticCache(config=self.model.config.text_config, max_cache_len=blocks * CACHE_BLOCK)

    def _guidance_pair(
        self, ctx: Context, uncond_prefix: list[int], room: int = 0
    ):  # -> (cache, mask, positions)
        """A batch-2 cache for guidance: row 0 is ``ctx``'s cache, row 1 the unconditional ``uncond_prefix``.

        ``ctx``'s own cache is only read, never changed (see ``_static_rows`` for ``room``).
        """
        uncond = self._blank_context()
        if uncond_prefix:
            self._prefill(uncond, uncond_prefix)
        return self._static_rows([ctx.state.cache, uncond.state.cache], room)

    def _static_rows(self, rows: list[Any], room: int):  # -> (cache, mask, positions)
        """One new cache holding a copy of each of ``rows`` (caches), one batch row each.

        The shorter rows are left-padded with zeros that ``mask`` hides; ``positions`` are each row's next
        position. With ``room``, the cache is a ``StaticCache`` with at least ``room`` positions free after the
        rows, and ``mask`` spans all of it (what is not written yet is hidden by causality); without, a
        ``DynamicCache`` that grows.
        """
        torch = self.torch
        from transformers import DynamicCache

        lengths = [c.get_seq_length() for c in rows]
        longest = max(lengths)
        if room:
            cache = self._static_cache(len(rows), longest + room)
            width = cache.get_max_length()
        else:
            cache, width = DynamicCache(config=self.model.config.text_config), longest
        if longest:
            # A row with something cached gives the shapes.
            full = next(c for c, n in zip(rows, lengths, strict=True) if n)
            for layer in range(len(full.layers)):
                pairs = [(c.layers[layer].keys, c.layers[layer].values) if n else
                         (full.layers[layer].keys[:, :, :0], full.layers[layer].values[:, :, :0])
                         for c, n in zip(rows, lengths, strict=True)]  # fmt: skip
                pad = [(0, 0, longest - n, 0) for n in lengths]
                keys = torch.cat(
                    [torch.nn.functional.pad(k, p) for (k, _), p in zip(pairs, pad, strict=True)]
                )
                values = torch.cat(
                    [torch.nn.functional.pad(v, p) for (_, v), p in zip(pairs, pad, strict=True)]
                )
                cache.update(keys, values, layer)
        mask = torch.tensor([[0] * (longest - n) + [1] * (width - longest + n) for n in lengths],
                            device=self.device)  # fmt: skip
        positions = torch.tensor([[n] for n in lengths], device=self.device)
        return cache, mask, positions
