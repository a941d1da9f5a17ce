"""A text head whose server fails 30 % of calls (500, 429, hangs, bad JSON, 200s with `[]`/`null`/HTML).

The real ``OpenAIHead`` talks to the loopback ``FakeOpenAI`` of tests/test_text_heads.py, here given a script
that answers each request from its content (so the answers do not depend on how many faults came before)
and faults at a seeded rate. The composite text stages (``head.plan``, ``head.reflect``) drive the
``testing`` draft and refine stages from a policy file. A run that fails is resumed until it finishes;
every run must end with the bytes of a run against a server that never fails. Nothing is lost.
"""

from __future__ import annotations

import hashlib
import json
import random
import sys
import threading
from pathlib import Path
from typing import Any

import strokeagent
from strokeagent.backends import forget_backends
from strokeagent.core.policy import load_policy
from strokeagent.errors import RunError

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from test_text_heads import FakeOpenAI  # noqa: E402 - the misbehaving loopback server, reused

STEPS = 2
FAULTS = [500, 503, (429, {"Retry-After": "0"}), 1.0, "{not json", ("raw", "[]"), ("raw", "null"),
          ("raw", "<html><body>Bad gateway</body></html>")]  # fmt: skip


def answer(body: dict[str, Any]) -> str:
    """The right reply to a request, from its content alone."""
    text = json.dumps(body["messages"], sort_keys=True)
    user = body["messages"][-1]["content"]
    user = user if isinstance(user, str) else " ".join(p.get("text", "") for p in user if isinstance(p, dict))
    if "Write the next step." in user:
        step = int(user.split("This is step ")[1].split(".")[0])
        return json.dumps(
            {"instruction": f"draw shape {step}", "description": f"{step} shapes", "done": step >= STEPS}
        )
    # Reflect: a conflict or not, decided by the image it was shown (a hash), so the same every time.
    if hashlib.sha256(text.encode()).digest()[0] % 2:
        return json.dumps(
            {"image_conflicts": ["the shape is off"], "ok": False, "corrected_instruction": "fix it"}
        )
    return json.dumps({"ok": True})


class FaultyScript:
    """A ``FakeOpenAI`` script whose entries are computed: a fault at ``rate``, else the right answer."""

    def __init__(self, server: FakeOpenAI, rate: float, seed: int) -> None:
        self.server, self.rate, self.rng, self.lock = server, rate, random.Random(seed), threading.Lock()
        self.faults = self.answers = 0

    def __len__(self) -> int:
        return 10**12

    def __getitem__(self, i: int) -> Any:
        with self.lock:
            if self.rng.random() < self.rate:
                self.faults += 1
                return self.rng.choice(FAULTS)
            self.answers += 1
        return answer(self.server.requests[i]["body"])


def start_server(rate: float, seed: int) -> FakeOpenAI:
    server = FakeOpenAI([])
    server.script = FaultyScript(server, rate, seed)
    threading.Thread(target=server.serve_forever, args=(0.02,), daemon=True).start()
    return server


def write_policy(folder: Path, url: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "head.toml").write_text(
        f'kind = "openai"\nbase_url = "{url}"\nmodel = "m"\ntimeout = 0.3\nmax_retries = 1\n'
    )
    path = folder / "policy.toml"
    path.write_text(
        f'name = "faulty-head"\n[loop]\norder = ["plan", "draft", "reflect", "refine"]\nmax_steps = {STEPS}\n'
        'max_refines = 1\n[stages.plan]\nkind = "head.plan"\nbackend = "head.toml"\n'
        '[stages.draft]\nkind = "testing.draft"\nsize = 32\n'
        '[stages.reflect]\nkind = "head.reflect"\nbackend = "head.toml"\n'
        '[stages.refine]\nkind = "testing.refine"\n'
    )
    return path


def check_faulty_head(n: int, seed: int, work: Path, rate: float = 0.3) -> dict[str, Any]:
    """``n`` runs against a server failing ``rate`` of calls; the runs lost (never finished or other bytes)."""
    forget_backends()
    good, bad = start_server(0.0, seed), start_server(rate, seed)
    stats: dict[str, Any] = {"runs": n, "failed_runs": 0, "resumes": 0, "lost": [], "calls": 0, "faults": 0}
    try:
        clean = load_policy(write_policy(work / "good", good.url))
        faulty = write_policy(work / "bad", bad.url)
        for i in range(n):
            prompt = f"shapes number {i % 5}"
            want = strokeagent.generate(prompt, policy=clean, seed=i, out=work / f"want{i}")
            want_bytes = (work / f"want{i}" / "final.png").read_bytes()
            assert want.final_image is not None
            run = work / f"run{i}"
            try:
                strokeagent.generate(prompt, policy=load_policy(faulty), seed=i, out=run)
            except RunError:
                stats["failed_runs"] += 1
                for _ in range(30):
                    stats["resumes"] += 1
                    try:
                        strokeagent.resume(run, pause=False)  # the policy as run.json recorded it
                        break
                    except RunError:
                        continue
            final = run / "final.png"
            if not final.is_file():
                stats["lost"].append((str(run), "never finished"))
            elif final.read_bytes() != want_bytes:
                stats["lost"].append((str(run), "final.png differs from a run without faults"))
        stats["calls"], stats["faults"] = len(bad.requests), bad.script.faults
    finally:
        for server in (good, bad):
            server.shutdown()
            server.server_close()
        forget_backends()
    return stats


def test_a_head_failing_30_percent_of_calls_loses_nothing_and_resumes_to_the_right_bytes(tmp_path):
    stats = check_faulty_head(6, seed=5, work=tmp_path)
    assert stats["lost"] == [], stats
    assert stats["faults"] >= 0.15 * stats["calls"] and stats["failed_runs"] >= 1, (
        stats
    )  # the faults were real


def test_200_replies_that_are_not_completions_are_asked_again(tmp_path):
    """`[]`, `null` and an HTML page with status 200 are asked again, then answered: the run does not fail."""
    from test_text_heads import PLAN

    from strokeagent.backends.openai_head import OpenAIHead
    from strokeagent.kinds.head import PlanAnswer

    for body in ("[]", "null", "<html>oops</html>"):
        server = FakeOpenAI([("raw", body), json.dumps(PLAN)])
        threading.Thread(target=server.serve_forever, args=(0.02,), daemon=True).start()
        try:
            head = OpenAIHead(base_url=server.url, model="m", max_retries=1)
            got = head.chat_sync([{"role": "user", "content": "plan"}], schema=PlanAnswer)
            assert got.instruction == PLAN["instruction"] and len(server.requests) == 2
        finally:
            server.shutdown()
            server.server_close()
