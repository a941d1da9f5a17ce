"""The diffusion service (`strokeagent serve image`) and its http-image client, over real loopback HTTP."""

import asyncio
import contextlib
import http.server
import os
import signal
import socket
import subprocess
import sys
import threading
import time

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from test_image_backends import req, tiny  # noqa: E402,F401 - the session's tiny pipelines

from strokeagent.backends.http_image import HttpImageBackend  # noqa: E402
from strokeagent.backends.image import ImageBackendError  # noqa: E402
from strokeagent.core.store import png_bytes  # noqa: E402

pytestmark = pytest.mark.slow  # starts a server process that loads torch (~10-30 s on a busy 2-core machine)
TOKEN = "test-token"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_service(toml, *args: str, token: str | None = TOKEN, port: int | None = None):
    """``strokeagent serve image`` in its own session (one signal reaches all its processes): (url, process)."""
    port = port or free_port()
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    env.pop("STROKEAGENT_IMAGE_TOKEN", None)
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "strokeagent.cli",
            "serve",
            "image",
            "--backend",
            str(toml),
            "--port",
            str(port),
        ]
        + (["--token", token] if token else [])
        + list(args),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env=env,
        start_new_session=True,
    )
    return f"http://127.0.0.1:{port}", proc


def wait_ready(url: str, proc, token: str | None = TOKEN, limit: float = 240) -> None:
    import httpx

    headers = {"Authorization": f"Bearer {token}"} if token else {}
    deadline = time.monotonic() + limit
    while True:
        try:
            if httpx.get(f"{url}/health", headers=headers, timeout=2).text == "ok":
                return
        except httpx.TransportError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            stop_service(proc, signal.SIGKILL)
            pytest.fail(f"the service did not start: {proc.stderr.read().decode()[-2000:]}")
        time.sleep(0.5)


def stop_service(proc, sig=signal.SIGTERM) -> None:
    try:
        os.killpg(proc.pid, sig)
        proc.wait(20)
    except ProcessLookupError:
        return
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(ProcessLookupError):  # what the server itself started must be gone too
        os.killpg(proc.pid, signal.SIGKILL)


@pytest.fixture(scope="module")
def service(tiny):  # noqa: F811
    url, proc = start_service(tiny / "sd.toml")
    wait_ready(url, proc)
    yield url
    stop_service(proc)


def test_concurrent_requests_are_batched_and_match_the_local_backend(service, tiny):  # noqa: F811
    from strokeagent.backends import load_backend

    client = HttpImageBackend(service, token=TOKEN)
    images = asyncio.run(client.generate([req(f"apple {i}", seed=i) for i in range(6)]))
    assert len(images) == 6 and all(im.size == (64, 64) for im in images)
    assert max(client.last_batch_sizes) > 1, client.last_batch_sizes
    # Alone on the server, a request gives the bytes it gives in this process.
    [served] = asyncio.run(client.generate([req("a cup", seed=9)]))
    [local] = load_backend(tiny / "sd.toml").run([req("a cup", seed=9)])
    assert client.last_batch_sizes[-1] == 1
    assert png_bytes(served) == png_bytes(local)


def test_a_batchs_first_request_opens_its_window():
    """LitServe's own loop opens a window each time the worker asks for a batch; a request that arrives near its
    end has little company (three edits sent together ran as [1, 2, 2]). The service's loop waits for a first
    request and collects for ``batch_timeout`` from there: LitServe's would answer this call with nothing."""
    import queue

    from litserve.loops import SingleLoop

    from strokeagent.backends.service import DiffusionAPI

    api = DiffusionAPI("unused.toml", None, max_batch_size=8, batch_timeout=0.05)
    api.request_timeout = 600
    requests: queue.Queue = queue.Queue()

    def arrive() -> None:
        time.sleep(0.08)  # later than a whole window from the worker's ask
        requests.put((0, "a", time.monotonic(), "first"))
        time.sleep(0.02)  # within the window the first opened
        requests.put((0, "b", time.monotonic(), "second"))

    threading.Thread(target=arrive).start()
    batch, timed_out = api.loop.get_batch_requests(api, requests, None)
    assert [x for _, _, x in batch] == ["first", "second"] and timed_out == []
    assert isinstance(DiffusionAPI("unused.toml", None, max_batch_size=1).loop, SingleLoop)  # LitServe's own


def test_a_token_is_required_and_bad_requests_do_not_spoil_a_batch(service):
    with pytest.raises(
        ImageBackendError,
        match=r"^image backend http-image at http://127\.0\.0\.1:\d+/v1 refused the request: HTTP 401: "
        r"missing or wrong token: send 'Authorization: Bearer <token>'$",
    ):
        asyncio.run(HttpImageBackend(service, token="wrong").generate([req()]))
    editor = HttpImageBackend(service, token=TOKEN, tasks=["edit", "text-to-image"])
    base = asyncio.run(editor.generate([req()]))[0]

    async def mixed():
        good = editor.generate([req("a cat", seed=2)])
        bad = editor.generate([req("make it blue", image=base, edit=True)])
        return await asyncio.gather(good, bad, return_exceptions=True)

    good, bad = asyncio.run(mixed())
    assert good[0].size == (64, 64)
    assert isinstance(bad, ImageBackendError)
    assert str(bad).endswith(
        "HTTP 400: backend sd cannot do edit; it can do image-to-image, inpaint, text-to-image"
    )


