"""``process-tiny``: a small unified model that writes the process format and paints in strokes — numpy only.

    >>> model = TinyProcessModel()                      # the weights shipped in strokeagent/models/process-tiny
    >>> ctx = model.new_context(); model.add_text(ctx, "<prompt>a photo of a red apple</prompt>")
    >>> model.generate_text(ctx, stop=("</des>",), max_new_tokens=64, seed=0, temperature=0.0).text
    '<ins>Draw a red apple.</ins><des>A red apple.</des>'

One decoder-only transformer reads and writes one interleaved sequence, the
paper's format (``unified.process``): the prompt, ``<ins>``/``<des>`` plans, the
canvas after each pass, ``<inspect>`` with its two checks, ``<refine>`` and
``</process>``. It was trained from scratch by ``strokeagent train
configs/process-tiny.toml`` (``train.tiny``) on trajectories of the stroke
world (``data.tiny``); the model card beside the weights says how, and with
what result.

**Visual states are strokes.** To paint, the model writes — in a fork of its
context that is then thrown away — ``<draw>`` and four tokens a stroke (class,
colour, column, row of a 4×4 grid), until ``</draw>``; decoding is held to that
grammar, as a unified model's image head is held to its codebook. The hand
(``sketch.hand``) paints the strokes with its seeded mistakes, and what enters
the context is the *rendered canvas*: 16 patch embeddings (a 128 px cell each,
average-pooled to 8×8×3 and projected), never the strokes it asked for. So its
inspection reads pixels, as a real model's does.

It implements ``UnifiedModel`` and runs under the same ``process`` stages and
loop as Janus or BAGEL. Everything is float32 numpy: deterministic, no torch.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np

from strokeagent.errors import PolicyError
from strokeagent.unified.protocol import Context, ContextFull, TextOutput

SHIPPED = Path(__file__).resolve().parents[1] / "models" / "process-tiny"
PATCH_GRID = 4  # patches a side: one per cell of the hand's grid
PATCH_POOL = 8  # each patch average-pooled to 8×8 rgb
PATCH_DIM = PATCH_POOL * PATCH_POOL * 3

# -- the tokenizer -------------------------------------------------------------------

TAGS = (
    "<prompt>", "</prompt>", "<ins>", "</ins>", "<des>", "</des>", "<inspect>", "</inspect>",
    "<plan_check>", "</plan_check>", "<image_check>", "</image_check>", "<refine>", "</refine>", "</process>",
)  # fmt: skip
SPECIAL = ("<pad>", "<bos>", "<unk>", "<img>", "</img>", "<patch>", "<draw>", "</draw>")
_PIECE = re.compile(r"<[^<>\s]+>|\[[^\[\]]+\]|[A-Za-z]+|[0-9]+|[^\sA-Za-z0-9]")


@dataclass(frozen=True)
class Tokenizer:
    """Words, punctuation and the format's tags; stroke tokens are ``[cls]``, ``[colour]``, ``[c0]``, ``[r0]``."""

    tokens: tuple[str, ...]
    index: dict[str, int] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "index", {t: i for i, t in enumerate(self.tokens)})

    def __len__(self) -> int:
        return len(self.tokens)

    def id(self, token: str) -> int:
        return self.index[token]

    def encode(self, text: str) -> list[int]:
        unk = self.index["<unk>"]
        return [self.index.get(p, unk) for p in _PIECE.findall(text)]

    def decode(self, ids: list[int] | tuple[int, ...]) -> str:
        out = ""
        for i in ids:
            piece = self.tokens[i]
            glued = piece.startswith("<") or not out or out.endswith(">") or not (piece[0].isalnum() or piece[0] == "[")
            out += piece if glued else " " + piece
        return out

    def strokes_of(self, kind: str) -> list[int]:
        """The ids of one stroke slot: ``cls``, ``color``, ``col`` or ``row``."""
        return [self.index[t] for t in stroke_tokens()[kind]]

    def to_json(self) -> str:
        return json.dumps({"tokens": list(self.tokens)}, indent=0)

    @classmethod
    def from_json(cls, text: str) -> Tokenizer:
        return cls(tuple(json.loads(text)["tokens"]))


