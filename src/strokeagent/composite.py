"""The composite policy's stages: a text head plans and reflects, an image backend drafts and refines.

    >>> from strokeagent.composite import DiffusionDrafter, HeadPlanner   # doctest: +SKIP

The two halves live in their own modules (``composite_text`` for the text
head's stages, ``composite_image`` for the image backend's); this module gathers
them under the names the registry uses. Either half may be absent while the
other is built: its names are then simply missing here, and the registry says so.
"""

try:
    from strokeagent.composite_image import DiffusionDrafter, DiffusionRefiner, SketchThenPaintDrafter
except ModuleNotFoundError as e:  # pragma: no cover - only while the module is being written
    if e.name != "strokeagent.composite_image":
        raise
try:
    from strokeagent.composite_text import HeadPlanner, HeadReflector
except ModuleNotFoundError as e:  # pragma: no cover - only while the module is being written
    if e.name != "strokeagent.composite_text":
        raise

__all__ = ["DiffusionDrafter", "DiffusionRefiner", "HeadPlanner", "HeadReflector", "SketchThenPaintDrafter"]
