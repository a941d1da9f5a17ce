"""Best-of-K: run K whole trajectories of one prompt and keep the one a critic scores highest.

    >>> result = best_of("two apples and a cup", "sketch", k=4, critic="sketch")   # doctest: +SKIP
    >>> result.chosen, result.final                                                  # doctest: +SKIP
    (2, PosixPath('runs/20261126-101500-s0-1a2b3c-best-of-4/final.png'))

This is test-time scaling over trajectories; a stage table's ``samples = 4`` with
``select`` is its per-stage counterpart. A best-of lives in one folder::

    OUT/
      best_of.json    the prompt, seed, K, the critic's table, the policy's tables, and per candidate:
                      its run folder, seed, status, score, correct, denoising steps, final image;
                      the chosen index, and the denoising steps all K candidates spent
      k0/ … k{K-1}/   ordinary run folders (each resumable on its own: ``strokeagent resume OUT/k1``)
      final.png       a copy of the chosen candidate's final image
      index.html      every candidate's final image with its score, the chosen one marked

Candidate ``i`` runs with the seed ``candidate_seed(seed, i)``, derived stably from
``(seed, i)``, so candidate 0 is not a plain run of ``seed``. The candidates run one
after another; each is scored as it finishes and its score is kept, so a resumed
best-of does not judge an image twice. The highest score wins, ties go to the lowest
index: the same inputs choose the same candidate, with the same bytes. A best-of
killed or paused at any point continues with ``resume_best_of(OUT)`` (``strokeagent
resume OUT``) to what an uninterrupted one gives.
"""

from __future__ import annotations

import base64
import html
import json
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from strokeagent.core.policy import Policy, policy_from_tables
from strokeagent.core.stages import Canvas, stage_seed
from strokeagent.core.state import Trajectory
from strokeagent.core.store import ArtifactStore, atomic_write, new_output_folder
from strokeagent.critics import Critic, build_critic
from strokeagent.errors import PolicyError, RunError
from strokeagent.runs.api import (
    RunFolder,
    _as_policy,
    _run_sync,
    agenerate,
    aresume_to_end,
    check_prompt,
    new_run_id,
)

MAX_K = 16
SUMMARY_FILE = "best_of.json"
FORMAT = 1
#: Candidate seeds are kept below 2**31, as the data builder's run seeds are: any seed consumer takes them.
SEED_LIMIT = 2**31
#: What a candidate is: not started yet, under way (or killed), stopped at a pause, stopped by an error, done.
STATUSES = ("pending", "running", "paused", "failed", "finished")

Progress = Callable[["BestOfCandidate"], None]


def candidate_seed(seed: int, index: int) -> int:
    """The run seed of candidate ``index``: stable across processes and resumes."""
    return stage_seed(seed, 0, "best_of", index) % SEED_LIMIT


def is_best_of(path: str | Path) -> bool:
    """Whether ``path`` is a best-of folder (it has a ``best_of.json``)."""
    return (Path(path) / SUMMARY_FILE).is_file()


def default_out(seed: int, k: int) -> Path:
    return Path("runs") / f"{new_run_id(seed)}-best-of-{k}"


@dataclass(frozen=True)
class BestOfCandidate:
    """One of the K trajectories: its run folder (``run``, relative to the best-of), seed, and verdict."""

    index: int
    run: str
    seed: int
    status: str = "pending"
    score: float | None = None
    correct: bool | None = None
    denoising_steps: int = 0
    final_image: str | None = None  # the SHA-256 of its final image, once finished

    def to_json(self) -> dict[str, Any]:
        return {
            "index": self.index, "run": self.run, "seed": self.seed, "status": self.status, "score": self.score,
            "correct": self.correct, "denoising_steps": self.denoising_steps, "final_image": self.final_image,
        }  # fmt: skip

    @classmethod
    def from_json(cls, data: Any, index: int, where: str) -> BestOfCandidate:
        if not isinstance(data, dict):
            raise RunError(f"{where}: candidate {index} is not a table; the best-of folder is damaged")
        try:
            cand = cls(
                index=data["index"], run=data["run"], seed=data["seed"], status=data["status"],
                score=data.get("score"), correct=data.get("correct"),
                denoising_steps=data.get("denoising_steps", 0), final_image=data.get("final_image"),
            )  # fmt: skip
        except KeyError as e:
            raise RunError(f"{where}: candidate {index} has no {e.args[0]!r}; the best-of folder is damaged") from None
        if cand.index != index or cand.run != f"k{index}" or cand.status not in STATUSES:
            raise RunError(f"{where}: candidate {index} is not k{index} or has an unknown status; the folder is damaged")
        return cand

    def line(self, chosen: bool = False) -> str:
        """``k1  seed 444839388  score 1.000  correct   0 denoising steps  <- chosen``."""
        head = f"{self.run:<4} seed {self.seed:<10}"
        if self.score is None:
            return f"{head}  {self.status}"
        verdict = "correct" if self.correct else "wrong"
        mark = "  <- chosen" if chosen else ""
        return f"{head}  score {self.score:.3f}  {verdict:<7}  {self.denoising_steps} denoising steps{mark}"


