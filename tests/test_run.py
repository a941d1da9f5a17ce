import asyncio
import contextlib
import json
import re

import pytest

import strokeagent
from strokeagent.core.policy import LoopSpec
from strokeagent.core.stages import Canvas
from strokeagent.core.state import Note
from strokeagent.errors import PromptError, RunError
from strokeagent.runs.api import MAX_PROMPT_CHARS, astream, resume
from strokeagent.testing import ShapesDrafter, test_policy


def final_bytes(traj) -> bytes:
    return strokeagent.ArtifactStore(f"{traj.run_dir}/images").read_bytes(traj.final_image)


def test_generate_runs_every_stage_and_writes_a_complete_run_folder(tmp_path):
    traj = strokeagent.generate(
        "three shapes", policy=test_policy(steps=3, fail_rounds=1), seed=7, out=tmp_path / "r"
    )
    assert [s.plan.instruction for s in traj.steps] == ["add shape 1", "add shape 2", "add shape 3"]
    # Each step: a draft, one conflict, one refinement, then a clean reflection.
    assert [(len(s.images), [r.ok for r in s.reflections]) for s in traj.steps] == [(2, [False, True])] * 3
    assert [t.stage for t in traj.timings[:5]] == ["plan", "draft", "reflect", "refine", "reflect"]
    assert traj.final_image == traj.steps[-1].images[-1]
    assert traj.notes == ["shapes are drawn as rectangles"]  # the planner's notes, once
    assert {"python", "strokeagent", "langgraph", "pydantic"} <= set(traj.versions)
    run = tmp_path / "r"
    assert sorted(p.name for p in run.iterdir()) == [
        "checkpoints.sqlite",
        "final.png",
        "images",
        "index.html",
        "run.json",
        "trajectory.json",
    ]
    on_disk = strokeagent.Trajectory.model_validate_json((run / "trajectory.json").read_text())
    assert on_disk == traj
    assert json.loads((run / "run.json").read_text())["status"] == "finished"
    assert (run / "final.png").read_bytes() == final_bytes(traj)
    # Every image of every step is in the store, and the film strip shows each from there, the final one first.
    refs = {r.sha256 for s in traj.steps for r in s.images}
    assert {p.stem for p in (run / "images").glob("*.png")} == refs
    html = (run / "index.html").read_text()
    shown = re.findall(r'<img alt="[^"]*" src="([^"]+)"', html)
    assert shown == [
        f"images/{r.sha256}.png" for r in [traj.final_image, *(r for s in traj.steps for r in s.images)]
    ]
    assert "base64" not in html
    assert "add shape 2" in html and "shape 1 is too faint" in html


def test_same_seed_same_bytes_other_seed_other_bytes(tmp_path):
    a = strokeagent.generate("p", policy=test_policy(), seed=1, out=tmp_path / "a")
    b = strokeagent.generate("p", policy=test_policy(), seed=1, out=tmp_path / "b")
    c = strokeagent.generate("p", policy=test_policy(), seed=2, out=tmp_path / "c")
    assert final_bytes(a) == final_bytes(b)
    assert [r.sha256 for s in a.steps for r in s.images] == [r.sha256 for s in b.steps for r in s.images]
    assert final_bytes(a) != final_bytes(c)


@pytest.mark.parametrize(
    ("order", "stages"),
    [
        (("draft",), ["draft"]),
        (("plan", "draft"), ["plan", "draft"] * 3),
        (("draft", "reflect", "refine"), ["draft", "reflect", "refine", "reflect"]),
    ],
)
def test_ablation_orders_run_the_stages_they_name(order, stages, tmp_path):
    traj = strokeagent.generate("p", policy=test_policy(order=order), seed=0, out=tmp_path / "r")
    assert [t.stage for t in traj.timings] == stages
    if "plan" not in order:
        assert traj.steps[0].plan.instruction == "p" and traj.steps[0].plan.done


