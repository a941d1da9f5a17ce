"""The ``strokeagent`` command.

    $ strokeagent run "a red apple left of a blue cup" --seed 0
    $ strokeagent resume runs/20261126-101500-s0-1a2b3c
    $ strokeagent view runs/20261126-101500-s0-1a2b3c
    $ strokeagent policies

Errors a user can fix print one line, ``error: ...``, and exit with status 2.
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
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

# Progress colours by what a stage made, so any stage name (a user's `critique`, `check_plan`) gets one.
PLAN_STYLE, INSPECT_STYLE, NOTE_STYLE, DRAW_STYLE, FIX_STYLE = "cyan", "yellow", "blue", "magenta", "green"


def _fail(message: str, code: int = 2) -> typer.Exit:
    err.print(f"[bold red]error:[/] {escape(message)}", soft_wrap=True)
    return typer.Exit(code)


def _state_text(state) -> tuple[str, str]:  # noqa: ANN001 - a State
    """``(style, one-line detail)`` of a state, by what it holds: a plan, an inspection, a note, an image."""
    from strokeagent.core.state import ImageRef, Note, Plan, Reflection

    value = state.value
    if isinstance(value, Plan):
        return PLAN_STYLE, value.instruction
    if isinstance(value, Reflection):
        return INSPECT_STYLE, "ok" if value.ok else "; ".join(value.conflicts)
    if isinstance(value, Note):
        return NOTE_STYLE, value.text
    if isinstance(value, ImageRef):
        extra = f" (best of {len(state.candidates)})" if state.candidates else ""
        return DRAW_STYLE, f"image {value.sha256[:10]}{extra}"
    return "white", ""


def _newest_state(step, stage: str):  # noqa: ANN001, ANN202 - a Step; its newest State made by `stage`
    return next((s for s in reversed(step.states) if s.stage == stage), None)


def _detail(event) -> tuple[str, str]:  # noqa: ANN001 - a StageEvent
    """The style and detail of what ``event.stage`` just made, whatever the stage is called."""
    steps = event.trajectory.steps
    if not 0 <= event.step < len(steps):
        return "white", ""
    step = steps[event.step]
    state = _newest_state(step, event.stage)
    if state is None:
        return "white", ""
    style, text = _state_text(state)
    earlier = step.states[: step.states.index(state)]
    if style == DRAW_STYLE and any(_state_text(s)[0] == DRAW_STYLE for s in earlier):
        style = FIX_STYLE  # an image after the step's first one: a fix
    return style, text


def _newest_work(step):  # noqa: ANN001, ANN202 - a Step; its newest state that is not a note
    from strokeagent.core.state import Note

    return next((s for s in reversed(step.states) if not isinstance(s.value, Note)), None)


def _user_edits(traj, count: int) -> list[tuple[int, object]]:  # noqa: ANN001
    """The newest ``count`` states written by the user, as ``(step index, state)``."""
    found = [(step.index, s) for step in traj.steps for s in step.states if s.by == "user"]
    return found[-count:] if count else []


def _follow(events: AsyncIterator, quiet: bool, edits: int = 0, stages: tuple[str, ...] = ()):  # noqa: ANN202
    """Drive a run's events, showing live progress (step, stage, elapsed) on stderr.

    Works for any stage name: each line shows what that stage made (a plan's instruction, an
    inspection's verdict, a note's text, an image). ``edits``: how many user edits the run was
    resumed with; they are shown once the run goes on from them. ``stages``: the names the run
    will show, to line the columns up from the first line.
    """

    async def go():  # noqa: ANN202
        last = None
        shown = -1  # timings already shown: the final event repeats the last stage, and is not shown again
        width = max((7, *map(len, stages)))
        with err.status("starting…", spinner="dots") as status:
            async for event in events:
                if last is None and edits and not quiet:
                    for index, state in _user_edits(event.trajectory, edits):
                        _, text = _state_text(state)
                        err.print(f"  step {index + 1}  [bold]{escape(state.stage)}[/] (your edit)  {escape(text)}",
                                  soft_wrap=True)  # fmt: skip
                last = event
                status.update(f"step {event.step + 1} · {escape(event.stage)} · {event.elapsed:.2f} s")
                timings = len(event.trajectory.timings)
                if timings == shown:
                    continue
                shown = timings
                if not quiet:
                    width = max(width, len(event.stage))
                    style, text = _detail(event)
                    err.print(
                        f"  step {event.step + 1}  [{style}]{escape(event.stage):<{width}}[/] "
                        f"{event.seconds * 1000:8.1f} ms  {escape(text)}",
                        soft_wrap=True,
                    )
        return last

    return asyncio.run(go())


def _stage_breakdown(traj) -> str:  # noqa: ANN001
    """``plan 1 ms · critique 0 ms · draft 12 ms ...``: every stage that ran, in the order it first ran."""
    return " · ".join(
        f"{escape(name)} {seconds * 1000:.0f} ms" for name, seconds in traj.stage_seconds().items()
    )


def _summarise(last, run_dir: Path) -> None:  # noqa: ANN001
    if last is None or last.trajectory.final_image is None:
        where = (
            "before the first stage" if last is None else f"after step {last.step + 1} · {escape(last.stage)}"
        )
        err.print(f"[yellow]paused[/] {where}")
        out.print(f"run folder: {run_dir}\ncontinue:   strokeagent resume {run_dir}", markup=False)
        step = last.trajectory.current_step if last is not None else None
        newest = _newest_work(step) if step is not None else None
        style = _state_text(newest)[0] if newest is not None else None
        if style == PLAN_STYLE:
            out.print(f'edit:       strokeagent resume {run_dir} --edit-plan "NEW INSTRUCTION"', markup=False)
        elif style == INSPECT_STYLE:
            out.print(f'edit:       strokeagent resume {run_dir} --edit-reflection "ok" (or what to fix)',
                      markup=False)  # fmt: skip
        return
    traj = last.trajectory
    for note in traj.notes:
        err.print(f"[yellow]note:[/] {escape(note)}", soft_wrap=True)
    seconds = sum(traj.stage_seconds().values())
    err.print(
        f"[bold green]done[/]: {len(traj.steps)} step(s), {seconds * 1000:.0f} ms in stages, {last.elapsed:.2f} s in all"
    )
    if traj.timings:
        err.print(f"  {_stage_breakdown(traj)}", soft_wrap=True)
    out.print(
        f"run folder: {run_dir}\nfinal:      {run_dir / 'final.png'}\nfilm strip: {run_dir / 'index.html'}",
        markup=False,
    )


@app.command()
def run(
    prompt: Annotated[str, typer.Argument(help='What to paint, e.g. "a red apple left of a blue cup".')],
    policy: Annotated[
        str | None,
        typer.Option(
            "--policy",
            "-p",
            envvar="STROKEAGENT_POLICY",
            help="A policy file, or a bundled name (default: the one `strokeagent policies` marks). Set "
            "STROKEAGENT_POLICY=process to make the unified-model policy the default once its model is configured.",
        ),
    ] = None,
    seed: Annotated[int, typer.Option(help="Same seed, same bytes.")] = 0,
    out_dir: Annotated[
        Path | None, typer.Option("--out", "-o", help="The run folder to create (default runs/<run id>).")
    ] = None,
    pause_before: Annotated[
        list[str] | None,
        typer.Option("--pause-before", help="Stop before this stage (repeatable); continue with `resume`."),
    ] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Only the summary.")] = False,
    best_of: Annotated[
        int | None,
        typer.Option(
            "--best-of",
            metavar="K",
            help="Run K whole trajectories (seeds derived from --seed) and keep the one --critic scores highest; "
            "writes OUT/k0 … OUT/k{K-1}, best_of.json, final.png and index.html.",
        ),
    ] = None,
    critic: Annotated[
        str | None,
        typer.Option(
            "--critic",
            help="With --best-of: the critic kind that scores each candidate's final image (default sketch).",
        ),
    ] = None,
) -> None:
    """Run a policy on a prompt and write a run folder (trajectory.json, images/, index.html).

    With --best-of K, run K candidates and keep the best by --critic (resume the folder as any run).
    """
    from strokeagent.core.policy import DEFAULT_POLICY, load_policy

    policy = policy or DEFAULT_POLICY
    from strokeagent.runs.api import astream, check_prompt, new_run_id

    if best_of is not None and best_of != 1:
        from strokeagent.runs.best_of import abest_of, default_out

        best_dir = out_dir if out_dir is not None else default_out(seed, best_of)

        def start(progress):  # noqa: ANN001, ANN202
            check_prompt(prompt)
            return abest_of(prompt, load_policy(policy), k=best_of, critic=critic or "sketch", seed=seed,
                            out=best_dir, pause_before=tuple(pause_before or ()), progress=progress)  # fmt: skip

        _drive_best_of(start, best_dir, f"best of {best_of}", quiet)
        return
    if critic is not None:
        raise _fail(f"--critic {critic} scores the candidates of --best-of K; add --best-of 2 (or more)")

    with _cli_errors("every finished stage is kept", out_dir):
        check_prompt(prompt)
        loaded = load_policy(policy)
        run_dir = out_dir if out_dir is not None else Path("runs") / new_run_id(seed)
        events = astream(prompt, loaded, seed=seed, out=run_dir, pause_before=tuple(pause_before or ()))
        last = _follow(events, quiet, stages=loaded.loop.order)  # type: ignore[arg-type]
    _summarise(last, run_dir)


@contextmanager
def _cli_errors(kept: str, resume: Path | None = None) -> Iterator[None]:
    """A user's error as one `error:` line (exit 2); Ctrl-C as what is kept and how to go on (exit 130)."""
    try:
        yield
    except StrokeAgentError as e:
        raise _fail(str(e)) from None
    except KeyboardInterrupt:
        err.print(f"[yellow]interrupted[/]: {kept}")
        if resume is not None:
            out.print(f"continue:   strokeagent resume {resume}", markup=False)
        raise typer.Exit(130) from None


