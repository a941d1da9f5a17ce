"""The paper's interleaved process format, and the four stages on one model's shared context.

    >>> fmt = ProcessFormat()
    >>> parse_plan(fmt, "<ins>add a red apple</ins><des>a red apple</des>").instruction
    'add a red apple'
    >>> parse_inspection(fmt, "<plan_check>ok</plan_check><image_check>the apple is green</image_check>").image_conflicts
    ['the apple is green']

One trajectory is one context, written in this order (tags configurable)::

    {preamble}<prompt>a red apple left of a blue cup</prompt>
    <ins>draw a red apple on the left</ins><des>a red apple</des>      plan     (model writes)
    <begin_of_image> … <end_of_image>                                    draft    (model paints)
    <inspect><plan_check>ok</plan_check><image_check>…</image_check></inspect>   reflect (after "<inspect>")
    <refine>make the apple red</refine>                                  reflect, on a conflict
    <begin_of_image> … <end_of_image>                                    refine   (model paints again)
    <inspect>…</inspect>                                                 reflect
    <ins>  or  </process>                                                reflect: a new step, or the end
    …</ins><des>…</des> …                                                the next plan continues

**When it stops.** The model decides, as in the paper: "the trajectory ends when
it closes without opening a new image". Once a step's inspection finds no
conflict, the reflect stage lets the model write on until it opens a new step
(``<ins>``) or closes (``</process>`` or its end-of-turn token, also one that
ends the inspection itself). A close gives
``Reflection(done=True)`` (``meta["process"]["closed"]``), and the loop's
``planner`` stop rule ends the run after that step: no extra step. An opener
stays in the context (``meta["process"]["opened"]``): the next plan continues
from it and generates only the rest. ``max_steps`` caps the whole.

A close that comes at a plan instead (the step before ended on a conflict the
loop did not refine, or the model wrote neither opener nor close after its
inspection) still ends the run: the plan is ``Plan(done=True)`` marked
``meta["process"]["closed"]``, and that step paints nothing (its draft is the
previous canvas, its reflection passes without generating).

**Malformed output** never crashes a run; it is recorded in the stage's
``meta["process"]["malformed"]``: a missing tag (the instruction falls back to
the description, else the prompt), an early end at step 1 (nothing painted yet:
the prompt becomes the instruction), an image opened where text was expected, an
endless step (``max_text_tokens`` reached), and neither a new step nor the close
after an inspection (the next plan continues from there). An unreadable inspection means
``on_unreadable_inspection``: ``"ok"`` keeps the image, ``"conflict"`` repaints.

**Resuming.** Each stage records in its output's ``meta["process"]["ops"]`` the
exact operations it applied to the context (text added, token ids generated; an
image is its PNG). A stage that finds no live context for its run, or one that
disagrees with the trajectory, rebuilds it by replaying those operations, so a
resumed run continues on the same state and gives the same bytes.
"""

from __future__ import annotations

import hashlib
import json
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field, fields, replace
from functools import partial
from typing import Any, Literal

from strokeagent.core.stages import Canvas, TrajectoryView
from strokeagent.core.state import ImageRef, Plan, Reflection, StageUsage
from strokeagent.core.store import pixel_digest
from strokeagent.core.threads import run_on
from strokeagent.errors import PolicyError
from strokeagent.unified.protocol import Context, ContextFull, TextOutput, UnifiedModel, Usage

Tag = tuple[str, str]
PREAMBLE = (
    "Paint the prompt in steps. Each step: <ins>what to add or change now</ins>"
    "<des>the whole scene so far</des>, then the image. Then <inspect> with <plan_check> (the plan against the "
    "prompt) and <image_check> (the image against the instruction), each ok or the conflict; on a conflict, "
    "<refine>the corrected instruction</refine> and a new image. Write </process> when the picture is complete.\n"
)


