"""The losses of dense step-wise supervision: text cross-entropy plus the image head's own loss.

    >>> import torch
    >>> x0, noise = torch.zeros(1, 2), torch.ones(1, 2)
    >>> head = lambda x_t, t, cond: x_t            # predicts the noisy point itself
    >>> float(rectified_flow_loss(head, x0, noise, torch.tensor([0.25])))   # x_t = 0.25, v = 1
    0.5625

The paper's loss is ``L = CE(text) + λ · L(image)``:

* ``text_loss``: next-token cross-entropy on the text the model must write
  (instructions, descriptions, inspections, corrections) and on the
  modality-switch token that opens an image;
* ``vq_token_loss``: for VQ heads (Janus), cross-entropy of the image head's
  logits against the codes of the target image;
* ``rectified_flow_loss``: for flow heads (BAGEL), the rectified-flow MSE. A
  clean latent ``x0`` and noise ``ε`` are mixed at time ``t``,
  ``x_t = (1 - t)·x0 + t·ε``; the head predicts the velocity ``ε - x0``, the
  straight line from data to noise.

Each loss is a mean over the positions it covers, so ``λ`` weighs a text token
against an image token (or latent element) whatever the lengths.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F


def text_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy over positions whose target is not -100 (0 when there are none).

    ``logits`` (N, vocab) and ``targets`` (N,) are already aligned: ``targets[i]``
    is the token that must follow position ``i``.
    """
    return _masked_ce(logits, targets)


def vq_token_loss(logits: torch.Tensor, codes: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy of image-head logits (N, codebook) against the target codes (N,)."""
    return _masked_ce(logits, codes)


def _masked_ce(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    keep = targets != -100
    if not bool(keep.any()):
        # Keeps the graph connected (every rank must run the same backward under DDP/FSDP).
        return logits.sum() * 0.0
    return F.cross_entropy(logits[keep].float(), targets[keep])


def rectified_flow_loss(
    head: Callable[[torch.Tensor, torch.Tensor, torch.Tensor | None], torch.Tensor],
    x0: torch.Tensor,
    noise: torch.Tensor,
    t: torch.Tensor,
    cond: torch.Tensor | None = None,
) -> torch.Tensor:
    """MSE between ``head(x_t, t, cond)`` and the velocity ``noise - x0``, ``x_t = (1-t)·x0 + t·noise``.

    ``t`` has one entry per sample (the first axis of ``x0``), in [0, 1].
    """
    shape = (-1,) + (1,) * (x0.dim() - 1)
    tt = t.to(x0.dtype).view(shape)
    x_t = (1 - tt) * x0 + tt * noise
    velocity = head(x_t, t, cond)
    return F.mse_loss(velocity.float(), (noise - x0).float())


def sample_timesteps(n: int, generator: torch.Generator | None = None, shift: float = 1.0) -> torch.Tensor:
    """``n`` flow times: a logit-normal draw, shifted towards noise for ``shift > 1`` (as SD3 and BAGEL do)."""
    t = torch.sigmoid(torch.randn(n, generator=generator))
    return shift * t / (1 + (shift - 1) * t)