def _drive_best_of(make, folder: Path, title: str, quiet: bool) -> None:  # noqa: ANN001 - make(progress) -> coroutine
    """Run or resume a best-of with a status line per candidate; one line on error, how to go on when interrupted."""

    def progress(candidate) -> None:  # noqa: ANN001 - a BestOfCandidate
        if candidate.status == "running":
            status.update(f"{title} · {candidate.run} · seed {candidate.seed}")
        elif not quiet:
            score = f" · score {candidate.score:.3f}" if candidate.score is not None else ""
            err.print(f"  candidate {candidate.run} {candidate.status}{score}", soft_wrap=True)

    with _cli_errors("every finished stage of every candidate is kept", folder), err.status(
        f"{title}: starting…", spinner="dots"
    ) as status:
        result = asyncio.run(make(progress))
    for line in result.lines():
        out.print(line, markup=False, soft_wrap=True)


def _recorded_order(run_dir: Path) -> tuple[str, ...]:
    """The stage order a run folder recorded (for lining up progress); empty if it cannot be read."""
    import json

    try:
        order = json.loads((run_dir / "run.json").read_text())["policy_tables"]["loop"]["order"]
        return tuple(str(n) for n in order)
    except (OSError, ValueError, KeyError, TypeError):
        return ()


@app.command()
def resume(
    run_dir: Annotated[Path, typer.Argument(help="A run folder written by `strokeagent run`.")],
    no_pause: Annotated[
        bool, typer.Option("--no-pause", help="Drop the run's --pause-before stops.")
    ] = False,
    edit_plan: Annotated[
        str | None,
        typer.Option(
            "--edit-plan",
            metavar="TEXT",
            help="Replace the newest plan's instruction with TEXT (recorded as your edit), then go on from it.",
        ),
    ] = None,
    edit_reflection: Annotated[
        str | None,
        typer.Option(
            "--edit-reflection",
            metavar="TEXT",
            help='Replace the newest inspection: "ok", or the conflict to fix (recorded as your edit).',
        ),
    ] = None,
    trust_code: Annotated[
        bool,
        typer.Option(
            "--trust-code",
            help="Build the run's module:Factory stages (code named by the run folder); only for folders you trust.",
        ),
    ] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Only the summary.")] = False,
) -> None:
    """Continue a run that was killed, failed or paused, from its last finished stage.

    At a pause, --edit-plan or --edit-reflection changes what the last stage said before the run goes on.
    """
    from strokeagent.runs.api import aresume
    from strokeagent.runs.best_of import aresume_best_of, is_best_of

    if is_best_of(run_dir):
        if edit_plan is not None or edit_reflection is not None:
            raise _fail(
                f"{run_dir} is a best-of; edit one candidate's run instead, e.g. "
                f"strokeagent resume {run_dir / 'k0'} --edit-plan TEXT, then resume {run_dir}"
            )

        def go_on(progress):  # noqa: ANN001, ANN202
            return aresume_best_of(run_dir, pause=not no_pause, trust_code=trust_code, progress=progress)

        _drive_best_of(go_on, run_dir, "best-of", quiet)
        return

    edits = (edit_plan is not None) + (edit_reflection is not None)
    with _cli_errors("every finished stage is kept", run_dir):
        events = aresume(
            run_dir,
            pause=not no_pause,
            trust_code=trust_code,
            edit_plan=edit_plan,
            edit_reflection=edit_reflection,
        )
        last = _follow(events, quiet, edits=edits, stages=_recorded_order(run_dir))
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
    """List the bundled policies, one line each, and say which is the default and why."""
    from strokeagent.core.policy import DEFAULT_POLICY, DEFAULT_POLICY_WHY, list_bundled

    table = Table(show_header=True, header_style="bold", box=None, pad_edge=False)
    table.add_column("policy")
    table.add_column("what it does")
    for name, description in list_bundled():
        table.add_row(f"{name} (default)" if name == DEFAULT_POLICY else name, description)
    out.print(table)
    out.print(f"default: {DEFAULT_POLICY}, {DEFAULT_POLICY_WHY} (STROKEAGENT_POLICY or --policy picks another)")


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