@dataclass(frozen=True)
class BestOf:
    """What a best-of made: its candidates, the chosen index (None until every candidate has finished)."""

    out: Path
    prompt: str
    seed: int
    k: int
    critic: dict[str, Any]
    candidates: tuple[BestOfCandidate, ...]
    chosen: int | None
    denoising_steps: int  # all K candidates together: what the final image cost
    status: str  # "finished", or "paused" while a candidate is paused

    @property
    def final(self) -> Path | None:
        return self.out / "final.png" if self.chosen is not None else None

    @property
    def report(self) -> Path:
        return self.out / "index.html"

    def run_dir(self, index: int) -> Path:
        return self.out / self.candidates[index].run

    def trajectory(self, index: int | None = None) -> Trajectory:
        """Candidate ``index``'s trajectory (default: the chosen one's)."""
        if index is None:
            if self.chosen is None:
                raise RunError(f"the best-of in {self.out} has not chosen yet; resume it first")
            index = self.chosen
        return RunFolder(self.run_dir(index)).read_trajectory()

    def lines(self) -> list[str]:
        """The summary a person reads: one line per candidate, then the choice and where its files are."""
        lines = [c.line(chosen=c.index == self.chosen) for c in self.candidates]
        kind = self.critic.get("kind", "?")
        if self.chosen is None:
            waiting = sum(c.status != "finished" for c in self.candidates)
            lines += [
                f"best-of:    {self.out} (paused: {waiting} of {self.k} candidates unfinished)",
                f"continue:   strokeagent resume {self.out}",
            ]
            return lines
        best = self.candidates[self.chosen]
        lines += [
            f"best-of:    {self.out} ({self.k} candidates, critic {kind}, {self.denoising_steps} denoising steps in all)",
            f"chosen:     {best.run} (score {best.score:.3f})",
            f"final:      {self.out / 'final.png'}",
            f"page:       {self.out / 'index.html'}",
        ]
        return lines


# -- starting and resuming ------------------------------------------------------------------------


def _check_k(k: Any) -> int:
    if not isinstance(k, int) or isinstance(k, bool) or not 1 <= k <= MAX_K:
        raise RunError(f"best-of K must be a whole number from 1 to {MAX_K}, got {k!r}")
    return k


def _critic_table(critic: Any) -> dict[str, Any]:
    """The table that rebuilds ``critic``: a kind name, a table, or a critic object made from an importable class."""
    from strokeagent.core.registry import reference_of

    if isinstance(critic, str):
        if not critic.strip():
            raise RunError("best-of critic: the critic kind is empty; name one, e.g. sketch")
        return {"kind": critic}
    if isinstance(critic, dict):
        try:
            return json.loads(json.dumps(critic))
        except (TypeError, ValueError):
            raise RunError(f"best-of critic: the table {critic!r} is not JSON; give options as plain values") from None
    table, why = reference_of(critic)
    if table is None:
        raise RunError(
            f"best-of critic: {type(critic).__name__} cannot be recorded for resume ({why}); give a kind or a table"
        )
    return table