@cache
def stroke_tokens() -> dict[str, tuple[str, ...]]:
    from strokeagent.scene.vocab import COCO_CLASSES, COLORS
    from strokeagent.sketch.hand import GRID

    return {
        "cls": tuple(f"[{c}]" for c in COCO_CLASSES),
        "color": ("[plain]", *(f"[{c}]" for c in COLORS)),
        "col": tuple(f"[c{i}]" for i in range(GRID)),
        "row": tuple(f"[r{i}]" for i in range(GRID)),
    }


def build_tokenizer(texts: list[str]) -> Tokenizer:
    """Every piece of ``texts`` (sorted, so the same texts give the same ids), after the fixed tokens."""
    fixed = [*SPECIAL, *TAGS, *(t for kind in stroke_tokens().values() for t in kind)]
    words = sorted({p for t in texts for p in _PIECE.findall(t)} - set(fixed))
    return Tokenizer(tuple(fixed + words))


def write_strokes(strokes: list[Any]) -> str:
    """The stroke tokens a pass writes between ``<draw>`` and ``</draw>``."""
    return "".join(f"[{s.cls}][{s.color or 'plain'}][c{s.col}][r{s.row}]" for s in strokes)


def pooled_cells(image: Any) -> np.ndarray:
    """The canvas as ``(16, 192)`` bytes: each 128 px cell average-pooled to 8×8 rgb."""
    side = PATCH_GRID * PATCH_POOL
    small = np.asarray(image.convert("RGB").resize((side, side), resample=_box_filter()), dtype=np.uint8)
    cells = small.reshape(PATCH_GRID, PATCH_POOL, PATCH_GRID, PATCH_POOL, 3).transpose(0, 2, 1, 3, 4)
    return np.ascontiguousarray(cells.reshape(PATCH_GRID * PATCH_GRID, PATCH_DIM))


def patch_vectors(cells: np.ndarray) -> np.ndarray:
    """What the model reads of a canvas: its pooled cells, from bytes to [-0.5, 0.5]."""
    return cells.astype(np.float32) / 255.0 - 0.5


def _box_filter() -> Any:
    from PIL import Image

    return Image.Resampling.BOX


# -- the transformer, in numpy ---------------------------------------------------------


@dataclass(frozen=True)
class TinyConfig:
    vocab: int
    dim: int = 128
    layers: int = 4
    heads: int = 4
    max_len: int = 1024

    def to_json(self) -> str:
        return json.dumps(vars(self))


def _layer_norm(x: np.ndarray, w: np.ndarray, b: np.ndarray) -> np.ndarray:
    mu = x.mean(-1, keepdims=True)
    var = ((x - mu) ** 2).mean(-1, keepdims=True)
    return (x - mu) / np.sqrt(var + 1e-5) * w + b


def _gelu(x: np.ndarray) -> np.ndarray:
    return 0.5 * x * (1.0 + np.tanh(0.7978845608028654 * (x + 0.044715 * x**3)))


@dataclass
class TinyState:
    """A context of the tiny model: its KV cache, the last logits, and the hand's canvas document."""

    keys: np.ndarray  # (layers, heads, max_len, head_dim)
    values: np.ndarray
    logits: np.ndarray | None = None
    doc: Any = None  # the SketchDocument the hand painted last