@app.command()
def judge(
    image: Annotated[Path, typer.Argument(help="A PNG (or other image) to judge from its pixels alone.")],
    prompt: Annotated[str, typer.Argument(help="The prompt it should show.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the verdict and what was seen as JSON.")] = False,
) -> None:
    """Judge an image's pixels by GenEval's rules for a prompt, and say what was seen."""
    import json

    from strokeagent.critics.judge_file import judge_file

    try:
        seen = judge_file(image, prompt)
    except StrokeAgentError as e:
        raise _fail(str(e)) from None
    if as_json:
        out.print(json.dumps(seen.to_json()), soft_wrap=True)
        return
    for f in seen.found:
        what = f.cls or "unrecognised shape"
        status = "counts" if f.counts else ("too little shows" if f.cls else "not counted")
        out.print(escape(f"{f.color} {what} at {tuple(f.box)}: match {f.iou:.2f}, {f.visible:.0%} visible, {status}"))
    if not seen.found:
        out.print("nothing drawn was found")
    out.print("correct" if seen.correct else escape("wrong: " + "; ".join(seen.reasons)))


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
    max_body_bytes: Annotated[int, typer.Option(help="Largest request body (413 above).")] = 20971520,
    max_prompt_chars: Annotated[int, typer.Option(help="Longest prompt, in characters (413).")] = 4000,
    max_pixels: Annotated[int, typer.Option(help="Largest width × height, asked or uploaded (413).")] = 4194304,
    max_steps: Annotated[int, typer.Option(help="Most denoising steps per request (413).")] = 100,
    max_pixel_steps: Annotated[
        int, typer.Option(help="Per-request budget of width × height × steps, so none starves the rest.")
    ] = 67108864,
    max_batch_size: Annotated[int, typer.Option(help="Most requests per pipeline batch.")] = 8,
) -> None:
    """Serve a diffusion backend over HTTP with request batching (the OpenAI Images API:
    POST /v1/images/generations and /v1/images/edits)."""
    from strokeagent.extras import command_refusal

    if (refusal := command_refusal("serve image")) is not None:
        raise _fail(refusal)
    from strokeagent.backends.service import Limits, serve_image_command

    try:
        limits = Limits(max_body_bytes, max_prompt_chars, max_pixels, max_steps, max_pixel_steps)
        serve_image_command(backend, host, port, token, max_batch_size=max_batch_size, limits=limits)
    except StrokeAgentError as e:
        raise _fail(str(e)) from None


