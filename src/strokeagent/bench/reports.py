"""A bench's reports: summary.json, table.md, table.csv, chart.png and index.html.

    >>> write_reports(Path("bench/demo"), records, summary)   # doctest: +SKIP

The table reads like a GenEval results table: one row per policy, the
categories in GenEval's order, ``Overall`` last, rows from the lowest overall
score to the highest (the strongest policy last, as papers list their own
method), the best figure of each column in bold. A second table says where the
time went: milliseconds per image in each stage, steps and refine rounds.
``chart.png`` shows the same two things; ``index.html`` shows every policy's
image of each prompt side by side, with the critic's verdict.

The chart needs matplotlib (the ``bench`` extra). Without it every other report
is still written, ``index.html`` says how to get the chart, and
``chart_note()`` is the one line a command prints about it.
"""

from __future__ import annotations

import csv
import html
import io
import json
from pathlib import Path
from typing import Any

from strokeagent import extras
from strokeagent.bench.summary import stage_columns
from strokeagent.core.store import atomic_write

TAG_LABELS = {
    "single_object": "Single obj.",
    "two_object": "Two obj.",
    "counting": "Counting",
    "colors": "Colors",
    "position": "Position",
    "color_attr": "Color attri.",
}
# Okabe–Ito: distinguishable with every common colour-vision deficiency.
PALETTE = ["#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#000000"]
#: The method's stages keep their colours from chart to chart; any other stage takes the next free one.
STAGE_COLORS = {"plan": "#56B4E9", "draft": "#CC79A7", "reflect": "#E69F00", "refine": "#009E73"}
EXTRA_STAGE_COLORS = ["#0072B2", "#D55E00", "#F0E442", "#999999", "#000000", "#882255", "#44AA99", "#DDCC77"]


def stages_of(summary: dict[str, Any]) -> list[str]:
    """Every stage any policy of the bench timed, in loop order (a user's stage between the ones it ran between)."""
    return stage_columns([list(p["seconds_per_image"]) for p in summary["policies"]])


def stage_colors(stages: list[str]) -> dict[str, str]:
    spare = [c for c in EXTRA_STAGE_COLORS if c not in STAGE_COLORS.values()]
    out: dict[str, str] = {}
    for stage in stages:
        out[stage] = (
            STAGE_COLORS.get(stage) or spare[len([s for s in out if s not in STAGE_COLORS]) % len(spare)]
        )
    return out


def label(tag: str) -> str:
    return TAG_LABELS.get(tag, tag.replace("_", " ").capitalize())


def ranked(summary: dict[str, Any]) -> list[dict[str, Any]]:
    """Policies from the lowest overall score to the highest; ties keep the bench's order."""
    return sorted(summary["policies"], key=lambda p: p["overall"])


def _accuracy_rows(summary: dict[str, Any]) -> tuple[list[str], list[list[Any]]]:
    header = ["Policy", *(label(t) for t in summary["categories"]), "Overall"]
    rows = []
    for p in ranked(summary):
        cats = [p["categories"].get(t, {}).get("accuracy") for t in summary["categories"]]
        rows.append([p["policy"], *cats, p["overall"]])
    return header, rows


def markdown_table(summary: dict[str, Any]) -> str:
    """The accuracy table and the timing table, in GitHub markdown."""
    header, rows = _accuracy_rows(summary)
    # Bold the best of a column, unless every policy ties there (then nothing stands out).
    best = []
    for i in range(len(header)):
        values = {r[i] for r in rows if r[i] is not None}
        best.append(max(values) if len(values) > 1 else None)

    def cell(value: Any, i: int) -> str:
        if value is None:
            return "–"
        text = f"{value:.3f}"
        return f"**{text}**" if value == best[i] else text

    lines = [
        "| " + " | ".join(header) + " |",
        "| --- | " + " | ".join("---:" for _ in header[1:]) + " |",
    ]
    lines += [
        "| " + " | ".join([f"`{r[0]}`", *(cell(v, i + 1) for i, v in enumerate(r[1:]))]) + " |" for r in rows
    ]
    stages = stages_of(summary)
    lines += [
        "",
        "| Policy | Loop | " + " | ".join(f"{s} ms" for s in stages) + " | total ms | steps | refines |",
        "| --- | --- | " + " | ".join("---:" for _ in stages) + " | ---: | ---: | ---: |",
    ]
    for p in ranked(summary):
        ms = [
            f"{p['seconds_per_image'][s] * 1000:.1f}" if s in p["seconds_per_image"] else "–" for s in stages
        ]
        lines.append(
            f"| `{p['policy']}` | {p['loop']} | "
            + " | ".join(ms)
            + f" | {p['total_seconds_per_image'] * 1000:.1f} | {p['steps']:.2f} | {p['refines']:.2f} |"
        )
    images = summary["prompts"] * len(summary["seeds"])
    lines += [
        "",
        f"{summary['prompts']} prompts × {len(summary['seeds'])} seed(s) = {images} images per policy; "
        f"critic: {summary['critic']}. Accuracy is GenEval's: per category the fraction of images judged "
        "correct; Overall is the mean of the categories. Times are inside the stages, per image.",
    ]
    return "\n".join(lines) + "\n"


