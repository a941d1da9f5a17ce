"""Segments of a training sample: text the model reads or writes, images it reads or paints.

    >>> text("<ins>Draw a red apple.</ins>", loss=True)["kind"]
    'text'

The process format's own text is written by ``ProcessFormat.write_plan``,
``write_inspection`` and ``write_refine`` (``strokeagent.unified.process``), beside
the parsers that read it back: one definition of the format.
"""

from __future__ import annotations

from typing import Any


def text(value: str, loss: bool) -> dict[str, Any]:
    """A text segment of a sample."""
    return {"kind": "text", "text": value, "image": None, "loss": loss}


def image(path: str, loss: bool) -> dict[str, Any]:
    """An image segment: ``loss`` means the model paints it (a target), else it only reads it."""
    return {"kind": "image", "text": None, "image": path, "loss": loss}
