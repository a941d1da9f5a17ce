"""Text heads: the OpenAI-compatible head against a real (misbehaving on purpose) loopback server,
the transformers head on a tiny random model and on SmolLM2, and the head's plan/reflect stages."""

import asyncio
import base64
import io
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from PIL import Image

import strokeagent
from strokeagent.backends import forget_backends, load_backend
from strokeagent.backends.openai_head import OpenAIHead
from strokeagent.core.policy import LoopSpec, Policy, load_policy
from strokeagent.errors import PolicyError, RunError
from strokeagent.kinds.head import HeadPlanner, HeadReflector, PlanAnswer, ReflectAnswer
from strokeagent.testing import ShapesDrafter, ShapesRefiner
from strokeagent.testing.heads import ScriptedTextHead

PLAN = {"instruction": "draw a red apple", "description": "a red apple on the left", "done": True}


# -- a real HTTP server on loopback that misbehaves as told ------------------------------------


class FakeOpenAI(ThreadingHTTPServer):
    """``/v1/chat/completions`` answering from ``script``: ints are HTTP statuses, floats are delays
    (seconds, then the reply), strings are the assistant's message content. The last entry repeats."""

    daemon_threads = True

    def __init__(self, script):
        super().__init__(("127.0.0.1", 0), _Handler)
        self.script, self.requests = list(script), []

    @property
    def url(self):
        return f"http://127.0.0.1:{self.server_address[1]}/v1"


class _Handler(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def do_POST(self):
        server = self.server
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        server.requests.append({"path": self.path, "body": body, "auth": self.headers.get("Authorization")})
        step = server.script[min(len(server.requests), len(server.script)) - 1]
        headers = {"Content-Type": "application/json"}
        if isinstance(step, tuple) and step[0] == "raw":  # a 200 whose body is not a chat completion
            data = step[1].encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/html" if step[1].startswith("<") else "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
            return
        if isinstance(step, tuple):  # (status, extra headers)
            step, extra = int(step[0]), step[1]
            headers.update(extra)
        if isinstance(step, float):
            time.sleep(step)
            step = json.dumps(PLAN)
        if isinstance(step, int):
            payload, status = {"error": {"message": f"scripted {step}"}}, step
        else:
            status = 200
            payload = {
                "id": "x",
                "object": "chat.completion",
                "created": 0,
                "model": body["model"],
                "choices": [
                    {"index": 0, "message": {"role": "assistant", "content": step}, "finish_reason": "stop"}
                ],
            }
        data = json.dumps(payload).encode()
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


@pytest.fixture
def fake():
    servers = []

    def start(*script):
        server = FakeOpenAI(script)
        threading.Thread(target=server.serve_forever, args=(0.02,), daemon=True).start()
        servers.append(server)
        return server

    yield start
    for s in servers:
        s.shutdown()
        s.server_close()


def head_at(server, **options):
    return OpenAIHead(base_url=server.url, model="m", **options)


USER = [{"role": "system", "content": "plan"}, {"role": "user", "content": "a red apple"}]


def test_openai_head_sends_schema_images_and_key_and_validates_the_reply(fake, monkeypatch):
    monkeypatch.setenv("STROKEAGENT_TEST_KEY", "sk-test")
    server = fake(json.dumps(PLAN))
    head = head_at(server, api_key_env="STROKEAGENT_TEST_KEY")
    answer = head.chat_sync(USER, [Image.new("RGB", (8, 8), "red")], schema=PlanAnswer)
    assert answer == PlanAnswer(**PLAN)
    [request] = server.requests
    body = request["body"]
    assert request["path"] == "/v1/chat/completions" and request["auth"] == "Bearer sk-test"
    assert body["response_format"]["type"] == "json_schema"
    assert body["response_format"]["json_schema"]["schema"] == PlanAnswer.model_json_schema()
    assert body["temperature"] == 0.0 and body["seed"] == 0
    assert body["messages"][0] == USER[0]  # the system turn is left alone
    image_part, text_part = body["messages"][1]["content"]
    assert text_part == {"type": "text", "text": "a red apple"}
    url = image_part["image_url"]["url"]
    assert url.startswith("data:image/png;base64,")
    pixels = Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1])))
    assert pixels.size == (8, 8) and pixels.getpixel((0, 0)) == (255, 0, 0)


