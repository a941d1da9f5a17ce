"""The canvas document: the list of what is actually drawn on a sketch canvas.

    >>> doc = SketchDocument(size=512)
    >>> doc = doc.add(Drawn(iid=0, object_id="o0", cls="apple", supercategory="food",
    ...                     color="red", rgb=(220, 30, 30), box=(40, 40, 140, 140)))
    >>> doc.instances[0].iid, doc.next_iid
    (1, 2)

The document is the single source of truth for a canvas: ``render(doc)`` (in
``glyphs``) turns it into RGB pixels and an object-id buffer, deterministically,
so a stage that receives a canvas rebuilds its id buffer exactly from
``Canvas.meta["sketch"]``. It records what was drawn, not what was meant: a
drifted colour is stored as the rgb actually used, a dropped instance is absent.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

META_KEY = "sketch"

Box = tuple[int, int, int, int]  # x0, y0, x1, y1 in pixels, end exclusive


class Drawn(BaseModel):
    """One drawn instance: a glyph for ``cls`` filled with ``rgb`` inside ``box``.

    ``iid`` is the instance's value in the id buffer (1, 2, ...); ``z`` orders
    drawing (higher is on top). ``color`` is the colour name the drafter was
    asked for (None: the class default), ``rgb`` what it actually used.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    iid: int = Field(ge=0)
    object_id: str
    index: int = 0  # which of the object's ``count`` instances this is
    cls: str
    supercategory: str
    color: str | None = None
    rgb: tuple[int, int, int]
    box: Box
    z: int = 0


class SketchDocument(BaseModel):
    """Everything on one canvas: its size, backdrop and drawn instances."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    size: int = 512
    background: str | None = None
    instances: list[Drawn] = Field(default_factory=list)

    @property
    def next_iid(self) -> int:
        return max((d.iid for d in self.instances), default=0) + 1

    @property
    def top_z(self) -> int:
        return max((d.z for d in self.instances), default=-1)

    def get(self, iid: int) -> Drawn:
        for d in self.instances:
            if d.iid == iid:
                return d
        raise KeyError(f"no instance {iid} on this canvas")

    def add(self, drawn: Drawn) -> SketchDocument:
        """Append ``drawn`` with a fresh iid, on top of everything drawn so far."""
        new = drawn.model_copy(update={"iid": self.next_iid, "z": self.top_z + 1})
        return self.model_copy(update={"instances": [*self.instances, new]})

    def replace(self, drawn: Drawn) -> SketchDocument:
        return self.model_copy(
            update={"instances": [drawn if d.iid == drawn.iid else d for d in self.instances]}
        )

    def remove(self, iid: int) -> SketchDocument:
        return self.model_copy(update={"instances": [d for d in self.instances if d.iid != iid]})

    def to_meta(self) -> dict[str, Any]:
        """The ``Canvas.meta`` (and so ``ImageRef.meta``) that carries this document."""
        return {META_KEY: self.model_dump(mode="json")}

    @classmethod
    def from_meta(cls, meta: dict[str, Any]) -> SketchDocument:
        if META_KEY not in meta:
            raise ValueError(
                "this canvas carries no sketch document in its meta; sketch stages can only "
                "read canvases drawn by sketch.draft (keep ImageRef.meta when storing images)"
            )
        return cls.model_validate(meta[META_KEY])
