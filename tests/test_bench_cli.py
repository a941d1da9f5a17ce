"""`strokeagent bench` and `strokeagent ablate` as a user runs them (subprocesses: slow-marked)."""

import json

import pytest


@pytest.mark.slow
def test_ablate_writes_the_table_and_the_plot(cli, tmp_path):
    out = tmp_path / "ablate"
    result = cli("ablate", "geneval:6:0", "--out", str(out))
    assert result.returncode == 0, result.stderr
    assert (
        "| Policy | Single obj." in result.stdout and f"chart.png      {out / 'chart.png'}" in result.stdout
    )
    for name in (
        "samples.jsonl",
        "summary.json",
        "table.md",
        "table.csv",
        "chart.png",
        "index.html",
        "suite.jsonl",
    ):
        assert (out / name).is_file(), name
    summary = json.loads((out / "summary.json").read_text())
    assert len(summary["policies"]) >= 4 and summary["prompts"] == 6
    # The same command again continues (here: nothing left to do).
    again = cli("ablate", "geneval:6:0", "--out", str(out))
    assert again.returncode == 0 and "(24 already done)" in " ".join(again.stderr.split())


@pytest.mark.slow
def test_bench_refuses_bad_input_in_one_line(cli, tmp_path):
    bad = tmp_path / "suite.jsonl"
    bad.write_text(
        '{"tag": "colors", "include": [{"class": "cup", "color": "red"}], "prompt": "a red cup"}\n{oops\n'
    )
    result = cli("bench", str(bad), "-p", "sketch", "--out", str(tmp_path / "o"))
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"error: {bad}:2: not valid JSON (Expecting property name enclosed in double quotes); "
        "each line must be one JSON object; fix that line or remove it"
    ]
    assert not (tmp_path / "o").exists()
    unknown = cli("bench", "geneval:2", "-p", "nope", "--out", str(tmp_path / "o"))
    assert unknown.returncode == 2 and "no policy file or bundled policy named 'nope'" in unknown.stderr
    seeds = cli("bench", "geneval:2", "-p", "sketch", "--seeds", "1,x", "--out", str(tmp_path / "o"))
    assert seeds.returncode == 2 and "--seeds '1,x'" in seeds.stderr
    a_file = tmp_path / "a-file"
    a_file.write_text("")
    denied = cli("bench", "geneval:2", "-p", "sketch", "--out", str(a_file / "b"))
    assert denied.returncode == 2 and "choose a writable --out" in denied.stderr
