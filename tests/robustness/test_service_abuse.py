"""`strokeagent serve image` under abuse: every bad request gets its own 4xx, nothing else is lost, nothing crashes.

One real service on ``[::1]`` (tiny random-weight SD, default limits but ``--max-steps 50``) takes the
abuse; a second one on ``localhost`` is stopped with SIGTERM at the end.
"""

from __future__ import annotations

import asyncio
import base64
import io
import os
import signal
import socket
import time

import pytest
from PIL import Image

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from test_diffusion_service import TOKEN, free_port, start_service, stop_service, wait_ready  # noqa: E402
from test_image_backends import tiny  # noqa: E402,F401 - the session's tiny pipelines

pytestmark = pytest.mark.slow
AUTH = {"Authorization": f"Bearer {TOKEN}"}
GOOD = {"prompt": "a red apple", "size": "64x64", "num_inference_steps": 2, "seed": 1}


@pytest.fixture(scope="module")
def services(tiny):  # noqa: F811
    port = free_port()
    v6 = start_service(tiny / "sd.toml", "--host", "::1", "--max-steps", "50", port=port)
    v6 = (f"http://[::1]:{port}", v6[1])
    local = start_service(tiny / "sd.toml", "--host", "localhost")
    try:
        for url, proc in (v6, local):
            wait_ready(url, proc)
        yield {"v6": v6, "localhost": local}
    finally:
        stop_service(v6[1])
        stop_service(local[1])


@pytest.fixture(scope="module")
def url(services):
    return services["v6"][0]


def png(size=(64, 64), mode="RGB") -> bytes:
    out = io.BytesIO()
    Image.new(mode, size).save(out, format="PNG")
    return out.getvalue()


def post(url, path="/v1/images/generations", headers=AUTH, **kw):
    import httpx

    return httpx.post(f"{url}{path}", headers=headers, timeout=60, **kw)


def json_body(**fields) -> dict:
    return {
        "content": __import__("json").dumps({**GOOD, **fields}),
        "headers": {**AUTH, "Content-Type": "application/json"},
    }


CASES = {
    "empty body": (400, {"content": b"", "headers": {**AUTH, "Content-Type": "application/json"}}),
    "malformed JSON": (400, {"content": b'{"prompt": ', "headers": {**AUTH, "Content-Type": "application/json"}}),
    "a JSON array": (400, {"json": [GOOD]}),
    "no prompt": (400, {"json": {"size": "64x64"}}),
    "guidance 'nan'": (400, {"json": {**GOOD, "guidance_scale": "nan"}}),
    "guidance NaN": (400, json_body(guidance_scale=float("nan"))),
    "steps as text": (400, {"json": {**GOOD, "num_inference_steps": "many"}}),
    "size not WxH": (400, {"json": {**GOOD, "size": "big"}}),
    "size 60x64": (400, {"json": {**GOOD, "size": "60x64"}}),
    "n = 2": (400, {"json": {**GOOD, "n": 2}}),
    "response_format url": (400, {"json": {**GOOD, "response_format": "url"}}),
    "unknown field": (400, {"json": {**GOOD, "colour": "red"}}),
    "form to the JSON route": (415, {"data": GOOD}),
    "100000x100000": (413, {"json": {**GOOD, "size": "100000x100000"}}),
    "4096x4096": (413, {"json": {**GOOD, "size": "4096x4096"}}),
    "over the pixel-step budget": (413, {"json": {**GOOD, "size": "1024x1024", "num_inference_steps": 80}}),
    "over --max-steps": (413, {"json": {**GOOD, "num_inference_steps": 60}}),
    "a 5000-character prompt": (413, {"json": {**GOOD, "prompt": "apple " * 834}}),
    "a 50 MB body": (413, {"content": b"x" * 50_000_000, "headers": {**AUTH, "Content-Type": "application/json"}}),
    "no token": (401, {"json": GOOD, "headers": {}}),
    "wrong token": (401, {"json": GOOD, "headers": {"Authorization": "Bearer nope"}}),
    "edit: JSON body": ("/v1/images/edits", 415, {"json": GOOD}),
    "edit: no image": ("/v1/images/edits", 400, {"files": {"prompt": (None, "x")}}),
    "edit: not an image": ("/v1/images/edits", 400, {"files": {"image": ("a.png", b"nonsense")}, "data": {"prompt": "x"}}),
    "edit: a 4000x4000 image": (
        "/v1/images/edits", 413, {"files": {"image": ("a.png", png((4000, 4000), "1"))}, "data": {"prompt": "x"}},
    ),
    "edit: strength 7": (
        "/v1/images/edits", 400, {"files": {"image": ("a.png", png())}, "data": {"prompt": "x", "size": "64x64", "strength": "7"}},
    ),
}  # fmt: skip