class TinyTransformer:
    """Pre-norm decoder; token and patch embeddings in, tied-embedding logits out."""

    def __init__(self, cfg: TinyConfig, weights: dict[str, np.ndarray]) -> None:
        self.cfg, self.w = cfg, {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in weights.items()}
        self.head_dim = cfg.dim // cfg.heads

    def empty(self) -> TinyState:
        shape = (self.cfg.layers, self.cfg.heads, self.cfg.max_len, self.head_dim)
        return TinyState(np.zeros(shape, np.float32), np.zeros(shape, np.float32))

    def embed(self, ids: list[int], patches: np.ndarray | None = None) -> np.ndarray:
        """Token embeddings; where ``ids`` hold ``<patch>``, the rows of ``patches`` projected instead."""
        w = self.w
        x = w["tok_emb"][ids]
        if patches is not None:
            where = np.flatnonzero(np.asarray(ids) == self.patch_id)
            x[where] = patches @ w["patch_proj.weight"] + w["patch_proj.bias"] + w["patch_pos"][: len(where)]
        return x

    patch_id = SPECIAL.index("<patch>")

    def forward(self, state: TinyState, start: int, x: np.ndarray) -> np.ndarray:
        """Run the new positions ``start…`` through the model, filling the cache; the last position's logits."""
        cfg, w = self.cfg, self.w
        t = x.shape[0]
        end = start + t
        if end > cfg.max_len:
            raise ContextFull(f"process-tiny holds {cfg.max_len} tokens")
        x = x + w["pos_emb"][start:end]
        mask = np.triu(np.full((t, end), -np.inf, np.float32), k=start + 1)
        for i in range(cfg.layers):
            p = f"blocks.{i}."
            h = _layer_norm(x, w[p + "ln1.weight"], w[p + "ln1.bias"])
            qkv = h @ w[p + "qkv.weight"] + w[p + "qkv.bias"]
            q, k, v = (a.reshape(t, cfg.heads, self.head_dim).transpose(1, 0, 2) for a in np.split(qkv, 3, -1))
            state.keys[i, :, start:end] = k
            state.values[i, :, start:end] = v
            scores = q @ state.keys[i, :, :end].transpose(0, 2, 1) / np.sqrt(self.head_dim) + mask
            scores = np.exp(scores - scores.max(-1, keepdims=True))
            att = (scores / scores.sum(-1, keepdims=True)) @ state.values[i, :, :end]
            x = x + att.transpose(1, 0, 2).reshape(t, cfg.dim) @ w[p + "out.weight"] + w[p + "out.bias"]
            h = _layer_norm(x, w[p + "ln2.weight"], w[p + "ln2.bias"])
            x = x + _gelu(h @ w[p + "fc.weight"] + w[p + "fc.bias"]) @ w[p + "proj.weight"] + w[p + "proj.bias"]
        last = _layer_norm(x[-1], w["ln_f.weight"], w["ln_f.bias"])
        return last @ w["tok_emb"].T


# -- the unified model -----------------------------------------------------------------------


