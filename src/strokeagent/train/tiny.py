"""Train ``process-tiny`` from nothing: build the stroke-world trajectories, fit the transformer, ship it.

    >>> recipe = load_recipe("recipes/process-tiny.toml")                  # doctest: +SKIP
    >>> result = train_tiny(recipe)                                        # doctest: +SKIP
    >>> result.folder                                                      # doctest: +SKIP
    PosixPath('runs/process-tiny/model')

One command (``strokeagent train recipes/process-tiny.toml``, or ``make
process-tiny``) does it all, on CPUs in well under an hour, faster on a GPU:

1. **Data** (``data.tiny``): ``samples`` trajectories of ``prompts`` GenEval-style
   prompts and single objects phrased otherwise (``SINGLE_PHRASINGS``) — never
   one of the ``held_out`` suite's prompts, which the model is measured on — in
   the four modes, the hand's mistakes seeded per sample; built on ``workers``
   processes, the same bytes for the same recipe.
2. **Training**: the torch twin of ``unified.tiny.TinyTransformer`` (the same
   weights, names and arithmetic), AdamW with warm-up and cosine decay,
   cross-entropy on what the model writes.
3. **Out**: ``model/`` (``model.safetensors`` in the numpy layout,
   ``tokenizer.json``, ``config.json``, ``MODEL_CARD.md``), ``curves.json`` and
   ``curves.png``; with ``ship = true`` the model also replaces the one inside
   the package.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from strokeagent.errors import TrainError
from strokeagent.train.config import load_toml_model


class TinyRecipe(BaseModel):
    """Every knob of the process-tiny recipe; a TOML file names them at its top level."""

    model_config = ConfigDict(extra="forbid")

    trainee: Literal["process-tiny"] = "process-tiny"
    out: str = "runs/process-tiny"
    prompts: int = Field(6000, ge=1)  # GenEval-style prompts drawn for training (seed prompt_seed)
    prompt_seed: int = 1
    held_out: str = "geneval:553"  # these prompts are taken out of the training prompts
    samples: int = Field(24000, ge=1)
    modes: dict[str, float] = Field(
        default_factory=lambda: {"full": 0.55, "plan_draft": 0.15, "draft_reflect_refine": 0.15, "one_shot": 0.15}
    )
    mistake_rate: float = Field(0.25, ge=0, le=1)
    crowding: float = Field(0.25, ge=0)
    dim: int = Field(128, ge=8)
    layers: int = Field(4, ge=1)
    heads: int = Field(4, ge=1)
    max_len: int = Field(1024, ge=64)
    steps: int = Field(3000, ge=1)
    batch: int = Field(32, ge=1)
    lr: float = Field(2e-3, gt=0)
    warmup: int = Field(100, ge=0)
    weight_decay: float = Field(0.01, ge=0)
    seed: int = 0
    workers: int = Field(2, ge=1)
    threads: int = Field(0, ge=0)  # torch threads (0: torch's choice)
    log_every: int = Field(25, ge=1)
    ship: bool = False  # also copy the model into strokeagent/models/process-tiny


def load_recipe(path: str | Path, **overrides: Any) -> TinyRecipe:
    """A ``TinyRecipe`` from a TOML file, ``out`` resolved against it; ``overrides`` win."""
    return load_toml_model(path, TinyRecipe, "recipe", ("out",), overrides)


# -- 1. data ------------------------------------------------------------------------------


#: One object alone, phrased otherwise than GenEval's "a photo of a X": every one of GenEval's 80 single-object
#: prompts is in the held-out suite, and without these the model would never see a prompt with one object.
SINGLE_PHRASINGS = ("a picture of {a} {c}", "an image of {a} {c}", "{a} {c}")


def training_prompts(recipe: TinyRecipe) -> list[str]:
    from strokeagent.data.build import read_suite
    from strokeagent.scene import generate_suite
    from strokeagent.scene.vocab import COCO_CLASSES

    held = {item.prompt for item in read_suite(recipe.held_out)}
    drawn = {item.prompt for item in generate_suite(recipe.prompts, seed=recipe.prompt_seed)}
    single = {
        p.format(a="an" if c[0] in "aeiou" else "a", c=c) for p in SINGLE_PHRASINGS for c in COCO_CLASSES
    }
    prompts = sorted((drawn | single) - held)
    if not prompts:
        raise TrainError("every training prompt is held out; raise `prompts` or change `held_out`")
    return prompts


def _sample(args: tuple[str, str, int, float, float]) -> list[tuple]:
    from strokeagent.data.tiny import trajectory

    prompt, mode, seed, rate, crowding = args
    return trajectory(prompt, mode, seed, rate, crowding).pieces  # type: ignore[arg-type]


def vocabulary_texts() -> list[str]:
    """Words a held-out GenEval prompt may use, so that none reads as unknown."""
    from strokeagent.scene.vocab import COCO_CLASSES, COLORS, NUMBER_WORDS, geneval_plural, pluralize

    words = ["a photo of an and left right above below"]
    words += [f"{c} {pluralize(c)} {geneval_plural(c)}" for c in COCO_CLASSES]
    return [*words, " ".join(COLORS), " ".join(NUMBER_WORDS)]


def build_data(
    recipe: TinyRecipe, prompts: list[str], log: Callable[[str], None]
) -> tuple[Any, list[dict[str, np.ndarray]]]:
    from strokeagent.data.tiny import MODES, encode
    from strokeagent.unified.tiny import build_tokenizer

    unknown = set(recipe.modes) - set(MODES)
    if unknown:
        raise TrainError(f"unknown mode {sorted(unknown)[0]!r} in `modes`; the modes are {', '.join(MODES)}")
    rng = np.random.default_rng(recipe.seed)
    names = list(recipe.modes)
    weights = np.array([recipe.modes[n] for n in names], float)
    modes = rng.choice(len(names), size=recipe.samples, p=weights / weights.sum())
    order = rng.integers(len(prompts), size=recipe.samples)
    jobs = [
        (prompts[order[i]], names[modes[i]], recipe.seed * 1_000_003 + i, recipe.mistake_rate, recipe.crowding)
        for i in range(recipe.samples)
    ]
    t0 = time.time()
    pieces: list[list[tuple]] = []
    with ProcessPoolExecutor(recipe.workers) as pool:
        for i, p in enumerate(pool.map(_sample, jobs, chunksize=64)):
            pieces.append(p)
            if (i + 1) % max(1, recipe.samples // 10) == 0:
                log(f"data: {i + 1}/{recipe.samples} trajectories ({time.time() - t0:.0f} s)")
    from strokeagent.data.tiny import Sequence

    texts = vocabulary_texts() + [v for p in pieces for kind, v, _ in p if kind != "image"]
    tok = build_tokenizer(texts)
    rows = [encode(Sequence(p), tok) for p in pieces]
    too_long = sum(len(r["ids"]) > recipe.max_len for r in rows)
    rows = [r for r in rows if len(r["ids"]) <= recipe.max_len]
    log(f"data: {len(rows)} trajectories of {len(prompts)} prompts, {sum(len(r['ids']) for r in rows)} tokens, "
        f"vocabulary {len(tok)}" + (f"; {too_long} longer than max_len left out" if too_long else ""))  # fmt: skip
    return tok, rows


# -- 2. the torch twin --------------------------------------------------------------------------


def make_net(vocab: int, recipe: TinyRecipe) -> Any:
    import torch
    from torch import nn
    from torch.nn import functional as F  # noqa: N812

    from strokeagent.unified.tiny import PATCH_DIM, PATCH_GRID

    d, heads = recipe.dim, recipe.heads

    class Block(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.ln1, self.ln2 = nn.LayerNorm(d), nn.LayerNorm(d)
            self.qkv, self.out = nn.Linear(d, 3 * d), nn.Linear(d, d)
            self.fc, self.proj = nn.Linear(d, 4 * d), nn.Linear(4 * d, d)

        def forward(self, x: Any, mask: Any) -> Any:
            b, t, _ = x.shape
            q, k, v = (a.view(b, t, heads, d // heads).transpose(1, 2) for a in self.qkv(self.ln1(x)).split(d, -1))
            att = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
            x = x + self.out(att.transpose(1, 2).reshape(b, t, d))
            return x + self.proj(F.gelu(self.fc(self.ln2(x)), approximate="tanh"))

    class TinyNet(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.tok_emb = nn.Parameter(torch.randn(vocab, d) * 0.02)
            self.pos_emb = nn.Parameter(torch.randn(recipe.max_len, d) * 0.01)
            self.patch_pos = nn.Parameter(torch.randn(PATCH_GRID**2, d) * 0.01)
            self.patch_proj = nn.Linear(PATCH_DIM, d)
            self.blocks = nn.ModuleList(Block() for _ in range(recipe.layers))
            self.ln_f = nn.LayerNorm(d)

        def forward(self, batch: dict[str, Any]) -> Any:
            x = self.tok_emb[batch["ids"]]
            seen = self.patch_proj(batch["patches"]) + self.patch_pos[batch["patch_index"]]
            x = torch.where(batch["is_patch"][..., None], seen, x) + self.pos_emb[batch["pos"]]
            for block in self.blocks:
                x = block(x, batch["mask"])
            return self.ln_f(x) @ self.tok_emb.T

    return TinyNet()


def collate(rows: list[dict[str, np.ndarray]], patch_id: int) -> dict[str, Any]:
    """Pad ``rows`` to one length; the mask lets a token see earlier tokens of the main line and its own branch."""
    import torch

    from strokeagent.unified.tiny import PATCH_DIM, PATCH_GRID, patch_vectors

    n, t = len(rows), max(len(r["ids"]) for r in rows)
    ids = np.zeros((n, t), np.int64)
    pos = np.zeros((n, t), np.int64)
    branch = np.full((n, t), -1, np.int64)
    target = np.full((n, t), -1, np.int64)
    patches = np.zeros((n, t, PATCH_DIM), np.float32)
    index = np.zeros((n, t), np.int64)
    for i, r in enumerate(rows):
        k = len(r["ids"])
        ids[i, :k], pos[i, :k], branch[i, :k], target[i, :k] = r["ids"], r["pos"], r["branch"], r["target"]
        where = np.flatnonzero(r["ids"] == patch_id)
        patches[i, where] = patch_vectors(r["patches"])
        index[i, where] = np.arange(len(where)) % PATCH_GRID**2
    causal = np.tril(np.ones((t, t), bool))
    same = (branch[:, None, :] == 0) | (branch[:, None, :] == branch[:, :, None])
    mask = causal[None] & same & (branch[:, None, :] >= 0)
    mask |= np.eye(t, dtype=bool)[None]  # padding sees itself: no empty rows
    as_t = torch.from_numpy
    return {
        "ids": as_t(ids), "pos": as_t(pos), "target": as_t(target), "patches": as_t(patches),
        "patch_index": as_t(index), "is_patch": as_t(ids == patch_id), "mask": as_t(mask[:, None]),
    }  # fmt: skip


def export(net: Any) -> dict[str, np.ndarray]:
    """The weights in ``TinyTransformer``'s layout: linear weights as ``(in, out)``."""
    out = {}
    for name, p in net.state_dict().items():
        a = p.detach().float().cpu().numpy()
        linear = name.endswith(".weight") and a.ndim == 2 and not name.startswith(("tok_emb", "pos_emb"))
        out[name] = np.ascontiguousarray(a.T if linear else a)
    return out


