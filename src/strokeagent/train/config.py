"""The training recipe as one TOML file.

    >>> cfg = TrainConfig(model="models/tiny-janus", data="data/process", out="runs/train", steps=40)
    >>> cfg.image_weight, cfg.grad_accum, cfg.lora is None
    (1.0, 1, True)

A file names the same fields at its top level (``[lora]`` turns LoRA on)::

    trainee = "janus"                 # which model family trains: janus, bagel (TRAINEES)
    model = "models/Janus-Pro-1B"     # the trainee's model folder
    data = "data/process"             # a folder written by `strokeagent data build`
    out = "runs/janus-process"        # checkpoints go here; training resumes from the newest
    steps = 2000                      # optimizer steps
    micro_batch = 4                   # packed rows per forward, per process
    grad_accum = 8
    max_tokens = 4096                 # the length of one packed row
    lr = 2e-5
    image_weight = 1.0                # λ in  CE(text) + λ · L(image)

    [lora]
    r = 16

Relative paths are relative to the file. No torch import here: ``TRAINEES``
names each trainee's class as a lazy ``"module:attr"`` path, resolved by
``trainee_class`` when training starts.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from strokeagent.core.registry import Registry
from strokeagent.errors import PolicyError, TrainError

M = TypeVar("M", bound=BaseModel)

# A trainee is a model family wrapped for process training; its interface is in trainer.py's docstring.
TRAINEES = Registry(
    what="trainee",
    builtins={
        "janus": "strokeagent.train.janus:JanusTrainee",
        "bagel": "strokeagent.train.bagel:BagelTrainee",
    },
    entry_point_group="strokeagent.trainees",
)


def trainee_class(name: str) -> type:
    """The class a config's ``trainee`` names, imported now; an unknown name is one ``TrainError`` line."""
    try:
        return TRAINEES.factory(name, where="training config")
    except PolicyError as e:
        raise TrainError(str(e)) from None


class LoraOptions(BaseModel):
    """peft LoRA on the language model's projections; the vision and VQ parts stay frozen anyway."""

    model_config = ConfigDict(extra="forbid")

    r: int = Field(16, ge=1)
    alpha: int = Field(32, ge=1)
    dropout: float = Field(0.0, ge=0, lt=1)
    target_modules: list[str] = Field(
        default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    )


class TrainConfig(BaseModel):
    """Every knob of ``strokeagent.train.train``; see the module docstring."""

    model_config = ConfigDict(extra="forbid")

    model: str
    data: str
    trainee: str = "janus"  # a TRAINEES name, or "package.module:Class"
    out: str
    steps: int = Field(100, ge=1)
    micro_batch: int = Field(2, ge=1)
    grad_accum: int = Field(1, ge=1)
    max_tokens: int = Field(2048, ge=16)
    lr: float = Field(1e-4, gt=0)
    warmup: int = Field(0, ge=0)
    weight_decay: float = Field(0.0, ge=0)
    grad_clip: float = Field(1.0, ge=0)  # 0: no clipping
    image_weight: float = Field(1.0, ge=0)
    subsets: list[str] | None = None  # None: all of the data set's subsets
    seed: int = 0
    save_every: int = Field(0, ge=0)  # 0: only at the end
    log_every: int = Field(10, ge=1)
    mixed_precision: Literal["no", "bf16", "fp16"] = "no"
    dtype: Literal["float32", "bfloat16"] = "float32"
    lora: LoraOptions | None = None


def load_config(path: str | Path, **overrides: object) -> TrainConfig:
    """A ``TrainConfig`` from a TOML file, relative paths resolved against it; ``overrides`` win."""
    return load_toml_model(path, TrainConfig, "config", ("model", "data", "out"), overrides)


def load_toml_model(
    path: str | Path, model: type[M], what: str, path_keys: tuple[str, ...], overrides: dict[str, object]
) -> M:
    """``model`` from a TOML file: the ``path_keys`` resolved against the file, ``overrides`` (not None) win;
    any problem is one ``TrainError`` line naming the training ``what`` ("config", "recipe")."""
    path = Path(path)
    try:
        table = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as e:
        raise TrainError(f"cannot read training {what} {path}: {e.strerror}") from None
    except tomllib.TOMLDecodeError as e:
        raise TrainError(f"{path}: not valid TOML ({e}); fix the file") from None
    for key in path_keys:
        if isinstance(table.get(key), str) and not Path(table[key]).expanduser().is_absolute():
            table[key] = str((path.parent / table[key]).resolve())
    table.update({k: v for k, v in overrides.items() if v is not None})
    try:
        return model.model_validate(table)
    except ValidationError as e:
        err = e.errors()[0]
        where = ".".join(str(p) for p in err["loc"]) or what
        raise TrainError(f"{path}: {where}: {err['msg']}") from None
