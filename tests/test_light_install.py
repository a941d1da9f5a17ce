"""The README's light install, for real: a venv with the core dependencies only (no extras).

Every command works there or refuses in one line naming the extra to install, before any work:
no traceback, no output folder. The venv is built once per test session (shared by xdist workers).
"""

import fcntl
import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "diffusers", "transformers", "matplotlib", "litserve", "openai")
INSTALL = "pip install 'strokeagent["


def _pip(python: Path, *args: str) -> None:
    done = subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", *args],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, (
        f"pip install {' '.join(args)} failed:\n{done.stdout[-3000:]}{done.stderr[-3000:]}"
    )


@pytest.fixture(scope="module")
def light(tmp_path_factory) -> Path:
    """The bin folder of a venv with `pip install --no-deps -e .` and pyproject's core dependencies only."""
    base = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        base = base.parent  # shared by the workers of one session
    venv = base / "light-venv"
    with open(base / "light-venv.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one worker builds it; the others wait, then reuse it
        if not (venv / ".built").is_file():
            subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True, timeout=120)
            python = venv / "bin" / "python"
            core = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
            _pip(python, "--no-deps", "-e", str(ROOT))
            _pip(python, *core)  # from pip's cache where it can
            (venv / ".built").touch()
    return venv / "bin"


def strokeagent(light: Path, cwd: Path, *args: str) -> subprocess.CompletedProcess:
    env = {
        k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "STROKEAGENT_POLICY")
    }
    env.update(NO_COLOR="1", COLUMNS="200", OMP_NUM_THREADS="1")
    return subprocess.run(
        [str(light / "strokeagent"), *args], capture_output=True, text=True, cwd=cwd, env=env, timeout=300
    )


@pytest.mark.parametrize(
    ("script", "extras"),
    [("gpu.py", "the extras 'diffusers' and 'transformers'"), ("context_reuse.py", "the 'transformers' extra")],
)
def test_a_benchmark_needing_torch_says_which_extras_in_one_line(light, tmp_path, script, extras):
    args = ["--tiny", "--device", "cpu"] if script == "gpu.py" else []
    done = subprocess.run([str(light / "python"), str(ROOT / "benchmarks" / script), *args],
                          capture_output=True, text=True, cwd=tmp_path, timeout=120)  # fmt: skip
    lines = (done.stdout + done.stderr).splitlines()
    assert done.returncode == 1 and len(lines) == 1, lines
    assert lines[0].startswith(f"error: benchmarks/{script} needs {extras}") and INSTALL in lines[0], lines[0]


def test_the_light_venv_has_no_extra(light):
    probe = f"import importlib.util as u; print(' '.join(m for m in {HEAVY!r} if u.find_spec(m)))"
    done = subprocess.run([str(light / "python"), "-c", probe], capture_output=True, text=True, check=True)
    assert done.stdout.split() == []


def test_run_works(light, tmp_path):
    done = strokeagent(light, tmp_path, "run", "a red apple", "--out", "r")
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "r" / "final.png").is_file()
    assert (tmp_path / "r" / "index.html").is_file()


def test_the_default_is_the_shipped_trained_model_and_gives_the_recorded_pixels(light, tmp_path):
    from test_process_tiny import PROMPT, RECORDED_FINAL, pixels_of

    done = strokeagent(light, tmp_path, "run", PROMPT, "--seed", "0", "--out", "r")
    assert done.returncode == 0, done.stderr
    run = (tmp_path / "r" / "run.json").read_text()
    assert '"process-tiny"' in run  # the default policy, run without torch (the venv has none)
    assert pixels_of(tmp_path / "r" / "final.png") == RECORDED_FINAL


def test_ablate_writes_every_report_but_the_chart_and_says_how_to_get_it(light, tmp_path):
    done = strokeagent(light, tmp_path, "ablate", "geneval:4", "--out", "b")
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    out = tmp_path / "b"
    for name in ("samples.jsonl", "summary.json", "table.md", "table.csv", "index.html"):
        assert (out / name).is_file(), name
    assert not (out / "chart.png").exists()
    assert "chart.png" not in (out / "index.html").read_text().split("No chart")[0].split("<img")[-1]
    assert "| Policy |" in done.stdout  # the table
    notes = [line for line in done.stderr.splitlines() if "chart" in line]
    assert len(notes) == 1
    assert notes[0].startswith("note: ") and "pip install 'strokeagent[bench]'" in notes[0]
    assert "chart.png" not in done.stdout  # the file list names only what was written


