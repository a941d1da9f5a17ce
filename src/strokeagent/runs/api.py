"""Running a policy on a prompt: the run folder, streaming, checkpoints and resume.

    >>> traj = generate("a red apple left of a blue cup", policy="sketch", seed=0)   # doctest: +SKIP
    >>> traj.final_image.sha256[:12]                                                   # doctest: +SKIP

A run lives in one folder::

    RUN/
      run.json            what was asked (prompt, seed, the policy's tables) and the status
      trajectory.json     every text state, image ref, seed, timing and version (refreshed as the run goes)
      images/<sha>.png    every image any stage made, by content
      checkpoints.sqlite  LangGraph's own SQLite checkpointer; thread id = run id
      index.html          the film strip of every step (it links the PNGs in images/)
      final.png           the final image

Every file is written atomically, and each image is stored before the
checkpoint that refers to it, so a run killed at any point keeps all it made and
``resume`` continues from the last finished stage with the same seeds: the
final image is byte-identical to an uninterrupted run.
"""

from __future__ import annotations

import asyncio
import functools
import json
import platform
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import Executor, Future
from contextlib import aclosing, contextmanager
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any, Literal

from strokeagent.core.loop import StageNodes
from strokeagent.core.policy import DEFAULT_POLICY, Policy, load_policy, policy_from_tables, recursion_limit
from strokeagent.core.state import Plan, Reflection, State, Trajectory
from strokeagent.core.store import ArtifactStore, atomic_write, new_output_folder
from strokeagent.errors import PolicyError, PromptError, RunError

MAX_PROMPT_CHARS = 2000
#: trajectory.json is a live view, refreshed at most this often (seconds) while a run goes, and always
#: when it ends, fails or pauses; the checkpoint, written after every stage, is what resume reads.
TRAJECTORY_WRITE_INTERVAL = 1.0
RunStatus = Literal["running", "paused", "failed", "finished"]


def check_prompt(prompt: str) -> str:
    """The prompt, stripped; a ``PromptError`` if it is empty or longer than ``MAX_PROMPT_CHARS``."""
    if not isinstance(prompt, str) or not prompt.strip():
        raise PromptError(
            'the prompt is empty; describe the image to make, e.g. "a red apple left of a blue cup"'
        )
    prompt = " ".join(prompt.split())
    try:
        prompt.encode("utf-8")
    except UnicodeEncodeError as e:
        # A lone surrogate: what Python makes of a command-line byte that is not UTF-8 (`$'apple \xff'`).
        raise PromptError(
            f"the prompt is not valid text (character {e.start + 1} is an undecodable byte or a lone surrogate); "
            "write it in UTF-8"
        ) from None
    if len(prompt) > MAX_PROMPT_CHARS:
        raise PromptError(
            f"the prompt has {len(prompt)} characters, over the limit of {MAX_PROMPT_CHARS}; shorten it"
        )
    return prompt


@functools.cache
def package_versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for name in ("strokeagent", "langgraph", "langgraph-checkpoint-sqlite", "pydantic", "pillow", "numpy"):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


@dataclass(frozen=True)
class StageEvent:
    """One finished stage, as streamed by ``astream``: what ran, how long, and the trajectory after it."""

    stage: str
    step: int
    seconds: float  # inside the stage
    elapsed: float  # since the run (or the resume) started
    trajectory: Trajectory


