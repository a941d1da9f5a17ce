import io
import json
import multiprocessing
import threading
import zlib
from concurrent.futures import ThreadPoolExecutor
from unittest import mock

import numpy as np
import pytest
from PIL import Image
from pydantic import ValidationError

from strokeagent.core import store as store_module
from strokeagent.core.state import ImageRef, Plan, Reflection, StageTiming, Step, Trajectory
from strokeagent.core.store import ArtifactStore, atomic_write, pixel_digest, png_bytes, zlib_stream

SHA = "a" * 64


def test_step_exposes_draft_refinements_and_latest_image():
    refs = [ImageRef(sha256=c * 64, width=8, height=8) for c in "abc"]
    step = Step(index=0, plan=Plan(instruction="x"), images=refs)
    assert step.draft == refs[0]
    assert step.refinements == refs[1:]
    assert step.image == refs[2]
    assert Step(index=1).image is None


def test_trajectory_canvas_is_the_newest_image_across_steps():
    a, b = ImageRef(sha256="a" * 64, width=4, height=4), ImageRef(sha256="b" * 64, width=4, height=4)
    traj = Trajectory(
        prompt="p", seed=0, steps=[Step(index=0, images=[a, b]), Step(index=1, plan=Plan(instruction="i"))]
    )
    assert traj.canvas == b
    assert Trajectory(prompt="p", seed=0).canvas is None


def test_state_is_frozen_and_strict():
    plan = Plan(instruction="draw")
    with pytest.raises(ValidationError):
        plan.instruction = "other"  # type: ignore[misc]
    with pytest.raises(ValidationError):
        Plan(instruction="x", colour="red")  # type: ignore[call-arg]
    with pytest.raises(ValidationError):
        ImageRef(sha256="not-a-hash", width=1, height=1)
    with pytest.raises(ValidationError):
        ImageRef(sha256=SHA, width=0, height=1)


def test_trajectory_round_trips_through_json():
    traj = Trajectory(
        prompt="p",
        seed=3,
        steps=[
            Step(
                index=0,
                plan=Plan(instruction="i", description="d", done=True, meta={"k": [1, 2]}),
                images=[ImageRef(sha256=SHA, width=2, height=2, meta={"sketch": {"n": 1}})],
                reflections=[Reflection(image_conflicts=["c"], corrected_instruction="fix", ok=False)],
            )
        ],
        timings=[
            StageTiming(step=0, stage="plan", seconds=0.5),
            StageTiming(step=0, stage="plan", seconds=0.25),
        ],
    )
    again = Trajectory.model_validate(json.loads(traj.model_dump_json()))
    assert again == traj
    assert again.steps[0].reflections[0].conflicts == ["c"]
    assert traj.stage_seconds() == {"plan": 0.75}


def test_store_is_content_addressed_and_deduplicates(tmp_path):
    store = ArtifactStore(tmp_path)
    red = Image.new("RGB", (5, 3), (255, 0, 0))
    ref1 = store.put(red, {"a": 1})
    ref2 = store.put(red.copy())
    assert ref1.sha256 == ref2.sha256 and (ref1.width, ref1.height) == (5, 3)
    assert len(list(tmp_path.glob("*.png"))) == 1
    assert store.open(ref1).getpixel((0, 0)) == (255, 0, 0)
    # The address is the pixels' digest: the file decodes to pixels with that digest.
    assert pixel_digest(Image.open(io.BytesIO(store.read_bytes(ref1)))) == ref1.sha256
    blue = store.put(Image.new("RGB", (5, 3), (0, 0, 255)))
    assert blue.sha256 != ref1.sha256


def test_a_store_with_a_writer_returns_at_once_serves_from_memory_and_writes_the_same_file(tmp_path):
    release = threading.Event()
    with ThreadPoolExecutor(max_workers=1) as writer:
        writer.submit(release.wait)  # the writer is busy: nothing put now can be on disk yet
        store = ArtifactStore(tmp_path / "w")
        with store.writing_on(writer):
            image = Image.new("RGB", (6, 4), (10, 200, 30))
            ref = store.put(image)
            image.putpixel((0, 0), (0, 0, 0))  # the caller's image is its own again once put returns
            assert list((tmp_path / "w").glob("*.png")) == [] and ref in store
            assert store.open(ref).getpixel((0, 0)) == (10, 200, 30)
            store.put(Image.new("RGB", (2, 2)))  # another image: the first is no longer the newest
            assert store.open(ref).getpixel((0, 0)) == (10, 200, 30)
            release.set()
        assert store.writer is None and not store._pending  # the block ended with every write done
    inline = ArtifactStore(tmp_path / "i").put(Image.new("RGB", (6, 4), (10, 200, 30)))
    assert inline.sha256 == ref.sha256
    assert (tmp_path / "w" / ref.filename).read_bytes() == (tmp_path / "i" / ref.filename).read_bytes()