def test_prompt_mode_puts_the_schema_in_the_system_turn_and_reads_fenced_json(fake):
    server = fake("Sure!\n```json\n" + json.dumps(PLAN) + "\n```")
    answer = head_at(server, structured="prompt").chat_sync(USER, schema=PlanAnswer)
    assert answer.instruction == "draw a red apple"
    body = server.requests[0]["body"]
    assert "response_format" not in body
    assert body["messages"][0]["content"] == (
        'plan\n\nAnswer with one JSON object only, like {"instruction": "...", "description": "...", "done": false}'
    )


def test_5xx_is_retried_by_the_sdk_with_backoff_then_succeeds(fake):
    server = fake(500, 503, json.dumps(PLAN))
    head = OpenAIHead(base_url=server.url, model="m", max_retries=3)
    started = time.perf_counter()
    assert head.chat_sync(USER, schema=PlanAnswer).done is True
    assert len(server.requests) == 3 and head.calls == 3
    assert time.perf_counter() - started >= 0.3  # the SDK's backoff: about 0.5 s, then 1 s, less jitter


def test_retry_after_is_honoured(fake):
    server = fake(("429", {"Retry-After": "2"}), json.dumps(PLAN))
    started = time.perf_counter()
    assert head_at(server, max_retries=1).chat_sync(USER, schema=PlanAnswer).done is True
    assert time.perf_counter() - started >= 1.9 and len(server.requests) == 2


@pytest.mark.parametrize("body", ["[]", "null", "<html><body>502 Bad Gateway</body></html>"])
def test_a_200_that_is_not_a_chat_completion_is_asked_again_then_named(fake, body):
    server = fake(("raw", body), json.dumps(PLAN))
    assert head_at(server).chat_sync(USER, schema=PlanAnswer).done is True
    server = fake(("raw", body))
    with pytest.raises(RunError, match="no valid answer after 2 attempts; last: the reply does not match PlanAnswer"):
        head_at(server, max_retries=1).chat_sync(USER, schema=PlanAnswer)


def test_one_client_per_head_and_an_injected_http_client(fake):
    import httpx

    seen = []

    def handler(request):
        seen.append(request.url.path)
        return httpx.Response(200, json={"id": "x", "object": "chat.completion", "created": 0, "model": "m",
                                         "choices": [{"index": 0, "finish_reason": "stop",
                                                      "message": {"role": "assistant", "content": json.dumps(PLAN)}}]})  # fmt: skip

    head = OpenAIHead(base_url="http://nowhere.invalid/v1", model="m",
                      http_client=httpx.AsyncClient(transport=httpx.MockTransport(handler)))  # fmt: skip

    async def twice():
        await head.chat(USER, schema=PlanAnswer)
        await head.chat(USER, schema=PlanAnswer)
        return len(head._clients)

    assert asyncio.run(twice()) == 1 and seen == ["/v1/chat/completions"] * 2 and head.calls == 2


@pytest.mark.parametrize(
    ("script", "expected"),
    [
        ((500,), "InternalServerError 500"),
        ((429,), "RateLimitError 429"),
        (('{"instruction": "x"}',), "does not match PlanAnswer"),
        (("I will draw an apple.",), "does not match PlanAnswer"),
        ((1.0,), "APITimeoutError"),
    ],
    ids=["5xx", "429", "wrong-json", "no-json", "slow"],
)
def test_persistent_faults_end_in_one_error_naming_model_and_url(fake, script, expected):
    server = fake(*script)
    head = head_at(server, max_retries=2, timeout=0.3)
    with pytest.raises(RunError) as info:
        head.chat_sync(USER, schema=PlanAnswer)
    message = str(info.value)
    assert f"text head openai 'm' at {server.url}" in message
    assert "after 3 attempts" in message and expected in message
    assert "\n" not in message
    assert len(server.requests) == 3


def test_a_reply_that_does_not_match_is_retried_with_another_seed_and_temperature(fake):
    server = fake("not json", json.dumps(PLAN))
    assert head_at(server).chat_sync(USER, schema=PlanAnswer).done
    first, second = (r["body"] for r in server.requests)
    assert (first["temperature"], first["seed"]) == (0.0, 0)
    assert (second["temperature"], second["seed"]) == (0.7, 1)


