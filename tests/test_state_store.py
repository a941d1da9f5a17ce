import json

import pytest
from PIL import Image
from pydantic import ValidationError

from strokeagent.core.state import ImageRef, Plan, Reflection, StageTiming, Step, Trajectory
from strokeagent.core.store import ArtifactStore, atomic_write

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
    import hashlib

    assert hashlib.sha256(store.read_bytes(ref1)).hexdigest() == ref1.sha256
    blue = store.put(Image.new("RGB", (5, 3), (0, 0, 255)))
    assert blue.sha256 != ref1.sha256


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
