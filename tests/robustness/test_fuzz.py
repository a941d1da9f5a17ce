"""Fuzzed prompts and policy files: each is a run (no stage over the time budget) or one clear line, never a traceback.

The generators are seeded, so a failure names a case that replays; ``benchmarks/robustness.py`` runs them at
full size (10,000 prompts, 1,000 policy files).
"""

from __future__ import annotations

import asyncio
import random
import shutil
import time
import tomllib
from pathlib import Path
from typing import Any

import pytest

from strokeagent.core.policy import load_policy, policy_from_tables
from strokeagent.errors import StrokeAgentError
from strokeagent.runs.api import astream

#: No stage may take longer than this on a fuzzed prompt (the layout search is budgeted).
STAGE_BUDGET_S = 2.0
ROOT = Path(__file__).resolve().parents[2]

WORDS = (
    (
        "a red apple left of a blue cup; two cats above three dogs, a green bench right of an orange clock and "
        "a purple umbrella below four yellow bananas near the giant tiny black white pizza behind the car"
    )
    .replace(",", "")
    .replace(";", "")
    .split()
)
ODD = ["\u0000", "\u200b", "\u202e", "\ufeff", "\U0001f34e", "\u00e9", "\u0301", "\t", "\n", "\r\n", "\\", '"',
       "'", "{", "}", "[", "]", "<b>", "%s", "{0}", "$(rm)", "日本", "ﷺ", "\ud800", "\udcff", "\uffff", " "]  # fmt: skip
SEPARATORS = [" ", ", ", " and ", " left of ", " right of ", " above ", " below ", " on ", " with "]


def fuzzed_prompt(rng: random.Random) -> str:
    """One prompt: word soup with relations and numbers, odd characters, very long or repeated structure."""
    shape = rng.random()
    if shape < 0.15:  # many objects, many relations: what made the layout search exponential
        n = rng.randint(10, 60)
        return "".join(f"{rng.choice(['a', 'two', 'three', str(rng.randint(0, 99))])} {rng.choice(WORDS)}"
                       f"{rng.choice(SEPARATORS)}" for _ in range(n))  # fmt: skip
    if shape < 0.25:
        return "".join(rng.choice(ODD) for _ in range(rng.randint(0, 40)))
    if shape < 0.3:
        return rng.choice(WORDS) * rng.randint(1, 1200)
    if shape < 0.35:
        return "".join(chr(rng.randint(1, 0x10FFFF)) for _ in range(rng.randint(1, 80)))
    parts = []
    for _ in range(rng.randint(1, 25)):
        r = rng.random()
        parts.append(
            rng.choice(WORDS) if r < 0.7 else rng.choice(ODD) if r < 0.85 else str(rng.randint(-9, 10**6))
        )
        parts.append(rng.choice(SEPARATORS))
    return "".join(parts)


async def _run_prompt(prompt: str, policy: Any, out: Path) -> tuple[str, float]:
    """``("ran" | "refused: <line>", slowest stage seconds)``; anything else escapes as the bug it is."""
    slowest = 0.0
    try:
        async for event in astream(prompt, policy, seed=0, out=out):
            slowest = max(slowest, event.seconds)
    except StrokeAgentError as e:
        assert len(str(e).splitlines()) == 1, repr(str(e))
        return f"refused: {e}", slowest
    return "ran", slowest


def planning_policy() -> Any:
    """The sketch planner (the prompt parser and the layout search) with a cheap draft: one step."""
    tables = {"name": "sketch-plan", "loop": {"order": ["plan", "draft"], "max_steps": 1},
              "stages": {"plan": {"kind": "sketch.plan"}, "draft": {"kind": "testing.draft", "size": 32}}}  # fmt: skip
    return policy_from_tables(tables)


def check_prompts(n: int, seed: int, work: Path, policy: Any = None) -> dict[str, Any]:
    """Run ``n`` fuzzed prompts; the counts, and the cases that broke a rule (as ``(prompt, what)``)."""
    policy = (
        planning_policy()
        if policy is None
        else load_policy(policy)
        if isinstance(policy, str | Path)
        else policy
    )
    rng = random.Random(seed)
    stats: dict[str, Any] = {"ran": 0, "refused": 0, "slow": [], "tracebacks": [], "slowest": 0.0}
    for i in range(n):
        prompt = fuzzed_prompt(rng)
        out = work / f"p{i}"
        try:
            outcome, slowest = asyncio.run(_run_prompt(prompt, policy, out))
        except Exception as e:  # a bug: keep the case
            stats["tracebacks"].append((prompt, f"{type(e).__name__}: {e}"))
            continue
        finally:
            shutil.rmtree(out, ignore_errors=True)
        stats["ran" if outcome == "ran" else "refused"] += 1
        stats["slowest"] = max(stats["slowest"], slowest)
        if slowest > STAGE_BUDGET_S:
            stats["slow"].append((prompt, f"{slowest:.2f} s"))
    return stats


# -- policy files -----------------------------------------------------------------------------------

