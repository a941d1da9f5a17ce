"""Unified models: one model plans, paints, inspects and refines on one shared context.

    >>> from strokeagent.unified.process import ProcessFormat
    >>> ProcessFormat().ins
    ('<ins>', '</ins>')

``protocol`` defines what such a model must do (context operations), ``process``
the paper's interleaved format and the four stages on top of it, and the
adapters (``janus``, ``bagel``) drive real models. Nothing here imports torch
at import time: adapters import it when they are built.
"""

from strokeagent.core.threads import OwnThread
from strokeagent.unified.protocol import Context, TextOutput, UnifiedModel, Usage

__all__ = ["Context", "OwnThread", "TextOutput", "UnifiedModel", "Usage"]