NEEDS_AN_EXTRA = {
    "run composite": (["run", "-p", "composite", "a red apple"], {"vllm", "diffusers"}),
    "run hybrid": (["run", "-p", "hybrid", "a red apple"], {"diffusers", "vllm"}),
    "run process": (["run", "-p", "process", "a red apple"], {"transformers"}),
    "serve image": (
        ["serve", "image", "--backend", str(ROOT / "backends" / "tiny-sd.toml")],
        {"serve,diffusers"},
    ),
    "train": (["train", "some.toml"], {"train"}),
    "bench composite": (["bench", "geneval:4", "-p", "sketch", "-p", "composite"], {"vllm", "diffusers"}),
    "bench clip-score": (
        ["bench", "geneval:4", "-p", "sketch", "--critic", "clip-score", "--clip", "c"],
        {"transformers"},
    ),
    "ablate composite": (
        ["ablate", "geneval:4", "-p", "composite", "--orders", "plan,draft"],
        {"vllm", "diffusers"},
    ),
    "data build editor": (
        [
            "data",
            "build",
            "geneval:2",
            "--out",
            "d",
            "--editor",
            str(ROOT / "backends" / "tiny-pix2pix.toml"),
        ],
        {"diffusers"},
    ),
}


@pytest.mark.parametrize("case", list(NEEDS_AN_EXTRA))
def test_a_command_needing_an_extra_says_which_in_one_line_before_any_work(light, tmp_path, case):
    args, extras = NEEDS_AN_EXTRA[case]
    (tmp_path / "some.toml").write_text('model = "m"\ndata = "d"\nout = "o"\n')
    before = sorted(p.name for p in tmp_path.iterdir())
    done = strokeagent(light, tmp_path, *args)
    # (A bench's progress bar, transient, leaves an empty line on a non-terminal.)
    lines = [line for line in (done.stdout + done.stderr).splitlines() if line.strip()]
    assert done.returncode == 2, lines
    assert len(lines) == 1 and lines[0].startswith("error: "), lines
    named = lines[0].split(INSTALL, 1)[1].split("]'", 1)[0] if INSTALL in lines[0] else None
    assert named in extras, lines[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # no run, bench or data folder


# -- the same checks in this process, with modules made missing (fast; no venv) --------------------


@pytest.fixture
def without(monkeypatch):
    """Make ``extras`` see the given modules as not installed."""
    from strokeagent import extras

    def hide(*modules: str) -> None:
        real = extras.installed
        monkeypatch.setattr(extras, "installed", lambda m: m not in modules and real(m))

    return hide


def test_a_kind_needing_an_extra_is_refused_naming_it_before_import(without):
    from strokeagent.core.registry import BACKEND_KINDS
    from strokeagent.errors import PolicyError

    without("torch")
    with pytest.raises(PolicyError) as e:
        BACKEND_KINDS.build({"kind": "diffusers", "model": "m"}, where="b.toml")
    assert str(e.value) == (
        "b.toml: backend kind 'diffusers' needs the 'diffusers' extra (torch is not installed); "
        "install it with: pip install 'strokeagent[diffusers]'"
    )


def test_a_module_missing_inside_a_factory_names_its_extra(tmp_path):
    from strokeagent.core.registry import STAGE_KINDS
    from strokeagent.errors import PolicyError

    (tmp_path / "mine.py").write_text(
        "def Stage():\n    raise ModuleNotFoundError(\"No module named 'openai'\", name='openai')\n"
        "def Other():\n    raise ModuleNotFoundError(\"No module named 'nowhere'\", name='nowhere')\n"
    )
    with pytest.raises(PolicyError, match=r"needs the 'vllm' extra .*pip install 'strokeagent\[vllm\]'$"):
        STAGE_KINDS.build({"kind": f"{tmp_path / 'mine.py'}:Stage"}, where="p.toml")
    with pytest.raises(PolicyError, match="needs the module 'nowhere', which is not installed"):
        STAGE_KINDS.build({"kind": f"{tmp_path / 'mine.py'}:Other"}, where="p.toml")


def test_commands_name_every_extra_they_lack(without):
    from strokeagent import extras

    without("litserve", "torch")
    assert extras.command_refusal("serve image") == (
        "strokeagent serve image needs the extras 'serve' and 'diffusers' (litserve and torch are not installed); "
        "install them with: pip install 'strokeagent[serve,diffusers]'"
    )
    assert "pip install 'strokeagent[train]'" in extras.command_refusal("train")


def test_without_matplotlib_a_bench_writes_every_report_but_the_chart(without, tmp_path):
    from strokeagent.bench.reports import chart_note
    from strokeagent.bench.runner import run_bench
    from strokeagent.bench.suites import load_bench_suite

    without("matplotlib")
    run_bench(load_bench_suite("geneval:2:0"), ["ablations/one_shot"], tmp_path / "b", seeds=(0,))
    assert sorted(p.name for p in (tmp_path / "b").iterdir() if p.is_file()) == [
        "bench.json", "index.html", "samples.jsonl", "suite.jsonl", "summary.json", "table.csv", "table.md",
    ]  # fmt: skip
    page = (tmp_path / "b" / "index.html").read_text()
    assert "src=chart.png" not in page and "strokeagent[bench]" in page
    assert chart_note() == (
        "chart.png skipped: matplotlib is not installed; install it with: pip install 'strokeagent[bench]'"
    )