def _build_critic(table: Any, *, trust_code: bool = True) -> Critic:
    """The critic of ``table`` (or a critic object, checked); every problem is one ``RunError`` line.
    A folder's code references are built only with ``trust_code``."""
    from strokeagent.core.registry import CRITIC_KINDS

    where = "best-of critic"
    try:
        if not trust_code and isinstance(table, dict) and isinstance(table.get("kind"), str):
            CRITIC_KINDS.factory(table["kind"], where, trust_code=False)  # refuses module:Factory before building
        return build_critic(table, where=where)
    except PolicyError as e:
        raise RunError(str(e)) from None


def _summary(
    prompt: str,
    seed: int,
    k: int,
    critic: dict[str, Any],
    policy_name: str,
    policy_tables: dict[str, Any],
    pause_before: list[str],
    candidates: list[BestOfCandidate],
    status: str,
    chosen: int | None = None,
    error: str | None = None,
) -> dict[str, Any]:
    # Built in one order, with nothing that depends on when or where it ran: same inputs, same bytes.
    return {
        "format": FORMAT,
        "prompt": prompt,
        "seed": seed,
        "k": k,
        "critic": critic,
        "policy": policy_name,
        "policy_tables": policy_tables,
        "pause_before": pause_before,
        "status": status,
        "error": error,
        "chosen": chosen,
        "denoising_steps": sum(c.denoising_steps for c in candidates),
        "candidates": [c.to_json() for c in candidates],
    }


def _write_summary(out: Path, info: dict[str, Any]) -> None:
    atomic_write(out / SUMMARY_FILE, json.dumps(info, indent=2) + "\n")


def _read_summary(out: Path) -> dict[str, Any]:
    if not out.is_dir():
        raise RunError(f"{out} is not a folder; give the folder that `strokeagent run --best-of K` wrote")
    path = out / SUMMARY_FILE
    if not path.is_file():
        hint = "; it is a single run: `strokeagent resume` it as one" if (out / "run.json").is_file() else ""
        raise RunError(f"{out} is not a best-of folder (no {SUMMARY_FILE}){hint}")
    try:
        info = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise RunError(f"{path} cannot be read ({e}); the best-of folder is damaged") from None
    if not isinstance(info, dict) or info.get("format") != FORMAT:
        raise RunError(f"{path} is not a best-of summary this strokeagent can read (format {FORMAT})")
    for key, kind in (("prompt", str), ("seed", int), ("critic", dict), ("policy_tables", dict),
                      ("pause_before", list), ("candidates", list)):  # fmt: skip
        if not isinstance(info.get(key), kind):
            raise RunError(f"{path}: {key!r} is missing or not a {kind.__name__}; the best-of folder is damaged")
    _check_k(info.get("k"))
    if len(info["candidates"]) != info["k"]:
        raise RunError(f"{path}: k is {info['k']} but it lists {len(info['candidates'])} candidates; it is damaged")
    return info


async def abest_of(
    prompt: str,
    policy: Policy | str | Path | None = None,
    *,
    k: int,
    critic: Any = "sketch",
    seed: int = 0,
    out: str | Path | None = None,
    pause_before: tuple[str, ...] = (),
    progress: Progress | None = None,
) -> BestOf:
    """Run ``policy`` (default: the bundled ``sketch``) on ``prompt`` K times and keep the best by ``critic``.

    ``critic`` is a critic kind (``"sketch"``, ``"geneval"`` ...), a table ``{"kind": ..., **options}``,
    or a critic object of an importable class. ``out`` is the best-of folder to create (default
    ``runs/<run id>-best-of-K``). ``pause_before`` pauses every candidate there; the best-of then
    stops as ``paused`` and ``aresume_best_of`` continues it. ``progress(candidate)`` is called as each
    candidate starts (status ``running``) and as it settles.
    """
    prompt = check_prompt(prompt)
    k = _check_k(k)
    table = _critic_table(critic)
    judge = _build_critic(table) if isinstance(critic, str | dict) else _build_critic(critic)
    policy = _as_policy(policy)
    out = Path(out) if out is not None else default_out(seed, k)
    candidates = [BestOfCandidate(i, f"k{i}", candidate_seed(seed, i)) for i in range(k)]
    info = _summary(prompt, seed, k, table, policy.name, policy.record(), list(pause_before), candidates, "running")
    with new_output_folder(out, what="best-of", taken="is not empty; choose another --out or remove it",
                           error=RunError):  # fmt: skip
        out.mkdir(parents=True, exist_ok=True)
        _write_summary(out, info)
    return await _complete(out, info, judge, policy=policy, pause=True, trust_code=False, progress=progress)