KINDS = ["sketch.plan", "sketch.draft", "sketch.reflect", "sketch.refine", "testing.plan", "testing.draft",
         "testing.reflect", "testing.refine", "head.plan", "head.reflect", "nope.kind", "os:system",
         "strokeagent.testing:ShapesDrafter", ""]  # fmt: skip
STAGE_NAMES = ["plan", "draft", "reflect", "refine", "note", "critique", "x y", "", "1"]
OPTIONS = ["size", "delay", "steps", "fail_rounds", "samples", "select", "role", "backend", "seed", "mistakes",
           "kind", "unrecorded", "show_canvas"]  # fmt: skip


def _value(rng: random.Random, depth: int = 0) -> Any:
    r = rng.random()
    if r < 0.2:
        return rng.choice([0, 1, -1, 2, 3, 16, 17, 64, 30000, 10**9, 2**63 - 1, -(2**63)])
    if r < 0.3:
        return rng.choice([0.0, 0.25, -1.5, 1e308, float("inf"), float("nan")])
    if r < 0.4:
        return rng.choice([True, False])
    if r < 0.65:
        return rng.choice(
            [*STAGE_NAMES, *KINDS, "planner", "fixed", "x" * 300, "../sketch.toml", "ablations/full"]
        )
    if r < 0.8 and depth < 3:
        return [_value(rng, depth + 1) for _ in range(rng.randint(0, 4))]
    if depth < 3:
        return {
            rng.choice(OPTIONS + STAGE_NAMES[:4]): _value(rng, depth + 1) for _ in range(rng.randint(0, 3))
        }
    return "x"


def _stage(rng: random.Random) -> Any:
    if rng.random() < 0.1:
        return _value(rng)
    table: dict[str, Any] = {}
    if rng.random() < 0.9:
        table["kind"] = rng.choice(KINDS)
    for _ in range(rng.randint(0, 3)):
        table[rng.choice(OPTIONS)] = _value(rng, 1)
    return table


def fuzzed_tables(rng: random.Random) -> dict[str, Any]:
    """A policy's tables: mostly right in shape, with one to a few parts wrong in type or value."""
    base = tomllib.loads((ROOT / "tests" / "policies" / "shapes.toml").read_text())
    if rng.random() < 0.5:
        base = tomllib.loads((ROOT / "policies" / "sketch.toml").read_text())
    for _ in range(rng.randint(1, 4)):
        r = rng.random()
        if r < 0.15:
            base[rng.choice(["name", "description", "extends", "loop", "stages", "bogus"])] = _value(rng)
        elif r < 0.45:
            loop = base.setdefault("loop", {}) if isinstance(base.get("loop"), dict) else {}
            base["loop"] = loop
            loop[rng.choice(["order", "max_steps", "max_refines", "stop", "extra"])] = (
                rng.sample(STAGE_NAMES, rng.randint(0, 5)) if rng.random() < 0.4 else _value(rng)
            )
        else:
            stages = base["stages"] if isinstance(base.get("stages"), dict) else {}
            base["stages"] = stages
            name = rng.choice(STAGE_NAMES)
            if rng.random() < 0.5 and isinstance(stages.get(name), dict):
                stages[name][rng.choice(OPTIONS)] = _value(rng, 1)
            else:
                stages[name] = _stage(rng)
    return base


def to_toml(value: Any, key: str = "") -> str:
    """Tables as TOML text (inline, so any shape is writable); values TOML cannot hold are left out."""

    def v(x: Any) -> str | None:
        if isinstance(x, bool):
            return "true" if x else "false"
        if isinstance(x, int):
            return str(x)
        if isinstance(x, float):
            return (
                "nan"
                if x != x
                else ("inf" if x == float("inf") else "-inf" if x == -float("inf") else repr(x))
            )
        if isinstance(x, str):
            return '"' + x.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'
        if isinstance(x, list):
            return "[" + ", ".join(s for s in map(v, x) if s is not None) + "]"
        if isinstance(x, dict):
            return "{" + ", ".join(f'"{k}" = {s}' for k, s in ((k, v(y)) for k, y in x.items()) if s) + "}"
        return None

    return "".join(f'"{k}" = {v(x)}\n' for k, x in value.items() if v(x) is not None)


def fuzzed_policy_file(rng: random.Random, folder: Path, i: int) -> Path:
    """A policy file: fuzzed tables as TOML, sometimes garbled as bytes or in another encoding."""
    path = folder / f"fuzz{i}.toml"
    text = to_toml(fuzzed_tables(rng))
    r = rng.random()
    if r < 0.05:
        data = text.encode(rng.choice(["utf-16", "utf-32", "utf-8-sig"]))
    elif r < 0.1:
        data = text.encode("utf-8") + bytes(rng.randint(0x80, 0xFF) for _ in range(3))
    elif r < 0.15:
        data = text.encode()[: rng.randint(0, len(text))]
    elif r < 0.2:
        b = bytearray(text.encode())
        for _ in range(rng.randint(1, 8)):
            if b:
                b[rng.randrange(len(b))] = rng.randrange(256)
        data = bytes(b)
    elif r < 0.23:
        depth = rng.choice([50, 500, 5000])
        data = (text + "deep = " + "[" * depth + "]" * depth + "\n").encode()
    else:
        data = text.encode()
    path.write_bytes(data)
    return path


