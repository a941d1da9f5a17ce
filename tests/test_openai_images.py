"""``kind = "openai-images"`` against the project's own service (`strokeagent serve image`) on loopback."""

import asyncio
import json
import os

import pytest
from PIL import Image

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from test_diffusion_service import TOKEN, start_service, stop_service, wait_ready  # noqa: E402
from test_image_backends import req, tiny  # noqa: E402,F401 - the session's tiny pipelines

from strokeagent.backends.image import ImageBackendError  # noqa: E402
from strokeagent.backends.openai_images import OpenAIImagesBackend  # noqa: E402
from strokeagent.core.store import png_bytes  # noqa: E402
from strokeagent.errors import PolicyError  # noqa: E402

KEY_ENV = "STROKEAGENT_TEST_IMAGES_KEY"


@pytest.fixture(scope="module")
def services(tiny):  # noqa: F811
    """Tiny SD (text-to-image, image-to-image, inpaint) and tiny InstructPix2Pix (edit), started together."""
    started = [start_service(tiny / "sd.toml"), start_service(tiny / "pix.toml")]
    try:
        for url, proc in started:
            wait_ready(url, proc)
        yield {"sd": started[0][0], "pix": started[1][0]}
    finally:
        for _, proc in started:
            stop_service(proc)


@pytest.fixture
def key(monkeypatch):
    monkeypatch.setenv(KEY_ENV, TOKEN)
    return KEY_ENV


def backend(url, tasks, **kw):
    return OpenAIImagesBackend(base_url=f"{url}/v1", tasks=tasks, api_key_env=KEY_ENV, **kw)


def test_text_to_image_same_seed_same_bytes_and_as_in_process(services, key, tiny):  # noqa: F811
    from strokeagent.backends import load_backend

    sd = backend(services["sd"], ["text-to-image", "image-to-image", "inpaint"])
    a, b, c = asyncio.run(sd.generate([req("a cup", seed=9), req("a cup", seed=9), req("a cup", seed=10)]))
    assert a.size == (64, 64) and _largest_difference(a, c) > 1
    _same_seed_agrees(a, b, sd.last_batch_sizes[-3:])
    [alone] = asyncio.run(sd.generate([req("a cup", seed=9)]))
    assert sd.last_batch_sizes[-1] == 1
    [local] = load_backend(tiny / "sd.toml").run([req("a cup", seed=9)])
    assert png_bytes(alone) == png_bytes(local)
    # image-to-image (strength) and inpainting (an OpenAI mask) go through /v1/images/edits.
    mask = Image.new("L", (64, 64))
    mask.paste(255, (16, 16, 48, 48))
    i2i, inpaint = asyncio.run(
        sd.generate([req("bluer", image=a, strength=0.5, seed=1), req("a hole", image=a, mask=mask, seed=1)])
    )
    [i2i_local, inpaint_local] = load_backend(tiny / "sd.toml").run(
        [req("bluer", image=a, strength=0.5, seed=1), req("a hole", image=a, mask=mask, seed=1)]
    )
    assert i2i.size == inpaint.size == (64, 64)
    assert png_bytes(i2i) != png_bytes(inpaint)
    # in a batch of two, a pixel may differ by one level (floating-point order): compare loosely
    for served, local in ((i2i, i2i_local), (inpaint, inpaint_local)):
        assert _largest_difference(served, local) <= 2


def test_edit_through_the_edits_route(services, key):
    pix = backend(services["pix"], ["edit"])
    base = Image.new("RGB", (64, 64), "red")
    edit = lambda seed: req("make it blue", image=base, edit=True, seed=seed)  # noqa: E731
    # Sent together, three edits ran as [1, 2, 2] in three rounds of four while LitServe's window was not opened by
    # a batch's first request, and may still split if they reach the server more than a window apart.
    one, two, other = asyncio.run(pix.generate([edit(4), edit(4), edit(5)]))
    assert one.size == (64, 64) and _largest_difference(one, other) > 1
    _same_seed_agrees(one, two, pix.last_batch_sizes[-3:])
    # Each alone: the same bytes.
    alone = [asyncio.run(pix.generate([edit(4)]))[0] for _ in range(2)]
    assert pix.last_batch_sizes[-2:] == [1, 1]
    assert png_bytes(alone[0]) == png_bytes(alone[1])
    # a task the backend's description does not list is refused before anything is sent
    with pytest.raises(ImageBackendError, match=r"cannot do text-to-image; its description lists edit$"):
        asyncio.run(pix.generate([req()]))
    # the served model cannot do what the description claims: the server's 400, in one line
    wrong = backend(services["pix"], ["text-to-image"])
    with pytest.raises(ImageBackendError) as e:
        asyncio.run(wrong.generate([req()]))
    assert str(e.value) == (
        f"image backend openai-images at {services['pix']}/v1 refused the request: HTTP 400: "
        "backend pix2pix cannot do text-to-image; it can do edit"
    )