def best_of(
    prompt: str,
    policy: Policy | str | Path | None = None,
    *,
    k: int,
    critic: Any = "sketch",
    seed: int = 0,
    out: str | Path | None = None,
    pause_before: tuple[str, ...] = (),
    progress: Progress | None = None,
) -> BestOf:
    """The synchronous twin of ``abest_of``, for scripts and notebooks."""
    return _run_sync(abest_of(prompt, policy, k=k, critic=critic, seed=seed, out=out, pause_before=pause_before,
                              progress=progress))  # fmt: skip


async def aresume_best_of(
    out: str | Path,
    *,
    policy: Policy | None = None,
    pause: bool = True,
    trust_code: bool = False,
    progress: Progress | None = None,
) -> BestOf:
    """Continue a best-of that was killed, failed or paused: every unfinished candidate, then the choice.

    Candidates resume as ``aresume`` does (``policy``, ``pause`` and ``trust_code`` as there); one that
    never started runs with the best-of's recorded policy (or ``policy``). The result is what an
    uninterrupted best-of gives.
    """
    out = Path(out)
    info = _read_summary(out)
    if info.get("status") == "finished":
        raise RunError(
            f"the best-of in {out} is already finished (its choice is {out / 'final.png'}); "
            "start a new one with `strokeagent run --best-of K`"
        )
    judge = _build_critic(info["critic"], trust_code=trust_code)
    return await _complete(out, info, judge, policy=policy, pause=pause, trust_code=trust_code, progress=progress)


def resume_best_of(
    out: str | Path,
    trust_code: bool = False,
    *,
    policy: Policy | None = None,
    pause: bool = True,
    progress: Progress | None = None,
) -> BestOf:
    """The synchronous twin of ``aresume_best_of``."""
    return _run_sync(aresume_best_of(out, policy=policy, pause=pause, trust_code=trust_code, progress=progress))


# -- the candidates -------------------------------------------------------------------------------

#: What a candidate folder holds when its run was killed before its first checkpoint: safe to start over.
_STARTED_FILES = {"run.json", "trajectory.json"}


def _restartable(run_dir: Path) -> bool:
    """Whether ``run_dir`` holds only what a run writes before its first checkpoint (nothing a stage made)."""
    for entry in run_dir.iterdir():
        if entry.name == "images" and entry.is_dir():
            if any(entry.iterdir()):
                return False
        elif not (entry.name in _STARTED_FILES or (entry.name.startswith(".") and entry.name.endswith(".tmp"))):
            return False
    return True


def _clear(run_dir: Path) -> None:
    for entry in run_dir.iterdir():
        if entry.is_dir():
            entry.rmdir()  # images/, empty (checked by _restartable)
        else:
            entry.unlink()


def _same_run(run_dir: Path, prompt: str, cand: BestOfCandidate) -> bool:
    """Whether ``run_dir``'s run.json (if it got that far) asks for this candidate's prompt and seed."""
    if not (run_dir / "run.json").is_file():
        return True
    try:
        info = json.loads((run_dir / "run.json").read_text())
    except (OSError, ValueError):
        return True  # half of what the run wrote first: nothing of value
    return isinstance(info, dict) and info.get("prompt") == prompt and info.get("seed") == cand.seed


def _candidate_state(run_dir: Path, prompt: str, cand: BestOfCandidate) -> str | None:
    """The status of the candidate's run folder; None when it has to start (afresh)."""
    if not run_dir.exists():
        return None
    if not run_dir.is_dir():
        raise RunError(f"{run_dir} is not a folder; move it away, then resume the best-of again")
    has_checkpoint = (run_dir / "checkpoints.sqlite").is_file() and (run_dir / "run.json").is_file()
    if not has_checkpoint:
        if _restartable(run_dir) and _same_run(run_dir, prompt, cand):
            _clear(run_dir)  # killed before its first checkpoint: it made nothing, and starts over with its seed
            return None
        raise RunError(f"{run_dir} is not a run folder of this best-of; move it away, then resume the best-of again")
    info = RunFolder.open(run_dir).read_run()
    if info.get("prompt") != prompt or info.get("seed") != cand.seed:
        raise RunError(
            f"{run_dir} holds another run (not {prompt!r} with seed {cand.seed}); move it away, then resume again"
        )
    return str(info.get("status"))


