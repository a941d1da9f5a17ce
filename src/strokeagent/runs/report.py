"""``index.html``: the film strip of a run, one row per step.

    >>> write_report(run_dir, trajectory, store)   # doctest: +SKIP

Each row shows a step's states in the order they were made, each captioned with
its stage (a user's edit says so): the plan (instruction and description), the draft, every
reflection with its conflicts, and every refinement. Images are the run's own files, linked by
their path in the folder (``images/<sha256>.png``): the page is written at the end of every run,
and embedding them copied each image's bytes through base64 into a page of megabytes (eight
runs finishing together spent most of their last half second on it); the folder goes anywhere
as one piece, and the page with it.
"""

from __future__ import annotations

import html
from pathlib import Path

from strokeagent.core.state import ImageRef, Note, Plan, Reflection, State, Step, Trajectory
from strokeagent.core.store import ArtifactStore, atomic_write

_CSS = """
body{font:15px/1.45 system-ui,-apple-system,Segoe UI,sans-serif;margin:0;background:#f6f5f2;color:#222}
header{padding:24px 32px;background:#1f2430;color:#fff}
header h1{margin:0 0 6px;font-size:22px;font-weight:600}
header .meta{opacity:.75;font-size:13px}
main{padding:20px 32px}
.final{display:flex;gap:24px;align-items:flex-start;margin-bottom:28px}
.final img{width:320px;border-radius:6px;box-shadow:0 2px 8px #0002}
.step{background:#fff;border-radius:8px;box-shadow:0 1px 4px #0001;margin:0 0 20px;padding:16px 20px}
.step h2{margin:0 0 10px;font-size:16px}
.strip{display:flex;flex-wrap:wrap;gap:14px;align-items:flex-start}
.frame{flex:0 0 auto;width:200px}
.frame img{width:200px;border-radius:4px;border:1px solid #ddd;display:block}
.frame .cap{font-size:12px;color:#555;margin-top:4px}
.text{flex:0 0 200px;font-size:13px}
.text .ins{font-weight:600}
.ok{color:#1b7f3b;font-weight:600}.bad{color:#b3261e;font-weight:600}
.conf{margin:4px 0 0;padding-left:18px;color:#b3261e}
.fix{color:#555;font-style:italic}
.samples{flex:0 0 auto;display:flex;flex-wrap:wrap;gap:6px;max-width:440px;align-items:flex-start}
.frame.small{width:100px}.frame.small img{width:100px}
table{border-collapse:collapse;font-size:13px}td,th{padding:2px 10px 2px 0;text-align:left}
"""


def _img(store: ArtifactStore, ref: ImageRef | None, caption: str, small: bool = False) -> str:
    cls = "frame small" if small else "frame"
    if ref is None or ref not in store:
        return f'<div class="{cls}"><div class="cap">{html.escape(caption)}: (missing)</div></div>'
    src = f"{store.root.name}/{store.path(ref).name}"  # index.html sits beside the store's folder
    return (
        f'<div class="{cls}"><img alt="{html.escape(caption)}" src="{src}" loading="lazy">'
        f'<div class="cap">{html.escape(caption)} · {ref.sha256[:10]}</div></div>'
    )


def _reflection(r: Reflection, caption: str) -> str:
    status = (
        '<span class="ok">ok</span>' if r.ok else f'<span class="bad">{len(r.conflicts)} conflict(s)</span>'
    )
    items = "".join(f"<li>{html.escape(c)}</li>" for c in r.conflicts)
    fix = (
        f'<div class="fix">→ {html.escape(r.corrected_instruction)}</div>' if r.corrected_instruction else ""
    )
    return f'<div class="text"><b>{html.escape(caption)}</b>: {status}<ul class="conf">{items}</ul>{fix}</div>'


def _candidates(store: ArtifactStore, state: State) -> str:
    if not state.candidates:
        return ""
    frames = "".join(
        _img(store, c.image, f"{'chosen' if c.chosen else 'sample'} {i + 1} · score {c.score:g}", small=True)
        for i, c in enumerate(state.candidates)
    )
    return f'<div class="samples"><div class="cap">{len(state.candidates)} samples, picked by {html.escape(state.candidates[0].why)}</div>{frames}</div>'


def _state(state: State, store: ArtifactStore, images_before: int) -> str:
    v = state.value
    caption = state.stage + {"user": " (your edit)", "loop": " (the prompt)"}.get(state.by, "")
    if isinstance(v, Plan):
        return (
            f'<div class="text"><b>{html.escape(caption)}</b><div class="ins">{html.escape(v.instruction)}</div>'
            f"<div>{html.escape(v.description)}</div>"
            f"{'<div class=ok>scene complete</div>' if v.done else ''}</div>"
        )
    if isinstance(v, Reflection):
        return _reflection(v, caption)
    if isinstance(v, Note):
        return f'<div class="text"><b>{html.escape(caption)}</b><div>{html.escape(v.text)}</div></div>'
    return _img(store, v, caption) + _candidates(store, state)


def _step(step: Step, store: ArtifactStore) -> str:
    parts = [_state(s, store, i) for i, s in enumerate(step.states)]
    return f'<section class="step"><h2>Step {step.index + 1}</h2><div class="strip">{"".join(parts)}</div></section>'


def render_report(traj: Trajectory, store: ArtifactStore) -> str:
    seconds = traj.stage_seconds()
    timing_rows = "".join(f"<tr><td>{s}</td><td>{t * 1000:.1f} ms</td></tr>" for s, t in seconds.items())
    final = (
        _img(store, traj.final_image, "final") if traj.final_image else "<p>(the run has not finished)</p>"
    )
    notes = "".join(f"<li>{html.escape(n)}</li>" for n in traj.notes)
    body = "".join(_step(s, store) for s in traj.steps)
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>strokeagent · {html.escape(traj.prompt[:60])}</title>
<style>{_CSS}</style></head><body>
<header><h1>{html.escape(traj.prompt)}</h1>
<div class="meta">policy {html.escape(traj.policy)} · seed {traj.seed} · {len(traj.steps)} step(s) ·
strokeagent {html.escape(traj.versions.get("strokeagent", "?"))}</div></header>
<main><div class="final">{final}<div><table><tr><th>stage</th><th>time</th></tr>{timing_rows}</table>
{f"<ul>{notes}</ul>" if notes else ""}</div></div>{body}</main></body></html>
"""


def write_report(run_dir: str | Path, traj: Trajectory, store: ArtifactStore) -> Path:
    path = Path(run_dir) / "index.html"
    atomic_write(path, render_report(traj, store))
    return path
