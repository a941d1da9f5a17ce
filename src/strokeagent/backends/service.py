"""The diffusion backend as an HTTP service that speaks the OpenAI Images API, on LitServe.

    $ strokeagent serve image --backend backends/sdxl.toml              # 127.0.0.1:8100, no token needed
    $ strokeagent serve image --backend backends/sdxl.toml --host 0.0.0.0 --token "$TOKEN"

Two routes, the ones vLLM-Omni, SGLang Diffusion and hosted APIs serve:

- ``POST /v1/images/generations`` (JSON): ``prompt``, ``n`` (1), ``size`` ``"WxH"``,
  ``response_format`` ``"b64_json"``, and the extra fields ``negative_prompt``,
  ``num_inference_steps``, ``guidance_scale``, ``seed``;
- ``POST /v1/images/edits`` (multipart): ``image`` (a file), ``prompt``, optional ``mask``
  (a PNG whose transparent pixels are repainted, as OpenAI's; or a grey mask, white = repaint),
  ``size``, the same extras and ``strength``. With a ``mask`` it is inpainting; with a
  ``strength`` image-to-image at that strength; otherwise instruction editing.

Both answer ``{"created": t, "data": [{"b64_json": <PNG>}], "batch_size": n, "seconds": s}``.
Every request is parsed and checked against ``Limits`` in the API process, before it is
queued: a malformed one or one over a limit is answered alone (400, 413, 415) and never
joins a batch. A batch's first request opens a window of ``batch_timeout``; the requests
that reach the worker within it go to the pipeline together (up to ``max_batch_size``),
grouped by shape, each with its own seed (``FirstRequestOpensTheWindow``).
``GET /health`` says ``ok`` once the model is loaded. ``/docs``, ``/redoc`` and
``/openapi.json`` are off. SIGTERM stops the server and every process it started.

Why LitServe: it is a thin layer over FastAPI and uvicorn that already does
what this service needs — dynamic batching with a size cap and a time window,
a model loaded once in a worker process, health checks, an authorization hook
— as one pip package. Ray Serve batches too, but brings a cluster runtime
(ray, its dashboard and object store) that one model on one machine does not
need.
"""

from __future__ import annotations

import base64
import email.parser
import email.policy
import hmac
import io
import ipaddress
import json
import math
import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import litserve as ls
from fastapi import Depends, HTTPException, Request
from fastapi.responses import JSONResponse
from litserve.loops import BatchedLoop

from strokeagent.backends.image import ImageRequest, encode_png
from strokeagent.errors import PolicyError

GENERATIONS_PATH = "/v1/images/generations"
EDITS_PATH = "/v1/images/edits"
TOKEN_ENV = "STROKEAGENT_IMAGE_TOKEN"
DEFAULT_PORT = 8100
DEFAULT_SIZE = "1024x1024"

#: OpenAI fields a client may send that change nothing here.
IGNORED_FIELDS = frozenset(
    {"model", "quality", "style", "user", "moderation", "background", "input_fidelity"}
)


@dataclass(frozen=True)
class Limits:
    """What one request may ask for; over a limit it is refused with 413 before it is queued.

    ``max_pixel_steps`` (width × height × steps) bounds the work of one request, so that one
    huge request cannot hold the worker while every other client waits: 2**26 is 1024² at 64
    steps, or 2048² at 16.
    """

    max_body_bytes: int = 20 * 2**20
    max_prompt_chars: int = 4000
    max_pixels: int = 2048 * 2048
    max_steps: int = 100
    max_pixel_steps: int = 2**26

    def __post_init__(self) -> None:
        for name in ("max_body_bytes", "max_prompt_chars", "max_pixels", "max_steps", "max_pixel_steps"):
            if getattr(self, name) < 1:
                raise PolicyError(f"serve image: {name} must be at least 1, got {getattr(self, name)}")