@pytest.mark.parametrize("case", list(CASES))
def test_each_abuse_gets_its_status_and_the_server_answers_after(url, case):
    path, status, request = CASES[case] if len(CASES[case]) == 3 else ("/v1/images/generations", *CASES[case])
    kw = dict(request)
    headers = kw.pop("headers", AUTH)
    r = post(url, path, headers=headers, **kw)
    assert r.status_code == status, (r.status_code, r.text[:300])
    assert r.json()["detail"] and "\n" not in r.json()["detail"]
    good = post(url, json=GOOD)
    assert good.status_code == 200 and good.json()["data"][0]["b64_json"]


def test_docs_are_off_and_health_needs_the_token(url):
    import httpx

    for path in ("/docs", "/redoc", "/openapi.json", "/docs/oauth2-redirect"):
        assert httpx.get(f"{url}{path}", headers=AUTH).status_code == 404, path
        assert httpx.get(f"{url}{path}").status_code in (401, 404), path
    assert httpx.get(f"{url}/health").status_code == 401
    assert httpx.get(f"{url}/info").status_code == 401


def test_bad_requests_batched_with_good_ones_do_not_fail_them(url):
    import httpx

    async def burst():
        async with httpx.AsyncClient(headers=AUTH, timeout=60) as client:
            gen = f"{url}/v1/images/generations"
            good = [client.post(gen, json={**GOOD, "seed": i}) for i in range(5)]
            bad = [
                client.post(gen, json={**GOOD, "guidance_scale": "nan"}),
                client.post(gen, json={**GOOD, "size": "100000x100000"}),
                # an edit this model cannot do: refused by the worker, inside the batch, alone
                client.post(f"{url}/v1/images/edits", files={"image": ("a.png", png())},
                            data={"prompt": "bluer", "size": "64x64", "num_inference_steps": "2"}),
            ]  # fmt: skip
            return await asyncio.gather(*good, *bad)

    *good, nan, huge, edit = asyncio.run(burst())
    assert [r.status_code for r in good] == [200] * 5
    assert max(r.json()["batch_size"] for r in good) > 1
    assert len({base64.b64decode(r.json()["data"][0]["b64_json"]) for r in good}) == 5
    assert (nan.status_code, huge.status_code, edit.status_code) == (400, 413, 400)
    assert (
        edit.json()["detail"] == "backend sd cannot do edit; it can do image-to-image, inpaint, text-to-image"
    )


def test_localhost_serves_and_sigterm_leaves_no_process_and_a_free_port(services):
    url, proc = services["localhost"]
    assert post(url, json=GOOD).status_code == 200
    port = int(url.rsplit(":", 1)[1])
    group = proc.pid
    os.kill(proc.pid, signal.SIGTERM)  # the server alone, as systemd or `docker stop` would
    proc.wait(30)
    deadline = time.monotonic() + 15
    while _in_group(group) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _in_group(group) == []
    with socket.socket() as s:
        s.bind(("127.0.0.1", port))  # free
    assert b"Traceback" not in proc.stderr.read()


def _in_group(pgid: int) -> list[int]:
    """Live processes of process group ``pgid`` (zombies of already-reaped children excluded)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            found.append(int(entry))
    return found