def csv_table(summary: dict[str, Any]) -> str:
    header, rows = _accuracy_rows(summary)
    stages = stages_of(summary)
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow([*header, *(f"{s}_ms" for s in stages), "total_ms", "steps", "refines", "images"])
    by_name = {p["policy"]: p for p in summary["policies"]}
    for r in rows:
        p = by_name[r[0]]
        writer.writerow(
            [
                r[0],
                *("" if v is None else f"{v:.4f}" for v in r[1:]),
                *(f"{p['seconds_per_image'].get(s, 0.0) * 1000:.2f}" for s in stages),
                f"{p['total_seconds_per_image'] * 1000:.2f}",
                f"{p['steps']:.3f}",
                f"{p['refines']:.3f}",
                p["images"],
            ]
        )
    return buf.getvalue()


def chart_note() -> str | None:
    """One line saying the chart is skipped and how to get it, or ``None`` when matplotlib is installed."""
    return extras.optional_note("bench", "chart.png")


def can_chart() -> bool:
    return not extras.missing("bench")


def write_chart(path: Path, summary: dict[str, Any]) -> None:
    """Accuracy by category (grouped bars, Overall emphasised) beside milliseconds per image by stage.

    Needs matplotlib (``pip install 'strokeagent[bench]'``); ``write_reports`` skips the chart without it.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    policies = ranked(summary)
    tags = summary["categories"]
    groups = [*(label(t) for t in tags), "Overall"]
    fig, (acc, time_ax) = plt.subplots(
        1, 2, figsize=(13, 4.8), gridspec_kw={"width_ratios": [2.6, 1]}, constrained_layout=True
    )
    width = 0.8 / max(len(policies), 1)
    for k, p in enumerate(policies):
        values = [p["categories"].get(t, {}).get("accuracy", 0.0) for t in tags] + [p["overall"]]
        xs = [g + (k - (len(policies) - 1) / 2) * width for g in range(len(groups))]
        bars = acc.bar(xs, values, width * 0.92, label=p["policy"], color=PALETTE[k % len(PALETTE)])
        last = bars[-1]
        acc.annotate(
            f"{p['overall']:.2f}",
            (last.get_x() + last.get_width() / 2, last.get_height()),
            xytext=(0, 3),
            textcoords="offset points",
            ha="center",
            rotation=90,
            fontsize=8,
            fontweight="bold",
        )
    acc.axvspan(len(groups) - 1.5, len(groups) - 0.5, color="#00000008", zorder=0)
    acc.set_xticks(range(len(groups)), groups)
    acc.set_ylim(0, 1.2)
    acc.set_ylabel("accuracy (GenEval rules)")
    acc.set_title(
        f"Accuracy by category — {summary['prompts']} prompts × {len(summary['seeds'])} seed(s)", loc="left"
    )
    acc.grid(axis="y", alpha=0.3)
    acc.spines[["top", "right"]].set_visible(False)
    # Below the axes, so it never covers a bar.
    acc.legend(
        frameon=False,
        ncols=min(len(policies), 4),
        loc="upper center",
        bbox_to_anchor=(0.5, -0.08),
        fontsize=9,
    )
    names = [p["policy"] for p in policies]
    left = [0.0] * len(policies)
    stages = stages_of(summary)
    colors = stage_colors(stages)
    for stage in stages:
        ms = [p["seconds_per_image"].get(stage, 0.0) * 1000 for p in policies]
        if any(ms):
            time_ax.barh(names, ms, left=left, label=stage, color=colors[stage])
            left = [a + b for a, b in zip(left, ms, strict=True)]
    time_ax.set_xlabel("ms per image, inside the stages")
    time_ax.set_title("Where the time goes", loc="left")
    time_ax.legend(frameon=False, fontsize=9, loc="lower right")
    time_ax.spines[["top", "right"]].set_visible(False)
    time_ax.grid(axis="x", alpha=0.3)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=120, metadata={"Software": None})
    plt.close(fig)
    atomic_write(path, buf.getvalue())


_CSS = """
body{font:14px/1.45 system-ui,-apple-system,Segoe UI,sans-serif;margin:0;background:#f6f5f2;color:#222}
header{padding:20px 28px;background:#1f2430;color:#fff}header h1{margin:0 0 4px;font-size:20px}
header p{margin:0;opacity:.75}main{padding:16px 28px}
table{border-collapse:collapse;background:#fff}th,td{padding:6px 10px;border-bottom:1px solid #eee;vertical-align:top}
th{position:sticky;top:0;background:#fff;text-align:left}
.summary td{text-align:right}.summary td:first-child{text-align:left}
.prompt{max-width:260px}.tag{color:#777;font-size:12px}
figure{margin:0;width:200px}figure img{width:200px;border-radius:4px;border:3px solid #ccc;display:block}
figure.ok img{border-color:#1b7f3b}figure.bad img{border-color:#b3261e}
figcaption{font-size:12px;color:#555;white-space:pre-line}
.ok b{color:#1b7f3b}.bad b{color:#b3261e}
.controls{margin:14px 0}
"""

_JS = """
function filt(){const t=document.getElementById('tag').value,d=document.getElementById('dis').checked;
for(const r of document.querySelectorAll('tr.sample')){
 r.style.display=((!t||r.dataset.tag===t)&&(!d||r.dataset.split==='1'))?'':'none';}}
"""


def index_html(records: list[dict[str, Any]], summary: dict[str, Any], chart: bool = True) -> str:
    """Each prompt (and seed) a row; each policy's final image in a column, framed green or red.

    ``chart=False``: no chart.png beside it; the page says how to get one instead of showing a broken image.
    """
    policies = [p["policy"] for p in ranked(summary)]
    by_key = {(r["policy"], r["index"], r["seed"]): r for r in records}
    header, rows = _accuracy_rows(summary)
    e = html.escape
    out = [
        f"<!doctype html><meta charset=utf-8><title>strokeagent bench</title><style>{_CSS}</style><script>{_JS}</script>",
        f"<header><h1>Bench: {len(policies)} policies × {summary['prompts']} prompts × {len(summary['seeds'])} seed(s)</h1>",
        f"<p>critic: {e(str(summary['critic']))}</p></header><main>",
        '<table class="summary"><tr>' + "".join(f"<th>{e(h)}</th>" for h in header) + "</tr>",
    ]
    for r in rows:
        cells = [f"<td><code>{e(r[0])}</code></td>"] + [
            f"<td>{'–' if v is None else f'{v:.3f}'}</td>" for v in r[1:]
        ]
        out.append("<tr>" + "".join(cells) + "</tr>")
    if chart:
        out.append("</table><p><img src=chart.png alt='accuracy chart' style='max-width:100%'></p>")
    else:
        out.append(
            f"</table><p class=tag>No chart: matplotlib is not installed ({e(extras.install_hint('bench'))}).</p>"
        )
    options = "".join(f"<option value='{e(t)}'>{e(label(t))}</option>" for t in summary["categories"])
    out.append(
        f"<div class=controls>category <select id=tag onchange=filt()><option value=''>all</option>{options}</select> "
        "<label><input type=checkbox id=dis onchange=filt()> only prompts where the policies disagree</label></div>"
    )
    out.append(
        "<table><tr><th>prompt</th>" + "".join(f"<th><code>{e(p)}</code></th>" for p in policies) + "</tr>"
    )
    samples = sorted({(r["index"], r["seed"]) for r in records})
    for index, seed in samples:
        mine = [by_key.get((p, index, seed)) for p in policies]
        first = next(r for r in mine if r is not None)
        split = len({r["correct"] for r in mine if r is not None}) > 1
        cells = []
        for r in mine:
            if r is None:
                cells.append("<td></td>")
                continue
            cls, mark = ("ok", "✓ correct") if r["correct"] else ("bad", "✗ wrong")
            run = r["filename"].rsplit("/", 1)[0]
            cells.append(
                f"<td><figure class={cls}><a href='{e(run)}/index.html'><img loading=lazy src='{e(r['filename'])}' "
                f"alt='{e(r['policy'])}'></a><figcaption><b>{mark}</b> · {r['steps']} step(s)"
                f"{chr(10) + e(r['reason']) if r['reason'] else ''}</figcaption></figure></td>"
            )
        out.append(
            f"<tr class=sample data-tag='{e(first['tag'])}' data-split='{int(split)}'>"
            f"<td class=prompt>{e(first['prompt'])}<div class=tag>{e(label(first['tag']))} · seed {seed}</div></td>"
            + "".join(cells)
            + "</tr>"
        )
    out.append("</table></main>")
    return "\n".join(out) + "\n"


def write_reports(
    out: Path, records: list[dict[str, Any]], summary: dict[str, Any], chart: bool = True
) -> None:
    """Every report of a bench into ``out`` (``samples.jsonl`` is the runner's).

    ``chart.png`` only where matplotlib is installed (``chart_note()`` says so otherwise); the rest always.
    """
    atomic_write(out / "summary.json", json.dumps(summary, indent=2) + "\n")
    atomic_write(out / "table.md", markdown_table(summary))
    atomic_write(out / "table.csv", csv_table(summary))
    chart = chart and can_chart()
    if chart:
        write_chart(out / "chart.png", summary)
    atomic_write(out / "index.html", index_html(records, summary, chart=chart))
