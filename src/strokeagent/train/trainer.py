"""Supervised fine-tuning on process samples, through accelerate: the whole loop in one screen.

    >>> result = train(TrainConfig(model="tiny-janus", data="data/process", out="runs/t", steps=40))  # doctest: +SKIP
    >>> result.history[0]["loss"] > result.history[-1]["loss"]                                         # doctest: +SKIP
    True

The loop is nanoGPT's, with accelerate doing everything about devices and
processes (DDP, FSDP on GPUs, mixed precision, gradient accumulation, checkpoint
state): run it as a plain script on one device, or under ``accelerate launch``
on many (docs/training.md).

1. Samples are read with ``datasets`` (``strokeagent.data.load_samples``), turned
   into token streams by the trainee (``trainee.all_streams``) and packed into
   rows of ``max_tokens`` (``packing.pack``), once, deterministically.
2. Each epoch visits the rows in an order drawn from ``seed + epoch``; accelerate
   shards the batches across processes.
3. Every ``save_every`` optimizer steps, and at the end, a checkpoint folder
   ``out/checkpoint-NNNNNN/`` holds the model as the trainee saves it (Janus: a
   transformers folder the ``janus`` backend loads, no conversion), ``state/``
   (accelerate's optimizer, scheduler and RNG state) and ``trainer.json`` (step
   counters and loss history).
4. ``train`` resumes from the newest checkpoint in ``out``: the same rows in the
   same order, skipping the batches already seen, so a resumed run ends with
   the same weights as an uninterrupted one.

A trainee (``cfg.trainee``, looked up in ``config.TRAINEES``) is an ``nn.Module`` with:

* ``from_pretrained(path, dtype="float32")`` (classmethod) and ``freeze_frozen_parts()``;
* ``all_streams(samples, root) -> list[Stream]`` (``streams(sample, root)`` for one sample);
* ``collate(rows, max_tokens) -> batch``: a dict holding ``samples`` and ``tokens`` counts;
* ``forward(batch, image_weight) -> (loss, {"text": ..., "image": ...})``;
* ``save_pretrained(folder, state_dict)``: called on the main process with the full,
  gathered state dict of the trainee; optional ``add_lora(LoraOptions)`` for ``[lora]``.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import torch

from strokeagent.core.store import atomic_write
from strokeagent.errors import TrainError
from strokeagent.train.config import TrainConfig, trainee_class
from strokeagent.train.packing import Stream, pack, padding_share


@dataclass
class TrainResult:
    checkpoint: Path  # the newest checkpoint folder: for Janus, a model folder the janus backend loads
    step: int
    history: list[dict[str, float]] = field(default_factory=list)  # one entry per optimizer step
    samples_per_s: float = 0.0  # over this call's steps (a resumed call counts only its own)
    tokens_per_s: float = 0.0
    padding: float = 0.0  # share of row positions that are padding
    main_process: bool = True  # False on the other processes of a distributed run (they print nothing)


class Rows(torch.utils.data.Dataset):
    """Packed rows, visited in an order drawn from ``seed + epoch`` (``set_epoch``)."""

    def __init__(self, rows: list[list[Stream]], seed: int) -> None:
        self.rows, self.seed = rows, seed
        self.set_epoch(0)

    def set_epoch(self, epoch: int) -> None:
        gen = torch.Generator().manual_seed(self.seed + epoch)
        self.order = torch.randperm(len(self.rows), generator=gen).tolist()

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> list[Stream]:
        return self.rows[self.order[i]]


def latest_checkpoint(out: str | Path) -> Path | None:
    found = sorted(Path(out).glob("checkpoint-*/trainer.json"))
    return found[-1].parent if found else None


def build_trainee(cfg: TrainConfig) -> Any:
    """The config's trainee, loaded from ``cfg.model``, its frozen parts frozen, LoRA added if asked."""
    cls = trainee_class(cfg.trainee)
    if not Path(cfg.model).expanduser().exists():
        raise TrainError(f"no model at {cfg.model}; point `model` at the {cfg.trainee} model's folder")
    trainee = cls.from_pretrained(cfg.model, dtype=cfg.dtype)
    trainee.freeze_frozen_parts()
    if cfg.lora is not None:
        if not hasattr(trainee, "add_lora"):
            raise TrainError(f"the {cfg.trainee} trainee has no LoRA support; remove the [lora] table")
        trainee.add_lora(cfg.lora)
    return trainee


