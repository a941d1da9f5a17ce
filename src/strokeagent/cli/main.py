"""The ``strokeagent`` command.

    $ strokeagent run "a red apple left of a blue cup" --seed 0
    $ strokeagent resume runs/20261126-101500-s0-1a2b3c
    $ strokeagent view runs/20261126-101500-s0-1a2b3c
    $ strokeagent policies

Errors a user can fix print one line, ``error: ...``, and exit with status 2.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from strokeagent.errors import StrokeAgentError

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Process-driven image generation: plan, draft, reflect, refine.",
)
err = Console(stderr=True, highlight=False)
out = Console(highlight=False)

STAGE_STYLE = {"plan": "cyan", "draft": "magenta", "reflect": "yellow", "refine": "green"}


def _fail(message: str, code: int = 2) -> typer.Exit:
    err.print(f"[bold red]error:[/] {escape(message)}", soft_wrap=True)
    return typer.Exit(code)


def _detail(event) -> str:  # noqa: ANN001 - a StageEvent
    step = event.trajectory.steps[event.step]
    if event.stage == "plan" and step.plan:
        return step.plan.instruction
    if event.stage == "reflect" and step.reflections:
        r = step.reflections[-1]
        return "ok" if r.ok else "; ".join(r.conflicts)
    if event.stage in ("draft", "refine") and step.image:
        return f"image {step.image.sha256[:10]}"
    return ""


def _follow(events: AsyncIterator, quiet: bool):  # noqa: ANN202
    """Drive a run's events, showing live progress (step, stage, elapsed) on stderr."""

    async def go():  # noqa: ANN202
        last = None
        with err.status("starting…", spinner="dots") as status:
            async for event in events:
                last = event
                status.update(f"step {event.step + 1} · {event.stage} · {event.elapsed:.2f} s")
                if not quiet and event.seconds:
                    style = STAGE_STYLE.get(event.stage, "white")
                    err.print(
                        f"  step {event.step + 1}  [{style}]{event.stage:<7}[/] {event.seconds * 1000:8.1f} ms  "
                        f"{escape(_detail(event))}",
                        soft_wrap=True,
                    )
        return last

    return asyncio.run(go())


def _summarise(last, run_dir: Path) -> None:  # noqa: ANN001
    if last is None or last.trajectory.final_image is None:
        where = "before the first stage" if last is None else f"after step {last.step + 1} · {last.stage}"
        err.print(f"[yellow]paused[/] {where}")
        out.print(f"run folder: {run_dir}\ncontinue:   strokeagent resume {run_dir}")
        return
    traj = last.trajectory
    for note in traj.notes:
        err.print(f"[yellow]note:[/] {escape(note)}", soft_wrap=True)
    seconds = sum(traj.stage_seconds().values())
    err.print(
        f"[bold green]done[/]: {len(traj.steps)} step(s), {seconds * 1000:.0f} ms in stages, {last.elapsed:.2f} s in all"
    )
    out.print(
        f"run folder: {run_dir}\nfinal:      {run_dir / 'final.png'}\nfilm strip: {run_dir / 'index.html'}"
    )


@app.command()
def run(
    prompt: Annotated[str, typer.Argument(help='What to paint, e.g. "a red apple left of a blue cup".')],
    policy: Annotated[
        str,
        typer.Option(
            "--policy",
            "-p",
            envvar="STROKEAGENT_POLICY",
            help="A policy file, or a bundled name (see `strokeagent policies`). Set STROKEAGENT_POLICY=process "
            "to make the unified-model policy the default once its model is configured.",
        ),
    ] = "sketch",
    seed: Annotated[int, typer.Option(help="Same seed, same bytes.")] = 0,
    out_dir: Annotated[
        Path | None, typer.Option("--out", "-o", help="The run folder to create (default runs/<run id>).")
    ] = None,
    pause_before: Annotated[
        list[str] | None,
        typer.Option("--pause-before", help="Stop before this stage (repeatable); continue with `resume`."),
    ] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Only the summary.")] = False,
) -> None:
    """Run a policy on a prompt and write a run folder (trajectory.json, images/, index.html)."""
    from strokeagent.core.policy import load_policy
    from strokeagent.runs.api import astream, check_prompt, new_run_id

    try:
        check_prompt(prompt)
        loaded = load_policy(policy)
        run_dir = out_dir if out_dir is not None else Path("runs") / new_run_id(seed)
        last = _follow(
            astream(prompt, loaded, seed=seed, out=run_dir, pause_before=tuple(pause_before or ())), quiet
        )  # type: ignore[arg-type]
    except StrokeAgentError as e:
        raise _fail(str(e)) from None
    except KeyboardInterrupt:
        err.print("[yellow]interrupted[/]: every finished stage is kept")
        if out_dir is not None:
            out.print(f"continue:   strokeagent resume {out_dir}")
        raise typer.Exit(130) from None
    _summarise(last, run_dir)