class TinyProcessModel:
    """The ``UnifiedModel`` over a ``process-tiny`` folder (``model.safetensors``, ``tokenizer.json``,
    ``config.json``); by default the one shipped with the package.

    Options: ``path`` (a folder), ``mistake_rate`` and ``crowding`` (the hand's, as the sketch drafter's).
    """

    native_size = 512
    max_strokes = 12

    def __init__(self, path: str | None = None, mistake_rate: float = 0.25, crowding: float = 0.25) -> None:
        from strokeagent.sketch.drafter import check_mistake_options

        folder = Path(path).expanduser() if path else SHIPPED
        files = [folder / n for n in ("model.safetensors", "tokenizer.json", "config.json")]
        missing = [f.name for f in files if not f.is_file()]
        if missing:
            raise PolicyError(
                f"no process-tiny model at {folder} (missing {', '.join(missing)}); "
                "train one with `strokeagent train configs/process-tiny.toml` or leave `path` out"
            )
        from safetensors.numpy import load_file

        check_mistake_options(mistake_rate, crowding, ())
        self.mistake_rate, self.crowding = mistake_rate, crowding
        self.tokenizer = Tokenizer.from_json(files[1].read_text(encoding="utf-8"))
        self.cfg = TinyConfig(**json.loads(files[2].read_text(encoding="utf-8")))
        self.net = TinyTransformer(self.cfg, load_file(files[0]))
        self.path = str(folder)
        tok = self.tokenizer
        self._bos, self._img, self._end_img = tok.id("<bos>"), tok.id("<img>"), tok.id("</img>")
        self._draw, self._end_draw = tok.id("<draw>"), tok.id("</draw>")
        # Text never contains what only stands for pixels or strokes.
        self._not_text = np.zeros(len(tok), bool)
        for t in ("<pad>", "<bos>", "<unk>", "<patch>", "</img>", "<draw>", "</draw>"):
            self._not_text[tok.id(t)] = True
        # A stroke's four slots, each held to its own tokens; the first may also end the strokes.
        cls, color, col, row = (np.array(tok.strokes_of(k)) for k in ("cls", "color", "col", "row"))
        self._stroke_slots = (np.append(cls, self._end_draw), color, col, row)
        self._not_text[np.concatenate([cls, color, col, row])] = True

    # -- contexts ------------------------------------------------------------------------

    def new_context(self) -> Context:
        ctx = Context(state=self.net.empty())
        self._feed(ctx, [self._bos])
        return ctx

    def fork(self, ctx: Context) -> Context:
        s = ctx.state
        state = TinyState(s.keys.copy(), s.values.copy(), s.logits, s.doc)
        return Context(length=ctx.length, usage=ctx.snapshot(), state=state)

    def drop(self, ctx: Context) -> None:
        ctx.state = None

    def add_text(self, ctx: Context, text: str) -> None:
        ids = self.tokenizer.encode(text)
        if ids:
            self._feed(ctx, ids)

    def add_tokens(self, ctx: Context, ids: tuple[int, ...]) -> None:
        for token in ids:
            self._feed(ctx, [token], generated=True)

    def add_image(self, ctx: Context, image: Any) -> None:
        from strokeagent.sketch.document import META_KEY, SketchDocument

        ids = [self._img, *[self.net.patch_id] * PATCH_GRID**2, self._end_img]
        self._feed(ctx, ids, patch_vectors(pooled_cells(image)))
        # The hand goes on from the canvas it painted; an image from elsewhere starts a fresh document.
        meta = image.info.get(META_KEY)
        ctx.state.doc = SketchDocument.model_validate(meta) if meta else SketchDocument(size=self.native_size)

    # -- generating ------------------------------------------------------------------------

    def generate_text(
        self, ctx: Context, *, stop: tuple[str, ...], max_new_tokens: int, seed: int, temperature: float = 0.0
    ) -> TextOutput:
        rng = np.random.default_rng(seed)
        ids: list[int] = []
        while len(ids) < max_new_tokens:
            logits = np.where(self._not_text, -np.inf, ctx.state.logits)
            token = _pick(logits, temperature, rng)
            if token == self._img:
                return TextOutput(self.tokenizer.decode(ids), tuple(ids), "image")
            ids.append(token)
            self._feed(ctx, [token], generated=True)
            text = self.tokenizer.decode(ids)
            hit = next((s for s in stop if text.endswith(s)), None)
            if hit is not None:
                return TextOutput(text, tuple(ids), "stop", hit)
        return TextOutput(self.tokenizer.decode(ids), tuple(ids), "length")

    def generate_image(
        self, ctx: Context, *, seed: int, guidance: float = 0.0, steps: int | None = None, size: int | None = None
    ) -> Any:
        """Write strokes in a fork, then let the hand paint them on the canvas; ``guidance`` and ``steps``
        do not apply (strokes are decoded greedily), ``size`` must be the canvas's own."""
        from strokeagent.sketch.document import META_KEY, SketchDocument
        from strokeagent.sketch.glyphs import render
        from strokeagent.sketch.hand import paint

        if size not in (None, self.native_size):
            raise PolicyError(f"process-tiny paints {self.native_size} px canvases; leave `size` out")
        strokes, n = self._strokes(ctx)
        ctx.usage.generated += n  # the decoding steps of this image
        doc = ctx.state.doc or SketchDocument(size=self.native_size)
        rng = np.random.default_rng([seed, ctx.length])
        doc = paint(doc, strokes, rng, self.mistake_rate, self.crowding)
        image, _ = render(doc)
        image.info[META_KEY] = doc.model_dump(mode="json")
        return image

    def _strokes(self, ctx: Context) -> tuple[list[Any], int]:
        """Greedy strokes, each slot held to its tokens; ``</draw>`` may end the list where a stroke would start."""
        from strokeagent.sketch.hand import Stroke

        tok = self.tokenizer
        fork = self.fork(ctx)
        self._feed(fork, [self._draw])
        strokes, n = [], 0
        for _ in range(self.max_strokes):
            picked = []
            for allowed in self._stroke_slots:
                token = int(allowed[np.argmax(fork.state.logits[allowed])])
                n += 1
                if token == self._end_draw:
                    break
                picked.append(tok.tokens[token][1:-1])
                self._feed(fork, [token])
            if len(picked) < 4:
                break
            cls, color, col, row = picked
            strokes.append(Stroke(cls, None if color == "plain" else color, int(col[1:]), int(row[1:])))
        self.drop(fork)
        return strokes, n

    def _feed(self, ctx: Context, ids: list[int], patches: np.ndarray | None = None, generated: bool = False) -> None:
        ctx.state.logits = self.net.forward(ctx.state, ctx.length, self.net.embed(ids, patches))
        ctx.length += len(ids)
        if generated:
            ctx.usage.generated += len(ids)
        else:
            ctx.usage.prefilled += len(ids)


def _pick(logits: np.ndarray, temperature: float, rng: np.random.Generator) -> int:
    if temperature <= 0:
        return int(np.argmax(logits))
    z = (logits - logits.max()) / temperature
    p = np.exp(z)
    return int(rng.choice(len(p), p=p / p.sum()))