def test_a_server_that_is_down_is_retried_then_named():
    from strokeagent.backends.vllm_local import free_port

    url = f"http://127.0.0.1:{free_port()}/v1"
    head = OpenAIHead(base_url=url, model="m", max_retries=1)
    with pytest.raises(
        RunError, match=rf"at {url}: no valid answer after 2 attempts; last: APIConnectionError"
    ):
        head.chat_sync(USER, schema=PlanAnswer)


def test_a_4xx_is_not_retried(fake):
    server = fake(400)
    with pytest.raises(RunError, match="the server refused the request: BadRequestError 400"):
        head_at(server).chat_sync(USER, schema=PlanAnswer)
    assert len(server.requests) == 1


def test_a_text_only_head_refuses_images_before_sending(fake):
    server = fake(json.dumps(PLAN))
    with pytest.raises(RunError, match="reads no images"):
        head_at(server, vision=False).chat_sync(USER, [Image.new("RGB", (4, 4))], schema=PlanAnswer)
    assert server.requests == []


def write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    ("toml", "expected"),
    [
        ('kind = "openai"\nbase_url = "127.0.0.1:8000"\nmodel = "m"', "not an http(s) URL"),
        ('kind = "openai"\nbase_url = "http://127.0.0.1:8000/v1"\nmodel = ""', "'model' is empty"),
        (
            'kind = "openai"\nbase_url = "http://h/v1"\nmodel = "m"\napi_key_env = "STROKEAGENT_NO_SUCH_KEY"',
            "STROKEAGENT_NO_SUCH_KEY (api_key_env) is not set",
        ),
        (
            'kind = "openai"\nbase_url = "http://h/v1"\nmodel = "m"\nstructured = "grammar"',
            "use 'json_schema' or 'prompt'",
        ),
        (
            'kind = "openai"\nbase_url = "http://h/v1"\nmodel = "m"\ntemperture = 0.1',
            "bad options for openai",
        ),
        ('kind = "transformers"\nmodel = "/no/such/model"', "'/no/such/model' is not a folder"),
        (
            'kind = "transformers"\nmodel = "nobody/not-cached-anywhere"',
            "not in the local Hugging Face cache",
        ),
        ('kind = "transformers"\nmodel = "."\ndtype = "float8"', "dtype 'float8'"),
        ('kind = "transformers"\nmodel = "."', "has no config.json"),
        ('kind = "opnai"\nmodel = "m"', "unknown backend kind 'opnai'"),
    ],
)
def test_backend_descriptions_that_cannot_work_are_refused_when_loaded(tmp_path, monkeypatch, toml, expected):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(PolicyError, match=expected.replace("(", r"\(").replace(")", r"\)")):
        load_backend(write(tmp_path, "b.toml", toml))


def test_a_policy_whose_head_backend_is_not_a_head_is_refused_at_load(tmp_path):
    write(tmp_path, "not-a-head.toml", 'kind = "strokeagent.testing:ShapesDrafter"\n')
    policy = write(
        tmp_path,
        "p.toml",
        '[loop]\norder = ["plan", "draft"]\n[stages.plan]\nkind = "head.plan"\nbackend = "not-a-head.toml"\n'
        '[stages.draft]\nkind = "testing.draft"\n',
    )
    with pytest.raises(
        PolicyError,
        match=r"head.plan: backend .*not-a-head.toml' gives a ShapesDrafter, which is not a text head",
    ):
        load_policy(policy)


# -- the stages, with a scripted head ---------------------------------------------------------


def head_policy(planner_head, reflector_head, steps=3, max_refines=1):
    return Policy(
        name="head-test",
        loop=LoopSpec(max_steps=steps, max_refines=max_refines),
        stages={
            "plan": HeadPlanner(planner_head),
            "draft": ShapesDrafter(size=32),
            "reflect": HeadReflector(reflector_head),
            "refine": ShapesRefiner(),
        },
    )


def plans(*instructions):
    n = len(instructions)
    return [
        {"instruction": i, "description": f"scene {k}", "done": k == n} for k, i in enumerate(instructions, 1)
    ]