def check_policies(n: int, seed: int, work: Path, run_loaded: int = 0) -> dict[str, Any]:
    """Load ``n`` fuzzed policy files (and run the first ``run_loaded`` that load, on one prompt)."""
    rng = random.Random(seed)
    work.mkdir(parents=True, exist_ok=True)
    stats: dict[str, Any] = {
        "loaded": 0,
        "refused": 0,
        "ran": 0,
        "tracebacks": [],
        "slow": [],
        "slowest": 0.0,
    }
    for i in range(n):
        path = fuzzed_policy_file(rng, work, i)
        try:
            policy = load_policy(path)
        except StrokeAgentError as e:
            stats["refused"] += 1
            if len(str(e).splitlines()) != 1:
                stats["tracebacks"].append((path.read_bytes()[:300], f"not one line: {e!r}"))
            continue
        except Exception as e:
            stats["tracebacks"].append((path.read_bytes()[:300], f"{type(e).__name__}: {e}"))
            continue
        stats["loaded"] += 1
        if stats["ran"] < run_loaded:
            stats["ran"] += 1
            out = work / f"r{i}"
            try:
                outcome, slowest = asyncio.run(_run_prompt("a red apple left of a blue cup", policy, out))
            except Exception as e:
                stats["tracebacks"].append((path.read_bytes()[:300], f"running: {type(e).__name__}: {e}"))
                continue
            finally:
                shutil.rmtree(out, ignore_errors=True)
            stats["slowest"] = max(stats["slowest"], slowest)
            if slowest > STAGE_BUDGET_S:
                stats["slow"].append((path.read_bytes()[:300], f"{slowest:.2f} s"))
    return stats


# -- the tests -----------------------------------------------------------------------------------


def test_fuzzed_prompts_run_or_are_refused_in_one_line_and_no_stage_is_slow(tmp_path):
    start = time.perf_counter()
    stats = check_prompts(300, seed=1, work=tmp_path)
    assert stats["tracebacks"] == [] and stats["slow"] == [], stats
    assert stats["ran"] and stats["refused"], stats  # both kinds of prompt were made
    assert time.perf_counter() - start < 60


def test_fuzzed_policy_files_load_or_are_refused_in_one_line(tmp_path):
    stats = check_policies(300, seed=2, work=tmp_path, run_loaded=5)
    assert stats["tracebacks"] == [] and stats["slow"] == [], stats["tracebacks"][:5]
    assert stats["loaded"] and stats["refused"], stats


@pytest.mark.parametrize(
    "text",
    [
        "extends = 5\n",
        "stages = [1]\n",
        '[loop]\norder = ["draft"]\n[stages]\ndraft = "sketch.draft"\n',
        'name = true\n[loop]\norder = ["draft"]\n[stages.draft]\nkind = "testing.draft"\n',
        "description = 5\n",
        '[loop]\norder = [["draft"]]\n',
        "loop = 3\n",
        '[loop]\norder = ["draft"]\n[stages.draft]\nkind = 5\n',
        '[loop]\norder = ["draft"]\n[stages.draft]\nkind = "sketch.draft"\nsize = 30000\n',
        '[loop]\norder = ["draft"]\n[stages.draft]\nkind = "testing.draft"\nsamples = true\n',
        '[loop]\norder = ["draft"]\n[stages.draft]\nkind = "testing.draft"\nselect = 3\n',
        '[loop]\norder = ["draft"]\n[stages.draft]\nkind = "testing.draft"\nrole = 3\n',
        '[loop]\norder = ["draft"]\nmax_steps = 1e308\n[stages.draft]\nkind = "testing.draft"\n',
        "x = " + "[" * 3000 + "]" * 3000 + "\n",
        "x = " + "{a = " * 3000 + "1" + "}" * 3000 + "\n",
    ],
)
def test_the_policy_files_that_gave_tracebacks_are_one_line(tmp_path, text):
    path = tmp_path / "p.toml"
    path.write_text(text)
    with pytest.raises(StrokeAgentError) as caught:
        load_policy(path)
    assert len(str(caught.value).splitlines()) == 1


@pytest.mark.parametrize(
    "data", ['name = "x"\n'.encode("utf-16"), b'name = "\xff\xfe"\n', b"\xef\xbb\xbfname = 1\n"]
)
def test_policy_files_that_are_not_utf8_text_are_one_line(tmp_path, data):
    path = tmp_path / "p.toml"
    path.write_bytes(data)
    with pytest.raises(StrokeAgentError) as caught:
        load_policy(path)
    assert len(str(caught.value).splitlines()) == 1
