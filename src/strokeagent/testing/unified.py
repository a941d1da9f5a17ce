"""Unified models for tests: a tiny random-weight Janus saved as a real checkpoint, and a scripted one.

    >>> folder = build_tiny_janus(tmp_path / "tiny-janus")        # doctest: +SKIP
    >>> JanusModel(str(folder)).native_size                       # doctest: +SKIP
    32
    >>> model = ScriptedUnifiedModel([("<ins>draw a cat</ins><des>a cat</des>", "stop")])
    >>> ctx = model.new_context()
    >>> model.generate_text(ctx, stop=("</des>",), max_new_tokens=99, seed=0, temperature=0.0).matched
    '</des>'

The folder holds what ``deepseek-community/Janus-Pro-1B`` holds (config,
safetensors weights, processor and tokenizer files), so tests load it through the
same ``JanusModel`` code users run on real checkpoints. The tokenizer is
character-level, from an in-memory vocabulary: every printable ASCII character
is a token, so any process tag can be written and counted. Sizes: text 32
hidden, 2 layers; vision 32×32 images in 8-pixel patches (16 image tokens); a
64-code VQ that decodes 16 tokens to 32×32 pixels. Building takes about a second
(after the transformers import); nothing is downloaded.

``ScriptedUnifiedModel`` writes what a test scripts (one token per character)
and holds its context as a literal transcript, so a test can read exactly what
each stage added; it needs no torch.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

from strokeagent.unified.protocol import Context, TextOutput

if TYPE_CHECKING:
    from PIL import Image

SPECIALS = (
    "<|begin_of_sentence|>",
    "<|end_of_sentence|>",
    "<pad>",
    "<image_placeholder>",
    "<begin_of_image>",
    "<end_of_image>",
)


def tiny_janus_tokenizer():  # -> PreTrainedTokenizerFast
    """A character-level tokenizer with Janus's special tokens, built in memory."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    chars = [chr(i) for i in range(32, 127)] + ["\n"]
    vocab = {token: i for i, token in enumerate([*SPECIALS, *chars])}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="?"))
    tok.pre_tokenizer = pre_tokenizers.Split("", "isolated")  # one token per character
    tok.decoder = decoders.Fuse()
    bos, eos, pad, image, boi, eoi = SPECIALS
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=bos,
        eos_token=eos,
        pad_token=pad,
        extra_special_tokens={"image_token": image, "boi_token": boi, "eoi_token": eoi},
    )


def tiny_janus_config(hidden: int = 32, layers: int = 2):  # -> JanusConfig
    from transformers import JanusConfig

    text = {
        "model_type": "llama",
        "vocab_size": 128,
        "hidden_size": hidden,
        "intermediate_size": 2 * hidden,
        "num_hidden_layers": layers,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "max_position_embeddings": 4096,
        "bos_token_id": 0,
        "eos_token_id": 1,
        "pad_token_id": 2,
    }
    vision = {
        "hidden_size": 32,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "image_size": 32,
        "patch_size": 8,
        "projection_dim": hidden,
        "num_image_tokens": 16,
    }
    # Four latent patches a side, upsampled three times: 32×32 pixels, as the vision side reads them.
    vq = {
        "embed_dim": 8,
        "num_embeddings": 64,
        "latent_channels": 32,
        "base_channels": 32,
        "channel_multiplier": [1, 1, 1, 1],
        "num_res_blocks": 1,
        "projection_dim": hidden,
        "image_token_embed_dim": hidden,
    }
    return JanusConfig(
        text_config=text, vision_config=vision, vq_config=vq, image_token_id=SPECIALS.index(SPECIALS[3])
    )


def build_tiny_janus(folder: str | Path, seed: int = 0) -> Path:
    """Build a tiny random-weight Janus with ``seed`` and save it (weights, processor) to ``folder``."""
    import torch
    from transformers import JanusForConditionalGeneration, JanusProcessor
    from transformers.models.janus.image_processing_pil_janus import JanusImageProcessorPil

    folder = Path(folder)
    torch.manual_seed(seed)
    model = JanusForConditionalGeneration(tiny_janus_config()).eval()
    images = JanusImageProcessorPil(size={"height": 32, "width": 32}, min_size=8)
    processor = JanusProcessor(image_processor=images, tokenizer=tiny_janus_tokenizer(), num_image_tokens=16)
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


