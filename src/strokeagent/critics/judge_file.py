"""Judging an image file from its pixels alone, for ``strokeagent judge IMAGE PROMPT``.

The prompt is parsed (``scene.parse_prompt``) into the clauses it implies, and
the file's pixels are judged by ``strokeagent.critics.canvas``; any metadata the
file carries is ignored. Bad input raises a ``StrokeAgentError`` the CLI prints
as one line.
"""

from __future__ import annotations

from pathlib import Path

from PIL import Image, UnidentifiedImageError

from strokeagent.critics.canvas import Judgement, see
from strokeagent.errors import PromptError, StrokeAgentError


class JudgeInputError(StrokeAgentError, ValueError):
    """An image that cannot be judged (missing, unreadable, not an image)."""


def load_pixels(path: str | Path) -> Image.Image:
    """The RGB pixels of the image file at ``path`` (its metadata dropped)."""
    path = Path(path)
    if not path.is_file():
        raise JudgeInputError(f"{path} is not a file; give the path of a PNG to judge")
    try:
        with Image.open(path) as im:
            im.load()
            return im.convert("RGB")
    except (UnidentifiedImageError, OSError, ValueError) as e:
        raise JudgeInputError(f"{path} is not an image Pillow can read ({e})") from None


def judge_file(path: str | Path, prompt: str) -> Judgement:
    """GenEval's verdict on the image at ``path`` for ``prompt``, with what was seen."""
    from strokeagent.runs.api import check_prompt
    from strokeagent.scene import parse_prompt

    graph = parse_prompt(check_prompt(prompt))
    if not graph.objects:
        raise PromptError(f"the prompt {prompt!r} names nothing to look for")
    return see(graph, load_pixels(path))
