"""A decoder-only transformers model whose KV cache is the context: what Janus and Emu3 share.

    >>> class JanusModel(CausalModel):                               # doctest: +SKIP
    ...     family, example = "Janus", "deepseek-community/Janus-Pro-1B"
    ...     architecture = "JanusForConditionalGeneration"
    >>> model = JanusModel("~/models/Janus-Pro-1B")                  # doctest: +SKIP
    >>> ctx = model.new_context(); model.add_text(ctx, "<prompt>a red apple</prompt>")  # doctest: +SKIP
    >>> model.generate_text(ctx, stop=("</plan>",), max_new_tokens=64, seed=0)  # doctest: +SKIP

``CausalModel`` loads the checkpoint folder (``local_files_only``) and does
every text operation of the ``UnifiedModel`` protocol on one ``DynamicCache``:
text is prefilled as embeddings, replayed token by token, and written until a
stop string, EOS, the length limit or the model opening an image, each token
chosen on the model's device (only its id comes to the CPU). A subclass
names its ``family``, an ``example`` checkpoint (for the "no model here"
message) and its transformers ``architecture``, sets ``boi`` and
``image_token`` after loading, and brings what is its own: ``add_image`` and
``generate_image``.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from strokeagent.core.threads import OwnThread
from strokeagent.errors import PolicyError
from strokeagent.unified.protocol import Context, TextOutput

DTYPES = {"float32", "bfloat16", "float16"}


@dataclass
class CausalState:
    """What a ``Context`` of a ``CausalModel`` holds: the cache and what the last position predicts."""

    cache: Any  # transformers DynamicCache
    logits: Any = None  # next-token text logits after the last position (1, vocab)
    hidden: Any = None  # the last position's hidden state, for the image head


def pick(torch: Any, logits: Any, temperature: float, gen: Any) -> int:
    """Greedy at temperature 0, else a draw from the tempered distribution with ``gen``.

    >>> pick(torch, torch.tensor([0.1, 2.0, 0.3]), 0.0, None)       # doctest: +SKIP
    1
    """
    if temperature <= 0:
        return int(torch.argmax(logits))
    probs = torch.softmax(logits / temperature, dim=-1)
    return int(torch.multinomial(probs, 1, generator=gen))


class CausalModel(OwnThread):
    """A checkpoint folder of ``architecture``, loaded once; see the module docstring."""

    family: str  # the name users know it by, in messages
    example: str  # a checkpoint to download, in the "no model here" message
    architecture: str  # the transformers class that loads the folder
    boi: int  # the token that opens an image: text generation stops there
    image_token: int  # the placeholder an image's positions stand on: never written as text
    # A subclass sets `boi` and `image_token` after super().__init__; bos, eos, tokenizer come from here.

    def __init__(self, path: str, device: str = "cpu", dtype: str = "float32") -> None:
        folder = Path(path).expanduser()
        if not (folder / "config.json").is_file():
            raise PolicyError(
                f"no {self.family} model at {folder} (no config.json); download a transformers-format checkpoint, "
                f"e.g. `hf download {self.example} --local-dir {folder}`, or set `path` to where it is"
            )
        if dtype not in DTYPES:
            raise ValueError(f"dtype {dtype!r} is not one of {', '.join(sorted(DTYPES))}")
        import torch
        import transformers
        from transformers import AutoProcessor

        self.torch = torch
        self.device = torch.device("cuda" if device == "auto" and torch.cuda.is_available() else
                                   "cpu" if device == "auto" else device)  # fmt: skip
        architecture = getattr(transformers, self.architecture)
        self.model = architecture.from_pretrained(
            folder, dtype=getattr(torch, dtype), local_files_only=True, use_safetensors=True
        )
        self.model = self.model.to(self.device)
        self.model.eval()
        self.processor = AutoProcessor.from_pretrained(folder, local_files_only=True)
        self.tokenizer = self.processor.tokenizer
        self.bos, self.eos = self.tokenizer.bos_token_id, self.tokenizer.eos_token_id
        self.path = str(folder)
        self._unwritable_mask: Any = None  # see _unwritable

    # -- contexts --------------------------------------------------------------

    def new_context(self) -> Context:
        ctx = self._blank_context()
        if self.bos is not None:
            self._prefill(ctx, [self.bos])
        return ctx

    def fork(self, ctx: Context) -> Context:
        state = CausalState(copy.deepcopy(ctx.state.cache), ctx.state.logits, ctx.state.hidden)
        return Context(length=ctx.length, usage=ctx.snapshot(), state=state)

    def drop(self, ctx: Context) -> None:
        ctx.state = None

    # -- adding ----------------------------------------------------------------

    def add_text(self, ctx: Context, text: str) -> None:
        if text:
            self._prefill(ctx, self.tokenizer(text, add_special_tokens=False).input_ids)

    def add_tokens(self, ctx: Context, ids: tuple[int, ...]) -> None:
        for token in ids:
            self._step_text(ctx, token)
            ctx.usage.generated += 1

    # -- generating ------------------------------------------------------------

    def generate_text(
        self, ctx: Context, *, stop: tuple[str, ...], max_new_tokens: int, seed: int, temperature: float = 0.0
    ) -> TextOutput:
        torch = self.torch
        # Sampled where the logits are, with a generator there: on a GPU, no copy of the vocabulary and no CPU
        # operator per token, only the chosen id (on the CPU the same draws as ever).
        gen = torch.Generator(device=self.device).manual_seed(seed)
        ids: list[int] = []
        with self._writer(ctx, room=max_new_tokens) as write:
            logits = ctx.state.logits
            while len(ids) < max_new_tokens:
                logits = logits[0].float().masked_fill(self._unwritable(logits.shape[-1]), float("-inf"))
                token = pick(torch, logits, temperature, gen)
                if token == self.boi:
                    return TextOutput(self._decode(ids), tuple(ids), "image")
                ids.append(token)
                logits = write(token)
                if token == self.eos:
                    return TextOutput(self._decode(ids[:-1]), tuple(ids), "eos")
                text = self._decode(ids)
                hit = next((s for s in stop if text.endswith(s)), None)
                if hit is not None:
                    return TextOutput(text, tuple(ids), "stop", hit)
        return TextOutput(self._decode(ids), tuple(ids), "length")

    def _unwritable(self, vocab: int) -> Any:  # -> a (vocab,) bool tensor on the device, made once
        """The ids text may not take: the placeholder, which only stands for image positions, and ids past the
        tokenizer's, which decode to nothing."""
        mask = self._unwritable_mask
        if mask is None or mask.shape[0] != vocab:
            mask = self.torch.zeros(vocab, dtype=self.torch.bool, device=self.device)
            mask[self.image_token] = True
            mask[len(self.tokenizer) :] = True
            self._unwritable_mask = mask
        return mask

    @contextmanager
    def _writer(self, ctx: Context, room: int) -> Iterator[Callable[[int], Any]]:
        """How ``generate_text`` puts each token it writes into ``ctx``: ``write(token)`` gives the next logits.

        Here one forward per token on the context's own cache; a subclass may write up to ``room`` tokens
        elsewhere, as long as ``ctx`` holds them all when the block ends.
        """

        def write(token: int) -> Any:
            self.add_tokens(ctx, (token,))
            return ctx.state.logits

        yield write

    # -- the model -------------------------------------------------------------

    def _blank_context(self) -> Context:
        """A context with nothing in it, not even BOS: guidance's unconditional branch starts from here."""
        from transformers import DynamicCache

        return Context(state=CausalState(DynamicCache(config=self.model.config.text_config)))

    def _prefill(self, ctx: Context, ids: list[int], **images: Any) -> None:
        """Prefill ``ids``; with ``images`` (pixel values...) the model fills their placeholders itself."""
        torch = self.torch
        input_ids = torch.tensor([ids], device=self.device)
        if not images:
            self._forward(ctx, inputs_embeds=self.model.get_input_embeddings()(input_ids))
        else:
            self._forward(ctx, input_ids=input_ids, **images)
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