def test_astream_yields_one_event_per_stage_then_the_finished_trajectory(tmp_path):
    async def collect():
        return [
            e async for e in astream("p", test_policy(steps=2, fail_rounds=0), seed=0, out=tmp_path / "r")
        ]

    events = asyncio.run(collect())
    assert [(e.step, e.stage) for e in events[:-1]] == [
        (0, "plan"),
        (0, "draft"),
        (0, "reflect"),
        (1, "plan"),
        (1, "draft"),
        (1, "reflect"),
    ]
    assert all(e.trajectory.final_image is None for e in events[:-1])
    assert events[-1].trajectory.final_image is not None
    assert events[-1].elapsed >= events[0].elapsed


def with_drafter(drafter: ShapesDrafter, steps: int = 2) -> strokeagent.Policy:
    """The shapes policy with ``drafter`` drafting."""
    policy = test_policy(steps=steps)
    return strokeagent.Policy(name="drafted", loop=policy.loop, stages={**policy.stages, "draft": drafter})


class FailingDrafter(ShapesDrafter):
    """Fails on step ``fail_at`` until told otherwise: a crash in the middle of a run."""

    fail_at = 1

    async def draft(self, view, plan) -> Canvas:
        if view.step == self.fail_at:
            raise RuntimeError("GPU fell off the bus")
        return await super().draft(view, plan)


def test_a_failed_run_keeps_its_images_and_resumes_to_the_same_bytes(tmp_path):
    flaky = with_drafter(FailingDrafter(), steps=3)
    with pytest.raises(RunError, match=r"GPU fell off the bus; it kept 2 images in .*strokeagent resume"):
        strokeagent.generate("p", policy=flaky, seed=5, out=tmp_path / "r")
    run = tmp_path / "r"
    assert json.loads((run / "run.json").read_text())["status"] == "failed"
    partial = strokeagent.Trajectory.model_validate_json((run / "trajectory.json").read_text())
    assert len(partial.steps) == 2 and partial.steps[1].images == []
    assert len(list((run / "images").glob("*.png"))) == 2

    FailingDrafter.fail_at = -1
    resumed = resume(run, policy=flaky)
    straight = strokeagent.generate("p", policy=test_policy(steps=3), seed=5, out=tmp_path / "s")
    assert final_bytes(resumed) == final_bytes(straight)
    assert [t.stage for t in resumed.timings] == [t.stage for t in straight.timings]
    with pytest.raises(RunError, match="already finished"):
        resume(run, policy=flaky)


def test_pause_before_a_stage_then_resume(tmp_path):
    policy = test_policy(steps=2, fail_rounds=0)
    paused = strokeagent.generate("p", policy=policy, seed=3, out=tmp_path / "r", pause_before=("reflect",))
    assert paused.final_image is None and [t.stage for t in paused.timings] == ["plan", "draft"]
    assert json.loads((tmp_path / "r" / "run.json").read_text())["status"] == "paused"
    again = resume(tmp_path / "r", policy=policy)  # runs the reflect, then pauses before the next one
    assert [t.stage for t in again.timings] == ["plan", "draft", "reflect", "plan", "draft"]
    done = resume(tmp_path / "r", policy=policy, pause=False)
    straight = strokeagent.generate("p", policy=policy, seed=3, out=tmp_path / "s")
    assert final_bytes(done) == final_bytes(straight)


def test_pause_before_the_first_stage_then_resume(tmp_path):
    policy = test_policy(steps=2, fail_rounds=0)
    paused = strokeagent.generate("p", policy=policy, seed=3, out=tmp_path / "r", pause_before=("plan",))
    assert paused.steps == [] and paused.timings == []
    assert json.loads((tmp_path / "r" / "run.json").read_text())["status"] == "paused"
    again = resume(tmp_path / "r", policy=policy)  # step 1, then the pause before step 2's plan
    assert [t.stage for t in again.timings] == ["plan", "draft", "reflect"]
    done = resume(tmp_path / "r", policy=policy, pause=False)
    straight = strokeagent.generate("p", policy=policy, seed=3, out=tmp_path / "s")
    assert final_bytes(done) == final_bytes(straight)