@dataclass(frozen=True)
class ProcessFormat:
    """Every prompt and tag of the format; override any of them from the policy's ``format`` table."""

    preamble: str = PREAMBLE
    prompt: Tag = ("<prompt>", "</prompt>\n")
    ins: Tag = ("<ins>", "</ins>")
    des: Tag = ("<des>", "</des>")
    inspect: Tag = ("<inspect>", "</inspect>")
    plan_check: Tag = ("<plan_check>", "</plan_check>")
    image_check: Tag = ("<image_check>", "</image_check>")
    refine: Tag = ("<refine>", "</refine>")
    close: str = "</process>"
    ok: str = "ok"
    closed_instruction: str = "(the model closed the process: the picture is complete)"

    @classmethod
    def from_table(cls, table: dict[str, Any] | None) -> ProcessFormat:
        names = {f.name for f in fields(cls)}
        unknown = set(table or {}) - names
        if unknown:
            raise PolicyError(
                f"unknown format key {sorted(unknown)[0]!r}; the format has {', '.join(sorted(names))}"
            )
        return replace(cls(), **{k: tuple(v) if isinstance(v, list) else v for k, v in (table or {}).items()})

    def header(self, prompt: str) -> str:
        return f"{self.preamble}{self.prompt[0]}{prompt}{self.prompt[1]}"

    # The writers: the inverse of parse_plan / parse_inspection, for training data
    # (strokeagent.data). Each stops where ProcessStages cuts the context.

    def write_plan(self, instruction: str, description: str) -> str:
        """What the model writes for a plan: ``<ins>…</ins><des>…</des>``."""
        return f"{self.ins[0]}{instruction}{self.ins[1]}{self.des[0]}{description}{self.des[1]}"

    def write_inspection(self, plan_conflicts: list[str], image_conflicts: list[str]) -> str:
        """What the model writes after ``<inspect>``: each check ``ok`` or its conflicts, then ``</inspect>``."""
        plan = "; ".join(plan_conflicts) or self.ok
        image = "; ".join(image_conflicts) or self.ok
        return (
            f"{self.plan_check[0]}{plan}{self.plan_check[1]}{self.image_check[0]}{image}{self.image_check[1]}"
            f"{self.inspect[1]}"
        )

    def write_refine(self, corrected: str) -> str:
        return f"{self.refine[0]}{corrected}{self.refine[1]}"


def between(text: str, tag: Tag) -> tuple[str | None, bool]:
    """The text inside the first ``tag`` and whether it was closed: ``(None, False)`` when it never opens."""
    start = text.find(tag[0])
    if start < 0:
        return None, False
    start += len(tag[0])
    end = text.find(tag[1], start)
    return (text[start:].strip(), False) if end < 0 else (text[start:end].strip(), True)


def parse_plan(fmt: ProcessFormat, text: str, fallback: str = "") -> Plan:
    """A ``Plan`` from the model's plan text; what is missing is filled and listed in ``meta``."""
    malformed = []
    ins, ins_closed = between(text, fmt.ins)
    des, des_closed = between(text, fmt.des)
    for name, value, closed, tag in (
        ("instruction", ins, ins_closed, fmt.ins),
        ("description", des, des_closed, fmt.des),
    ):
        if value is None:
            malformed.append(f"no {tag[0]}: the {name} is missing")
        elif not closed:
            malformed.append(f"{tag[0]} never closed with {tag[1]}")
    instruction = ins or des or fallback
    return Plan(instruction=instruction, description=des or "", meta={"process": {"malformed": malformed}})


def parse_inspection(fmt: ProcessFormat, text: str) -> Reflection:
    """A ``Reflection`` from the inspection text: each check is ``ok`` or names its conflict."""
    malformed, conflicts = [], {}
    for name, tag in (("plan", fmt.plan_check), ("image", fmt.image_check)):
        value, closed = between(text, tag)
        if value is None:
            malformed.append(f"no {tag[0]}: the {name} check is missing")
        elif not closed:
            malformed.append(f"{tag[0]} never closed with {tag[1]}")
        conflicts[name] = [] if value is None or value.lower().startswith(fmt.ok.lower()) else [value]
    return Reflection(
        prompt_conflicts=conflicts["plan"],
        image_conflicts=conflicts["image"],
        ok=not (conflicts["plan"] or conflicts["image"]),
        meta={"process": {"malformed": malformed}},
    )


def _ops_key(ops: list[list[Any]]) -> str:
    return hashlib.sha256(json.dumps(ops).encode()).hexdigest()


@dataclass
class _Live:
    """A run's context and the keys of the trajectory events it holds, in order."""

    ctx: Context
    keys: list[str] = field(default_factory=list)