@app.command()
def resume(
    run_dir: Annotated[Path, typer.Argument(help="A run folder written by `strokeagent run`.")],
    no_pause: Annotated[
        bool, typer.Option("--no-pause", help="Drop the run's --pause-before stops.")
    ] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Only the summary.")] = False,
) -> None:
    """Continue a run that was killed, failed or paused, from its last finished stage."""
    from strokeagent.runs.api import aresume

    try:
        last = _follow(aresume(run_dir, pause=not no_pause), quiet)
    except StrokeAgentError as e:
        raise _fail(str(e)) from None
    _summarise(last, run_dir)


@app.command()
def view(run_dir: Annotated[Path, typer.Argument(help="A run folder.")]) -> None:
    """Print the path of a run's film strip (index.html)."""
    from strokeagent.runs.api import RunFolder

    try:
        folder = RunFolder.open(run_dir)
    except StrokeAgentError as e:
        raise _fail(str(e)) from None
    if not folder.report_file.is_file():
        raise _fail(f"{run_dir} has no index.html yet; it is written when a stage finishes")
    out.print(str(folder.report_file.resolve()))


@app.command()
def policies() -> None:
    """List the bundled policies, one line each."""
    from strokeagent.core.policy import list_bundled

    table = Table(show_header=True, header_style="bold", box=None, pad_edge=False)
    table.add_column("policy")
    table.add_column("what it does")
    for name, description in list_bundled():
        table.add_row(name, description)
    out.print(table)


@app.command()
def scene(
    prompt: Annotated[str, typer.Argument(help="A prompt to parse.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the scene graph as JSON.")] = False,
) -> None:
    """Parse a prompt into its scene graph (objects, counts, colours, relations)."""
    from strokeagent.runs.api import check_prompt
    from strokeagent.scene import parse_prompt

    try:
        graph = parse_prompt(check_prompt(prompt))
    except StrokeAgentError as e:
        raise _fail(str(e)) from None
    if as_json:
        out.print_json(graph.model_dump_json())
        return
    for o in graph.objects:
        attrs = " ".join(filter(None, [o.color, *o.attributes]))
        known = o.supercategory if o.known else "unknown noun, drawn as a labelled generic object"
        out.print(escape(f"{o.id}: {o.count} × {attrs + ' ' if attrs else ''}{o.cls}  ({known})"))
    for r in graph.relations:
        out.print(escape(f"{r.subject} {r.predicate} {r.object}"))
    if graph.background:
        out.print(escape(f"background: {graph.background}"))
    for note in graph.dropped:
        out.print(f"[yellow]dropped:[/] {escape(note)}")


# -- serve: backends as HTTP services -------------------------------------------

serve_app = typer.Typer(no_args_is_help=True, help="Run a backend as an HTTP service.")
app.add_typer(serve_app, name="serve")


