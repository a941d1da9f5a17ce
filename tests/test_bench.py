"""The bench: a generated GenEval-style suite through the sketch ablations, its figures, resume and reports."""

import csv
import io
import json
from statistics import fmean

import pytest

from strokeagent.bench import BenchError
from strokeagent.bench.runner import ablation_policies, run_bench
from strokeagent.bench.suites import compbench_category, load_bench_suite, suite_name
from strokeagent.testing import test_policy

POLICIES = ["ablations/one_shot", "ablations/full"]
TIMING = ("stage_seconds", "seconds")


def _figures(records):
    """Everything but the wall-clock timings, which differ from run to run."""
    return [{k: v for k, v in r.items() if k not in TIMING} for r in records]


@pytest.fixture(scope="module")
def bench(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench") / "b"
    return run_bench(load_bench_suite("geneval:12:0"), POLICIES, out, seeds=(0, 1))


def test_every_sample_is_a_finished_run_with_a_score_line(bench):
    assert len(bench.records) == 12 * 2 * 2 and bench.ran == 48
    lines = (bench.out / "samples.jsonl").read_text().splitlines()
    assert [json.loads(line) for line in lines] == bench.records
    for r in bench.records:
        run = bench.out / "runs" / r["key"]
        assert json.loads((run / "run.json").read_text())["status"] == "finished"
        assert (bench.out / r["filename"]).is_file()
        assert r["critic"] == "sketch" and isinstance(r["correct"], bool)
        assert json.loads(r["metadata"])["prompt"] == r["prompt"]  # GenEval's own field
    # Samples in suite order: policy, then row, then seed.
    assert [r["key"] for r in bench.records[:3]] == [
        "one_shot/00000-s0",
        "one_shot/00000-s1",
        "one_shot/00001-s0",
    ]


def test_summary_is_genevals_mean_of_category_accuracies(bench):
    summary = json.loads((bench.out / "summary.json").read_text())
    assert summary["categories"] == [
        "single_object",
        "two_object",
        "counting",
        "colors",
        "position",
        "color_attr",
    ]
    for row in summary["policies"]:
        mine = [r for r in bench.records if r["policy"] == row["policy"]]
        by_tag = {t: [r["correct"] for r in mine if r["tag"] == t] for t in summary["categories"]}
        for tag, results in by_tag.items():
            assert row["categories"][tag]["accuracy"] == sum(results) / len(results)
        assert row["overall"] == pytest.approx(fmean(sum(v) / len(v) for v in by_tag.values()))
        assert row["images_correct"] == pytest.approx(fmean(r["correct"] for r in mine))
        prompts = {i: any(r["correct"] for r in mine if r["index"] == i) for i in range(12)}
        assert row["prompts_correct"] == pytest.approx(fmean(prompts.values()))
    one_shot, full = (next(p for p in summary["policies"] if p["policy"] == n) for n in ("one_shot", "full"))
    assert set(one_shot["seconds_per_image"]) == {"draft"}
    assert set(full["seconds_per_image"]) >= {"plan", "draft", "reflect"}


def test_same_bench_same_figures(bench, tmp_path):
    again = run_bench(
        load_bench_suite("geneval:12:0"), POLICIES, tmp_path / "again", seeds=(0, 1), concurrency=1
    )
    assert _figures(again.records) == _figures(bench.records)


def test_reports(bench):
    table = (bench.out / "table.md").read_text()
    summary = json.loads((bench.out / "summary.json").read_text())
    order = sorted(summary["policies"], key=lambda p: p["overall"])
    header, _, *rows = table.split("\n\n")[0].splitlines()
    assert header.split(" | ")[1:4] == ["Single obj.", "Two obj.", "Counting"] and header.endswith(
        "Overall |"
    )
    assert [r.split(" | ")[0].strip("| `") for r in rows] == [p["policy"] for p in order]
    assert rows[-1].split(" | ")[-1].strip(" |*") == f"{order[-1]['overall']:.3f}"
    parsed = list(csv.DictReader(io.StringIO((bench.out / "table.csv").read_text())))
    assert [p["Policy"] for p in parsed] == [p["policy"] for p in order]
    assert float(parsed[0]["Overall"]) == pytest.approx(order[0]["overall"], abs=1e-4)
    png = (bench.out / "chart.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000
    page = (bench.out / "index.html").read_text()
    assert page.count("<tr class=sample") == 12 * 2  # one row per prompt and seed
    first = bench.records[0]
    assert f"src='{first['filename']}'" in page and "only prompts where the policies disagree" in page


def test_killed_bench_continues_where_it_stopped(tmp_path):
    items = load_bench_suite("geneval:8:1")
    whole = run_bench(items, POLICIES, tmp_path / "whole", seeds=(0,))

    class Killed(Exception):
        pass

    def kill_after_five(record, done, total):
        if done == 5:
            raise Killed

    out = tmp_path / "killed"
    with pytest.raises(Killed):
        run_bench(items, POLICIES, out, seeds=(0,), concurrency=3, on_sample=kill_after_five)
    log = out / "samples.jsonl"
    kept = log.read_text().splitlines()
    # Samples already in flight when the kill lands may still finish: up to concurrency - 1 more.
    assert 5 <= len(kept) <= 5 + 2
    # A kill can also tear the line being written: it is dropped, and that sample is scored again.
    log.write_text("\n".join(kept) + "\n" + kept[-1][:20])
    finished = {
        json.loads(line)["key"]: (out / "runs" / json.loads(line)["key"] / "run.json").read_text()
        for line in kept
    }
    resumed = run_bench(items, POLICIES, out, seeds=(0,))
    assert resumed.ran == 16 - len(kept)
    assert _figures(resumed.records) == _figures(whole.records)
    for key, text in finished.items():
        assert (out / "runs" / key / "run.json").read_text() == text  # not run again
    nothing = run_bench(items, POLICIES, out, seeds=(0,))
    assert nothing.ran == 0 and _figures(nothing.records) == _figures(whole.records)


def test_a_bench_folder_holds_one_bench(bench, tmp_path):
    with pytest.raises(BenchError, match="holds another bench"):
        run_bench(load_bench_suite("geneval:12:0"), POLICIES, bench.out, seeds=(0,))
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "notes.txt").write_text("mine")
    with pytest.raises(BenchError, match="not a bench"):
        run_bench(load_bench_suite("geneval:2"), POLICIES, tmp_path / "x")


def test_geneval_metadata_file_runs_unchanged(tmp_path):
    # Rows exactly as GenEval's prompts/evaluation_metadata.jsonl writes them.
    rows = [
        '{"tag": "single_object", "include": [{"class": "bench", "count": 1}], "prompt": "a photo of a bench"}',
        '{"tag": "counting", "include": [{"class": "clock", "count": 2}], "exclude": [{"class": "clock", "count": 3}], "prompt": "a photo of two clocks"}',
        '{"tag": "position", "include": [{"class": "teddy bear", "count": 1}, {"class": "dog", "count": 1, "position": ["right of", 0]}], "prompt": "a photo of a dog right of a teddy bear"}',
    ]
    suite = tmp_path / "evaluation_metadata.jsonl"
    suite.write_text("\n".join(rows) + "\n")
    result = run_bench(load_bench_suite(suite), ["ablations/full"], tmp_path / "out")
    assert [r["tag"] for r in result.records] == ["single_object", "counting", "position"]
    assert [json.loads(r["metadata"]) for r in result.records] == [json.loads(row) for row in rows]
    assert (tmp_path / "out" / "suite.jsonl").read_text().splitlines() == rows


def test_prompt_lists_are_compbench_categories(tmp_path):
    folder = tmp_path / "compbench"
    folder.mkdir()
    (folder / "color_val.txt").write_text("a green bench and a red car\n\na blue bird\n")
    (folder / "spatial_val.txt").write_text("a dog on the left of a cat\n")
    items = load_bench_suite(folder)
    assert [(i.tag, i.prompt) for i in items] == [
        ("color", "a green bench and a red car"),
        ("color", "a blue bird"),
        ("spatial", "a dog on the left of a cat"),
    ]
    result = run_bench(items, ["ablations/one_shot"], tmp_path / "out")
    assert result.summary["categories"] == ["color", "spatial"]
    assert compbench_category(folder / "3d_spatial_train.txt") == "3d_spatial"


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("missing.jsonl", "no suite 'missing.jsonl'"),
        ("geneval:0", "asks for no prompts"),
    ],
)
def test_bad_suites(spec, message):
    with pytest.raises(BenchError, match=message):
        load_bench_suite(spec)


def test_bad_suite_line_names_the_line(tmp_path):
    bad = tmp_path / "s.jsonl"
    bad.write_text('{"tag": "x", "include": [], "prompt": "a cup"}\n{"tag": "x", "prompt": "a"}\n')
    with pytest.raises(BenchError, match=r"s.jsonl:2: not a GenEval row: include: Field required"):
        load_bench_suite(bad)


def test_other_images_need_a_critic_named(tmp_path):
    with pytest.raises(BenchError, match="not stroke canvases.*--critic geneval"):
        run_bench(load_bench_suite("geneval:1"), [test_policy(steps=1)], tmp_path / "out")


def test_names_and_ablations():
    assert suite_name("geneval:200") == "geneval-200-s0" and suite_name("a/b.jsonl") == "b"
    names = ablation_policies()
    assert all(n.startswith("ablations/") for n in names) and names == sorted(names)
    assert {
        "ablations/one_shot",
        "ablations/plan_draft",
        "ablations/draft_reflect_refine",
        "ablations/full",
    } <= set(names)