class Refused(Exception):
    """A request answered with ``status`` and ``detail`` alone, without reaching the model."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail


def error_response(status: int, detail: str) -> JSONResponse:
    """FastAPI's ``{"detail": ...}`` and OpenAI's ``{"error": {"message": ...}}`` in one body."""
    kind = "invalid_request_error" if status < 500 else "server_error"
    return JSONResponse(
        {"detail": detail, "error": {"message": detail, "type": kind, "code": status}}, status_code=status
    )


# -- parsing and checking requests (in the API process, before anything is queued) -----------------


def _number(value: Any, name: str, integer: bool = False) -> float | int:
    """A JSON number, or a form field's text of one; finite."""
    if isinstance(value, str):  # multipart fields are text
        try:
            value = int(value) if integer else float(value)
        except ValueError:
            raise Refused(
                400, f"{name} must be {'an integer' if integer else 'a number'}, got {value!r}"
            ) from None
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or (integer and not isinstance(value, int))
    ):
        raise Refused(400, f"{name} must be {'an integer' if integer else 'a number'}, got {value!r}")
    if not math.isfinite(value):
        raise Refused(400, f"{name} must be finite, got {value!r}")
    return value


def _size(value: Any, limits: Limits) -> tuple[int, int]:
    if value in (None, "auto"):
        value = DEFAULT_SIZE
    if not isinstance(value, str) or "x" not in value.lower():
        raise Refused(400, f"size must be 'WIDTHxHEIGHT' like '1024x1024', got {value!r}")
    w, _, h = value.lower().partition("x")
    if not (w.strip().isdigit() and h.strip().isdigit()) or len(w.strip()) > 9 or len(h.strip()) > 9:
        raise Refused(400, f"size must be 'WIDTHxHEIGHT' like '1024x1024', got {value!r}")
    width, height = int(w), int(h)
    if width * height > limits.max_pixels:
        raise Refused(
            413,
            f"size {width}x{height} is over this server's limit of {limits.max_pixels} pixels (--max-pixels)",
        )
    return width, height


def _image(data: bytes, name: str, limits: Limits) -> Any:
    from PIL import Image

    try:
        image = Image.open(io.BytesIO(data))
    except Exception as e:
        raise Refused(400, f"{name} is not an image: {e}") from None
    w, h = image.size
    if w * h > limits.max_pixels:  # read from the header, before the pixels are decoded
        raise Refused(413, f"{name} is {w}x{h}, over this server's limit of {limits.max_pixels} pixels")
    try:
        image.load()
    except Exception as e:
        raise Refused(400, f"{name} is not a readable image: {e}") from None
    return image


def request_from_fields(
    fields: dict[str, Any], limits: Limits, files: dict[str, bytes] | None = None
) -> dict[str, Any]:
    """An ``ImageRequest`` in its wire form (``to_json``) from OpenAI Images fields, or ``Refused``."""
    files = files or {}
    fields = dict(fields)
    unknown = sorted(
        set(fields) - IGNORED_FIELDS - {
            "prompt", "n", "size", "response_format", "output_format", "negative_prompt",
            "num_inference_steps", "guidance_scale", "seed", "strength",
        }
    )  # fmt: skip
    if unknown:
        raise Refused(400, f"unknown field {unknown[0]!r}")
    prompt = fields.get("prompt")
    if not isinstance(prompt, str) or not prompt.strip():
        raise Refused(400, "prompt must be a non-empty string")
    if len(prompt) > limits.max_prompt_chars:
        raise Refused(
            413, f"prompt is {len(prompt)} characters, over this server's limit of {limits.max_prompt_chars}"
        )
    if fields.get("n") not in (None, 1, "1"):
        raise Refused(400, f"n must be 1 (send one request per image), got {fields['n']!r}")
    if fields.get("response_format") not in (None, "b64_json"):
        raise Refused(400, f"response_format must be 'b64_json', got {fields['response_format']!r}")
    if fields.get("output_format") not in (None, "png"):
        raise Refused(400, f"output_format must be 'png', got {fields['output_format']!r}")
    width, height = _size(fields.get("size"), limits)
    out: dict[str, Any] = {"prompt": prompt, "width": width, "height": height}
    negative = fields.get("negative_prompt")
    if negative is not None:
        if not isinstance(negative, str) or len(negative) > limits.max_prompt_chars:
            raise Refused(
                400, f"negative_prompt must be a string of at most {limits.max_prompt_chars} characters"
            )
        out["negative_prompt"] = negative
    steps = int(
        _number(fields.get("num_inference_steps", ImageRequest.steps), "num_inference_steps", integer=True)
    )
    if steps > limits.max_steps:
        raise Refused(413, f"num_inference_steps {steps} is over this server's limit of {limits.max_steps}")
    if steps >= 1 and width * height * steps > limits.max_pixel_steps:
        raise Refused(
            413,
            f"{width}x{height} at {steps} steps is {width * height * steps} pixel-steps, over this server's "
            f"per-request budget of {limits.max_pixel_steps} (--max-pixel-steps): ask for fewer pixels or steps",
        )
    out["steps"] = steps
    if fields.get("guidance_scale") is not None:
        guidance = float(_number(fields["guidance_scale"], "guidance_scale"))
        if not 0.0 <= guidance <= 100.0:
            raise Refused(400, f"guidance_scale must be in [0, 100], got {guidance}")
        out["guidance"] = guidance
    if fields.get("seed") is not None:
        out["seed"] = int(_number(fields["seed"], "seed", integer=True))
    if "image" in files:
        _image(files["image"], "image", limits)
        out["image"] = base64.b64encode(files["image"]).decode("ascii")
        if "mask" in files:
            mask = _image(files["mask"], "mask", limits)
            # OpenAI's masks repaint where they are transparent; a grey mask repaints where it is white.
            mask = (
                mask.getchannel("A").point(lambda a: 255 - a) if "A" in mask.getbands() else mask.convert("L")
            )
            out["mask"] = encode_png(mask)
        elif fields.get("strength") is None:
            out["edit"] = True
        if fields.get("strength") is not None:
            out["strength"] = float(_number(fields["strength"], "strength"))
    elif fields.get("strength") is not None:
        raise Refused(400, "strength needs an input image (POST /v1/images/edits)")
    try:
        ImageRequest.from_json(out)  # every other rule of a request (multiples of 8, ranges)
    except (TypeError, ValueError) as e:
        raise Refused(400, f"bad image request: {e}") from None
    return out