# A bare break used to leave the closing to the event loop's shutdown, which closed LangGraph's stream and
# ours in no order: "async generator ignored GeneratorExit" on stderr, and at times run.json still "running".
@pytest.mark.filterwarnings("error::pytest.PytestUnraisableExceptionWarning")
@pytest.mark.parametrize("closing", [True, False], ids=["aclosing", "plain-break"])
def test_a_consumer_that_stops_listening_leaves_a_run_that_resumes_to_the_same_bytes(tmp_path, closing):
    policy = test_policy(steps=3, fail_rounds=1)

    async def listen_until_the_first_reflect():
        events = astream("p", policy, seed=5, out=tmp_path / "r")
        if closing:  # what the docs recommend
            async with contextlib.aclosing(events):
                async for event in events:
                    if event.stage == "reflect":
                        break
        else:  # a bare break: the run is closed as the event loop shuts down
            async for event in events:
                if event.stage == "reflect":
                    break

    asyncio.run(listen_until_the_first_reflect())
    assert json.loads((tmp_path / "r" / "run.json").read_text())["status"] == "paused"
    resumed = resume(tmp_path / "r", policy=policy)
    straight = strokeagent.generate("p", policy=policy, seed=5, out=tmp_path / "s")
    assert final_bytes(resumed) == final_bytes(straight)
    assert [t.stage for t in resumed.timings] == [t.stage for t in straight.timings]


class CountingDrafter(ShapesDrafter):
    """Counts its drafts; with ``delay``, each takes that long."""

    def __init__(self, delay: float = 0.0) -> None:
        super().__init__(delay=delay)
        self.calls = 0

    async def draft(self, view, plan) -> Canvas:
        self.calls += 1
        return await super().draft(view, plan)


def test_a_run_goes_on_only_when_its_consumer_asks_for_the_next_event(tmp_path):
    drafter = CountingDrafter()

    async def hold_the_first_event():
        async with contextlib.aclosing(astream("p", with_drafter(drafter), seed=1, out=tmp_path / "r")) as events:
            first = await anext(events)
            await asyncio.sleep(0.3)  # the run must wait here, not paint ahead
            held = drafter.calls
            second = await anext(events)
            return first.stage, held, second.stage, drafter.calls

    assert asyncio.run(hold_the_first_event()) == ("plan", 0, "draft", 1)
    assert json.loads((tmp_path / "r" / "run.json").read_text())["status"] == "paused"


@pytest.mark.filterwarnings("error::pytest.PytestUnraisableExceptionWarning")
def test_a_consumer_cancelled_inside_a_stage_leaves_a_paused_run_that_resumes_to_the_same_bytes(tmp_path):
    drafter = CountingDrafter(delay=0.3)

    async def cancel_during_the_first_draft():
        async def listen():
            async for _ in astream("p", with_drafter(drafter), seed=2, out=tmp_path / "r"):
                pass

        task = asyncio.ensure_future(listen())
        while drafter.calls == 0:
            await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(cancel_during_the_first_draft())
    assert json.loads((tmp_path / "r" / "run.json").read_text())["status"] == "paused"
    resumed = resume(tmp_path / "r", policy=with_drafter(CountingDrafter()))
    straight = strokeagent.generate("p", policy=with_drafter(CountingDrafter()), seed=2, out=tmp_path / "s")
    assert final_bytes(resumed) == final_bytes(straight)
    assert [t.stage for t in resumed.timings] == [t.stage for t in straight.timings]