def test_head_stages_drive_the_loop_and_see_the_prompt_history_and_image(tmp_path):
    planner = ScriptedTextHead(plans("sky", "  a   red\napple ", "a cup"))
    reflector = ScriptedTextHead(
        [
            {
                "image_conflicts": ["the sky is missing", "the sky is missing"],
                "corrected_instruction": "paint the sky",
            },
            {"ok": True},
        ]
    )
    traj = strokeagent.generate(
        "an apple under the sky", policy=head_policy(planner, reflector), out=tmp_path / "r"
    )
    assert [s.plan.instruction for s in traj.steps] == ["sky", "a red apple", "a cup"]  # whitespace tidied
    assert traj.steps[-1].plan.done and traj.final_image is not None
    first = traj.steps[0].reflections[0]
    assert first.image_conflicts == ["the sky is missing"] and not first.ok
    assert first.corrected_instruction == "paint the sky"
    assert [len(s.images) for s in traj.steps] == [2, 1, 1]  # one refine on step 1 only
    # The planner sees the prompt and the steps so far; the canvas once there is one.
    second_plan = planner.calls[1]
    user = second_plan.messages[-1]["content"]
    assert "Prompt: an apple under the sky" in user and "1. sky" in user and "This is step 2." in user
    assert planner.calls[0].images == [] and len(second_plan.images) == 1
    assert all(c.schema is PlanAnswer for c in planner.calls)
    # The reflector sees the plan and the image it inspects.
    call = reflector.calls[0]
    assert call.schema is ReflectAnswer and "Step 1 instruction: sky" in call.messages[-1]["content"]
    [seen] = call.images
    assert seen.tobytes() == traj.open_image(traj.steps[0].images[0]).tobytes()


def test_a_blind_head_gets_no_images_and_its_image_check_is_dropped(tmp_path):
    planner = ScriptedTextHead(plans("one"), vision=False)
    reflector = ScriptedTextHead(
        [{"prompt_conflicts": ["no cup"], "image_conflicts": ["unseeable"], "ok": False}, {"ok": True}],
        vision=False,
    )
    traj = strokeagent.generate("a cup", policy=head_policy(planner, reflector, steps=1), out=tmp_path / "r")
    assert all(c.images == [] for c in planner.calls + reflector.calls)
    assert "You cannot see the image" in reflector.calls[0].messages[0]["content"]
    r = traj.steps[0].reflections[0]
    assert (r.prompt_conflicts, r.image_conflicts, r.ok) == (["no cup"], [], False)
    assert r.corrected_instruction == "one"  # no correction given: redo the instruction


def test_the_conflicts_decide_ok_not_the_heads_flag():
    view_plan = strokeagent.Plan(instruction="x")
    image = strokeagent.core.stages.Canvas(Image.new("RGB", (4, 4)))

    def reflect(answer):
        reflector = HeadReflector(ScriptedTextHead([answer]))
        return asyncio.run(reflector.reflect(_view(), view_plan, image))

    said_ok_but_listed = reflect({"image_conflicts": ["no apple"], "ok": True})
    assert not said_ok_but_listed.ok and said_ok_but_listed.meta["head_said_ok"] is True
    said_bad_but_empty = reflect({"image_conflicts": ["  "], "ok": False, "corrected_instruction": "y"})
    assert said_bad_but_empty.ok and said_bad_but_empty.corrected_instruction is None
    assert said_bad_but_empty.meta["head_said_ok"] is False


def _view():
    from strokeagent.core.stages import TrajectoryView
    from strokeagent.core.state import Step, Trajectory

    traj = Trajectory(prompt="p", seed=0, steps=[Step(index=0)])
    return TrajectoryView(trajectory=traj, step=0, stage="reflect", seed=0, store=None)


def test_a_head_failure_stops_the_run_keeping_its_images_and_resume_finishes_it(tmp_path):
    down = RunError("text head openai 'm' at http://127.0.0.1:9/v1: no valid answer after 4 attempts")
    planner = ScriptedTextHead([*plans("a", "b")[:1], down])
    reflector = ScriptedTextHead([{"ok": True}])
    run = tmp_path / "r"
    with pytest.raises(
        RunError, match=r"stopped in a stage: RunError: text head openai 'm' at http://127.0.0.1:9/v1"
    ):
        strokeagent.generate("two things", policy=head_policy(planner, reflector, steps=2), out=run)
    assert len(list((run / "images").glob("*.png"))) == 1  # step 1's draft survives
    fixed = head_policy(ScriptedTextHead(plans("a", "b")[1:]), reflector, steps=2)
    traj = strokeagent.resume(run, policy=fixed, pause=False)
    assert [s.plan.instruction for s in traj.steps] == ["a", "b"] and traj.final_image is not None