class ProcessStages:
    """All four stages on one unified model's shared context (stage kind ``"process"``).

    ``backend`` names the model's description (``backends/janus-pro-1b.toml``;
    the same file is loaded once per process), or is a ``UnifiedModel`` itself. One object serves many runs: each
    run (its folder, prompt and seed) has its own context.
    """

    #: How many runs keep a live context; older ones are rebuilt if they come back (0: rebuild every stage).
    max_live = 4

    def __init__(
        self,
        backend: str | UnifiedModel,
        max_text_tokens: int = 256,
        temperature: float = 0.0,
        guidance: float = 5.0,
        image_steps: int | None = None,
        size: int | None = None,
        on_unreadable_inspection: Literal["ok", "conflict"] = "ok",
        format: dict[str, Any] | None = None,  # noqa: A002 - the TOML key
    ) -> None:
        if on_unreadable_inspection not in ("ok", "conflict"):
            raise ValueError("on_unreadable_inspection must be 'ok' or 'conflict'")
        if max_text_tokens < 1:
            raise ValueError("max_text_tokens must be at least 1")
        self.format = ProcessFormat.from_table(format)
        self.model: UnifiedModel = _load_model(backend) if isinstance(backend, str) else backend
        if not isinstance(self.model, UnifiedModel):
            raise PolicyError(
                f"{backend}: {type(self.model).__name__} is not a unified model (no context operations)"
            )
        self.max_text_tokens, self.temperature = max_text_tokens, temperature
        self.guidance, self.image_steps, self.size = guidance, image_steps, size
        self.on_unreadable_inspection = on_unreadable_inspection
        self._live: OrderedDict[tuple[Any, ...], _Live] = OrderedDict()

    # -- the four stages ------------------------------------------------------

    async def plan(self, view: TrajectoryView) -> Plan:
        return await self._on_model_thread(
            self._run, view, lambda live, ops: self._plan(view, live, ops), partial(self._closing_plan, view)
        )

    async def draft(self, view: TrajectoryView, plan: Plan) -> Canvas:
        return await self._on_model_thread(
            self._run,
            view,
            lambda live, ops: self._paint(view, plan, live, ops),
            partial(self._unchanged, view, None),
        )

    async def reflect(self, view: TrajectoryView, plan: Plan, image: Canvas) -> Reflection:
        return await self._on_model_thread(
            self._run, view, lambda live, ops: self._reflect(view, plan, live, ops), _closing_reflection
        )

    async def refine(self, view: TrajectoryView, plan: Plan, image: Canvas, reflection: Reflection) -> Canvas:
        return await self._on_model_thread(
            self._run,
            view,
            lambda live, ops: self._paint(view, plan, live, ops),
            partial(self._unchanged, view, image),
        )

    async def _on_model_thread(self, fn: Callable[..., Any], *args: Any) -> Any:
        """``fn(*args)`` off the event loop: on the model's own ``executor`` if it names one, else a worker thread."""
        return await run_on(getattr(self.model, "executor", None), fn, *args)

    # -- when the context is full: the run closes where it stands ------------------------

    def _closing_plan(self, view: TrajectoryView, why: str) -> Plan:
        return Plan(instruction=self.format.closed_instruction, description=self._last_description(view), done=True,
                    meta=_full_meta(why))  # fmt: skip

    def _unchanged(self, view: TrajectoryView, image: Canvas | None, why: str) -> Canvas:
        """The canvas as it stands (blank before any)."""
        canvas = image if image is not None else view.open(view.canvas) if view.canvas is not None else None
        if canvas is None:
            from PIL import Image

            side = self.size or getattr(self.model, "native_size", None) or 512
            canvas = Canvas(Image.new("RGB", (side, side), "white"), {})
        return Canvas(canvas.image, {**canvas.meta, "process": _full_meta(why)["process"]})

    # -- what each stage writes ---------------------------------------------------

    def _plan(self, view: TrajectoryView, live: _Live, ops: list[list[Any]]) -> Plan:
        fmt = self.format
        if not live.keys:
            self._add_text(live.ctx, ops, fmt.header(view.prompt))
        # The last inspection may have opened this step already: those tokens are in the context; go on from them.
        opened = _opened(view)
        out = self._generate(live.ctx, ops, view.seed, stop=(fmt.des[1], fmt.close))
        closed = out.stop_reason == "eos" or out.matched == fmt.close
        text = opened + (out.text.removesuffix(fmt.close) if out.matched == fmt.close else out.text)
        if closed and view.step > 0 and not (between(text, fmt.ins)[0] or between(text, fmt.des)[0]):
            plan = Plan(
                instruction=fmt.closed_instruction, description=self._last_description(view), done=True
            )
            return _with_process(plan, out, ops, opened, closed=True)
        plan = parse_plan(fmt, text, fallback=view.prompt)
        notes = list(plan.meta["process"]["malformed"])
        if closed:
            notes.append("closed before painting anything; painting the prompt instead" if view.step == 0
                         else "closed the process inside its plan; painting the plan anyway")  # fmt: skip
        notes += _stop_notes(out, "the plan", self.max_text_tokens)
        return _with_process(plan, out, ops, opened, malformed=notes)

    def _paint(self, view: TrajectoryView, plan: Plan, live: _Live, ops: list[list[Any]]) -> Canvas:
        if plan.meta.get("process", {}).get("closed"):
            previous = view.open(view.canvas)  # type: ignore[arg-type]
            return Canvas(previous.image, {**previous.meta, "process": {"closed": True}})
        if not live.keys:  # no plan before it (a one-pass order): the prompt opens the context
            self._add_text(live.ctx, ops, self.format.header(view.prompt))
        image = self.model.generate_image(
            live.ctx, seed=view.seed, guidance=self.guidance, steps=self.image_steps, size=self.size
        )
        self.model.add_image(live.ctx, image)
        process: dict[str, Any] = {"pixels": pixel_digest(image), **({"ops": ops} if ops else {})}
        # A model that paints in strokes hands its canvas document along (the stroke world's own key),
        # so that its hand goes on from it after a resume; its inspection still reads only the pixels.
        return Canvas(image, {"process": process, **_document_of(image)})

    def _reflect(self, view: TrajectoryView, plan: Plan, live: _Live, ops: list[list[Any]]) -> Reflection:
        fmt = self.format
        if plan.meta.get("process", {}).get("closed"):
            return Reflection(ok=True, meta={"process": {"closed": True, "ops": [], "malformed": []}})
        self._add_text(live.ctx, ops, fmt.inspect[0])
        out = self._generate(live.ctx, ops, view.seed, stop=(fmt.inspect[1],))
        reflection = parse_inspection(fmt, fmt.inspect[0] + out.text)
        notes = [
            *reflection.meta["process"]["malformed"],
            *_stop_notes(out, "the inspection", self.max_text_tokens),
        ]
        unreadable = bool(notes) and not (reflection.prompt_conflicts or reflection.image_conflicts)
        if unreadable and self.on_unreadable_inspection == "conflict":
            reflection = reflection.model_copy(
                update={"ok": False, "image_conflicts": ["the inspection was unreadable"]}
            )
        raw, extra = [out.text], {}
        if not reflection.ok:
            more = self._generate(live.ctx, ops, view.seed + 1, stop=(fmt.refine[1],))
            raw.append(more.text)
            corrected, closed = between(more.text, fmt.refine)
            if corrected is None or not closed:
                notes.append(f"no complete {fmt.refine[0]}: repainting with the plan's instruction")
            notes += _stop_notes(more, "the refine instruction", self.max_text_tokens)
            reflection = reflection.model_copy(
                update={"corrected_instruction": corrected or plan.instruction}
            )
        elif out.stop_reason == "eos":  # the model ended its turn in a passed inspection: that is its close
            reflection, extra = reflection.model_copy(update={"done": True}), {"closed": True}
        else:
            # The step passed: the model opens a new step or closes the process, right here.
            after = self._generate(live.ctx, ops, view.seed + 2, stop=(fmt.ins[0], fmt.close))
            raw.append(after.text)
            if after.stop_reason == "eos" or after.matched == fmt.close:
                reflection, extra = reflection.model_copy(update={"done": True}), {"closed": True}
            elif after.matched == fmt.ins[0]:
                extra = {"opened": after.text}
            else:
                why = {"image": "opened an image", "length": f"wrote {self.max_text_tokens} tokens"}
                notes.append(
                    f"after the inspection, {why.get(after.stop_reason, 'stopped')} without opening a new "
                    f"step ({fmt.ins[0]}) or closing ({fmt.close}): the next plan goes on from there"
                )
        meta = {"raw": raw, "stop": out.stop_reason, "malformed": notes, "ops": ops, **extra}
        return reflection.model_copy(update={"meta": {"process": meta}})

    # -- the shared context -------------------------------------------------------

    def _run(self, view: TrajectoryView, write: Any, full: Any) -> Any:
        """Find (or rebuild) the run's context, let ``write`` extend it, record usage and ops; when the context
        has no room (``ContextFull``), what ``full`` gives: a closing result that ends the run."""
        key = (view.trajectory.run_dir, view.prompt, view.trajectory.seed)
        live = self._live.pop(key, None)  # out while in use: a stage that fails leaves nothing stale
        expected = _event_keys(view, self.format)
        kept = self._sync(view, live, expected)
        before = live.ctx.snapshot() if kept is live else Usage()  # a rebuild is paid by this stage
        live = kept
        history = live.ctx.length  # what a model without a kept context would have to encode again
        ops: list[list[Any]] = []
        try:
            result = write(live, ops)
        except ContextFull as e:
            self.model.drop(live.ctx)  # part of this stage went in: not a state to go on from
            return full(f"the context is full: {e}; the run ends here")
        usage = live.ctx.usage.since(before)
        meta = {**result.meta.get("process", {}), "usage": {**vars(usage), "history": history}}
        # What the call cost comes back with its result: runs sharing this object cannot mix it up.
        reported = StageUsage(prefilled_tokens=usage.prefilled, generated_tokens=usage.generated)
        if isinstance(result, Canvas):
            result = Canvas(result.image, {**result.meta, "process": meta}, usage=reported)
        else:
            result = result.model_copy(update={"meta": {**result.meta, "process": meta}, "usage": reported})
        live.keys = [*expected, *_output_keys(result)]
        self._keep(key, live)
        return result

    def _sync(self, view: TrajectoryView, live: _Live | None, expected: list[str]) -> _Live:
        if live is not None and live.keys == expected:
            return live
        if live is not None:
            self.model.drop(live.ctx)
        live = _Live(self.model.new_context())
        for ops in _event_ops(view, self.format):
            for op, value in ops:
                if op == "text":
                    self.model.add_text(live.ctx, value)
                elif op == "ids":
                    self.model.add_tokens(live.ctx, tuple(value))
                else:  # an image, from the run's store, with the document its painter handed along
                    canvas = view.open(value)
                    canvas.image.info.update(_document_of(canvas))
                    self.model.add_image(live.ctx, canvas.image)
        live.keys = list(expected)
        return live

    def _keep(self, key: tuple[Any, ...], live: _Live) -> None:
        self._live[key] = live
        while len(self._live) > self.max_live:
            _, old = self._live.popitem(last=False)
            self.model.drop(old.ctx)

    def _add_text(self, ctx: Context, ops: list[list[Any]], text: str) -> None:
        self.model.add_text(ctx, text)
        ops.append(["text", text])

    def _generate(self, ctx: Context, ops: list[list[Any]], seed: int, stop: tuple[str, ...]) -> TextOutput:
        out = self.model.generate_text(
            ctx, stop=stop, max_new_tokens=self.max_text_tokens, seed=seed, temperature=self.temperature
        )
        ops.append(["ids", list(out.ids)])
        return out

    @staticmethod
    def _last_description(view: TrajectoryView) -> str:
        plans = [s.plan for s in view.steps if s.plan is not None]
        return plans[-1].description if plans else ""