def test_a_failed_background_write_is_raised_by_the_next_put_read_and_flush(tmp_path):
    store = ArtifactStore(tmp_path)
    failing = mock.patch(
        "strokeagent.core.store.atomic_write", side_effect=PermissionError(13, "Permission denied")
    )
    with ThreadPoolExecutor(max_workers=1) as writer, store.writing_on(writer), failing:
        ref = store.put(Image.new("RGB", (3, 3), (1, 2, 3)))
        with pytest.raises(PermissionError):
            store.read_bytes(ref)
        with pytest.raises(PermissionError):
            store.put(Image.new("RGB", (3, 3)))
    with pytest.raises(PermissionError):  # the block itself ended quietly: the run decides what to say
        store.flush()


@pytest.mark.parametrize("mode", ["L", "RGB", "RGBA"])
@pytest.mark.parametrize("size", [(1, 1), (7, 3), (64, 48), (512, 301)])  # the last in pieces
def test_png_bytes_decode_to_the_same_pixels_and_do_not_vary(mode, size):
    rng = np.random.default_rng(sum(size))
    shape = (size[1], size[0]) + (() if mode == "L" else (len(mode),))
    noise = rng.integers(0, 256, shape, dtype=np.uint8)
    gradient = (np.indices(shape).sum(axis=0) * 3 % 256).astype(np.uint8)  # what the "Up" filter compresses
    for pixels in (noise, gradient):
        image = Image.fromarray(pixels, mode)
        data = png_bytes(image)
        with Image.open(io.BytesIO(data)) as decoded:
            decoded.load()
            assert decoded.format == "PNG" and decoded.mode == mode and decoded.size == size
            assert pixel_digest(decoded) == pixel_digest(image)
            assert not decoded.info  # no metadata chunks: the bytes depend on the pixels alone
        with Image.open(io.BytesIO(data)) as again:
            again.verify()  # every chunk's CRC
        assert png_bytes(image.copy()) == data


PIECE = store_module.PIECE_BYTES


@pytest.mark.parametrize("length", [0, 1, PIECE - 1, PIECE, PIECE + 1, 3 * PIECE + 7, 7 * PIECE])
def test_zlib_stream_is_one_stream_that_zlib_reads_back(length):
    rng = np.random.default_rng(length)
    # Half noise, half runs: back-references across the pieces' seams, and stored blocks
    data = bytes(rng.integers(0, 256, length // 2, dtype=np.uint8)) + bytes(np.repeat(np.arange(length), 7)[
        : length - length // 2
    ].astype(np.uint8))
    stream = zlib_stream(data)
    assert zlib.decompress(stream) == data
    if length <= PIECE:  # one piece: zlib's own bytes
        assert stream == zlib.compress(data, 1)


def test_zlib_stream_bytes_do_not_depend_on_the_threads(monkeypatch):
    data = bytes(np.random.default_rng(0).integers(0, 40, 5 * PIECE, dtype=np.uint8))
    many = zlib_stream(data)
    with ThreadPoolExecutor(max_workers=1) as one:
        monkeypatch.setattr(store_module, "_deflaters", lambda: one)
        assert zlib_stream(data) == many
    # After the interpreter begins to shut down no pool takes work: a writer finishing its queue does it alone.
    assert zlib_stream(data) == many  # ``one`` is shut down now and refuses it


def test_a_forked_child_encodes_with_threads_of_its_own():
    big = Image.fromarray(np.random.default_rng(1).integers(0, 256, (512, 512, 3), dtype=np.uint8))
    expected = png_bytes(big)  # the parent's pool has threads now; a forked child has none of them
    with multiprocessing.get_context("fork").Pool(1) as pool:  # leaving it kills a child that hangs
        assert pool.apply_async(png_bytes, (big,)).get(timeout=30) == expected


def test_png_bytes_of_other_modes_go_through_pillow_and_keep_their_pixels():
    palette = Image.new("P", (5, 4))
    palette.putpalette([0, 0, 0, 255, 0, 0])
    palette.putpixel((2, 1), 1)
    with Image.open(io.BytesIO(png_bytes(palette))) as decoded:
        assert decoded.mode == "P" and decoded.convert("RGB").getpixel((2, 1)) == (255, 0, 0)


def test_store_reports_a_missing_image(tmp_path):
    store = ArtifactStore(tmp_path)
    with pytest.raises(FileNotFoundError, match="missing"):
        store.open(ImageRef(sha256=SHA, width=1, height=1))


def test_atomic_write_leaves_no_partial_file_on_failure(tmp_path):
    target = tmp_path / "f.json"
    atomic_write(target, "old")

    # Not bytes: the write fails after the temporary file exists; it must be cleaned up.
    with pytest.raises(TypeError):
        atomic_write(target, object())  # type: ignore[arg-type]
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["f.json"]