def main() -> None:
    sys.argv[1:] = mlflow_uri_argument(sys.argv[1:])
    try:
        code = app(standalone_mode=False)
    except BrokenPipeError:  # `strokeagent policies | head`
        sys.exit(0)
    except typer.Abort:
        err.print("aborted")
        sys.exit(1)
    except Exception as e:
        # A bad option or argument (click's exceptions, or typer's own copy of them): one line, as every other bad
        # input gets, where click draws a box of several.
        names = [c.__name__ for c in type(e).__mro__]
        if "ClickException" not in names:
            raise
        if "NoArgsIsHelpError" not in names:  # no arguments at all: the help is printed already
            ctx = getattr(e, "ctx", None)
            where = f"; see {ctx.command_path} --help" if "UsageError" in names and ctx is not None else ""
            text = " ".join(e.format_message().split())
            err.print(f"[bold red]error:[/] {escape(text.removesuffix('.') if where else text)}{where}", soft_wrap=True)
        sys.exit(e.exit_code)
    sys.exit(code if isinstance(code, int) else 0)


def mlflow_uri_argument(args: list[str]) -> list[str]:
    """``--mlflow URI`` as ``--mlflow-uri URI``: typer's options take a value always or never, and ``--mlflow``
    alone must stay a switch. Only a URI (``scheme://...``) is taken, so ``--mlflow geneval:60`` keeps its suite.

        >>> mlflow_uri_argument(["ablate", "--mlflow", "http://127.0.0.1:5000", "geneval:60"])
        ['ablate', '--mlflow-uri', 'http://127.0.0.1:5000', 'geneval:60']
        >>> mlflow_uri_argument(["ablate", "--mlflow", "geneval:60"])
        ['ablate', '--mlflow', 'geneval:60']
    """
    out = list(args)
    for i, arg in enumerate(out[:-1]):
        if arg == "--mlflow" and "://" in out[i + 1]:
            out[i] = "--mlflow-uri"
    return out


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