def write_backend(model_folder: str | Path, toml_path: str | Path, kind: str = "janus") -> Path:
    """A backend description pointing at ``model_folder``: ``kind = "janus"`` and its ``path``."""
    toml_path = Path(toml_path)
    toml_path.write_text(f'kind = "{kind}"\npath = "{Path(model_folder).as_posix()}"\n', encoding="utf-8")
    return toml_path


def tiny_process_policy(
    backend: str | Path, max_steps: int = 2, max_refines: int = 1, **options: object
):  # -> Policy
    """The process policy on ``backend`` with small caps, built from tables as a policy file is (so it resumes).

    Defaults suit a random-weight model: no preamble, 16 text tokens a call, sampled
    text, and an unreadable inspection counts as a conflict so refine runs.
    """
    from strokeagent.core.policy import policy_from_tables

    stage = {
        "kind": "process",
        "backend": str(backend),
        "max_text_tokens": 16,
        "temperature": 1.0,
        "on_unreadable_inspection": "conflict",
        "format": {"preamble": ""},
        **options,
    }
    tables = {
        "name": "tiny-process",
        "loop": {"max_steps": max_steps, "max_refines": max_refines},
        "stages": {name: dict(stage) for name in ("plan", "draft", "reflect", "refine")},
    }
    return policy_from_tables(tables, where="tiny-process")


class ScriptedUnifiedModel:
    """A ``UnifiedModel`` whose text is a script: ``(text, stop reason)`` per ``generate_text`` call.

    One token per character (``ord``). ``"stop"`` means the text ends with one of
    the call's stop strings (else it becomes ``"length"``); ``"eos"``, ``"image"`` and
    ``"length"`` are taken as given; ``"error"`` raises ``RuntimeError(text)`` (a
    process killed mid-stage). An image adds 4 tokens; painted images are flat
    colours from the seed, and ``fail_image_at = n`` makes the n-th painting raise.
    ``ctx.state`` is the transcript: the pieces each operation added, in order.
    """

    native_size = 8

    def __init__(self, script: list[tuple[str, str]]) -> None:
        self.script = list(script)
        self.fail_image_at: int | None = None
        self.images = 0

    def new_context(self) -> Context:
        return Context(state=[])

    def add_text(self, ctx: Context, text: str) -> None:
        ctx.state.append(text)
        ctx.length += len(text)
        ctx.usage.prefilled += len(text)

    def add_image(self, ctx: Context, image: Image.Image) -> None:
        ctx.state.append(f"[image {image.getpixel((0, 0))}]")
        ctx.length += 4
        ctx.usage.prefilled += 4

    def add_tokens(self, ctx: Context, ids: tuple[int, ...]) -> None:
        ctx.state.append("".join(map(chr, ids)))
        ctx.length += len(ids)
        ctx.usage.generated += len(ids)

    def generate_text(
        self, ctx: Context, *, stop: tuple[str, ...], max_new_tokens: int, seed: int, temperature: float
    ) -> TextOutput:
        if not self.script:
            raise AssertionError("the scripted model was asked for more text than its script holds")
        text, reason = self.script.pop(0)
        if reason == "error":
            raise RuntimeError(text)
        text = text[:max_new_tokens]
        ids = tuple(map(ord, text))
        self.add_tokens(ctx, ids)
        matched = next((s for s in stop if text.endswith(s)), None)
        if reason == "stop" and matched is None:
            reason = "length"
        return TextOutput(text, ids, reason, matched if reason == "stop" else None)  # type: ignore[arg-type]

    def generate_image(
        self, ctx: Context, *, seed: int, guidance: float, steps: int | None = None, size: int | None = None
    ) -> Image.Image:
        from PIL import Image

        self.images += 1
        if self.images == self.fail_image_at:
            raise RuntimeError("the painter fell over")
        ctx.usage.generated += 4
        return Image.new("RGB", (8, 8), (seed % 256, 7, 7))

    def fork(self, ctx: Context) -> Context:
        return Context(ctx.length, ctx.snapshot(), list(ctx.state))

    def drop(self, ctx: Context) -> None:
        ctx.state = None