def _canvas(run_dir: Path, traj: Trajectory) -> Canvas:
    assert traj.final_image is not None
    return Canvas(ArtifactStore(run_dir / "images").open(traj.final_image), dict(traj.final_image.meta))


async def _score(judge: Critic, kind: str, run_dir: Path, traj: Trajectory) -> tuple[float, bool]:
    try:
        verdict = await judge.score(_canvas(run_dir, traj), traj.prompt)
    except (ValueError, TypeError, FileNotFoundError) as e:
        raise RunError(
            f"the {kind} critic cannot score {run_dir}: {e}; start the best-of again with a --critic for these images"
        ) from None
    return float(verdict.score), bool(verdict.correct)


async def _complete(
    out: Path,
    info: dict[str, Any],
    judge: Critic,
    *,
    policy: Policy | None,
    pause: bool,
    trust_code: bool,
    progress: Progress | None,
) -> BestOf:
    """Bring every candidate as far as it goes, score the finished ones, choose, and write the folder."""
    where = str(out / SUMMARY_FILE)
    prompt, k = info["prompt"], info["k"]
    kind = str(info["critic"].get("kind", "critic"))
    candidates = [BestOfCandidate.from_json(c, i, where) for i, c in enumerate(info["candidates"])]
    pause_before = tuple(info["pause_before"]) if pause else ()
    fresh_policy = policy

    def write(status: str, chosen: int | None = None, error: str | None = None) -> None:
        _write_summary(out, _summary(prompt, info["seed"], k, info["critic"], info["policy"], info["policy_tables"],
                                     info["pause_before"], candidates, status, chosen, error))  # fmt: skip

    def tell(cand: BestOfCandidate) -> None:
        if progress is not None:
            progress(cand)

    for i, cand in enumerate(candidates):
        run_dir = out / cand.run
        state = _candidate_state(run_dir, prompt, cand)
        try:
            if state != "finished":
                tell(replace(cand, status="running", score=None, correct=None))
                if state is None:
                    if fresh_policy is None:
                        try:
                            fresh_policy = policy_from_tables(info["policy_tables"], where=f"{where} policy",
                                                              trust_code=trust_code)  # fmt: skip
                        except PolicyError as e:
                            raise RunError(f"cannot rebuild the best-of's policy: {e}") from None
                    traj = await agenerate(prompt, fresh_policy, seed=cand.seed, out=run_dir,
                                           pause_before=pause_before)  # fmt: skip
                else:
                    traj = await aresume_to_end(run_dir, policy=policy, pause=pause, trust_code=trust_code)
            else:
                traj = RunFolder(run_dir).read_trajectory()
        except RunError as e:
            candidates[i] = replace(cand, status="failed", score=None, correct=None)
            write("failed", error=f"{cand.run}: {e}")
            raise RunError(f"best-of candidate {cand.run}: {e} (or `strokeagent resume {out}` for the whole best-of)"
                           ) from e  # fmt: skip
        steps = traj.denoising_steps()
        if traj.final_image is None:
            cand = replace(cand, status="paused", score=None, correct=None, denoising_steps=steps, final_image=None)
        else:
            sha = traj.final_image.sha256
            kept = cand.status == "finished" and cand.final_image == sha and cand.score is not None
            try:
                score, correct = (cand.score, bool(cand.correct)) if kept else await _score(judge, kind, run_dir, traj)
            except RunError as e:
                candidates[i] = replace(cand, status="finished", score=None, correct=None, denoising_steps=steps,
                                        final_image=sha)  # fmt: skip
                write("failed", error=str(e))
                raise
            cand = replace(cand, status="finished", score=score, correct=correct, denoising_steps=steps,
                           final_image=sha)  # fmt: skip
        candidates[i] = cand
        write("running")
        tell(cand)

    chosen = None
    if all(c.status == "finished" for c in candidates):
        # Highest score; ties go to the lowest index (max keeps the first of equals).
        chosen = max(range(k), key=lambda i: candidates[i].score)  # type: ignore[arg-type,return-value]
        atomic_write(out / "final.png", (out / candidates[chosen].run / "final.png").read_bytes())
    status = "finished" if chosen is not None else "paused"
    atomic_write(out / "index.html", render_best_of(out, prompt, info, candidates, chosen))
    write(status, chosen)
    return BestOf(
        out=out, prompt=prompt, seed=info["seed"], k=k, critic=info["critic"], candidates=tuple(candidates),
        chosen=chosen, denoising_steps=sum(c.denoising_steps for c in candidates), status=status,
    )  # fmt: skip