def _load_model(backend: str) -> Any:
    from strokeagent.backends import load_backend, resolve_backend_path

    try:
        return load_backend(backend)
    except PolicyError as e:
        path = str(resolve_backend_path(backend))
        raise PolicyError(str(e) if str(e).startswith(path) else f"{path}: {e}") from None


def _with_process(plan: Plan, out: TextOutput, ops: list[list[Any]], opened: str, closed: bool = False,
                  malformed: list[str] | None = None) -> Plan:  # fmt: skip
    meta: dict[str, Any] = {
        "raw": out.text,
        "stop": out.stop_reason,
        "malformed": malformed or [],
        "ops": ops,
    }
    if opened:
        meta["continued"] = opened  # written by the last reflection; "raw" is what this plan wrote after it
    if closed:
        meta["closed"] = True
    return plan.model_copy(update={"meta": {**plan.meta, "process": meta}})


def _document_of(image_or_canvas: Any) -> dict[str, Any]:
    """The stroke document an image (``info``) or a canvas (``meta``) carries, as ``{key: document}``."""
    from strokeagent.sketch.document import META_KEY

    held = getattr(image_or_canvas, "meta", None)
    held = held if held is not None else image_or_canvas.info
    return {META_KEY: held[META_KEY]} if META_KEY in held else {}