def test_a_timeout_that_passes_while_the_run_closes_is_still_raised(tmp_path):
    async def leave_as_the_deadline_passes():
        async with asyncio.timeout(None) as deadline:
            async with contextlib.aclosing(astream("p", test_policy(steps=2), seed=6, out=tmp_path / "r")) as events:
                async for _ in events:
                    deadline.reschedule(asyncio.get_running_loop().time())  # it passes as the run settles
                    break

    with pytest.raises(TimeoutError):
        asyncio.run(leave_as_the_deadline_passes())
    assert json.loads((tmp_path / "r" / "run.json").read_text())["status"] == "paused"


def test_a_run_cancelled_from_elsewhere_ends_its_consumer_instead_of_leaving_it_waiting(tmp_path):
    async def cancel_every_other_task_after_the_plan():
        me = asyncio.current_task()
        hung = asyncio.get_running_loop().call_later(5, me.cancel, "hung")
        try:
            async for event in astream("p", test_policy(steps=2), seed=7, out=tmp_path / "r"):
                if event.stage == "plan":  # shutdown code of some program: the run's own task among them
                    for task in asyncio.all_tasks() - {me}:
                        task.cancel()
        except asyncio.CancelledError as e:
            hung.cancel()
            return e.args  # the run's cancel has none

    assert asyncio.run(cancel_every_other_task_after_the_plan()) == ()
    assert json.loads((tmp_path / "r" / "run.json").read_text())["status"] == "paused"


def test_a_run_killed_before_its_first_checkpoint_resumes_from_the_start(tmp_path):
    policy = test_policy(steps=2, fail_rounds=1)
    straight = strokeagent.generate("p", policy=policy, seed=4, out=tmp_path / "s")
    strokeagent.generate("p", policy=policy, seed=4, out=tmp_path / "r")
    (tmp_path / "r" / "checkpoints.sqlite").write_bytes(b"")  # as if killed before the first commit
    info = json.loads((tmp_path / "r" / "run.json").read_text())
    (tmp_path / "r" / "run.json").write_text(json.dumps({**info, "status": "running"}))
    resumed = resume(tmp_path / "r", policy=policy)
    assert final_bytes(resumed) == final_bytes(straight)
    assert [t.stage for t in resumed.timings] == [t.stage for t in straight.timings]


@pytest.mark.parametrize(
    ("prompt", "message"),
    [
        ("", "the prompt is empty"),
        ("  \n\t ", "the prompt is empty"),
        ("x" * (MAX_PROMPT_CHARS + 1), "over the limit"),
    ],
)
def test_bad_prompts_are_refused_before_anything_is_written(prompt, message, tmp_path):
    with pytest.raises(PromptError, match=message):
        strokeagent.generate(prompt, policy=test_policy(), out=tmp_path / "r")
    assert not (tmp_path / "r").exists()


def test_output_folder_problems(tmp_path):
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "keep.txt").write_text("mine")
    with pytest.raises(RunError, match="already exists and is not empty"):
        strokeagent.generate("p", policy=test_policy(), out=tmp_path / "busy")
    assert (tmp_path / "busy" / "keep.txt").read_text() == "mine"
    (tmp_path / "file").write_text("")
    with pytest.raises(RunError, match=r"^output folder \S+/file is a file, not a folder; choose another --out$"):
        strokeagent.generate("p", policy=test_policy(), out=tmp_path / "file")


def test_resume_refuses_what_is_not_a_run(tmp_path):
    with pytest.raises(RunError, match="is not a folder"):
        resume(tmp_path / "nowhere")
    with pytest.raises(RunError, match="is not a strokeagent run"):
        resume(tmp_path)


def test_a_python_built_policy_resumes_as_it_ran(tmp_path):
    # Stages made in Python are recorded as their kinds with their options; resume rebuilds them.
    policy = test_policy(steps=2, order=("plan", "note", "draft", "reflect", "refine"))
    whole = strokeagent.generate("p", policy=policy, seed=4, out=tmp_path / "whole")
    strokeagent.generate("p", policy=policy, seed=4, out=tmp_path / "r", pause_before=("draft",))
    tables = json.loads((tmp_path / "r" / "run.json").read_text())["policy_tables"]
    assert tables["stages"]["note"] == {"kind": "testing.note"}
    assert tables["stages"]["plan"] == {"kind": "testing.plan", "steps": 2}
    done = resume(tmp_path / "r", pause=False)
    assert done.final_image == whole.final_image
    assert [t.stage for t in done.timings] == [t.stage for t in whole.timings]


