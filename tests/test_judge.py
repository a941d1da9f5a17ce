"""The canvas judge sees pixels: blank, noise and shuffled canvases fail; drawn right passes; the CLI."""

from __future__ import annotations

import ast
import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import strokeagent.critics.canvas as canvas_module
import strokeagent.critics.canvas_detector as detector_module
from strokeagent import generate
from strokeagent.core.stages import Canvas
from strokeagent.critics.canvas import clauses_of, judge, see
from strokeagent.critics.ground_truth import truth
from strokeagent.scene import generate_suite
from strokeagent.sketch.document import Drawn, SketchDocument
from strokeagent.sketch.glyphs import render
from strokeagent.sketch.palette import named_colors
from tests.conftest import run_cli

TAGS = ("single_object", "two_object", "counting", "colors", "position", "color_attr")


def _one_per_tag():
    rows = {}
    for item in generate_suite(60, 0):
        rows.setdefault(item.tag, item)
    assert set(rows) == set(TAGS)
    return [rows[t] for t in TAGS]


ROWS = _one_per_tag()


def _drawn_right(item, tmp: Path):
    """A one_shot canvas the answer key says is right for ``item`` (the first good seed)."""
    for seed in range(12):
        traj = generate(item.prompt, "ablations/one_shot", seed=seed, out=tmp / f"{item.tag}-{seed}")
        ref = traj.final_image
        canvas = Canvas(traj.open_image(ref), dict(ref.meta))
        if truth(item, canvas)[0]:
            return canvas, tmp / f"{item.tag}-{seed}"
    pytest.skip(f"no seed drew {item.prompt!r} right")


def _reencoded(image: Image.Image) -> Image.Image:
    buf = io.BytesIO()
    image.convert("RGB").save(buf, "PNG")  # no pnginfo: the document is gone
    return Image.open(io.BytesIO(buf.getvalue()))


@pytest.mark.parametrize("item", ROWS, ids=TAGS)
def test_blank_noise_and_shuffled_canvases_fail(item, tmp_path: Path) -> None:
    good, _ = _drawn_right(item, tmp_path)
    rng = np.random.default_rng(0)
    pixels = np.asarray(good.image.convert("RGB"))
    blank = Image.new("RGB", good.image.size, (255, 255, 255))
    noise = Image.fromarray(rng.integers(0, 256, pixels.shape, dtype=np.uint8))
    flat = pixels.reshape(-1, 3)
    shuffled = Image.fromarray(flat[rng.permutation(len(flat))].reshape(pixels.shape))
    for name, image in (("blank", blank), ("noise", noise), ("shuffled", shuffled)):
        # The real canvas's document rides along: the judge must not read it.
        ok, reasons = judge(item, Canvas(image, dict(good.meta)))
        assert not ok and reasons, (name, item.prompt)


@pytest.mark.parametrize("item", ROWS, ids=TAGS)
def test_drawn_right_passes_and_reencoding_keeps_the_verdict(item, tmp_path: Path) -> None:
    good, _ = _drawn_right(item, tmp_path)
    assert judge(item, good) == (True, [])
    assert judge(item, _reencoded(good.image)) == (True, [])
    assert judge(item, Canvas(_reencoded(good.image), {})) == (True, [])


SC = {"apple": "food", "cup": "kitchen", "dog": "animal", "teddy bear": "indoor", "bench": "outdoor"}


def _doc(*items):
    doc = SketchDocument(size=512)
    for i, (cls, box, colour) in enumerate(items):
        doc = doc.add(Drawn(iid=0, object_id=f"o{i}", cls=cls, supercategory=SC[cls],
                            rgb=named_colors()[colour], box=box))  # fmt: skip
    return render(doc)[0]


def test_wrong_colour_missing_object_and_broken_relation_fail_with_reasons() -> None:
    row = [
        {"class": "cup", "count": 1, "color": "blue"},
        {"class": "dog", "count": 1, "position": ["right of", 0]},
    ]
    right = _doc(("cup", (40, 200, 160, 320), "blue"), ("dog", (300, 200, 460, 320), "brown"))
    assert judge(row, right) == (True, [])
    purple = _doc(("cup", (40, 200, 160, 320), "purple"), ("dog", (300, 200, 460, 320), "brown"))
    ok, reasons = judge(row, purple)
    assert not ok and reasons[0] == "expected blue cup>=1, found 1 purple"
    missing = _doc(("cup", (40, 200, 160, 320), "blue"))
    assert judge(row, missing) == (False, ["expected dog>=1, found 0"])
    swapped = _doc(("cup", (300, 200, 420, 320), "blue"), ("dog", (20, 200, 180, 320), "brown"))
    assert judge(row, swapped) == (False, ["expected dog right of cup"])


def test_the_judge_reads_classes_not_just_blobs() -> None:
    # A teddy bear where a dog was asked for: same place, same colour, another silhouette.
    bear = _doc(("teddy bear", (300, 200, 420, 320), "brown"))
    assert judge([{"class": "dog", "count": 1}], bear) == (False, ["expected dog>=1, found 0"])
    assert [f.cls for f in see([{"class": "dog", "count": 1}], bear).found] == ["teddy bear"]


def _imports(module) -> set[str]:
    tree = ast.parse(Path(module.__file__).read_text())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            names.add(node.module or "")
            names |= {f"{node.module}.{a.name}" for a in node.names}
    return names


def test_the_judge_shares_no_perception_with_the_inspector() -> None:
    banned = ("strokeagent.sketch.measure", "strokeagent.sketch.perceive", "strokeagent.sketch.reflector")
    for module in (canvas_module, detector_module):
        names = _imports(module)
        assert not [n for n in names if n.startswith(banned)], (module.__name__, names)
        assert "strokeagent.critics.ground_truth" not in names


def test_cli_judges_a_finished_run(tmp_path: Path) -> None:
    item = ROWS[TAGS.index("color_attr")]
    _, run_dir = _drawn_right(item, tmp_path)
    final = run_dir / "final.png"
    r = run_cli("judge", str(final), item.prompt)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip().splitlines()[-1] == "correct"
    r = run_cli("judge", str(final), item.prompt, "--json")
    assert r.returncode == 0, r.stderr
    data = json.loads(r.stdout)
    assert data["correct"] is True and data["reasons"] == []
    assert {"class", "color", "box"} <= set(data["objects"][0])
    classes = {o["class"] for o in data["objects"]}
    assert {i["class"] for i in clauses_of(item)[0]} <= classes
    blank = tmp_path / "blank.png"
    Image.new("RGB", (512, 512), (246, 244, 238)).save(blank)
    r = run_cli("judge", str(blank), item.prompt, "--json")
    assert r.returncode == 0 and json.loads(r.stdout)["correct"] is False


def test_cli_bad_input_is_one_line(tmp_path: Path) -> None:
    text = tmp_path / "not.png"
    text.write_text("hello")
    png = tmp_path / "ok.png"
    Image.new("RGB", (64, 64), (246, 244, 238)).save(png)
    for args in (
        (str(tmp_path / "missing.png"), "a red apple"),
        (str(text), "a red apple"),
        (str(png), "  "),
    ):
        r = run_cli("judge", *args)
        assert r.returncode == 2, (args, r.stdout, r.stderr)
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: "), (args, r.stderr)