class Flaky(http.server.BaseHTTPRequestHandler):
    hits = 0
    delay = 0.0

    def do_POST(self):  # noqa: N802
        type(self).hits += 1
        time.sleep(self.delay)
        self.send_response(503)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(b'{"detail": "overloaded"}')

    def log_message(self, *args):
        pass


@pytest.fixture
def flaky():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Flaky)
    Flaky.hits, Flaky.delay = 0, 0.0
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_5xx_slow_and_down_servers_are_retried_then_named(flaky):
    client = HttpImageBackend(flaky, retries=2, backoff=0.01)
    with pytest.raises(ImageBackendError) as e:
        asyncio.run(client.generate([req()]))
    assert Flaky.hits == 3
    assert str(e.value) == (
        f"image backend http-image at {flaky}/v1 failed after 3 attempts: HTTP 503: overloaded; start it "
        "(`strokeagent serve image --backend FILE`, or the server its description names) or fix the url, "
        "then resume the run"
    )
    Flaky.delay = 0.5
    with pytest.raises(ImageBackendError, match=r"failed after 2 attempts: no answer within 0\.1 s;"):
        asyncio.run(HttpImageBackend(flaky, retries=1, backoff=0, timeout=0.1).generate([req()]))
    down = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(ImageBackendError, match=r"failed after 1 attempts: cannot connect \(ConnectError"):
        asyncio.run(HttpImageBackend(down, retries=0).generate([req()]))


def test_a_model_that_is_not_there_is_refused_before_the_server_starts(tmp_path, cli):
    """The model loads in LitServe's worker process, whose failure was two tracebacks; now one line, exit 2."""
    (tmp_path / "empty").mkdir()
    cases = {
        'model = "~/nowhere/tiny-sd"': "model folder {home}/nowhere/tiny-sd does not exist",
        f'model = "{tmp_path / "empty"}"': f"{tmp_path / 'empty'} has no model_index.json, so it is not a diffusers",
        "dtype = \"float16\"": "names no model; add model = ",
    }
    for line, expected in cases.items():
        description = tmp_path / "sd.toml"
        description.write_text(f'kind = "diffusers"\n{line}\n')
        r = cli("serve", "image", "--backend", str(description), "--port", "18799")
        assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1, r.stderr
        assert r.stderr.startswith(f"error: {description}") and expected.format(home=os.path.expanduser("~")) in r.stderr


def test_listening_beyond_loopback_needs_a_token(tiny, cli):  # noqa: F811
    env_token = os.environ.pop("STROKEAGENT_IMAGE_TOKEN", None)
    try:
        r = cli("serve", "image", "--backend", str(tiny / "sd.toml"), "--host", "0.0.0.0")
    finally:
        if env_token is not None:
            os.environ["STROKEAGENT_IMAGE_TOKEN"] = env_token
    assert r.returncode == 2
    assert r.stderr.strip() == (
        "error: listening on 0.0.0.0 lets other machines in: give --token (or set STROKEAGENT_IMAGE_TOKEN), "
        "or listen on 127.0.0.1"
    )


def test_a_composite_run_drafts_through_the_service(service, tiny, tmp_path):  # noqa: F811
    from test_image_backends import write_policy

    from strokeagent.runs.api import generate

    client = tmp_path / "client.toml"
    client.write_text(f'kind = "http-image"\nurl = "{service}"\ntoken = "{TOKEN}"\n')
    draft = f'kind = "diffusion.draft"\nbackend = "{client}"\nsize = 64\nsteps = 3'
    refine = f'kind = "diffusion.refine"\nbackend = "{client}"\nsize = 64\nsteps = 4'
    traj = generate(
        "two shapes", policy=write_policy(tmp_path / "p.toml", draft, refine), seed=1, out=tmp_path / "r"
    )
    assert [[im.meta["diffusion"]["task"] for im in s.images] for s in traj.steps] == [
        ["text-to-image", "image-to-image"],
        ["image-to-image", "image-to-image"],
    ]
    assert (tmp_path / "r" / "final.png").is_file()


def test_a_dead_service_stops_the_run_but_keeps_its_images(tiny, tmp_path):  # noqa: F811
    from test_image_backends import write_policy

    from strokeagent.errors import RunError
    from strokeagent.runs.api import generate

    url = f"http://127.0.0.1:{free_port()}"
    client = tmp_path / "client.toml"
    client.write_text(f'kind = "http-image"\nurl = "{url}"\nretries = 1\nbackoff = 0.01\n')
    draft = f'kind = "diffusion.draft"\nbackend = "{tiny / "sd.toml"}"\nsize = 64\nsteps = 2'
    refine = f'kind = "diffusion.refine"\nbackend = "{client}"\nsize = 64\nsteps = 2'
    with pytest.raises(RunError) as e:
        generate(
            "two shapes", policy=write_policy(tmp_path / "p.toml", draft, refine), seed=1, out=tmp_path / "r"
        )
    assert f"image backend http-image at {url}/v1 failed after 2 attempts: cannot connect" in str(e.value)
    assert "it kept 1 images" in str(e.value) and "strokeagent resume" in str(e.value)
    assert len(list((tmp_path / "r" / "images").glob("*.png"))) == 1