class RunFolder:
    """The files of one run. ``RunFolder.create`` for a new run, ``RunFolder.open`` for an existing one."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.store = ArtifactStore(path / "images") if (path / "images").is_dir() else None
        self._live: Future[None] | None = None  # the newest trajectory.json handed to a writer thread

    run_file = property(lambda self: self.path / "run.json")
    trajectory_file = property(lambda self: self.path / "trajectory.json")
    checkpoint_file = property(lambda self: self.path / "checkpoints.sqlite")
    report_file = property(lambda self: self.path / "index.html")
    final_file = property(lambda self: self.path / "final.png")

    @classmethod
    def create(cls, path: str | Path, info: dict[str, Any] | None = None) -> RunFolder:
        """A new run folder; with ``info``, its run.json written at once (everything it needs is computed
        before), so a kill leaves either nothing of the run or a run that ``resume`` can start."""
        path = Path(path)
        taken = "is not empty; choose another --out or remove it"
        with new_output_folder(path, what="run", taken=taken, error=RunError):
            (path / "images").mkdir(parents=True, exist_ok=True)
            if info is not None:
                atomic_write(path / "run.json", json.dumps(info, indent=2) + "\n")
        return cls(path)

    @classmethod
    def open(cls, path: str | Path) -> RunFolder:
        path = Path(path)
        folder = cls(path)
        if not path.is_dir():
            raise RunError(f"{path} is not a folder; give the folder that `strokeagent run` wrote")
        # No checkpoints.sqlite is a run killed before its first checkpoint (or whose database was lost): like an
        # empty database, resume starts it over from run.json, and the same seeds give the same bytes.
        if not folder.run_file.is_file() and not folder.run_file.exists() and folder.store is None:
            raise RunError(f"{path} is not a strokeagent run (no run.json or images/)")
        if not folder.run_file.is_file():
            raise RunError(
                f"{path} has no readable run.json (what the run asked for); the run folder is damaged"
            )
        if folder.store is None:
            raise RunError(f"{path} has no images/ folder; the run folder is damaged")
        return folder

    def read_run(self) -> dict[str, Any]:
        """run.json, checked: a ``RunError`` line if it cannot be read or lacks what a resume needs."""
        try:
            info = json.loads(self.run_file.read_text(encoding="utf-8"))
        except (OSError, ValueError) as e:  # ValueError: bad JSON, or bytes that are not UTF-8
            raise RunError(
                f"{self.run_file} cannot be read ({_one_line(e)}); the run folder is damaged"
            ) from None
        problem = _run_info_problem(info)
        if problem:
            raise RunError(f"{self.run_file} is damaged: {problem}")
        return info

    def _write(self, path: Path, data: str | bytes) -> None:
        try:
            atomic_write(path, data)
        except OSError as e:
            raise RunError(
                f"cannot write {path}: {e.strerror or _one_line(e)}; the run folder is damaged or read-only"
            ) from None

    def write_run(self, info: dict[str, Any]) -> None:
        self._write(self.run_file, json.dumps(info, indent=2) + "\n")

    def set_status(self, status: RunStatus, error: str | None = None) -> None:
        info = self.read_run()
        info["status"] = status
        info["error"] = error
        self.write_run(info)

    def settle(self, traj: Trajectory | None, status: RunStatus, error: str | None = None) -> None:
        """Leave the folder complete for ``status``: the trajectory, the film strip, then run.json.

        A trajectory or film strip that cannot be written (a folder in its place, a full disk) still
        leaves run.json saying the run stopped (``failed``, never ``running``), then raises a ``RunError``.
        """
        from strokeagent.runs.report import write_report

        problem = None
        if traj is not None:
            try:
                self.write_trajectory(traj)
                write_report(self.path, traj, self.store)  # type: ignore[arg-type]
            except RunError as e:
                problem = e
            except OSError as e:
                problem = RunError(f"cannot write the run's files in {self.path}: {e.strerror or _one_line(e)}; "
                                   "the run folder is damaged or read-only")  # fmt: skip
        if problem is not None and status in ("running", "finished"):
            status, error = "failed", str(problem)
        self.set_status(status, error)
        if problem is not None:
            raise problem

    def first_trajectory(self, info: dict[str, Any] | None = None) -> Trajectory:
        """The trajectory before any stage: what run.json (or ``info``, what was just written there) asks for."""
        info = info if info is not None else self.read_run()
        return Trajectory(
            prompt=info["prompt"], seed=info["seed"], versions=package_versions(), policy=info["policy"],
            run_dir=str(self.path),
        )  # fmt: skip

    def write_trajectory(self, traj: Trajectory) -> None:
        live, self._live = self._live, None
        if live is not None:
            # Wait: a live view landing after this one would replace it. If it failed, this write says whether
            # the disk still fails; once it succeeds, the older view's failure no longer matters.
            live.exception()
        self._put_trajectory(traj)

    def write_trajectory_on(self, writer: Executor, traj: Trajectory) -> None:
        """trajectory.json as a live view, written on ``writer``'s thread: between stages the event loop only
        hands it over (the JSON and the file took 1-4 ms of each transition that wrote one). A live view that
        could not be written is raised by the next call, as one written on the event loop failed the run."""
        live = self._live
        if live is not None:
            if not live.done():
                return  # the writer is behind (images): a later refresh writes a newer view
            self._live = None
            live.result()
        self._live = writer.submit(self._put_trajectory, traj)

    def _put_trajectory(self, traj: Trajectory) -> None:
        self._write(self.trajectory_file, traj.model_dump_json(indent=2) + "\n")

    def read_trajectory(self) -> Trajectory:
        return Trajectory.model_validate_json(self.trajectory_file.read_text())


def _one_line(e: BaseException | str) -> str:
    """An error's message on one line (a stage's exception may span several)."""
    return " ".join(str(e).split()) or type(e).__name__


def _run_info_problem(info: Any) -> str | None:
    """What run.json lacks for a resume, or None."""
    if not isinstance(info, dict):
        return f"it holds a {type(info).__name__}, not the run's table"
    for key, kind in (("run_id", str), ("prompt", str), ("seed", int), ("policy", str)):
        value = info.get(key)
        if not isinstance(value, kind) or isinstance(value, bool) or (kind is str and not value):
            return f"{key} is missing or not a {'string' if kind is str else 'whole number'}"
    pauses = info.get("pause_before", [])
    if not isinstance(pauses, list) or not all(isinstance(p, str) for p in pauses):
        return "pause_before is not a list of stage names"
    return None


def _as_policy(policy: Policy | str | Path | None) -> Policy:
    if policy is None:
        return load_policy(DEFAULT_POLICY)
    if isinstance(policy, Policy):
        return policy
    return load_policy(policy)


def new_run_id(seed: int) -> str:
    return f"{time.strftime('%Y%m%d-%H%M%S')}-s{seed}-{uuid.uuid4().hex[:6]}"


async def astream(
    prompt: str,
    policy: Policy | str | Path | None = None,
    *,
    seed: int = 0,
    out: str | Path | None = None,
    pause_before: tuple[str, ...] = (),
) -> AsyncIterator[StageEvent]:
    """Run ``policy`` on ``prompt``, yielding a ``StageEvent`` as each stage finishes.

    ``out`` is the run folder to create (default ``runs/<run id>``). The last
    event's trajectory is the finished one, with ``final_image`` set. The run
    waits while the consumer holds an event. To stop listening early, close the
    iterator (``async with contextlib.aclosing(...)``): the run settles as paused
    there and then, and ``resume`` continues it; after a bare ``break`` it settles
    when the iterator is collected or the event loop ends.
    """
    prompt = check_prompt(prompt)
    policy = _as_policy(policy)
    # The run id is the folder's name (LangGraph's thread id in it): one name for the run wherever it is shown.
    run_id = (Path(out).resolve().name if out is not None else "") or new_run_id(seed)
    info = {
        "run_id": run_id,
        "prompt": prompt,
        "seed": seed,
        "policy": policy.name,
        # The tables that rebuild exactly these stages on resume (Python-made ones as module:Factory references).
        "policy_tables": policy.record(),
        "pause_before": list(pause_before),
        "status": "running",
        "error": None,
    }
    folder = RunFolder.create(out if out is not None else Path("runs") / run_id, info)
    with _never_left_running(folder):
        start = folder.first_trajectory(info)
        folder.write_trajectory(start)
        events = _drive(folder, policy, run_id, {"trajectory": start.model_dump(mode="json")}, pause_before)
        async with _OwnTask(events) as driven:
            async for event in driven:
                yield event


async def aresume(
    run_dir: str | Path,
    *,
    policy: Policy | None = None,
    pause: bool = True,
    trust_code: bool = False,
    edit_plan: str | None = None,
    edit_reflection: str | None = None,
) -> AsyncIterator[StageEvent]:
    """Continue a run that was killed, failed or paused, from its last checkpoint.

    The run's policy is rebuilt from what run.json recorded; ``policy`` replaces it
    (needed when a stage made in Python could not be recorded). A folder's
    ``module:Factory`` references are code, built only with ``trust_code=True``.
    ``pause=False`` drops the run's pauses. ``edit_plan`` replaces the instruction
    of the newest plan, ``edit_reflection`` the newest inspection (``"ok"``, or the
    conflict to fix): the edit is recorded as the user's, and the run goes on from it.
    """
    folder = RunFolder.open(run_dir)
    info = folder.read_run()
    if info.get("status") == "finished":
        raise RunError(
            f"the run in {folder.path} is already finished; start a new one with `strokeagent run`"
        )
    if policy is None:
        if not info.get("policy_tables"):
            raise RunError(
                f"the run in {folder.path} recorded no policy; resume it from Python with "
                "strokeagent.resume(run_dir, policy=...)"
            )
        try:
            policy = policy_from_tables(
                info["policy_tables"], where=f"{folder.run_file} policy", trust_code=trust_code
            )
        except PolicyError as e:
            raise RunError(f"cannot rebuild the run's policy: {e}") from None
    pause_before = tuple(info.get("pause_before", [])) if pause else ()
    edits = {"plan": edit_plan, "reflection": edit_reflection}
    folder.set_status("running")
    events = _drive(folder, policy, info["run_id"], None, pause_before, edits)
    with _never_left_running(folder):
        async with _OwnTask(events) as driven:
            async for event in driven:
                yield event


class _OwnTask:
    """A run's events, driven from a task of its own, one at a time: the run goes on only when asked for more.

        >>> async with _OwnTask(_drive(...)) as driven:        # doctest: +SKIP
        ...     async for event in driven: ...

    Why a task: a consumer that leaves ``async for`` with a bare ``break`` leaves the generators beneath
    suspended, and at its end the event loop closes every suspended async generator at once, in no order
    (LangGraph's stream beside ours): that printed "async generator ignored GeneratorExit" and could
    leave run.json saying running. The loop cancels its tasks before that, and a cancel unwinds this
    task's generators in order, as a stage's error does: the run settles as paused. Leaving the block
    does the same now (``aclosing``'s part).
    """

    def __init__(self, events: AsyncIterator[StageEvent]) -> None:
        self._events = events
        self._task: asyncio.Task[None] | None = None
        self._asks: asyncio.Queue[None] = asyncio.Queue()
        self._replies: asyncio.Queue[tuple[StageEvent | None, BaseException | None]] = asyncio.Queue()

    async def _run(self) -> None:  # the task's body
        try:
            async with aclosing(self._events):
                async for event in self._events:
                    self._replies.put_nowait((event, None))
                    await self._asks.get()
        except BaseException as e:  # raised where the consumer asks for the next event
            self._replies.put_nowait((None, e))
            if not isinstance(e, Exception):  # a cancel from elsewhere, an interrupt: this task ends so too
                raise
        else:
            self._replies.put_nowait((None, None))

    def __aiter__(self) -> _OwnTask:
        return self

    async def __anext__(self) -> StageEvent:
        if self._task is None:
            self._task = asyncio.ensure_future(self._run())
        else:
            self._asks.put_nowait(None)
        event, error = await self._replies.get()
        if error is not None:
            raise error
        if event is None:
            raise StopAsyncIteration
        return event

    async def __aenter__(self) -> _OwnTask:
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._task is not None and not self._task.done():
            consumer = asyncio.current_task()
            cancels = consumer.cancelling() if consumer is not None else 0
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                # Ours, sent just above, ends here; one sent to the consumer meanwhile (a timeout) goes on.
                if consumer is not None and consumer.cancelling() > cancels:
                    raise
        elif self._task is None:
            await self._events.aclose()


@contextmanager
def _never_left_running(folder: RunFolder) -> Iterator[None]:
    """Whatever stops a run (an error before its first stage, a cancel), run.json does not go on saying running."""
    try:
        yield
    except BaseException as e:
        try:
            if folder.read_run().get("status") == "running":
                stopped = isinstance(e, GeneratorExit | asyncio.CancelledError | KeyboardInterrupt)
                folder.set_status("paused" if stopped else "failed", None if stopped else _one_line(e))
        except RunError:
            pass  # run.json cannot be read or written: nothing more can be said in it
        raise


def apply_edits(traj: Trajectory, plan: str | None = None, reflection: str | None = None) -> Trajectory:
    """``traj`` with the user's edits appended to its current step, each as a state of the stage it replaces."""
    if plan is None and reflection is None:
        return traj
    step = traj.current_step
    states = list(step.states) if step is not None else []

    def newest(kind: type) -> State | None:
        return next((s for s in reversed(states) if isinstance(s.value, kind)), None)

    if plan is not None:
        old = newest(Plan)
        if old is None or not plan.strip():
            raise RunError("--edit-plan: " + ("this step has no plan to edit yet; pause the run right after one "
                                              "(e.g. --pause-before draft)" if old is None
                                              else "the new instruction is empty"))  # fmt: skip
        new = Plan(
            instruction=" ".join(plan.split()), description=" ".join(plan.split()), done=old.value.done
        )
        states.append(State(stage=old.stage, value=new, by="user"))
    if reflection is not None:
        old = newest(Reflection)
        if old is None or not reflection.strip():
            raise RunError("--edit-reflection: " + ("this step has no inspection to edit yet; pause the run right "
                                                    "after one (e.g. --pause-before refine)" if old is None
                                                    else "the text is empty"))  # fmt: skip
        text = " ".join(reflection.split())
        ok = text.lower() == "ok"
        new = Reflection(ok=ok, image_conflicts=[] if ok else [text], corrected_instruction=None if ok else text,
                         done=old.value.done)  # fmt: skip
        states.append(State(stage=old.stage, value=new, by="user"))
    steps = [*traj.steps[:-1], step.model_copy(update={"states": states})]  # type: ignore[union-attr]
    return traj.model_copy(update={"steps": steps})


async def _drive(
    folder: RunFolder,
    policy: Policy,
    run_id: str,
    initial: dict[str, Any] | None,
    pause_before: tuple[str, ...],
    edits: dict[str, str | None] | None = None,
) -> AsyncIterator[StageEvent]:
    from strokeagent.runs.checkpoints import damaged, open_checkpointer

    assert folder.store is not None
    config = {"configurable": {"thread_id": run_id}, "recursion_limit": recursion_limit(policy.loop)}
    started = time.perf_counter()
    last_write = started
    paused = False
    with open_checkpointer(folder.checkpoint_file) as saver, folder.store.writing_on(saver.writer):
        nodes = StageNodes(policy, folder.store)
        graph = nodes.compile(checkpointer=saver, pause_before=pause_before)
        if initial is None:
            try:
                initial, config, traj = await _continuation(graph, config, folder, nodes)
            except RunError:
                raise
            except Exception as e:  # sqlite's "malformed", a blob that does not decode: the file is damaged
                raise damaged(folder.checkpoint_file, e) from None
            if edits and any(v is not None for v in edits.values()):
                try:
                    traj, config = await _edit(graph, config, traj, edits)
                except RunError:
                    folder.settle(traj, "paused")
                    raise
        else:
            traj = nodes.trajectory(initial)  # what a run paused before its first stage settles with
        stream = graph.astream(initial, config, stream_mode="updates")
        try:
            # aclosing: a consumer that stops early closes LangGraph's stream here, while the checkpointer
            # is still open, so every checkpoint it began is written before the file closes.
            async with aclosing(stream):
                async for update in stream:
                    paused = paused or "__interrupt__" in update
                    for stage, value in update.items():
                        if stage.startswith("__") or not value:
                            continue
                        traj = nodes.trajectory(value)
                        if time.perf_counter() - last_write > TRAJECTORY_WRITE_INTERVAL:
                            folder.write_trajectory_on(saver.writer, traj)
                            last_write = time.perf_counter()
                        timing = traj.timings[-1]
                        yield StageEvent(
                            stage, timing.step, timing.seconds, time.perf_counter() - started, traj
                        )  # type: ignore[arg-type]
        except (GeneratorExit, asyncio.CancelledError):
            # The consumer stopped listening, or was cancelled: `resume` goes on from here.
            folder.settle(traj, "paused")
            raise
        except Exception as e:
            folder.settle(traj, "failed", f"{type(e).__name__}: {e}")
            kept = len(list(folder.store.root.glob("*.png")))  # settle's film strip waited for every image
            raise RunError(
                f"the run stopped in a stage: {type(e).__name__}: {_one_line(e)}; it kept {kept} images in "
                f"{folder.path}; "
                f"fix the cause, then `strokeagent resume {folder.path}`"
            ) from e
        if paused:
            folder.settle(traj, "paused")
            return
        traj = traj.model_copy(update={"final_image": traj.canvas})
        try:
            folder.store.flush()  # every image on disk: one whose write failed fails the run
            if traj.final_image is not None:
                folder._write(folder.final_file, folder.store.read_bytes(traj.final_image))
        except (OSError, RunError) as e:
            error = (
                e if isinstance(e, RunError) else RunError(f"cannot write the run's images: {_one_line(e)}")
            )
            folder.settle(traj, "failed", str(error))
            raise error from None
        folder.settle(traj, "finished")
    # The final event repeats the last stage with the finished trajectory, so consumers see final_image.
    last = traj.timings[-1]
    yield StageEvent(last.stage, last.step, 0.0, time.perf_counter() - started, traj)


async def _edit(
    graph: Any, config: dict[str, Any], traj: Trajectory, edits: dict[str, str | None]
) -> tuple[Trajectory, dict[str, Any]]:
    """Write the user's edits into the checkpoint, as the stage that ran last: the routing from there sees them."""
    if not traj.timings:
        raise RunError("nothing has run yet, so there is nothing to edit; resume without an edit first")
    snapshot = await graph.aget_state(config)
    first = traj.timings[0].stage
    if first in (snapshot.next or ()):
        raise RunError(
            f"the run is paused before step {len(traj.steps) + 1} begins, so that step has nothing to edit yet; "
            "pause it later in the step (e.g. --pause-before draft)"
        )
    edited = apply_edits(traj, edits.get("plan"), edits.get("reflection"))
    config = await graph.aupdate_state(
        config, {"trajectory": edited.model_dump(mode="json")}, as_node=traj.timings[-1].stage
    )
    return edited, config


async def _continuation(
    graph: Any, config: dict[str, Any], folder: RunFolder, nodes: StageNodes
) -> tuple[dict[str, Any] | None, dict[str, Any], Trajectory]:
    """Where a resumed run goes on: ``(input, config, trajectory so far)``.

    From the newest checkpoint with work left. A run killed before its first checkpoint starts over;
    one whose newest checkpoint has nothing next (the graph ended before the folder settled, or a
    stream cut off mid-write as its event loop shut down) goes on from the newest earlier checkpoint
    that has: the stages repeat with their seeds, so the run ends as an uninterrupted one would.
    """
    snapshot = await graph.aget_state(config)
    if snapshot.metadata is None:
        first = folder.first_trajectory()
        return {"trajectory": first.model_dump(mode="json")}, config, first
    if not snapshot.next:
        async for past in graph.aget_state_history(config):
            if past.next:
                snapshot, config = past, {**config, "configurable": past.config["configurable"]}
                break
        else:
            raise RunError(f"the run in {folder.path} has nothing left to do; start a new one")
    # Only the input's checkpoint may have survived: its values are not applied yet.
    return None, config, nodes.trajectory(snapshot.values) if snapshot.values else folder.first_trajectory()


async def _last(events: AsyncIterator[StageEvent], run_dir: Path) -> Trajectory:
    traj = None
    async for event in events:
        traj = event.trajectory
    # No stage ran: the run paused before its first one, and its folder holds the trajectory so far.
    return traj if traj is not None else RunFolder(run_dir).read_trajectory()


async def agenerate(
    prompt: str,
    policy: Policy | str | Path | None = None,
    *,
    seed: int = 0,
    out: str | Path | None = None,
    pause_before: tuple[str, ...] = (),
) -> Trajectory:
    """Run ``policy`` (default: the bundled ``sketch``) on ``prompt``; return the trajectory."""
    out = Path(out) if out is not None else Path("runs") / new_run_id(seed)
    return await _last(astream(prompt, policy, seed=seed, out=out, pause_before=pause_before), out)


def generate(
    prompt: str,
    policy: Policy | str | Path | None = None,
    *,
    seed: int = 0,
    out: str | Path | None = None,
    pause_before: tuple[str, ...] = (),
) -> Trajectory:
    """The synchronous twin of ``agenerate``, for scripts and notebooks."""
    return _run_sync(agenerate(prompt, policy, seed=seed, out=out, pause_before=pause_before))


async def aresume_to_end(run_dir: str | Path, **options: Any) -> Trajectory:
    """``aresume`` to its end (options as there); the trajectory."""
    return await _last(aresume(run_dir, **options), Path(run_dir))


def resume(
    run_dir: str | Path,
    *,
    policy: Policy | None = None,
    pause: bool = True,
    trust_code: bool = False,
    edit_plan: str | None = None,
    edit_reflection: str | None = None,
) -> Trajectory:
    """The synchronous twin of ``aresume``: continue a run and return its trajectory."""
    options = dict(policy=policy, pause=pause, trust_code=trust_code, edit_plan=edit_plan,
                   edit_reflection=edit_reflection)  # fmt: skip
    return _run_sync(aresume_to_end(run_dir, **options))


def _run_sync(coro: Any) -> Any:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    # Inside a running loop (a notebook): run on a loop of our own in a worker thread.
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, coro).result()