def parse_generation(body: bytes, content_type: str, limits: Limits) -> dict[str, Any]:
    if "json" not in content_type.lower():
        raise Refused(415, f"{GENERATIONS_PATH} takes a JSON body (Content-Type: application/json)")
    try:
        fields = json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError) as e:
        raise Refused(400, f"the body is not JSON: {e}") from None
    if not isinstance(fields, dict):
        raise Refused(400, f"the body must be a JSON object, got {type(fields).__name__}")
    if "image" in fields or "mask" in fields:
        raise Refused(400, f"input images go to {EDITS_PATH} as multipart files")
    return request_from_fields(fields, limits)


def parse_multipart(body: bytes, content_type: str) -> tuple[dict[str, str], dict[str, bytes]]:
    """Text fields and files of a ``multipart/form-data`` body (the standard library's MIME parser)."""
    if not content_type.lower().startswith("multipart/form-data") or "boundary=" not in content_type:
        raise Refused(415, f"{EDITS_PATH} takes multipart/form-data with the image as a file")
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
        b"Content-Type: " + content_type.encode("latin-1") + b"\r\n\r\n" + body
    )
    if not message.is_multipart():
        raise Refused(400, "the body is not multipart/form-data")
    fields: dict[str, str] = {}
    files: dict[str, bytes] = {}
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        if not name:
            continue
        payload = part.get_payload(decode=True) or b""
        name = name[:-2] if name.endswith("[]") else name  # image[] is how the SDK sends a list
        if part.get_filename() is not None or name in ("image", "mask"):
            if name in files:
                raise Refused(400, f"one {name} per request, got several")
            files[name] = payload
        else:
            fields[name] = payload.decode("utf-8", "replace")
    return fields, files


def parse_edit(body: bytes, content_type: str, limits: Limits) -> dict[str, Any]:
    fields, files = parse_multipart(body, content_type)
    unknown = sorted(set(files) - {"image", "mask"})
    if unknown:
        raise Refused(400, f"unknown file field {unknown[0]!r}")
    if "image" not in files:
        raise Refused(400, "an edit needs an 'image' file")
    return request_from_fields(fields, limits, files)


