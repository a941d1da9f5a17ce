"""The trajectory data builder: three subsets in the process format, sharded, resumable, read by datasets."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from strokeagent.data import build_dataset, load_samples
from strokeagent.data.alignment import measure, perturb
from strokeagent.data.multiturn import multi_turn_steps
from strokeagent.errors import DataError
from strokeagent.scene import generate_suite, graph_from_item, parse_prompt
from strokeagent.unified.process import ProcessFormat, ProcessStages, between, parse_inspection, parse_plan

FMT = ProcessFormat()


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("data") / "process"
    build_dataset("geneval:6", out, seed=0, shard_size=2)
    return out


def _files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
            and ".cache" not in p.parts and p.name != "manifest.json"}  # fmt: skip


def test_three_subsets_in_the_process_format_readable_with_datasets(built):
    ds = load_samples(built)
    assert set(ds["subset"]) == {"multi_turn", "conflict", "alignment"}
    assert ds.num_rows == 18  # six prompts, one sample of each subset each
    for row in ds:
        segs = row["segments"]
        assert segs[0]["text"] == FMT.header(row["prompt"]) and not segs[0]["loss"]  # the header is given
        for seg in segs:
            if seg["kind"] == "image":
                assert (built / seg["image"]).is_file()
        plan = parse_plan(FMT, segs[1]["text"])
        assert plan.instruction and not plan.meta["process"]["malformed"]
        meta = json.loads(row["meta"])
        texts = "".join(s["text"] or "" for s in segs)
        if row["subset"] == "multi_turn":
            assert texts.endswith(FMT.close)
            assert all(s["loss"] for s in segs if s["kind"] == "image")  # the model paints every step
        else:
            at = next(i for i, seg in enumerate(segs) if seg["text"] == FMT.inspect[0])  # added by the stage
            reflection = parse_inspection(FMT, segs[at + 1]["text"])
            bad = meta["label"] in ("negative", "misaligned")
            assert reflection.ok is not bad
            assert (
                between(texts.removeprefix(segs[0]["text"]), FMT.refine)[0] is not None
            ) is bad  # a corrected instruction iff a conflict
            if row["subset"] == "conflict":  # a negative is corrected, repainted and passes; both close
                assert texts.endswith(FMT.close)
                assert [s["loss"] for s in segs if s["kind"] == "image"] == (
                    [False, True] if bad else [False]
                )


def test_the_process_stages_read_each_sample_as_it_was_written(built, tmp_path):
    # A model that learned a sample perfectly, run through the process policy: every stage cut falls
    # where the sample's segments say, and the choice after the last inspection is the sample's ending.
    import strokeagent
    from strokeagent.core.policy import LoopSpec, Policy
    from strokeagent.testing.unified import SampleModel

    items = {item.prompt: item for item in generate_suite(6, seed=0)}  # the suite `built` was built from
    opened = 0
    for n, row in enumerate(load_samples(built)):
        model = SampleModel(row["segments"])
        stages = ProcessStages(model, max_text_tokens=10_000)
        # A multi-turn sample is plans and images only; the others are one step, inspected.
        if row["subset"] == "multi_turn":
            loop = LoopSpec(order=("plan", "draft"), max_steps=8)
        else:
            loop = LoopSpec(max_steps=1, max_refines=1)
        policy = Policy("sample", loop, dict.fromkeys(("plan", "draft", "reflect", "refine"), stages))
        traj = strokeagent.generate(row["prompt"], policy=policy, seed=0, out=tmp_path / str(n))
        assert model.left == [], (row["id"], model.left)  # the stages read the whole sample
        images = [s for s in row["segments"] if s["kind"] == "image"]
        assert model.images == len(images)
        assert all(not s.plan.meta["process"]["malformed"] for s in traj.steps)
        last = traj.steps[-1]
        if row["subset"] == "multi_turn":  # no inspections: the close is read at a plan, after the last image
            assert len(traj.steps) == len(images) + 1 and last.plan.done
            continue
        assert len(traj.steps) == 1 and len(last.images) == len(images)
        assert [r.ok for r in last.reflections] == [True] if len(images) == 1 else [False, True]
        closes = row["segments"][-1]["text"] == FMT.close
        assert row["segments"][-1]["text"] == (FMT.close if closes else FMT.ins[0])
        assert last.reflections[-1].done is closes
        assert last.reflections[-1].meta["process"].get("opened") == (None if closes else FMT.ins[0])
        if row["subset"] == "alignment":  # the last step of the build closes; any other opens the next
            graph = graph_from_item(items[row["prompt"]])
            steps = multi_turn_steps(graph, np.random.default_rng(0), size=256, seed=0, edit_rate=0.0)
            assert closes is (json.loads(row["meta"])["step"] == len(steps) - 1)
        opened += not closes
    assert opened  # the built set has samples of both endings


def test_negatives_and_misaligned_samples_occur(tmp_path):
    # Over a few more prompts, the one-shot policy's seeded mistakes and the perturbations give both labels.
    out = tmp_path / "d"
    build_dataset("geneval:12", out, seed=3, shard_size=12, subsets=["conflict", "alignment"])
    labels = {json.loads(m)["label"] for m in load_samples(out)["meta"]}
    assert {"positive", "negative", "aligned", "misaligned"} <= labels


def test_killed_build_resumes_to_the_same_bytes(built, tmp_path):
    out = tmp_path / "d"

    def die_after_three(done: int, total: int) -> None:
        if done == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        build_dataset("geneval:6", out, seed=0, shard_size=2, progress=die_after_three)
    assert sorted(p.name for p in (out / "data").glob("*.jsonl")) == [
        "shard-00000.jsonl"
    ]  # shard 1 unfinished
    assert not json.loads((out / "manifest.json").read_text())["complete"]
    manifest = build_dataset("geneval:6", out, seed=0, shard_size=2)
    assert manifest["complete"] and manifest["samples"] == 18
    assert _files(out) == _files(built)


def test_resume_with_other_options_is_refused(built):
    with pytest.raises(DataError, match="seed = 0, now 1"):
        build_dataset("geneval:6", built, seed=1, shard_size=2)


def test_resume_of_a_folder_begun_by_another_format_version_is_refused(built, tmp_path):
    manifest = json.loads((built / "manifest.json").read_text())
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / "manifest.json").write_text(json.dumps({**manifest, "version": 1, "complete": False}))
    with pytest.raises(DataError, match="begun by data format version 1, this is version 2"):
        build_dataset("geneval:6", tmp_path / "old", seed=0, shard_size=2)


def test_bad_suite_and_foreign_folder(tmp_path):
    with pytest.raises(DataError, match="no suite file"):
        build_dataset(tmp_path / "nope.jsonl", tmp_path / "out")
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"tag": "x"}\n')
    with pytest.raises(DataError, match="bad.jsonl:1"):
        build_dataset(bad, tmp_path / "out")
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "file").write_text("x")
    with pytest.raises(DataError, match="not a data set"):
        build_dataset("geneval:2", tmp_path / "busy")
    with pytest.raises(DataError, match="not a strokeagent data set"):
        load_samples(tmp_path)


def test_edits_end_on_the_prompts_scene():
    seen = set()
    for i, item in enumerate(generate_suite(24, seed=1)):
        graph = graph_from_item(item)
        plain = multi_turn_steps(graph, np.random.default_rng(i), size=256, seed=i, edit_rate=0.0)
        edited = multi_turn_steps(graph, np.random.default_rng(i), size=256, seed=i, edit_rate=1.0)
        seen |= {s.edit for s in edited if s.edit}
        assert edited[-1].document == plain[-1].document  # the detour ends exactly where the plain build does
        assert edited[-1].description == plain[-1].description
        if any(s.edit for s in edited):
            assert len(edited) == len(plain) + 1 or len(edited) == len(plain) + 2
    assert seen == {"modify", "swap", "remove"}


def test_a_modify_edit_reads_right():
    graph = parse_prompt("a red apple left of a blue cup")
    for seed in range(40):
        steps = multi_turn_steps(graph, np.random.default_rng(seed), size=256, seed=0, edit_rate=1.0)
        fix = [s for s in steps if s.edit == "modify"]
        if fix:
            wrong, right = fix
            assert right.instruction in ("Make the apple red.", "Make the cup blue.")
            changed = [d for d in wrong.document.instances if d not in right.document.instances]
            assert len(changed) == 1 and changed[0].rgb != right.document.instances[changed[0].iid - 1].rgb
            return
    pytest.fail("no modify edit in 40 seeds")


@pytest.mark.parametrize(("kind", "found"), [("count", "count"), ("color", "color"),
                                             ("position", "relation"), ("missing", "count")])  # fmt: skip
def test_each_perturbation_is_measured(kind, found):
    graph = parse_prompt("two red apples left of a blue cup")
    steps = multi_turn_steps(graph, np.random.default_rng(0), size=256, seed=0, edit_rate=0.0)
    assert measure(graph, steps, 1, steps[1].document) == []  # the clean step is aligned
    doc, _ = perturb(graph, steps, 1, kind, np.random.default_rng(1))
    assert found in {v["kind"] for v in measure(graph, steps, 1, doc)}


def test_text_writer_round_trips_through_the_policys_parsers():
    assert parse_plan(FMT, FMT.write_plan("Add a cup.", "A cup.")).description == "A cup."
    r = parse_inspection(
        FMT, FMT.inspect[0] + FMT.write_inspection(["the plan leaves out the dog"], ["cup is red"])
    )
    assert r.prompt_conflicts == ["the plan leaves out the dog"] and r.image_conflicts == ["cup is red"]
    assert parse_inspection(FMT, FMT.write_inspection([], [])).ok
    assert between(FMT.write_refine("Recolour the cup blue."), FMT.refine) == ("Recolour the cup blue.", True)


def test_cli_builds_resumes_and_refuses_in_one_line(cli, tmp_path):
    done = cli("data", "build", "geneval:2", "--out", str(tmp_path / "d"), "--shard-size", "1")
    assert done.returncode == 0, done.stderr
    assert "6 samples (multi_turn 2, conflict 2, alignment 2)" in done.stdout
    again = cli("data", "build", "geneval:2", "--out", str(tmp_path / "d"), "--shard-size", "1")
    assert again.returncode == 0 and "6 samples" in again.stdout  # finished shards are kept, not rebuilt
    bad = cli("data", "build", str(tmp_path / "missing.jsonl"), "--out", str(tmp_path / "e"))
    assert bad.returncode == 2 and bad.stderr.strip().startswith("error: no suite file")
    assert len(bad.stderr.strip().splitlines()) == 1


@pytest.mark.slow  # ~15-20 s: loads diffusers and runs a tiny InstructPix2Pix
def test_an_editing_model_renders_the_multi_turn_steps(tmp_path):
    pytest.importorskip("diffusers")
    from PIL import Image

    from strokeagent.testing.diffusers import save_tiny_pix2pix

    folder = save_tiny_pix2pix(tmp_path / "pix2pix")
    editor = tmp_path / "editor.toml"
    editor.write_text(f'kind = "diffusers"\nmodel = "{folder.as_posix()}"\ndevice = "cpu"\nthreads = 1\n')
    out = tmp_path / "d"
    build_dataset("geneval:2", out, seed=0, subsets=["multi_turn"], editor=editor, editor_steps=2, size=128)
    rows = list(load_samples(out))
    steps = [json.loads(r["meta"])["steps"] for r in rows]
    images = [seg["image"] for r in rows for seg in r["segments"] if seg["kind"] == "image"]
    assert len(images) == sum(steps) and all(Image.open(out / p).size == (128, 128) for p in images)
    with pytest.raises(DataError, match="cannot use the editor"):
        build_dataset("geneval:1", tmp_path / "e", editor=tmp_path / "nope.toml")