def _full_meta(why: str) -> dict[str, Any]:
    return {"process": {"closed": True, "malformed": [why], "ops": []}}


def _closing_reflection(why: str) -> Reflection:
    return Reflection(ok=True, done=True, meta=_full_meta(why))


def _opened(view: TrajectoryView) -> str:
    """The opener the previous step's last inspection wrote (``"<ins>"``), if it opened this step."""
    previous = view.steps[view.step - 1] if 0 < view.step <= len(view.steps) else None
    if previous is None or not previous.reflections:
        return ""
    return previous.reflections[-1].meta.get("process", {}).get("opened", "")


def _stop_notes(out: TextOutput, what: str, cap: int) -> list[str]:
    if out.stop_reason == "image":
        return [f"opened an image where {what} was expected"]
    if out.stop_reason == "length":
        return [f"{what} did not end within {cap} tokens"]
    return []


def _text_events(view: TrajectoryView, fmt: ProcessFormat) -> list[tuple[str, Any]]:
    """The trajectory as ``(key, ops)`` events, in the order the context absorbed them: every state this
    model wrote (its ``meta["process"]``), in the order the states were made. A user's edit of a plan or an
    inspection (at a pause) stands where the model's own text stood, written in the format, so that what the
    model paints and writes next follows the edit; its keys differ, so a live context is rebuilt."""
    events: list[tuple[str, Any]] = []
    for step in view.steps:
        # This step's newest plan and inspection by the model: (its event's index, its meta["process"]).
        written: dict[type, tuple[int, dict[str, Any]]] = {}
        for state in step.states:
            value = state.value
            process = value.meta.get("process", {})
            if isinstance(value, ImageRef):
                if "pixels" in process:
                    events.append((process["pixels"], [*process.get("ops", []), ["image", value]]))
            elif state.by == "user" and type(value) in written:
                index, replaced = written[type(value)]
                ops = [*_given(replaced.get("ops", [])), ["text", _edited_text(fmt, value, replaced)]]
                events[index] = (_ops_key(ops), ops)
            elif process:
                ops = process.get("ops", [])
                written[type(value)] = (len(events), process)
                events.append((_ops_key(ops), ops))
    return events