class BodyLimit:
    """ASGI middleware: a body over ``max_bytes`` is answered 413 and never handed on (nor kept)."""

    def __init__(self, app: Any, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = dict(scope.get("headers") or [])
        try:
            declared = int(headers.get(b"content-length", b"0"))
        except ValueError:
            declared = 0
        chunks: list[bytes] = []
        size, more = 0, True
        # Read what a client sends even when it is too much (up to 16× the limit), so that it sees the 413
        # instead of a connection reset while still writing.
        drain = declared <= 16 * self.max_bytes
        while more and (size <= self.max_bytes or (drain and size <= 16 * self.max_bytes)):
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body = message.get("body", b"")
            size += len(body)
            if size <= self.max_bytes:
                chunks.append(body)
            more = message.get("more_body", False)
        if size > self.max_bytes or declared > self.max_bytes:
            size = max(size, declared)
            response = error_response(
                413, f"the body is over this server's limit of {self.max_bytes} bytes (--max-body-bytes)"
            )
            response.headers["Connection"] = "close"
            return await response(scope, receive, send)
        data = b"".join(chunks)
        sent = False

        async def replay() -> dict:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": data, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


# -- the model side (in the worker process) ---------------------------------------------------------


class FirstRequestOpensTheWindow(BatchedLoop):
    """LitServe's batched loop, with each batch's window opened by its first request.

    LitServe's own loop opens a window whenever the worker asks for a batch, and an idle worker asks again
    every ``batch_timeout``: a request that arrives late in such a window has only what is left of it for
    company. Three edits sent together ran as [1, 2, 2] so (2-core machine, 2026-12-06). Here the worker
    waits for a first request and then collects, with LitServe's own collation, for ``batch_timeout`` from it.
    """

    def get_batch_requests(self, lit_api: Any, request_queue: Any, transport: Any) -> tuple[list, list]:
        first = request_queue.get()  # LitServe's stop signal comes this way too, and its collation reads it
        return super().get_batch_requests(lit_api, _Handed(first, request_queue), transport)


class _Handed:
    """A request queue whose first item was already taken: ``first``, then the rest of ``queue``."""

    def __init__(self, first: Any, queue: Any) -> None:
        self._first, self._queue = [first], queue

    def get(self, block: bool = True, timeout: float | None = None) -> Any:
        return self._first.pop() if self._first else self._queue.get(block, timeout)

    def get_nowait(self) -> Any:
        return self.get(False)


class DiffusionAPI(ls.LitAPI):
    """The LitServe API serving the backend described in ``backend`` (loaded in the worker process)."""

    def __init__(
        self, backend: str | Path, token: str | None, max_batch_size: int = 8, batch_timeout: float = 0.01
    ) -> None:
        super().__init__(
            max_batch_size=max_batch_size, batch_timeout=batch_timeout, api_path=GENERATIONS_PATH,
            loop=FirstRequestOpensTheWindow() if max_batch_size > 1 else "auto",
        )  # fmt: skip
        self.description = str(backend)
        self.token = token

    def setup(self, device: str) -> None:
        from strokeagent.backends import load_backend

        # The description says where the model runs; LitServe's device is not used.
        self.backend = load_backend(self.description)

    def authorize(self, request: Request) -> None:
        if self.token is None:
            return
        given = request.headers.get("authorization", "")
        if not hmac.compare_digest(given.encode(), f"Bearer {self.token}".encode()):
            raise HTTPException(401, "missing or wrong token: send 'Authorization: Bearer <token>'")

    def decode_request(self, request):  # noqa: ANN001 - a request checked by request_from_fields
        # A request the model cannot do must not fail the batch it landed in: keep its reason, answer it alone.
        try:
            r = ImageRequest.from_json(request)
        except (TypeError, ValueError) as e:
            return f"bad image request: {e}"
        if r.task not in self.backend.tasks:
            return f"backend {self.backend.name} cannot do {r.task}; it can do {', '.join(sorted(self.backend.tasks))}"
        return r

    def batch(self, inputs: list) -> list:
        return list(inputs)

    def predict(self, inputs: list) -> list:
        good = [x for x in inputs if isinstance(x, ImageRequest)]
        start = time.perf_counter()
        images = iter(self.backend.run(good) if good else [])
        seconds = time.perf_counter() - start
        return [x if isinstance(x, str) else (next(images), len(good), seconds) for x in inputs]

    def unbatch(self, output: list) -> list:
        return output

    def encode_response(self, output: Any) -> Any:
        if isinstance(output, str):
            return {"error": output}
        image, size, seconds = output
        return {
            "created": int(time.time()),
            "data": [{"b64_json": encode_png(image)}],
            "batch_size": size,
            "seconds": round(seconds, 4),
        }


# -- the server --------------------------------------------------------------------------------------


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def build_server(api: DiffusionAPI, limits: Limits) -> ls.LitServer:
    """The LitServer with the two OpenAI routes in place of LitServe's own, docs off, the body limit on."""
    from litserve.server import RegularRequestHandler

    server = ls.LitServer(
        api, accelerator="cpu", devices=1, workers_per_device=1, timeout=600, disable_openapi_url=True,
        middlewares=[(BodyLimit, {"max_bytes": limits.max_body_bytes})],
    )  # fmt: skip
    app = server.app
    # LitServe's own route hands the raw body to the worker: replace it with ours, which checks first.
    app.router.routes = [r for r in app.router.routes if getattr(r, "path", None) != GENERATIONS_PATH]
    handler = RegularRequestHandler(api, server)

    def route(parse: Any) -> Any:
        async def endpoint(request: Request) -> Any:
            try:
                body = await request.body()
                payload = parse(body, request.headers.get("content-type", ""), limits)
            except Refused as e:
                return error_response(e.status, e.detail)
            answer = await handler.handle_request(payload, dict)
            if "error" in answer:
                return error_response(400, answer["error"])
            return answer

        return endpoint

    auth = [Depends(api.authorize)]
    app.add_api_route(GENERATIONS_PATH, route(parse_generation), methods=["POST"], dependencies=auth)
    app.add_api_route(EDITS_PATH, route(parse_edit), methods=["POST"], dependencies=auth)
    return server


def _bind_host(host: str) -> Any:
    """LitServe accepts only 0.0.0.0, 127.0.0.1 and ::; bind the socket to ``host`` itself."""
    import uvicorn

    original = uvicorn.Config.bind_socket

    def bind_socket(config: Any) -> Any:
        config.host = host.strip("[]")
        return original(config)

    uvicorn.Config.bind_socket = bind_socket  # this process only: it serves nothing else
    return original


def serve_image_command(
    backend: Path,
    host: str = "127.0.0.1",
    port: int = DEFAULT_PORT,
    token: str | None = None,
    max_batch_size: int = 8,
    batch_timeout: float = 0.01,
    limits: Limits | None = None,
) -> None:
    """Serve ``backend`` over HTTP until interrupted; on any host but loopback a token is required."""
    from strokeagent.backends import described_table
    from strokeagent.backends.diffusers import model_source

    path, table = described_table(backend)  # a missing or broken file is refused before anything starts
    if table.get("kind") != "diffusers":
        raise PolicyError(
            f'{path}: kind {table.get("kind")!r} cannot be served; `serve image` serves kind = "diffusers"'
        )
    # The model loads in LitServe's worker process, where a missing one is a worker's traceback: look first.
    if not isinstance(table.get("model"), str):
        raise PolicyError(f'{path} names no model; add model = "owner/name" (a hub id) or the path of a folder')
    try:
        model_source(table["model"])
    except FileNotFoundError as e:
        raise PolicyError(f"{path}: {e}") from None
    token = token or os.environ.get(TOKEN_ENV) or None
    if token is None and not _is_loopback(host):
        raise PolicyError(
            f"listening on {host} lets other machines in: give --token (or set {TOKEN_ENV}), or listen on 127.0.0.1"
        )
    if not 1024 <= port <= 65535:
        raise PolicyError(f"--port must be from 1024 to 65535, got {port}")
    limits = limits or Limits()
    server = build_server(
        DiffusionAPI(path, token, max_batch_size=max_batch_size, batch_timeout=batch_timeout), limits
    )
    _bind_host(host)

    # SIGTERM (systemd, docker stop, kill): the same orderly stop as Ctrl+C, which ends the uvicorn process,
    # the model worker and LitServe's manager; without it this process dies alone and they keep the port.
    main = os.getpid()

    def stop(signum: int, frame: Any) -> None:
        if os.getpid() != main:  # a forked child (uvicorn's, the manager) inherits this: it just ends
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            signal.raise_signal(signal.SIGTERM)
            return
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    try:
        server.run(
            host="::" if ":" in host else "127.0.0.1", port=port, generate_client_file=False,
            num_api_servers=1, log_level="warning",
        )  # fmt: skip
    except OSError as e:
        raise PolicyError(f"cannot listen on {host}:{port}: {e.strerror or e}") from None
    except RuntimeError as e:
        if "failed to start" not in str(e):
            raise
        # LitServe's own words; the worker printed why above (a model folder that is not a pipeline, a dtype the
        # device cannot run).
        raise PolicyError(f"the model worker for {path} failed to start (its error is printed above); fix the "
                          "description or the model, then start the service again") from None  # fmt: skip