# -- 3. the loop --------------------------------------------------------------------------------


@dataclass
class TinyResult:
    folder: Path
    steps: int
    final_loss: float
    seconds: float
    shipped: Path | None


def train_tiny(recipe: TinyRecipe, log: Callable[[str], None] = print) -> TinyResult:
    """Build the data, train, and write the model folder, curves and card (see the module docstring)."""
    import torch

    t_start = time.time()
    if recipe.threads:
        torch.set_num_threads(recipe.threads)
    if recipe.dim % recipe.heads:
        raise TrainError(f"dim {recipe.dim} must be a multiple of heads {recipe.heads}")
    out = Path(recipe.out).expanduser()
    out.mkdir(parents=True, exist_ok=True)
    prompts = training_prompts(recipe)
    tok, rows = build_data(recipe, prompts, log)
    data_s = time.time() - t_start
    torch.manual_seed(recipe.seed)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    net = make_net(len(tok), recipe).to(device)
    params = sum(p.numel() for p in net.parameters())
    decay = [p for n, p in net.named_parameters() if p.ndim == 2 and "emb" not in n]
    rest = [p for n, p in net.named_parameters() if not (p.ndim == 2 and "emb" not in n)]
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": recipe.weight_decay}, {"params": rest, "weight_decay": 0.0}],
        lr=recipe.lr, betas=(0.9, 0.98),
    )  # fmt: skip

    def lr_at(step: int) -> float:
        if step < recipe.warmup:
            return recipe.lr * (step + 1) / recipe.warmup
        frac = (step - recipe.warmup) / max(1, recipe.steps - recipe.warmup)
        return recipe.lr * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * frac)))

    rng = np.random.default_rng(recipe.seed + 1)
    patch_id = tok.id("<patch>")
    curve: list[dict[str, float]] = []
    log(f"train: {params / 1e6:.2f} M parameters, {recipe.steps} steps of {recipe.batch} on {device}")
    t0, running, tokens = time.time(), [], 0
    for step in range(recipe.steps):
        batch = collate([rows[i] for i in rng.integers(len(rows), size=recipe.batch)], patch_id)
        batch = {k: v.to(device) for k, v in batch.items()}
        for group in opt.param_groups:
            group["lr"] = lr_at(step)
        logits = net(batch)
        loss = torch.nn.functional.cross_entropy(
            logits.view(-1, logits.shape[-1]), batch["target"].view(-1), ignore_index=-1
        )
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
        opt.step()
        running.append(loss.item())
        tokens += int((batch["target"] >= 0).sum())
        if (step + 1) % recipe.log_every == 0 or step + 1 == recipe.steps:
            mean = float(np.mean(running))
            running = []
            curve.append({"step": step + 1, "loss": mean, "lr": lr_at(step), "seconds": time.time() - t0})
            log(f"step {step + 1}/{recipe.steps}: loss {mean:.4f} ({time.time() - t0:.0f} s)")
    train_s = time.time() - t0
    folder = out / "model"
    write_model(folder, net, tok, recipe)
    (out / "curves.json").write_text(json.dumps(curve, indent=1), encoding="utf-8")
    plot_curves(curve, out / "curves.png")
    facts = {
        "parameters": params,
        "vocabulary": len(tok),
        "trajectories": len(rows),
        "training_prompts": len(prompts),
        "target_tokens_seen": tokens,
        "data_seconds": round(data_s),
        "train_seconds": round(train_s),
        "final_loss": curve[-1]["loss"],
        "device": str(device),
        "cpu_threads": torch.get_num_threads(),
    }
    write_card(folder, recipe, facts)
    shipped = None
    if recipe.ship:
        from strokeagent.unified.tiny import SHIPPED

        shipped = SHIPPED
        shipped.mkdir(parents=True, exist_ok=True)
        for f in folder.iterdir():
            shutil.copyfile(f, shipped / f.name)
        shutil.copyfile(out / "curves.png", shipped / "curves.png")
        shutil.copyfile(out / "curves.json", shipped / "curves.json")
    return TinyResult(folder, recipe.steps, curve[-1]["loss"], time.time() - t_start, shipped)


