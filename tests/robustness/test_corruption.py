"""A damaged run folder: `resume` gives one clear line or a correct resume, and never leaves it "running".

Each case makes a run paused mid-way (before step 1's refine), damages one thing, and resumes it. The
outcome must be a ``StrokeAgentError`` of one line or a resume whose final.png is byte-identical to an
uninterrupted run's; either way run.json (when readable) does not say "running". A deleted, an empty, an
emptied or a table-less checkpoint database all follow one rule: the run starts over from run.json.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sqlite3
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import strokeagent
from strokeagent.core.policy import load_policy
from strokeagent.errors import StrokeAgentError

SHAPES = Path(__file__).resolve().parents[1] / "policies" / "shapes.toml"
PROMPT = "two shapes"
CASES: dict[str, Callable[[Path], None]] = {}
#: Cases that must resume (the rest may refuse in one line).
MUST_RESUME = {"db_deleted", "db_empty", "rows_deleted", "tables_dropped", "traj_deleted", "traj_garbage",
               "writes_garbled"}  # fmt: skip


def case(f: Callable[[Path], None]) -> Callable[[Path], None]:
    CASES[f.__name__] = f
    return f


def _sql(d: Path, *statements: str) -> None:
    c = sqlite3.connect(d / "checkpoints.sqlite")
    for s in statements:
        c.execute(s)
    c.commit()
    c.close()


def _edit_run(d: Path, change: Callable[[dict[str, Any]], Any]) -> None:
    info = json.loads((d / "run.json").read_text())
    change(info)
    (d / "run.json").write_text(json.dumps(info))


@case
def db_deleted(d):
    (d / "checkpoints.sqlite").unlink()


@case
def db_empty(d):
    (d / "checkpoints.sqlite").write_bytes(b"")


@case
def db_trunc_half(d):
    b = (d / "checkpoints.sqlite").read_bytes()
    (d / "checkpoints.sqlite").write_bytes(b[: len(b) // 2])


@case
def db_trunc_100(d):
    b = (d / "checkpoints.sqlite").read_bytes()
    (d / "checkpoints.sqlite").write_bytes(b[:100])


@case
def db_garbled_header(d):
    b = bytearray((d / "checkpoints.sqlite").read_bytes())
    b[0:16] = b"x" * 16
    (d / "checkpoints.sqlite").write_bytes(bytes(b))


@case
def db_garbled_middle(d):
    b = bytearray((d / "checkpoints.sqlite").read_bytes())
    for i in range(len(b) // 3, len(b) // 3 + 4096):
        b[i] ^= 0x5A
    (d / "checkpoints.sqlite").write_bytes(bytes(b))


@case
def db_garbage(d):
    (d / "checkpoints.sqlite").write_bytes(os.urandom(8192))


@case
def db_text(d):
    (d / "checkpoints.sqlite").write_text("hello")


@case
def db_folder(d):
    (d / "checkpoints.sqlite").unlink()
    (d / "checkpoints.sqlite").mkdir()


@case
def blob_garbled(d):
    _sql(d, "update checkpoints set checkpoint=x'deadbeef'")


@case
def blob_trunc(d):
    _sql(d, "update checkpoints set checkpoint=substr(checkpoint,1,length(checkpoint)/2)")


@case
def writes_garbled(d):
    _sql(d, "update writes set value=x'c1c2c3'")


@case
def metadata_garbled(d):
    _sql(d, "update checkpoints set metadata=x'ff00'")


@case
def type_garbled(d):
    _sql(d, "update checkpoints set type='nope'")


@case
def tables_dropped(d):
    _sql(d, "drop table checkpoints")


@case
def rows_deleted(d):
    _sql(d, "delete from checkpoints", "delete from writes")


@case
def traj_folder(d):
    (d / "trajectory.json").unlink()
    (d / "trajectory.json").mkdir()


@case
def traj_deleted(d):
    (d / "trajectory.json").unlink()


@case
def traj_garbage(d):
    (d / "trajectory.json").write_text("{")


@case
def run_list(d):
    (d / "run.json").write_text("[1,2]")


@case
def run_no_id(d):
    _edit_run(d, lambda i: i.pop("run_id"))


@case
def run_no_prompt(d):
    _edit_run(d, lambda i: i.pop("prompt"))


@case
def run_bad_seed(d):
    _edit_run(d, lambda i: i.update({"seed": "x"}))


@case
def run_bad_tables(d):
    _edit_run(d, lambda i: i.update({"policy_tables": 5}))


@case
def run_bad_pause(d):
    _edit_run(d, lambda i: i.update({"pause_before": 5}))


@case
def run_id_int(d):
    _edit_run(d, lambda i: i.update({"run_id": 5}))


@case
def run_trunc(d):
    (d / "run.json").write_text((d / "run.json").read_text()[:40])


@case
def run_binary(d):
    (d / "run.json").write_bytes(b"\xff\xfe\x00garbage")


@case
def run_folder(d):
    (d / "run.json").unlink()
    (d / "run.json").mkdir()


@case
def run_deleted(d):
    (d / "run.json").unlink()


@case
def images_deleted(d):
    shutil.rmtree(d / "images")


@case
def images_file(d):
    shutil.rmtree(d / "images")
    (d / "images").write_text("x")


@case
def image_missing(d):
    for p in (d / "images").glob("*.png"):
        p.unlink()


@case
def image_garbled(d):
    for p in (d / "images").glob("*.png"):
        p.write_bytes(b"notpng")


@case
def image_truncated(d):
    for p in (d / "images").glob("*.png"):
        p.write_bytes(p.read_bytes()[:50])


@case
def read_only(d):
    for p in [d, *d.rglob("*")]:
        p.chmod(0o555 if p.is_dir() else 0o444)


@case
def read_only_folder_only(d):
    d.chmod(0o555)


@case
def db_readonly(d):
    (d / "checkpoints.sqlite").chmod(0o444)


@case
def final_folder(d):
    (d / "final.png").unlink(missing_ok=True)
    (d / "final.png").mkdir()


@case
def index_folder(d):
    (d / "index.html").unlink()
    (d / "index.html").mkdir()


def _paused_run(d: Path, policy: Any) -> None:
    strokeagent.generate(PROMPT, policy=policy, out=d, seed=3, pause_before=("refine",))


def _status(d: Path) -> Any:
    try:
        return json.loads((d / "run.json").read_text()).get("status")
    except Exception:
        return None  # run.json is what the case damaged


def _writable_again(d: Path) -> None:
    for p in [d, *d.rglob("*")]:
        with contextlib.suppress(OSError):
            p.chmod(0o755 if p.is_dir() else 0o644)


def check_case(name: str, work: Path, want: bytes, policy: Any) -> tuple[str, str | None]:
    """``(outcome, broken rule or None)``: outcome is ``resumed`` or ``refused: <line>``."""
    d = work / name
    _paused_run(d, policy)
    CASES[name](d)
    try:
        try:
            strokeagent.resume(d, pause=False)
        except StrokeAgentError as e:
            outcome = f"refused: {e}"
            if len(str(e).splitlines()) != 1:
                return outcome, "the error is not one line"
            if name in MUST_RESUME:
                return outcome, "this case must resume"
        except Exception as e:
            return f"traceback: {type(e).__name__}: {e}", "a traceback"
        else:
            outcome = "resumed"
            if (d / "final.png").read_bytes() != want:
                return outcome, "final.png differs from an uninterrupted run's"
        if _status(d) == "running":
            return outcome, 'run.json was left saying "running"'
        return outcome, None
    finally:
        _writable_again(d)


def check_corruption(work: Path) -> dict[str, Any]:
    """Every case: the counts, and the broken rules as ``(case, outcome, rule)``."""
    policy = load_policy(SHAPES)
    want = strokeagent.generate(PROMPT, policy=policy, out=work / "reference", seed=3)
    want_bytes = (work / "reference" / "final.png").read_bytes()
    assert want.final_image is not None
    stats: dict[str, Any] = {"cases": 0, "resumed": 0, "refused": 0, "broken": []}
    for name in CASES:
        if name.startswith("read_only") and os.geteuid() == 0:
            continue  # root writes anyway; test_a_read_only_run_folder_is_one_line covers it
        outcome, broken = check_case(name, work, want_bytes, policy)
        stats["cases"] += 1
        stats["resumed" if outcome == "resumed" else "refused"] += 1
        if broken:
            stats["broken"].append((name, outcome[:300], broken))
    return stats


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    work = tmp_path_factory.mktemp("corruption")
    policy = load_policy(SHAPES)
    strokeagent.generate(PROMPT, policy=policy, out=work / "reference", seed=3)
    return work, (work / "reference" / "final.png").read_bytes(), policy


@pytest.mark.parametrize("name", list(CASES))
def test_a_damaged_run_folder_is_one_line_or_a_correct_resume(reference, name):
    work, want, policy = reference
    if name.startswith("read_only") and os.geteuid() == 0:
        pytest.skip("root can write a read-only folder; see test_a_read_only_run_folder_is_one_line")
    outcome, broken = check_case(name, work, want, policy)
    assert broken is None, (outcome, broken)


def test_a_read_only_run_folder_is_one_line(reference, monkeypatch):
    """As a read-only folder looks to a process that cannot write it (root can, so it is faked for root too)."""
    import strokeagent.core.store as store

    work, _, policy = reference
    d = work / "faked_read_only"
    _paused_run(d, policy)
    before = (d / "run.json").read_bytes()

    def refuse(path: Path) -> tuple[int, str]:
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(store, "_create_temp", refuse)
    with pytest.raises(StrokeAgentError, match="cannot write .*run.json: Permission denied") as caught:
        strokeagent.resume(d, pause=False)
    assert len(str(caught.value).splitlines()) == 1
    assert (d / "run.json").read_bytes() == before  # still "paused": nothing could be written, nothing was


def test_a_damaged_database_is_one_line_from_the_cli_and_the_advice_works(reference):
    work, want, policy = reference
    d = work / "cli_garbage"
    _paused_run(d, policy)
    (d / "checkpoints.sqlite").write_bytes(os.urandom(8192))
    env = {**os.environ, "NO_COLOR": "1", "COLUMNS": "400"}
    r = subprocess.run([sys.executable, "-m", "strokeagent.cli", "resume", str(d)], capture_output=True, text=True,
                       env=env, timeout=120)  # fmt: skip
    assert r.returncode == 2, r.stderr
    (line,) = r.stderr.strip().splitlines()
    assert line.startswith("error: the checkpoint database") and "move it aside" in line
    assert _status(d) == "failed"
    shutil.move(d / "checkpoints.sqlite", work / "aside.sqlite")  # as the line advises
    strokeagent.resume(d, pause=False)
    assert (d / "final.png").read_bytes() == want