def test_a_stage_that_cannot_be_recorded_needs_the_policy_to_resume(tmp_path):
    class Local:  # defined in a function: nothing could import it again
        async def run(self, view):
            return Note(text="here")

    policy = test_policy(order=("plan", "draft"))
    policy = strokeagent.Policy(
        "local", LoopSpec(order=("plan", "local", "draft")), {**policy.stages, "local": Local()}
    )
    strokeagent.generate("p", policy=policy, out=tmp_path / "r", pause_before=("draft",))
    with pytest.raises(
        RunError,
        match=r"stage local was made in Python and could not be recorded \(Local: .*defined in a script or function",
    ):
        resume(tmp_path / "r")
    assert resume(tmp_path / "r", policy=policy, pause=False).final_image is not None


def test_dataclasses_replace_of_a_stage_is_what_resume_runs(tmp_path):
    # The policy composed in Python is recorded from its objects, not from the file it started as.
    import dataclasses

    from strokeagent.sketch import SketchDrafter

    base = strokeagent.load_policy("sketch")
    mine = dataclasses.replace(base, stages={**base.stages, "draft": SketchDrafter(mistake_rate=0.9)})
    whole = strokeagent.generate("two apples and a cup", policy=mine, seed=2, out=tmp_path / "whole")
    strokeagent.generate(
        "two apples and a cup", policy=mine, seed=2, out=tmp_path / "r", pause_before=("reflect",)
    )
    tables = json.loads((tmp_path / "r" / "run.json").read_text())["policy_tables"]
    assert tables["stages"]["draft"] == {"kind": "sketch.draft", "mistake_rate": 0.9}
    assert resume(tmp_path / "r", pause=False).final_image == whole.final_image


def test_generate_works_inside_a_running_event_loop(tmp_path):
    async def inside():
        return strokeagent.generate("p", policy=test_policy(steps=1), out=tmp_path / "r")

    assert asyncio.run(inside()).final_image is not None


def test_a_checkpoint_never_names_an_image_that_is_not_on_disk_yet(tmp_path, monkeypatch):
    # Images are written in the background; a checkpoint that named one still being written would resume,
    # after a kill, into a missing file. Slow PNG writes make every image pending when its checkpoint comes.
    import time

    from strokeagent.core import store
    from strokeagent.runs.checkpoints import ThreadSqliteSaver

    encode = store.png_bytes
    monkeypatch.setattr(store, "png_bytes", lambda image: (time.sleep(0.03), encode(image))[1])
    images, named = tmp_path / "r" / "images", []

    def addresses(value):
        if isinstance(value, dict):
            if isinstance(value.get("sha256"), str):
                yield value["sha256"]
            for v in value.values():
                yield from addresses(v)
        elif isinstance(value, list | tuple):
            for v in value:
                yield from addresses(v)

    def on_disk(values) -> None:  # runs on the checkpoint writer, just before the checkpoint is written
        for sha in addresses(values):
            named.append(sha)
            assert (images / f"{sha}.png").is_file(), f"a checkpoint names {sha[:12]}, not on disk yet"

    put, put_writes = ThreadSqliteSaver.put, ThreadSqliteSaver.put_writes
    monkeypatch.setattr(ThreadSqliteSaver, "put", lambda self, c, cp, *a: (on_disk(cp["channel_values"]), put(self, c, cp, *a))[1])  # fmt: skip
    monkeypatch.setattr(ThreadSqliteSaver, "put_writes", lambda self, c, w, *a: (on_disk([v for _, v in w]), put_writes(self, c, w, *a))[1])  # fmt: skip
    traj = strokeagent.generate("two shapes", policy=test_policy(steps=2), seed=1, out=tmp_path / "r")
    assert len({r.sha256 for s in traj.steps for r in s.images}) == 4 and set(named) >= {
        r.sha256 for s in traj.steps for r in s.images
    }