def write_model(folder: Path, net: Any, tok: Any, recipe: TinyRecipe) -> None:
    from safetensors.numpy import save_file

    from strokeagent.unified.tiny import TinyConfig

    folder.mkdir(parents=True, exist_ok=True)
    save_file(export(net), str(folder / "model.safetensors"))
    (folder / "tokenizer.json").write_text(tok.to_json(), encoding="utf-8")
    cfg = TinyConfig(vocab=len(tok), dim=recipe.dim, layers=recipe.layers, heads=recipe.heads, max_len=recipe.max_len)
    (folder / "config.json").write_text(cfg.to_json(), encoding="utf-8")


def plot_curves(curve: list[dict[str, float]], path: Path) -> None:
    os.environ.setdefault("MPLBACKEND", "Agg")
    try:
        import matplotlib.pyplot as plt
    except ImportError:
        return
    fig, ax = plt.subplots(figsize=(6, 3.2), dpi=110)
    ax.plot([c["step"] for c in curve], [c["loss"] for c in curve], color="#2a6f97")
    ax.set_yscale("log")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("cross-entropy (what the model writes)")
    ax.set_title("process-tiny training")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def write_card(folder: Path, recipe: TinyRecipe, facts: dict[str, Any]) -> None:
    lines = [
        "# process-tiny",
        "",
        "A small unified model of the stroke world, trained from scratch by strokeagent's own recipe "
        "(`strokeagent train recipes/process-tiny.toml`). It writes the process format (plan, strokes, "
        "inspection, refine, close) and reads the canvas as pixels (16 patch embeddings). It proves the recipe; "
        "it is not a model of photographs.",
        "",
        "## Training",
        "",
        "| what | value |",
        "| --- | --- |",
        *[f"| {k.replace('_', ' ')} | {v} |" for k, v in facts.items()],
        *[f"| recipe: {k} | {v} |" for k, v in recipe.model_dump().items() if k not in ("out", "ship")],
        "",
        "Curves: `curves.png` / `curves.json` beside this card (loss every "
        f"{recipe.log_every} steps). Held-out: no `{recipe.held_out}` prompt was trained on.",
        "",
        "## Results",
        "",
        "Measured by `strokeagent ablate geneval:553 --policy process-tiny` with the independent pixel judge; "
        "see the README's process-tiny section for the table, the machine and the date.",
    ]
    (folder / "MODEL_CARD.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