# The options `bench` and `ablate` share.
_Concurrency = Annotated[int, typer.Option(help="Samples running at once (on Ray: per actor).")]
_Ray = Annotated[bool, typer.Option("--ray", help="Run every sample on Ray: start or join a local Ray instance.")]
_RayAddress = Annotated[
    str | None,
    typer.Option(help="Run on the Ray cluster at ADDRESS (ray://head:10001); --out on a shared filesystem."),
]
_Mlflow = Annotated[
    bool,
    typer.Option("--mlflow", help="Log the bench to MLflow (MLFLOW_TRACKING_URI, else a file store in OUT/mlruns)."),
]
_MlflowUri = Annotated[
    str | None, typer.Option(help="Log the bench to the MLflow server or store at URI (implies --mlflow).")
]


def _preflight(
    command: str, critic: str, detector: Path | None, ray: bool, ray_address: str | None, mlflow: bool,
    mlflow_uri: str | None,
) -> str | None:  # fmt: skip
    """One `error:` line, before any work, when --ray, --mlflow or the critic needs an extra that is not
    installed; the MLflow URI to log to ("" for the default, None for no tracking)."""
    from strokeagent.core.registry import CRITIC_KINDS
    from strokeagent.extras import kind_refusal, option_refusal

    track = mlflow_uri or ("" if mlflow else None)
    cluster = "--ray-address" if ray_address else "--ray" if ray else None
    for option in (cluster, "--mlflow" if track is not None else None):
        if option is not None and (refusal := option_refusal(command, option)) is not None:
            raise _fail(refusal)
    if (refusal := kind_refusal(CRITIC_KINDS, "geneval" if detector else critic, "--critic")) is not None:
        raise _fail(refusal)
    return track


