"""A third-party stage package, registered under the ``strokeagent.stages`` entry-point group, runs end to end.

The package is real: a ``pyproject.toml`` and a module, installed by pip into a folder of its own
(``--target``), which the run finds on ``PYTHONPATH`` as any installed distribution is found.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from strokeagent.core.policy import bundled_policies_dir

pytestmark = pytest.mark.slow

PYPROJECT = """\
[build-system]
requires = ["setuptools>=61"]
build-backend = "setuptools.build_meta"

[project]
name = "shoutstage"
version = "0.1.0"

[project.entry-points."strokeagent.stages"]
shout = "shoutstage:Shout"

[tool.setuptools]
py-modules = ["shoutstage"]
"""

MODULE = '''\
"""A third-party stage: one async method, named run."""

from strokeagent import Note, TrajectoryView


class Shout:
    async def run(self, view: TrajectoryView) -> Note:
        return Note(text=f"{view.prompt.upper()}! (step {view.step + 1})")
'''


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """The package built and installed by pip into a folder of its own; the folder."""
    root = tmp_path_factory.mktemp("shout")
    (root / "pkg").mkdir()
    (root / "pkg" / "pyproject.toml").write_text(PYPROJECT)
    (root / "pkg" / "shoutstage.py").write_text(MODULE)
    target = root / "site"
    offline = ["--no-build-isolation", "--no-index"] if importlib.util.find_spec("setuptools") else []
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--no-cache-dir",
         "--no-deps", *offline, "--target", str(target), str(root / "pkg")],
        check=True, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert (target / "shoutstage.py").is_file()
    assert [*target.glob("shoutstage-0.1.0.dist-info/entry_points.txt")]
    return target


@pytest.fixture
def policy(tmp_path) -> Path:
    """The bundled sketch policy with the shout stage between plan and draft."""
    path = tmp_path / "shouting.toml"
    path.write_text(
        f'extends = "{(bundled_policies_dir() / "sketch.toml").as_posix()}"\n'
        'name = "shouting"\n\n'
        "[loop]\n"
        'order = ["plan", "shout", "draft", "reflect", "refine"]\n\n'
        "[stages.shout]\n"
        'kind = "shout"\n'
    )
    return path


def strokeagent_run(
    policy: Path, out: Path, path: Path | None, prompt: str = "a red apple"
) -> subprocess.CompletedProcess:
    """``strokeagent run`` in a subprocess, with ``path`` (if any) first on its ``PYTHONPATH``."""
    env = {**os.environ, "COLUMNS": "200", "NO_COLOR": "1"}
    if path is not None:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(path), env.get("PYTHONPATH")]))
    args = ["run", prompt, "--policy", str(policy), "--out", str(out), "--seed", "0"]
    return subprocess.run(
        [sys.executable, "-m", "strokeagent.cli", *args],
        capture_output=True, text=True, env=env, timeout=120,
    )  # fmt: skip


@pytest.mark.parametrize(("prompt", "steps"), [("a red apple", 1), ("a red apple left of a blue cup", 2)])
def test_an_installed_stage_package_runs_in_every_step(installed, policy, tmp_path, prompt, steps):
    run = strokeagent_run(policy, tmp_path / "run", installed, prompt)
    assert run.returncode == 0, run.stderr
    traj = json.loads((tmp_path / "run" / "trajectory.json").read_text())
    assert len(traj["steps"]) >= steps
    for step in traj["steps"]:
        shouts = [s for s in step["states"] if s["stage"] == "shout"]
        assert [s["value"]["text"] for s in shouts] == [f"{prompt.upper()}! (step {step['index'] + 1})"]
        assert [s["stage"] for s in step["states"]][:3] == ["plan", "shout", "draft"]
    timed = [t["step"] for t in traj["timings"] if t["stage"] == "shout"]
    assert timed == [step["index"] for step in traj["steps"]]


def test_the_policy_is_refused_in_one_line_without_the_package(policy, tmp_path):
    run = strokeagent_run(policy, tmp_path / "run", None)
    assert run.returncode == 2, run.stderr
    assert "Traceback" not in run.stderr
    [line] = run.stderr.strip().splitlines()
    assert "'shout'" in line, line
    assert not (tmp_path / "run" / "trajectory.json").exists()