def test_the_live_trajectory_is_written_off_the_event_loop_and_never_after_the_final_one(tmp_path, monkeypatch):
    # Every transition refreshes the live view, each refresh slowed down: one still on the writer thread
    # when the run settles must not land after, and replace, the final trajectory.json.
    import threading
    import time

    from strokeagent.runs import api

    monkeypatch.setattr(api, "TRAJECTORY_WRITE_INTERVAL", 0.0)
    put, writers = api.RunFolder._put_trajectory, []

    def slow(self, traj) -> None:
        writers.append(threading.current_thread().name)
        if traj.final_image is None:
            time.sleep(0.05)
        put(self, traj)

    monkeypatch.setattr(api.RunFolder, "_put_trajectory", slow)
    traj = strokeagent.generate("p", policy=test_policy(steps=2), seed=4, out=tmp_path / "r")
    assert strokeagent.Trajectory.model_validate_json((tmp_path / "r" / "trajectory.json").read_text()) == traj
    live = [name for name in writers if name != threading.current_thread().name]
    assert live and all(name.startswith("checkpoints") for name in live)


def test_a_live_trajectory_that_cannot_be_written_fails_the_run(tmp_path, monkeypatch):
    import errno
    import threading

    from strokeagent.runs import api

    monkeypatch.setattr(api, "TRAJECTORY_WRITE_INTERVAL", 0.0)
    write = api.atomic_write

    def full_from_the_writer(path, data, **kw) -> None:
        if str(path).endswith("trajectory.json") and threading.current_thread() is not threading.main_thread():
            raise OSError(errno.ENOSPC, "No space left on device")
        write(path, data, **kw)

    monkeypatch.setattr(api, "atomic_write", full_from_the_writer)
    with pytest.raises(RunError, match=r"cannot write .*trajectory.json: No space left on device"):
        strokeagent.generate("p", policy=test_policy(steps=2), seed=4, out=tmp_path / "r")
    assert json.loads((tmp_path / "r" / "run.json").read_text())["status"] == "failed"


@pytest.mark.parametrize("pause_before", [(), ("refine",)])
def test_a_live_trajectory_that_failed_just_before_the_run_settled_leaves_the_final_files(
    tmp_path, monkeypatch, pause_before
):
    # The last live view fails (a disk full for a moment) and no later refresh notices before the run settles:
    # the settled trajectory.json and index.html are still written, and run.json says what really happened.
    import errno
    import threading

    from strokeagent.runs import api

    kwargs = {"policy": test_policy(steps=1), "seed": 4, "pause_before": pause_before}
    last = len(strokeagent.generate("p", out=tmp_path / "straight", **kwargs).timings)
    monkeypatch.setattr(api, "TRAJECTORY_WRITE_INTERVAL", 0.0)
    write, failed = api.atomic_write, []

    def full_for_the_last_view(path, data, **kw) -> None:
        on_writer = threading.current_thread() is not threading.main_thread()
        if on_writer and str(path).endswith("trajectory.json") and len(json.loads(data)["timings"]) == last:
            failed.append(path)
            raise OSError(errno.ENOSPC, "No space left on device")
        write(path, data, **kw)

    monkeypatch.setattr(api, "atomic_write", full_for_the_last_view)
    traj = strokeagent.generate("p", out=tmp_path / "r", **kwargs)
    run = tmp_path / "r"
    assert failed  # the last live view was refreshed, and failed
    assert json.loads((run / "run.json").read_text())["status"] == ("paused" if pause_before else "finished")
    assert strokeagent.Trajectory.model_validate_json((run / "trajectory.json").read_text()) == traj
    assert (run / "index.html").is_file()