# -- index.html -----------------------------------------------------------------------------------

_CSS = """
body{font:15px/1.45 system-ui,-apple-system,Segoe UI,sans-serif;margin:0;background:#f6f5f2;color:#222}
header{padding:24px 32px;background:#1f2430;color:#fff}
header h1{margin:0 0 6px;font-size:22px;font-weight:600}
header .meta{opacity:.75;font-size:13px}
main{padding:20px 32px;display:flex;flex-wrap:wrap;gap:18px;align-items:flex-start}
.cand{background:#fff;border-radius:8px;box-shadow:0 1px 4px #0001;padding:12px;width:240px;border:3px solid transparent}
.cand.chosen{border-color:#1b7f3b}
.cand img{width:240px;border-radius:4px;display:block}
.cand a{color:inherit;text-decoration:none}
.cand .cap{font-size:13px;margin-top:6px}
.badge{background:#1b7f3b;color:#fff;border-radius:4px;padding:1px 6px;font-size:12px;font-weight:600}
.ok{color:#1b7f3b;font-weight:600}.bad{color:#b3261e;font-weight:600}
.none{height:240px;display:flex;align-items:center;justify-content:center;color:#777;background:#eee;border-radius:4px}
"""


def render_best_of(
    out: Path, prompt: str, info: dict[str, Any], candidates: list[BestOfCandidate], chosen: int | None
) -> str:
    """``index.html``: each candidate's final image (embedded), its score, the chosen one marked, each linking
    to its own film strip."""
    cards = []
    for c in candidates:
        final = out / c.run / "final.png"
        if c.status == "finished" and final.is_file():
            data = base64.b64encode(final.read_bytes()).decode()
            picture = f'<img alt="{c.run} final image" src="data:image/png;base64,{data}">'
        else:
            picture = f'<div class="none">{html.escape(c.status)}</div>'
        if c.score is None:
            verdict = html.escape(c.status)
        else:
            ok = '<span class="ok">correct</span>' if c.correct else '<span class="bad">wrong</span>'
            verdict = f"score {c.score:.3f} · {ok}"
        badge = ' <span class="badge">chosen</span>' if c.index == chosen else ""
        cards.append(
            f'<div class="cand{" chosen" if c.index == chosen else ""}"><a href="{c.run}/index.html">{picture}'
            f'<div class="cap"><b>{c.run}</b>{badge} · seed {c.seed}<br>{verdict}<br>'
            f"{c.denoising_steps} denoising steps</div></a></div>"
        )
    kind = html.escape(str(info["critic"].get("kind", "?")))
    total = sum(c.denoising_steps for c in candidates)
    state = f"chose k{chosen}" if chosen is not None else "not chosen yet (unfinished candidates)"
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>strokeagent best-of · {html.escape(prompt[:60])}</title>
<style>{_CSS}</style></head><body>
<header><h1>{html.escape(prompt)}</h1>
<div class="meta">best of {len(candidates)} · policy {html.escape(str(info["policy"]))} · critic {kind} ·
seed {info["seed"]} · {total} denoising steps in all · {state}</div></header>
<main>{"".join(cards)}</main></body></html>
"""


__all__ = [
    "MAX_K",
    "BestOf",
    "BestOfCandidate",
    "abest_of",
    "aresume_best_of",
    "best_of",
    "candidate_seed",
    "is_best_of",
    "resume_best_of",
]