def _bench(
    suite: str,
    policy_refs: list,  # policy files, bundled names or Policy objects
    out_dir: Path | None,
    seeds: str | None,
    images_per_prompt: int,
    critic: str,
    detector: Path | None,
    clip: Path | None,
    concurrency: int,
    ray: bool | str | None = None,
    mlflow: str | None = None,  # "" for the default URI, None for no tracking
) -> None:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from strokeagent.bench import BenchError
    from strokeagent.bench.runner import run_bench
    from strokeagent.bench.suites import load_bench_suite, suite_name

    with _cli_errors("finished samples are kept; run the same command to continue"):
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
                ray=ray,
            )
        if mlflow is not None:
            from strokeagent.bench.tracking import log_bench, tracking_uri

            uri = tracking_uri(mlflow or None, result.out)
            run_id = log_bench(result, uri, suite=suite)
    out.print((result.out / "table.md").read_text(), markup=False, highlight=False, soft_wrap=True)
    kept = f" ({len(result.records) - result.ran} already done)" if result.ran < len(result.records) else ""
    err.print(f"[bold green]done[/]: {len(result.records)} samples{kept}")
    for name in ("samples.jsonl", "summary.json", "table.md", "table.csv", "chart.png", "index.html"):
        if (result.out / name).is_file():
            out.print(f"{name:<14} {result.out / name}")
    if mlflow is not None:
        out.print(f"{'mlflow':<14} {uri} (run {run_id})")
    from strokeagent.bench.reports import chart_note

    if (note := chart_note()) is not None:
        err.print(f"[yellow]note:[/] {escape(note)}", soft_wrap=True)


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
    concurrency: _Concurrency = 4,
    ray: _Ray = False,
    ray_address: _RayAddress = None,
    mlflow: _Mlflow = False,
    mlflow_uri: _MlflowUri = None,
) -> None:
    """Run every prompt of SUITE through every policy; write scores, a table, a chart and index.html.

    Resumable: run the same command again after a kill and it continues where it stopped.
    """
    track = _preflight("bench", critic, detector, ray, ray_address, mlflow, mlflow_uri)
    _bench(suite, policy, out_dir, seeds, images_per_prompt, critic, detector, clip, concurrency, ray_address or ray, track)


_ORDERS_HELP = (
    'Stage orders to compare, separated by ";", each a comma-separated list of stage names, e.g. '
    '"plan,draft;draft,reflect,refine;plan,critique,draft,reflect,refine". Each runs the stages of '
    "--policy under that order and is named by it (plan+draft)."
)


def parse_orders(text: str) -> list[tuple[str, ...]]:
    """``"plan,draft; draft"`` → ``[("plan", "draft"), ("draft",)]``; a ``BenchError`` line if it says nothing."""
    from strokeagent.bench import BenchError

    orders = []
    for part in text.split(";"):
        if not part.strip():
            continue
        names = tuple(n.strip() for n in part.split(","))
        if any(not n for n in names):
            raise BenchError(f"--orders {part.strip()!r}: an empty stage name; separate names by commas, "
                             'orders by ";", e.g. "plan,draft;draft,reflect,refine"')  # fmt: skip
        if names in orders:
            raise BenchError(f"--orders gives {','.join(names)} twice; give each order once")
        orders.append(names)
    if not orders:
        raise BenchError('--orders names no stage order; e.g. --orders "plan,draft;draft,reflect,refine"')
    return orders