def _largest_difference(a: Image.Image, b: Image.Image) -> int:
    return max(abs(x - y) for x, y in zip(a.tobytes(), b.tobytes(), strict=True))


def _same_seed_agrees(one: Image.Image, two: Image.Image, batch_sizes: list[int]) -> None:
    """Two requests with one seed, sent together with a third: the same bytes if the server ran the three as one
    batch; to a level if not (they reach it within its 10 ms window or not, by timing, and a batch's pixels may
    differ from one-at-a-time pixels by a level: test_image_backends)."""
    if batch_sizes == [3, 3, 3]:
        assert png_bytes(one) == png_bytes(two)
    else:
        assert _largest_difference(one, two) <= 1


def test_a_bad_key_is_refused_in_one_line(services, monkeypatch):
    monkeypatch.setenv(KEY_ENV, "wrong")
    with pytest.raises(ImageBackendError) as e:
        asyncio.run(backend(services["sd"], ["text-to-image"]).generate([req()]))
    assert str(e.value) == (
        f"image backend openai-images at {services['sd']}/v1 refused the request: HTTP 401: "
        "missing or wrong token: send 'Authorization: Bearer <token>'"
    )
    monkeypatch.delenv(KEY_ENV)
    with pytest.raises(
        PolicyError, match=rf"^openai-images: the environment variable {KEY_ENV} \(api_key_env\) is not set$"
    ):
        backend(services["sd"], ["text-to-image"])


def test_the_description_loads_through_the_registry(tmp_path, key):
    from strokeagent.backends import load_backend

    toml = tmp_path / "images.toml"
    toml.write_text(
        f'kind = "openai-images"\nbase_url = "http://127.0.0.1:1/v1"\ntasks = ["text-to-image", "edit"]\n'
        f'api_key_env = "{KEY_ENV}"\nmax_retries = 0\n'
    )
    b = load_backend(toml)
    assert isinstance(b, OpenAIImagesBackend) and b.tasks == {"text-to-image", "edit"} and b.max_retries == 0


def test_what_is_sent_and_one_client_per_loop():
    import httpx

    seen = []
    image = Image.new("RGB", (16, 16), "white")

    def handler(request):
        seen.append((request.url.path, request.headers.get("content-type", ""), request.content))
        return httpx.Response(200, json={"created": 0, "data": [{"b64_json": __import__("strokeagent.backends.image", fromlist=["x"]).encode_png(image)}]})  # fmt: skip

    b = OpenAIImagesBackend(base_url="http://nowhere.invalid/v1", model="m", tasks=["text-to-image", "edit"],
                            http_client=httpx.AsyncClient(transport=httpx.MockTransport(handler)))  # fmt: skip

    async def both():
        await b.generate([req("a", seed=3, guidance=4.5, negative_prompt="blur")])
        await b.generate([req("b", image=image, edit=True, seed=7)])
        return len(b._clients)

    assert asyncio.run(both()) == 1
    (path, _, body), (edit_path, edit_type, edit_body) = seen
    assert path == "/v1/images/generations"
    assert json.loads(body) == {
        "prompt": "a", "n": 1, "size": "64x64", "response_format": "b64_json", "model": "m", "seed": 3,
        "num_inference_steps": 3, "guidance_scale": 4.5, "negative_prompt": "blur",
    }  # fmt: skip
    assert edit_path == "/v1/images/edits" and edit_type.startswith("multipart/form-data")
    for field in (b'name="seed"\r\n\r\n7', b'name="num_inference_steps"\r\n\r\n3', b'name="prompt"\r\n\r\nb'):
        assert field in edit_body
    assert b"strength" not in edit_body  # an edit, not image-to-image
    # a hosted API that refuses unknown fields: none are sent
    assert OpenAIImagesBackend(base_url="http://x/v1", extra_fields=[]).body(req(seed=3)) == {}
