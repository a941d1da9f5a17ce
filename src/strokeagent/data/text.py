"""The process format's text, written: the inverse of ``unified.process``'s parsers, on its tags.

    >>> from strokeagent.unified.process import ProcessFormat, parse_plan
    >>> fmt = ProcessFormat()
    >>> plan_text(fmt, "Draw a red apple.", "A red apple.")
    '<ins>Draw a red apple.</ins><des>A red apple.</des>'
    >>> parse_plan(fmt, plan_text(fmt, "Draw a red apple.", "A red apple.")).instruction
    'Draw a red apple.'

Every tag comes from ``ProcessFormat`` (one definition of the format); the
segments are cut where ``ProcessStages`` cuts the context, so a model trained on
them writes exactly what the process policy reads:

* the header (preamble and prompt) is added, not written by the model;
* a plan is written by the model, up to ``</des>``; then the model opens an
  image (``<begin_of_image>``: the trainer labels that switch);
* ``<inspect>`` is added by the reflect stage; the checks and ``</inspect>``
  are written by the model, then, on a conflict, ``<refine>…</refine>``;
* the model closes the process with ``</process>``.
"""

from __future__ import annotations

from typing import Any

from strokeagent.unified.process import ProcessFormat


def wrap(tag: tuple[str, str], text: str) -> str:
    return f"{tag[0]}{text}{tag[1]}"


def plan_text(fmt: ProcessFormat, instruction: str, description: str) -> str:
    return wrap(fmt.ins, instruction) + wrap(fmt.des, description)


def inspection_text(fmt: ProcessFormat, plan_conflicts: list[str], image_conflicts: list[str]) -> str:
    """What the model writes after ``<inspect>``: each check ``ok`` or its conflicts, then ``</inspect>``."""
    plan = "; ".join(plan_conflicts) or fmt.ok
    image = "; ".join(image_conflicts) or fmt.ok
    return wrap(fmt.plan_check, plan) + wrap(fmt.image_check, image) + fmt.inspect[1]


def refine_text(fmt: ProcessFormat, corrected: str) -> str:
    return wrap(fmt.refine, corrected)


def text(value: str, loss: bool) -> dict[str, Any]:
    """A text segment of a sample."""
    return {"kind": "text", "text": value, "image": None, "loss": loss}


def image(path: str, loss: bool) -> dict[str, Any]:
    """An image segment: ``loss`` means the model paints it (a target), else it only reads it."""
    return {"kind": "image", "text": None, "image": path, "loss": loss}