def _given(ops: list[list[Any]]) -> list[list[Any]]:
    """The text a stage gave the model before it generated (the run's header, ``<inspect>``): its leading text ops."""
    first_generated = next((i for i, (op, _) in enumerate(ops) if op != "text"), len(ops))
    return ops[:first_generated]


def _edited_text(fmt: ProcessFormat, edit: Plan | Reflection, replaced: dict[str, Any]) -> str:
    """What the model would have generated for the user's ``edit``, where it generated what ``replaced`` records."""
    if isinstance(edit, Plan):
        plan = fmt.write_plan(edit.instruction, edit.description)
        # The inspection before opened this step ("<ins>" is in the context already): go on from it, as the plan did.
        return plan.removeprefix(fmt.ins[0]) if replaced.get("continued") else plan
    inspection = fmt.write_inspection(edit.prompt_conflicts, edit.image_conflicts)
    return inspection + ("" if edit.ok else fmt.write_refine(edit.corrected_instruction or ""))


def _event_keys(view: TrajectoryView, fmt: ProcessFormat) -> list[str]:
    return [key for key, _ in _text_events(view, fmt)]


def _event_ops(view: TrajectoryView, fmt: ProcessFormat) -> list[Any]:
    return [ops for _, ops in _text_events(view, fmt)]


def _output_keys(result: Any) -> list[str]:
    process = result.meta.get("process", {})
    if isinstance(result, Canvas):
        return [process["pixels"]] if "pixels" in process else []
    return [_ops_key(process.get("ops", []))]
