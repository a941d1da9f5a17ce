"""The diffusion backend as an HTTP service that batches requests, on LitServe.

    $ strokeagent serve image --backend backends/sdxl.toml              # 127.0.0.1:8100, no token needed
    $ strokeagent serve image --backend backends/sdxl.toml --host 0.0.0.0 --token "$TOKEN"

``POST /v1/images`` takes one ``ImageRequest`` as JSON (images as base64 PNG,
see ``ImageRequest.to_json``) and answers ``{"image": <base64 PNG>,
"batch_size": n, "seconds": s}``. Requests that arrive within ``batch_timeout``
of each other go to the pipeline together (up to ``max_batch_size``), grouped
by shape, each with its own seed. ``GET /health`` says ``ok`` once the model is
loaded. The ``http-image`` backend (``backends/http_image.py``) is its client.

Why LitServe: it is a thin layer over FastAPI and uvicorn that already does
what this service needs — dynamic batching with a size cap and a time window,
a model loaded once in a worker process, health checks, an authorization hook
— as one pip package. Ray Serve batches too, but brings a cluster runtime
(ray, its dashboard and object store) that one model on one machine does not
need.
"""

from __future__ import annotations

import hmac
import ipaddress
import os
import time
from pathlib import Path
from typing import Any

import litserve as ls
from fastapi import HTTPException, Request
from fastapi.responses import JSONResponse

from strokeagent.backends.image import ImageRequest, encode_png
from strokeagent.errors import PolicyError

API_PATH = "/v1/images"
TOKEN_ENV = "STROKEAGENT_IMAGE_TOKEN"
DEFAULT_PORT = 8100


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class DiffusionAPI(ls.LitAPI):
    """The LitServe API serving the backend described in ``backend`` (loaded in the worker process)."""

    def __init__(
        self, backend: str | Path, token: str | None, max_batch_size: int = 8, batch_timeout: float = 0.01
    ) -> None:
        super().__init__(max_batch_size=max_batch_size, batch_timeout=batch_timeout, api_path=API_PATH)
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

    def decode_request(self, request):  # noqa: ANN001 - LitServe reads this annotation: none means JSON
        # A bad request must not fail the batch it landed in: keep its reason, answer it alone.
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
            return JSONResponse({"detail": output}, status_code=400)
        image, size, seconds = output
        return {"image": encode_png(image), "batch_size": size, "seconds": round(seconds, 4)}


def serve_image_command(
    backend: Path,
    host: str = "127.0.0.1",
    port: int = DEFAULT_PORT,
    token: str | None = None,
    max_batch_size: int = 8,
    batch_timeout: float = 0.01,
) -> None:
    """Serve ``backend`` over HTTP until interrupted; on any host but loopback a token is required."""
    from strokeagent.backends import read_backend_table

    path, table = read_backend_table(backend)  # a missing or broken file is refused before anything starts
    if table.get("kind") != "diffusers":
        raise PolicyError(
            f'{path}: kind {table.get("kind")!r} cannot be served; `serve image` serves kind = "diffusers"'
        )
    token = token or os.environ.get(TOKEN_ENV) or None
    if token is None and not _is_loopback(host):
        raise PolicyError(
            f"listening on {host} lets other machines in: give --token (or set {TOKEN_ENV}), or listen on 127.0.0.1"
        )
    api = DiffusionAPI(path, token, max_batch_size=max_batch_size, batch_timeout=batch_timeout)
    server = ls.LitServer(api, accelerator="cpu", devices=1, workers_per_device=1, timeout=600)
    server.run(host=host, port=port, generate_client_file=False, num_api_servers=1, log_level="warning")