def ablations_of(base) -> list:  # noqa: ANN001 - a Policy
    """``base``'s stages under each bundled ablation's loop (ablations/*), named as the ablations are."""
    from strokeagent.bench.runner import ablation_policies
    from strokeagent.core.policy import Policy, load_policy

    policies = []
    for ref in ablation_policies():
        ablation = load_policy(ref)
        missing = [n for n in ablation.loop.order if n not in base.stages]
        if missing:
            raise StrokeAgentError(
                f"policy {base.name!r} has no {missing[0]} stage, which ablation {ablation.name} runs; "
                f"its stages are {', '.join(base.stages)}"
            )
        ordered = base.with_loop(**ablation.loop.model_dump())
        description = f"{base.name} under {ablation.name}: {' → '.join(ablation.loop.order)}"
        policies.append(Policy(ablation.name, ordered.loop, ordered.stages, description))
    return policies


def order_policies(base, orders: list[tuple[str, ...]]) -> list:  # noqa: ANN001 - a Policy
    """``base``'s stages under each order, each named by its order (``plan+draft``); one line per bad order."""
    from strokeagent.bench import BenchError
    from strokeagent.core.policy import Policy

    policies = []
    for order in orders:
        missing = next((n for n in order if n not in base.stages), None)
        if missing is not None:
            raise BenchError(
                f"--orders {','.join(order)}: policy {base.name!r} has no {missing} stage; its stages are "
                f"{', '.join(base.stages)} (a policy file with a [stages.{missing}] table, given as --policy, adds it)"
            )
        try:
            ordered = base.with_loop(order=order)
        except StrokeAgentError as e:
            raise BenchError(f"--orders {','.join(order)}: {e}") from None
        name = "+".join(order)
        description = f"{base.name}'s stages in the order {' → '.join(order)}"
        policies.append(Policy(name, ordered.loop, ordered.stages, description))
    return policies


