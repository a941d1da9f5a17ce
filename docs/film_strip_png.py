"""Regenerate docs/film-strip.png, the README's picture of a run's film strip, from a run folder.

    $ strokeagent run "a photo of two red apples left of a blue cup and a dog below the cup" --seed 2 --out runs/readme
    $ python docs/film_strip_png.py runs/readme docs/film-strip.png

One row per step, the states in the order the stages made them: images as thumbnails, text states as cards.
(index.html is the real film strip; this is a PNG of the same content for places that show no HTML.)
"""

from __future__ import annotations

import argparse
import textwrap
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

from strokeagent.core.state import ImageRef, Note, Plan, Reflection, Trajectory
from strokeagent.core.store import atomic_write, png_bytes

THUMB, CARD, GAP, CAPTION = 180, 180, 10, 30


def card(state_caption: str, text: str, colour: tuple[int, int, int]) -> Image.Image:
    tile = Image.new("RGB", (CARD, THUMB + CAPTION), "white")
    draw = ImageDraw.Draw(tile)
    draw.rectangle((0, 0, CARD - 1, THUMB + CAPTION - 1), outline=(210, 210, 210))
    font = ImageFont.load_default()
    draw.text((8, 6), state_caption, fill=colour, font=font)
    for i, line in enumerate(textwrap.wrap(text, 30)[:14]):
        draw.text((8, 26 + 13 * i), line, fill=(40, 40, 40), font=font)
    return tile


def thumb(image: Image.Image, caption: str) -> Image.Image:
    tile = Image.new("RGB", (THUMB, THUMB + CAPTION), "white")
    tile.paste(image.convert("RGB").resize((THUMB, THUMB)), (0, 0))
    ImageDraw.Draw(tile).text((4, THUMB + 8), caption, fill=(60, 60, 60), font=ImageFont.load_default())
    return tile


def main(run_dir: str, out: str) -> None:
    traj = Trajectory.model_validate_json((Path(run_dir) / "trajectory.json").read_text())
    rows = []
    for step in traj.steps:
        tiles = []
        for s in step.states:
            v, who = s.value, f"{s.stage}{' (edit)' if s.by == 'user' else ''}"
            if isinstance(v, ImageRef):
                tiles.append(thumb(traj.open_image(v), who))
            elif isinstance(v, Plan):
                tiles.append(card(who, v.instruction, (30, 60, 140)))
            elif isinstance(v, Reflection):
                tiles.append(card(who, "ok" if v.ok else "; ".join(v.conflicts), (27, 127, 59) if v.ok else (179, 38, 30)))
            elif isinstance(v, Note):
                tiles.append(card(who, v.text, (90, 90, 90)))
        rows.append(tiles)
    width = max(len(r) for r in rows) * (THUMB + GAP) + GAP
    height = len(rows) * (THUMB + CAPTION + GAP) + GAP
    sheet = Image.new("RGB", (width, height), (246, 245, 242))
    for y, tiles in enumerate(rows):
        for x, tile in enumerate(tiles):
            sheet.paste(tile, (GAP + x * (THUMB + GAP), GAP + y * (THUMB + CAPTION + GAP)))
    atomic_write(out, png_bytes(sheet))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path, help="a run folder (it holds trajectory.json)")
    parser.add_argument("out", type=Path, help="the PNG to write")
    args = parser.parse_args()
    if not (args.run_dir / "trajectory.json").is_file():
        parser.error(f"{args.run_dir} has no trajectory.json: give a folder written by `strokeagent run`")
    if not args.out.parent.is_dir():
        parser.error(f"{args.out}: its folder does not exist")
    main(args.run_dir, args.out)