@serve_app.command("image")
def serve_image(
    backend: Annotated[Path, typer.Option("--backend", "-b", help="A diffusers backend description (TOML).")],
    host: Annotated[
        str, typer.Option(help="Address to listen on; anything but loopback needs --token.")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8100,
    token: Annotated[
        str | None,
        typer.Option(
            envvar="STROKEAGENT_IMAGE_TOKEN", help="Bearer token clients must send (or set the variable)."
        ),
    ] = None,
) -> None:
    """Serve a diffusion backend over HTTP with request batching (POST /v1/images)."""
    from strokeagent.backends.service import serve_image_command

    try:
        serve_image_command(backend, host, port, token)
    except StrokeAgentError as e:
        raise _fail(str(e)) from None


def main() -> None:
    try:
        app()
    except BrokenPipeError:  # `strokeagent policies | head`
        sys.exit(0)


# -- benchmarks (strokeagent.bench) -----------------------------------------------------------------

_SUITE_HELP = (
    "A GenEval metadata .jsonl (GenEval's own file runs unchanged), a .txt prompt list (T2I-CompBench "
    "style: the file name is the category), a folder of them, or geneval:N[:SEED] to generate N rows "
    "in GenEval's proportions (the rows are saved as OUT/suite.jsonl, reusable as a suite)."
)


def _parse_seeds(seeds: str | None, images_per_prompt: int) -> list[int]:
    from strokeagent.bench import BenchError

    if seeds is None:
        if images_per_prompt < 1:
            raise BenchError(f"--images-per-prompt must be at least 1, got {images_per_prompt}")
        return list(range(images_per_prompt))
    try:
        return [int(s) for s in seeds.replace(",", " ").split()]
    except ValueError:
        raise BenchError(f"--seeds {seeds!r}: give whole numbers separated by commas, e.g. 0,1,2") from None


def _bench(
    suite: str,
    policy_refs: list[str],
    out_dir: Path | None,
    seeds: str | None,
    images_per_prompt: int,
    critic: str,
    detector: Path | None,
    clip: Path | None,
    concurrency: int,
) -> None:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from strokeagent.bench import BenchError
    from strokeagent.bench.runner import run_bench
    from strokeagent.bench.suites import load_bench_suite, suite_name

    try:
        items = load_bench_suite(suite)
        seed_list = _parse_seeds(seeds, images_per_prompt)
        critic_spec: str | dict = critic
        if critic == "geneval" or detector is not None:
            if detector is None:
                raise BenchError(
                    "--critic geneval needs --detector MODEL_DIR (an OWLv2, DETR or Mask2Former folder)"
                )
            critic_spec = {
                "kind": "geneval",
                "detector": str(detector),
                **({"clip": str(clip)} if clip else {}),
            }
        elif critic == "clip-score":
            if clip is None:
                raise BenchError("--critic clip-score needs --clip CLIP_DIR")
            critic_spec = {"kind": "clip-score", "clip": str(clip)}
        out_path = out_dir if out_dir is not None else Path("bench") / suite_name(suite)
        columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
        with Progress(*columns, console=err, transient=True) as progress:
            task = progress.add_task("bench", total=None)

            def on_sample(record: dict, done: int, total: int) -> None:
                progress.update(task, completed=done, total=total, description=f"{record['policy']:<22}")

            result = run_bench(
                items,
                policy_refs,
                out_path,
                seeds=seed_list,
                critic=critic_spec,
                concurrency=concurrency,
                on_sample=on_sample,
            )
    except StrokeAgentError as e:
        raise _fail(str(e)) from None
    except KeyboardInterrupt:
        err.print("[yellow]interrupted[/]: finished samples are kept; run the same command to continue")
        raise typer.Exit(130) from None
    out.print((result.out / "table.md").read_text(), markup=False, highlight=False, soft_wrap=True)
    kept = f" ({len(result.records) - result.ran} already done)" if result.ran < len(result.records) else ""
    err.print(f"[bold green]done[/]: {len(result.records)} samples{kept}")
    for name in ("samples.jsonl", "summary.json", "table.md", "table.csv", "chart.png", "index.html"):
        out.print(f"{name:<14} {result.out / name}")


_CRITIC_HELP = (
    "auto (the sketch critic for stroke canvases), sketch, geneval, clip-score, or a kind from an extension."
)


@app.command()
def bench(
    suite: Annotated[str, typer.Argument(help=_SUITE_HELP)],
    policy: Annotated[
        list[str], typer.Option("--policy", "-p", help="A policy file or bundled name; repeat for several.")
    ],
    out_dir: Annotated[
        Path | None,
        typer.Option("--out", "-o", help="The bench folder (default bench/<suite>); rerun to continue."),
    ] = None,
    images_per_prompt: Annotated[
        int, typer.Option(help="Images per prompt, seeds 0..N-1 (GenEval uses 4).")
    ] = 1,
    seeds: Annotated[
        str | None, typer.Option(help="Explicit seeds, e.g. 0,1,2 (instead of --images-per-prompt).")
    ] = None,
    critic: Annotated[str, typer.Option(help=_CRITIC_HELP)] = "auto",
    detector: Annotated[
        Path | None, typer.Option(help="Detector folder for --critic geneval (OWLv2, DETR, Mask2Former).")
    ] = None,
    clip: Annotated[
        Path | None, typer.Option(help="CLIP folder: colours for geneval, or the clip-score model.")
    ] = None,
    concurrency: Annotated[int, typer.Option(help="Samples running at once.")] = 4,
) -> None:
    """Run every prompt of SUITE through every policy; write scores, a table, a chart and index.html.

    Resumable: run the same command again after a kill and it continues where it stopped.
    """
    _bench(suite, policy, out_dir, seeds, images_per_prompt, critic, detector, clip, concurrency)


@app.command()
def ablate(
    suite: Annotated[str, typer.Argument(help=_SUITE_HELP)] = "geneval:200",
    ablations: Annotated[
        Path | None, typer.Option(help="A folder of policy files (default: the bundled policies/ablations).")
    ] = None,
    out_dir: Annotated[
        Path | None, typer.Option("--out", "-o", help="The bench folder (default bench/<suite>-ablate).")
    ] = None,
    images_per_prompt: Annotated[int, typer.Option(help="Images per prompt, seeds 0..N-1.")] = 1,
    seeds: Annotated[str | None, typer.Option(help="Explicit seeds, e.g. 0,1,2.")] = None,
    critic: Annotated[str, typer.Option(help=_CRITIC_HELP)] = "auto",
    detector: Annotated[Path | None, typer.Option(help="Detector folder for --critic geneval.")] = None,
    clip: Annotated[Path | None, typer.Option(help="CLIP folder for geneval colours or clip-score.")] = None,
    concurrency: Annotated[int, typer.Option(help="Samples running at once.")] = 4,
) -> None:
    """`bench` with the stage-order ablations as the policies: what each stage adds.

    Example: strokeagent ablate geneval:200 --out benchmarks/ablation
    """
    from strokeagent.bench.runner import ablation_policies
    from strokeagent.bench.suites import suite_name

    if ablations is None:
        refs = ablation_policies()
    else:
        refs = [str(p) for p in sorted(ablations.glob("*.toml"))]
        if not refs:
            raise _fail(f"{ablations} has no policy files (*.toml); give a folder of stage-order policies")
    out_path = out_dir if out_dir is not None else Path("bench") / f"{suite_name(suite)}-ablate"
    _bench(suite, refs, out_path, seeds, images_per_prompt, critic, detector, clip, concurrency)


# -- data and training (strokeagent.data, strokeagent.train) ---------------------------------------

data_app = typer.Typer(no_args_is_help=True, help="Build process-trajectory training data.")
app.add_typer(data_app, name="data")


@data_app.command("build")
def data_build(
    suite: Annotated[
        str, typer.Argument(help="A GenEval metadata .jsonl, or geneval:N for N generated rows.")
    ],
    out_dir: Annotated[Path, typer.Option("--out", "-o", help="The data set folder (resumed if it exists).")],
    policy: Annotated[
        str, typer.Option(help="The policy self-sampled for the conflict subset (its drafter: sketch.draft).")
    ] = "ablations/one_shot",
    seed: Annotated[int, typer.Option(help="Seed of every random choice.")] = 0,
    limit: Annotated[int | None, typer.Option(help="Use only the first N rows of the suite.")] = None,
    subsets: Annotated[
        str, typer.Option(help="Comma-separated: multi_turn, conflict, alignment.")
    ] = "multi_turn,conflict,alignment",
    shard_size: Annotated[int, typer.Option(help="Suite rows per shard.")] = 64,
    size: Annotated[int, typer.Option(help="Canvas side in pixels.")] = 256,
    edit_rate: Annotated[
        float, typer.Option(help="Share of multi-turn samples with a modify/swap/remove edit.")
    ] = 0.3,
    editor: Annotated[
        Path | None,
        typer.Option(
            help="An image backend (TOML) that can edit: renders the multi-turn steps instead of the stroke canvas."
        ),
    ] = None,
    editor_steps: Annotated[int, typer.Option(help="Denoising steps per edit with --editor.")] = 30,
) -> None:
    """Build the three subsets (multi-turn, conflict, alignment) as shards; run again to resume.

    Example: strokeagent data build geneval:553 --out data/process
    """
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn, TimeRemainingColumn

    from strokeagent.data import build_dataset

    columns = (
        "{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    )
    try:
        with Progress(*columns, console=err, transient=True) as bar:
            task = bar.add_task("prompts", total=None)
            manifest = build_dataset(
                suite, out_dir, policy=policy, seed=seed, limit=limit,
                subsets=[s.strip() for s in subsets.split(",") if s.strip()], shard_size=shard_size, size=size,
                edit_rate=edit_rate, editor=editor, editor_steps=editor_steps,
                progress=lambda done, total: bar.update(task, completed=done, total=total),
            )  # fmt: skip
    except StrokeAgentError as e:
        raise _fail(str(e)) from None
    counts: dict[str, int] = {}
    for shard in manifest["shards"].values():
        for name, n in shard["by_subset"].items():
            counts[name] = counts.get(name, 0) + n
    out.print(
        escape(
            f"{manifest['samples']} samples ({', '.join(f'{k} {v}' for k, v in counts.items())}) in {out_dir}"
        )
    )


@app.command("train")
def train_command(
    config: Annotated[Path, typer.Argument(help="A training config (TOML); see docs/training.md.")],
    steps: Annotated[int | None, typer.Option(help="Override the config's optimizer steps.")] = None,
    fresh: Annotated[bool, typer.Option("--fresh", help="Ignore checkpoints in the output folder.")] = False,
) -> None:
    """Fine-tune a unified model on process data; resumes from the newest checkpoint.

    Many GPUs: accelerate launch --multi_gpu -m strokeagent.cli train CONFIG (docs/training.md).
    """
    from strokeagent.train import load_config, train

    try:
        cfg = load_config(config, steps=steps)
        result = train(cfg, resume=not fresh, log=lambda line: err.print(escape(line)))
    except StrokeAgentError as e:
        raise _fail(str(e)) from None
    if result.main_process:
        out.print(
            escape(f"step {result.step}: checkpoint {result.checkpoint} ({result.tokens_per_s:.0f} tokens/s)")
        )


if __name__ == "__main__":
    main()