@app.command()
def ablate(
    suite: Annotated[str, typer.Argument(help=_SUITE_HELP)] = "geneval:200",
    orders: Annotated[str | None, typer.Option("--orders", help=_ORDERS_HELP)] = None,
    policy: Annotated[
        str | None,
        typer.Option(
            "--policy",
            "-p",
            help="The policy whose stages are ablated: under the bundled ablations' loops, or --orders "
            "(a file or bundled name; default the default policy).",
        ),
    ] = None,
    policies_dir: Annotated[
        Path | None,
        typer.Option(
            "--policies",
            "--ablations",
            help="A folder: every *.toml in it is compared (default, without --orders: the bundled ablations/*).",
        ),
    ] = None,
    out_dir: Annotated[
        Path | None, typer.Option("--out", "-o", help="The bench folder (default bench/<suite>-ablate).")
    ] = None,
    images_per_prompt: Annotated[int, typer.Option(help="Images per prompt, seeds 0..N-1.")] = 1,
    seeds: Annotated[str | None, typer.Option(help="Explicit seeds, e.g. 0,1,2.")] = None,
    critic: Annotated[str, typer.Option(help=_CRITIC_HELP)] = "auto",
    detector: Annotated[Path | None, typer.Option(help="Detector folder for --critic geneval.")] = None,
    clip: Annotated[Path | None, typer.Option(help="CLIP folder for geneval colours or clip-score.")] = None,
    concurrency: _Concurrency = 4,
    ray: _Ray = False,
    ray_address: _RayAddress = None,
    mlflow: _Mlflow = False,
    mlflow_uri: _MlflowUri = None,
) -> None:
    """`bench` over stage orders: what each stage adds.

    By default the bundled ablations (ablations/*); --policy alone runs that policy's stages under the
    same four loops; --orders compares any stage orders of --policy's stages, --policies every policy
    file in a folder (both may be given).

    Examples: strokeagent ablate geneval:200 --out benchmarks/ablation
              strokeagent ablate geneval:553 --policy process-tiny
              strokeagent ablate geneval:50 -p examples/critique --orders "plan,draft;plan,critique,draft,reflect,refine"
    """
    from strokeagent.bench.runner import ablation_policies
    from strokeagent.bench.suites import suite_name
    from strokeagent.core.policy import DEFAULT_POLICY, load_policy
    track = _preflight("ablate", critic, detector, ray, ray_address, mlflow, mlflow_uri)

    refs: list = []
    try:
        if policy is not None and orders is None:
            refs += ablations_of(load_policy(policy))
        if orders is not None:
            refs += order_policies(load_policy(policy or DEFAULT_POLICY), parse_orders(orders))
        if policies_dir is not None:
            files = sorted(policies_dir.glob("*.toml")) if policies_dir.is_dir() else []
            if not files:
                raise _fail(f"{policies_dir} has no policy files (*.toml); give a folder of policy files")
            refs += [load_policy(f) for f in files]
    except StrokeAgentError as e:
        raise _fail(str(e)) from None
    if not refs:
        refs = ablation_policies()
    out_path = out_dir if out_dir is not None else Path("bench") / f"{suite_name(suite)}-ablate"
    _bench(suite, refs, out_path, seeds, images_per_prompt, critic, detector, clip, concurrency, ray_address or ray, track)


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
    from strokeagent.backends import backend_refusal

    if editor is not None and (refusal := backend_refusal(editor, "--editor")) is not None:
        raise _fail(refusal)
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
    from strokeagent.extras import command_refusal

    if (refusal := command_refusal("train")) is not None:
        raise _fail(refusal)
    from strokeagent.train import load_config, train

    if _trainee_of(config) == "process-tiny":
        _train_tiny(config, steps)
        return
    try:
        cfg = load_config(config, steps=steps)
        result = train(cfg, resume=not fresh, log=lambda line: err.print(escape(line)))
    except StrokeAgentError as e:
        raise _fail(str(e)) from None
    if result.main_process:
        out.print(
            escape(f"step {result.step}: checkpoint {result.checkpoint} ({result.tokens_per_s:.0f} tokens/s)")
        )
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        _leave_launched_process()


def _leave_launched_process() -> None:
    """End a process of a multi-process launch here, its work done, without tearing the interpreter down.

    Every file is written and the process group destroyed, but FSDP's device meshes and DDP's reducer keep
    the gloo process groups alive until interpreter finalization, when their worker threads may take the
    GIL of a dying interpreter and abort the process ("terminate called without an active exception",
    SIGABRT after a finished run: twice in about eight CI runs on a 2-core machine). Nothing is left to run at exit.
    """
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def _trainee_of(config: Path) -> str | None:
    import tomllib

    try:
        return tomllib.loads(config.read_text(encoding="utf-8")).get("trainee")
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
        return None  # load_config says what is wrong with the file


def _train_tiny(config: Path, steps: int | None) -> None:
    """The process-tiny recipe: data, training, model folder, curves and card, in one go."""
    from strokeagent.train.tiny import load_recipe, train_tiny

    try:
        recipe = load_recipe(config, steps=steps)
        result = train_tiny(recipe, log=lambda line: err.print(escape(line)))
    except StrokeAgentError as e:
        raise _fail(str(e)) from None
    shipped = f"; shipped to {result.shipped}" if result.shipped else ""
    out.print(escape(f"process-tiny: loss {result.final_loss:.4f} after {result.steps} steps, "
                     f"{result.seconds / 60:.1f} min; model in {result.folder}{shipped}"))  # fmt: skip


if __name__ == "__main__":
    main()