def training_rows(trainee: Any, cfg: TrainConfig) -> tuple[list[list[Stream]], int]:
    """The data set's samples as packed rows, and how many samples they hold."""
    from strokeagent.data import load_samples

    samples = load_samples(cfg.data)
    if cfg.subsets is not None:
        samples = samples.filter(lambda s: s["subset"] in cfg.subsets)
    if samples.num_rows == 0:
        raise TrainError(f"{cfg.data} holds no samples of the subsets {cfg.subsets}")
    streams = trainee.all_streams(samples, cfg.data)
    return pack(streams, cfg.max_tokens), samples.num_rows


def train(
    cfg: TrainConfig, *, resume: bool = True, stop_after: int | None = None, log: Any = None
) -> TrainResult:
    """Train per ``cfg``; continue from the newest checkpoint in ``cfg.out`` when ``resume``.

    ``stop_after`` ends this call after that optimizer step (saving a checkpoint),
    as a killed run would after its last save; ``log`` gets one line per ``log_every`` steps.
    """
    from accelerate import Accelerator
    from accelerate.utils import DistributedType, set_seed

    trainee_class(cfg.trainee)  # an unknown trainee is refused before any process group starts
    acc = Accelerator(gradient_accumulation_steps=cfg.grad_accum, mixed_precision=cfg.mixed_precision)
    check_launch(acc)
    if cfg.lora is not None and acc.distributed_type == DistributedType.FSDP:
        # The merged model is built from the live module, whose weights FSDP holds as shards.
        raise TrainError(
            "[lora] does not run under FSDP; launch with DDP (LoRA's trainable weights are small)"
        )
    set_seed(cfg.seed)
    trainee = build_trainee(cfg)
    rows, _ = training_rows(trainee, cfg)
    out = Path(cfg.out)
    data = Rows(rows, cfg.seed)
    loader = torch.utils.data.DataLoader(
        data,
        batch_size=cfg.micro_batch,
        shuffle=False,
        collate_fn=partial(trainee.collate, max_tokens=cfg.max_tokens),
    )
    params = [p for p in trainee.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    # Linear warmup over `warmup` optimizer steps, then constant; stepped once per optimizer step.
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / (cfg.warmup + 1)))
    model, opt, loader = acc.prepare(trainee, opt, loader)
    acc.register_for_checkpointing(sched)

    state = {"step": 0, "micro": 0, "history": []}
    last = latest_checkpoint(out) if resume else None
    if last is not None:
        acc.load_state(str(last / "state"))
        state = json.loads((last / "trainer.json").read_text())
    if state["step"] >= cfg.steps:
        return TrainResult(last, state["step"], state["history"])  # type: ignore[arg-type]

    per_epoch = len(loader)
    sums = torch.zeros(3)  # loss, text, image: summed over this step's micro-batches
    counts = torch.zeros(2, dtype=torch.long)  # samples, real tokens: this call, this process
    started = time.perf_counter()
    checkpoint = last
    while state["step"] < cfg.steps:
        epoch, skip = divmod(state["micro"], per_epoch)
        data.set_epoch(epoch)
        batches = acc.skip_first_batches(loader, skip) if skip else loader
        for batch in batches:
            with acc.accumulate(model):
                loss, parts = model(batch, image_weight=cfg.image_weight)
                acc.backward(loss)
                if acc.sync_gradients and cfg.grad_clip > 0:
                    # All of the wrapped model's parameters (frozen ones have no gradient): under FSDP
                    # accelerate then clips by the norm over every shard.
                    acc.clip_grad_norm_(model.parameters(), cfg.grad_clip)
                opt.step()
                opt.zero_grad()
            state["micro"] += 1
            sums += torch.stack([loss.detach().float(), parts["text"].float(), parts["image"].float()]).cpu()
            counts += torch.stack([batch["samples"], batch["tokens"]]).cpu()
            if not acc.sync_gradients:
                continue
            sched.step()
            state["step"] += 1
            micro = state["micro"] - (state["history"][-1]["micro"] if state["history"] else 0)
            # Every process's mean, averaged: the log and history speak for the whole step.
            means = acc.reduce(sums.to(acc.device) / micro, reduction="mean").cpu()
            entry = dict(zip(("loss", "text", "image"), means.tolist(), strict=True))
            sums.zero_()
            state["history"].append({"step": state["step"], "micro": state["micro"], **entry})
            if (
                log is not None
                and acc.is_main_process
                and (state["step"] % cfg.log_every == 0 or state["step"] == 1)
            ):
                log(f"step {state['step']}/{cfg.steps}  loss {entry['loss']:.4f}  text {entry['text']:.4f}  "
                    f"image {entry['image']:.4f}  lr {sched.get_last_lr()[0]:.2e}")  # fmt: skip
            done = state["step"] >= cfg.steps or state["step"] == stop_after
            if done or (cfg.save_every and state["step"] % cfg.save_every == 0):
                checkpoint = save_checkpoint(acc, model, out, state)
            if done:
                break
        if state["step"] == stop_after:
            break
    seconds = time.perf_counter() - started
    samples, tokens = acc.reduce(counts.to(acc.device), reduction="sum").tolist()  # all processes
    # Every process leaves the process group here, as accelerate asks. It does not end the gloo threads that
    # FSDP's meshes and DDP's reducer keep alive: a launched CLI process exits without finalization for that
    # (strokeagent.cli.main._leave_launched_process).
    acc.end_training()
    return TrainResult(
        checkpoint,  # type: ignore[arg-type]
        state["step"],
        state["history"],
        samples_per_s=samples / seconds,
        tokens_per_s=tokens / seconds,
        padding=padding_share(rows, cfg.max_tokens),
        main_process=acc.is_main_process,
    )


