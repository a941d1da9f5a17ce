"""Training unified models on process trajectories: dense step-wise supervision.

    >>> from strokeagent.train import TrainConfig, train
    >>> cfg = TrainConfig(model="models/tiny-janus", data="data/process", out="runs/train", steps=40)
    >>> result = train(cfg)                                   # doctest: +SKIP
    >>> result.checkpoint                                     # doctest: +SKIP
    PosixPath('runs/train/checkpoint-000040')

``losses`` (text cross-entropy, VQ-token cross-entropy, rectified-flow MSE),
``packing`` (sequence packing), ``janus`` (Janus as a trainee: samples to token
streams, the loss of a packed batch), ``trainer`` (the accelerate loop,
checkpoints, resume) and ``config`` (the TOML recipe). The checkpoint folder is a
transformers Janus folder: point a ``janus`` backend's ``path`` at it. Importing
this package does not import torch; ``train`` does.
"""

from __future__ import annotations

from typing import Any

from strokeagent.train.config import LoraOptions, TrainConfig, load_config

__all__ = ["LoraOptions", "TrainConfig", "TrainResult", "latest_checkpoint", "load_config", "train"]


def __getattr__(name: str) -> Any:
    # The loop needs torch; keep `import strokeagent.train` (and the CLI's start-up) light.
    if name in ("train", "TrainResult", "latest_checkpoint"):
        from strokeagent.train import trainer

        return getattr(trainer, name)
    raise AttributeError(f"module 'strokeagent.train' has no attribute {name!r}")