class SampleModel(ScriptedUnifiedModel):
    """A model that learned one training sample perfectly: it writes the sample's text, cut where the stages cut.

        >>> model = SampleModel([{"kind": "text", "text": "<ins>a cat</ins><des>a cat</des>"}])
        >>> model.generate_text(model.new_context(), stop=("</ins>",), max_new_tokens=99, seed=0,
        ...                     temperature=0.0).text
        '<ins>a cat</ins>'

    ``segments`` are a sample's (``strokeagent.data``). Each ``generate_text``
    writes on up to the first stop string (``"image"`` where the sample paints
    next, ``"eos"`` where it ends); ``generate_image`` paints the sample's next
    image; ``add_text`` must add exactly what the sample holds next, else it
    raises. ``left`` is what the stages have not read yet.
    """

    def __init__(self, segments: list[dict]) -> None:
        super().__init__([])
        self.left: list[str | None] = []  # text runs, and None for each image
        for seg in segments:
            if seg["kind"] == "image":
                self.left.append(None)
            elif self.left and isinstance(self.left[-1], str):
                self.left[-1] += seg["text"]
            else:
                self.left.append(seg["text"])

    def _take(self, n: int) -> None:
        rest = self.left[0][n:]  # type: ignore[index]
        self.left = [rest, *self.left[1:]] if rest else self.left[1:]

    def add_text(self, ctx: Context, text: str) -> None:
        head = self.left[0] if self.left else None
        if head is None or not head.startswith(text):
            raise AssertionError(f"the stage added {text!r} where the sample has {head!r}")
        self._take(len(text))
        super().add_text(ctx, text)

    def generate_text(
        self, ctx: Context, *, stop: tuple[str, ...], max_new_tokens: int, seed: int, temperature: float
    ) -> TextOutput:
        head = self.left[0] if self.left else None
        if head is None:
            return TextOutput("", (), "image" if self.left else "eos")
        ends = sorted((head.find(s) + len(s), s) for s in stop if s in head)
        text = head[: ends[0][0]] if ends else head
        self._take(len(text))
        ids = tuple(map(ord, text))
        self.add_tokens(ctx, ids)
        if ends:
            return TextOutput(text, ids, "stop", ends[0][1])
        return TextOutput(text, ids, "image" if self.left else "eos")

    def generate_image(
        self, ctx: Context, *, seed: int, guidance: float, steps: int | None = None, size: int | None = None
    ) -> Image.Image:
        if not self.left or self.left[0] is not None:
            raise AssertionError(
                f"asked to paint where the sample has {self.left[0] if self.left else 'ended'!r}"
            )
        self.left = self.left[1:]
        return super().generate_image(ctx, seed=seed, guidance=guidance, steps=steps, size=size)


#: Where ``backends/tiny-janus.toml`` looks; ``python -m strokeagent.testing.unified`` builds it there.
DEFAULT_TINY_JANUS = Path("~/.cache/strokeagent/tiny-janus").expanduser()

if __name__ == "__main__":
    print(build_tiny_janus(DEFAULT_TINY_JANUS))


class StopAwareUnifiedModel(ScriptedUnifiedModel):
    """A scripted unified model that writes by where the stage stops, so concurrent runs cannot take each
    other's lines: a plan, an inspection with a conflict, its fix, a new step. ``lines`` overrides them."""

    LINES: ClassVar[dict[str, str]] = {
        "</des>": "<ins>draw a red apple</ins><des>a red apple</des>",
        "</inspect>": "<plan_check>ok</plan_check><image_check>the apple is green</image_check></inspect>",
        "</refine>": "\n<refine>make the apple red</refine>",
        "<ins>": "\n<ins>",
    }

    def __init__(self, lines: dict[str, str] | None = None) -> None:
        super().__init__([])
        self.lines = {**self.LINES, **(lines or {})}

    def generate_text(self, ctx: Context, *, stop: tuple[str, ...], max_new_tokens: int, seed: int,
                      temperature: float) -> TextOutput:  # fmt: skip
        text = self.lines[stop[0]]
        ids = tuple(map(ord, text))
        self.add_tokens(ctx, ids)
        return TextOutput(text, ids, "stop", stop[0])