def check_launch(acc: Any) -> None:
    """Refuse a launch that accelerate quietly set up as something else than was asked.

    accelerate 1.x turns FSDP on only for GPUs and other accelerators (``AcceleratorState``
    sets ``DistributedType.FSDP`` in its accelerator-only branch); on CPUs the same flags give
    DDP (``ACCELERATE_USE_CPU=1``) or N processes that each believe they are alone, every one
    training the whole data set and writing the same checkpoints.
    """
    from accelerate.utils import DistributedType

    launched = int(os.environ.get("WORLD_SIZE", "1"))
    fsdp_asked = os.environ.get("ACCELERATE_USE_FSDP", "false").lower() == "true"
    if fsdp_asked and acc.distributed_type != DistributedType.FSDP:
        raise TrainError(
            f"FSDP was asked for, but accelerate set up {acc.distributed_type.value} on {acc.device.type} "
            f"with {acc.num_processes} process(es): accelerate runs FSDP only on GPUs (or other accelerators); "
            "on CPUs use DDP (ACCELERATE_USE_CPU=1 torchrun --nproc_per_node N ...), see docs/training.md"
        )
    if launched > acc.num_processes:
        raise TrainError(
            f"launched as {launched} processes, but accelerate runs each alone ({acc.distributed_type.value}): "
            "they would all train and write the same checkpoints; without GPUs add --cpu "
            "(or ACCELERATE_USE_CPU=1), see docs/training.md"
        )


def save_checkpoint(acc: Any, model: Any, out: Path, state: dict[str, Any]) -> Path:
    """``out/checkpoint-NNNNNN``: a loadable Janus folder, accelerate's state and the counters."""
    folder = out / f"checkpoint-{state['step']:06d}"
    acc.save_state(str(folder / "state"))
    save_model(acc, model, folder)
    if acc.is_main_process:
        # Written last: a folder without trainer.json is an unfinished save and is never resumed from.
        atomic_write(folder / "trainer.json", json.dumps(state) + "\n")
    acc.wait_for_everyone()
    return folder


def save_model(acc: Any, model: Any, folder: Path) -> None:
    """The trainee's own save (for Janus: a transformers folder), from the full state dict."""
    full = acc.get_state_dict(model)  # gathered from every shard under FSDP: every process takes part
    if acc.is_main_process:
        acc.unwrap_model(model).save_pretrained(folder, state_dict=full)