# -- the transformers head, for real --------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_head():
    forget_backends()
    yield load_backend("tiny-text")
    forget_backends()


def test_tiny_transformers_head_answers_every_schema_validly_and_deterministically(tiny_head):
    assert tiny_head.vision is False
    first = tiny_head.chat_sync(USER, schema=PlanAnswer)
    again = tiny_head.chat_sync(USER, schema=PlanAnswer)
    assert isinstance(first, PlanAnswer) and first == again  # greedy: the same nonsense twice
    reflection = tiny_head.chat_sync(USER, schema=ReflectAnswer)
    assert len(reflection.image_conflicts) <= 3 and len(reflection.corrected_instruction) <= 160
    with pytest.raises(RunError, match="reads no images"):
        tiny_head.chat_sync(USER, [Image.new("RGB", (4, 4))], schema=PlanAnswer)


def test_the_transformers_head_answers_on_its_own_one_thread_whichever_event_loop_asks(tiny_head, monkeypatch):
    from conftest import record_threads

    threads = record_threads(monkeypatch, [(tiny_head, "_chat")])
    answers = [asyncio.run(tiny_head.chat(USER, schema=PlanAnswer)) for _ in range(2)]  # two event loops
    assert threads == ["strokeagent-head_0"] * 2 and answers[0] == answers[1]


def test_composite_text_policy_runs_on_the_tiny_head_from_a_policy_file(tmp_path, cli):
    policy = write(
        tmp_path,
        "tiny.toml",
        'name = "tiny-head"\n[loop]\nmax_steps = 2\nmax_refines = 1\n'
        '[stages.plan]\nkind = "head.plan"\nbackend = "tiny-text"\n'
        '[stages.draft]\nkind = "testing.draft"\n'
        '[stages.reflect]\nkind = "head.reflect"\nbackend = "tiny-text"\n'
        '[stages.refine]\nkind = "testing.refine"\n',
    )
    result = cli("run", "a red apple", "--policy", str(policy), "--out", str(tmp_path / "run"), "-q")
    assert result.returncode == 0, result.stderr
    traj = strokeagent.Trajectory.model_validate_json((tmp_path / "run" / "trajectory.json").read_text())
    assert 1 <= len(traj.steps) <= 2 and traj.final_image is not None
    assert all(s.plan.instruction.strip() and s.reflections for s in traj.steps)
    assert (tmp_path / "run" / "index.html").is_file()


def test_smollm2_writes_a_real_plan_offline():
    forget_backends()
    head = load_backend("smollm2")
    planner = HeadPlanner(head)
    from strokeagent.core.stages import TrajectoryView
    from strokeagent.core.state import Trajectory

    view = TrajectoryView(Trajectory(prompt="a red apple left of a blue cup", seed=0), 0, "plan", 0, None)
    plan = asyncio.run(planner.plan(view))
    words = set(plan.instruction.lower().split()) | set(plan.description.lower().split())
    assert words & {"apple", "cup", "red", "blue"}, plan  # it read the prompt
    forget_backends()


def test_an_image_text_to_text_model_sees_the_canvas(tmp_path):
    from strokeagent.backends.transformers_head import TransformersHead
    from strokeagent.testing.heads import tiny_vision_model

    head = TransformersHead(model=str(tiny_vision_model(tmp_path / "tiny-llava")), max_new_tokens=1000)
    assert head.vision is True
    red, blue = Image.new("RGB", (40, 40), "red"), Image.new("RGB", (40, 40), "blue")
    inputs = head._inputs([{"role": "user", "content": "inspect"}], [red])
    image_tokens = int((inputs["input_ids"] == head.model.config.image_token_id).sum())
    assert inputs["pixel_values"].shape == (1, 3, 32, 32) and image_tokens == 16  # 4x4 patches
    answers = [head.chat_sync(USER, [image], schema=ReflectAnswer) for image in (red, red, blue)]
    assert all(isinstance(a, ReflectAnswer) for a in answers) and answers[0] == answers[1]
    # The reflect stage hands it the image it inspects.
    reflection = asyncio.run(
        HeadReflector(head).reflect(
            _view(), strokeagent.Plan(instruction="x"), strokeagent.core.stages.Canvas(red)
        )
    )
    assert isinstance(reflection, strokeagent.Reflection) and head.calls == 4
