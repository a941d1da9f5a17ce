"""``kind = "diffusers"``: a diffusers pipeline as an image backend.

    >>> backend = DiffusersBackend(model="~/.cache/strokeagent/tiny-sd")          # doctest: +SKIP
    >>> sorted(backend.tasks)                                                      # doctest: +SKIP
    ['image-to-image', 'inpaint', 'text-to-image']
    >>> [img] = await backend.generate([ImageRequest("a red apple", width=64, height=64, steps=4)])  # doctest: +SKIP

A description file::

    kind = "diffusers"
    model = "stabilityai/stable-diffusion-xl-base-1.0"   # a hub id, or a local folder
    dtype = "float16"
    device = "cuda"
    cpu_offload = false
    compile = false
    independent = false   # true: every request its own pipeline call (bytes that never depend on neighbours)

What the model can do is read from its ``model_index.json`` before any weight
loads. Text-to-image models load through ``AutoPipelineForText2Image``; their
image-to-image and inpainting twins are derived with ``from_pipe``, so the
weights load once. Instruction-editing models (FluxKontext, QwenImageEdit,
InstructPix2Pix) load as themselves and do ``edit``. Weights are safetensors
only; with ``HF_HUB_OFFLINE=1`` a hub id must already be in the local cache.
torch and diffusers are imported here, when a backend is built, never before.
"""

from __future__ import annotations

import inspect
import logging
import os
import re
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from PIL import Image

from strokeagent.backends.image import (
    ImageBackendError,
    ImageRequest,
    MicroBatcher,
    group_by_shape,
)

log = logging.getLogger(__name__)

#: Pipelines that edit an image by instruction, and what each can do.
EDIT_PIPELINES: dict[str, frozenset[str]] = {
    "FluxKontextPipeline": frozenset({"text-to-image", "edit"}),  # the input image is optional
    "QwenImageEditPipeline": frozenset({"edit"}),
    "QwenImageEditPlusPipeline": frozenset({"edit"}),
    "StableDiffusionInstructPix2PixPipeline": frozenset({"edit"}),
    "StableDiffusionXLInstructPix2PixPipeline": frozenset({"edit"}),
}
DTYPES = ("float32", "float16", "bfloat16")

#: Image-to-image and inpainting pipelines whose ``strength`` only sets where denoising starts
#: (``get_timesteps``: the last ``int(steps * strength)`` steps) and, at exactly 1, that inpainting starts
#: from pure noise: read in diffusers 0.42's source. Requests to these share a call when their denoising
#: steps agree (``ImageRequest.shape``); any other pipeline groups them by exact strength.
STEP_STRENGTH_PIPELINES = frozenset(
    {
        "StableDiffusionImg2ImgPipeline",
        "StableDiffusionInpaintPipeline",
        "StableDiffusionXLImg2ImgPipeline",
        "StableDiffusionXLInpaintPipeline",
    }
)

#: Pipelines whose pictures go through diffusers' ``VaeImageProcessor`` as numbers in [0, 1]: the backend hands
#: them tensors and takes tensors back (``output_type="pt"``), doing where the pipeline runs the conversions
#: diffusers does on the CPU in float32 numpy copies (``pil_to_numpy``, ``numpy_to_pil``). The same arithmetic,
#: so the same bytes; only 8-bit pixels cross. For a batch of eight 512² images that leaves about 1 ms of CPU work
#: each way instead of 10-12 ms (one core of the project's machine, 2026-11-27). Inpainting's init image stays a
#: PIL image (its mask and crops are prepared with it).
PIXELS_ON_DEVICE_PIPELINES = frozenset(
    {
        "StableDiffusionPipeline",
        "StableDiffusionImg2ImgPipeline",
        "StableDiffusionInpaintPipeline",
        "StableDiffusionXLPipeline",
        "StableDiffusionXLImg2ImgPipeline",
        "StableDiffusionXLInpaintPipeline",
    }
)

#: Image-to-image pipelines whose ``prepare_latents`` takes four-channel ``image`` tensors as the init latents
#: themselves, and otherwise, with a generator per image, encodes the images one VAE call each and draws each
#: latent from its image's generator (diffusers 0.42's source). On a GPU the backend encodes a batch's init images
#: in one VAE call and draws the same latents from the same generators (``_init_latents``): on the H200, eight 512²
#: images one by one took 103 ms of an image-to-image call of 0.96 s (run 6's profile). On the CPU it leaves them
#: one by one: there the batched call was slower (the tiny VAE, one thread: 77-90 ms against 63-64 for eight 64²
#: images, 2026-11-27). The batch's VAE numerics may change the latents' last bits, as every batched call's numerics
#: do; a batch of one gives the pipeline's own bytes. SDXL's twin upcasts its VAE and shifts the latents: it keeps
#: its own path.
ENCODE_TOGETHER_PIPELINES = frozenset({"StableDiffusionImg2ImgPipeline"})


def model_source(model: str) -> str:
    """A local pipeline folder (``~`` and ``$VARS`` expanded; it must hold a ``model_index.json``) or an
    ``owner/name`` hub id, as given."""
    expanded = os.path.expanduser(os.path.expandvars(model))
    if Path(expanded).is_dir():
        if not (Path(expanded) / "model_index.json").is_file():
            raise FileNotFoundError(
                f"{expanded} has no model_index.json, so it is not a diffusers pipeline folder; give the folder a "
                "pipeline was saved to (save_pretrained)"
            )
        return str(Path(expanded).resolve())
    if re.fullmatch(r"[\w.-]+/[\w.-]+", expanded) and not expanded.startswith("."):
        return expanded
    raise FileNotFoundError(
        f"model folder {expanded} does not exist (and it is not an owner/name hub id); create it "
        f"(tiny test models: python -m strokeagent.testing.diffusers {expanded}) or give a hub id"
    )


class DiffusersBackend:
    """A diffusers pipeline family behind the batched ``generate`` call.

    Options: ``model`` (folder or hub id), ``dtype``, ``device`` (``cpu``,
    ``cuda``, ``auto``), ``cpu_offload`` (model offload to a GPU),
    ``compile`` (``torch.compile`` the denoiser), ``batch_window_ms`` and
    ``max_batch`` (the most concurrent requests are held for company, and how
    many run together: see ``MicroBatcher``), ``independent`` (every request
    its own pipeline call, so its bytes never depend on which requests it
    would have shared a batch with; ``max_batch`` is then 1), ``name``,
    ``threads`` (torch's CPU threads, process-wide). ``on_step`` may be set to a callable
    ``(step, total)``: it is called from ``callback_on_step_end``.
    """

    def __init__(
        self,
        model: str,
        dtype: str = "float32",
        device: str = "cpu",
        cpu_offload: bool = False,
        compile: bool = False,
        batch_window_ms: float = 50.0,
        max_batch: int = 8,
        name: str | None = None,
        threads: int | None = None,
        independent: bool = False,
    ) -> None:
        if not isinstance(independent, bool):
            raise ValueError(f"independent must be true or false, got {independent!r}")
        if dtype not in DTYPES:
            raise ValueError(f"dtype must be one of {', '.join(DTYPES)}, got {dtype!r}")
        if device not in ("cpu", "cuda", "auto") and not device.startswith("cuda:"):
            raise ValueError(f"device must be cpu, cuda, cuda:N or auto, got {device!r}")
        import torch

        if threads is not None:
            if threads < 1:
                raise ValueError(f"threads must be at least 1, got {threads}")
            # Process-wide: on a busy CPU, torch's default (one thread per core) can spin-wait its way
            # to 20× slower than a single thread (measured: 0.64 s against 17.6 s for a tiny call).
            torch.set_num_threads(threads)
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        if cpu_offload and device == "cpu":
            raise ValueError(
                'cpu_offload moves weights between the CPU and a GPU; set device = "cuda" or drop it'
            )
        self.source = model_source(model)
        self.name = name or Path(self.source).name
        self.device = device
        self.on_step: Callable[[int, int], None] | None = None
        self.steps_run = 0  # denoising steps run in this process: for progress tests
        self._lock = threading.Lock()
        self.pipeline_class, self._pipes = self._load(getattr(torch, dtype), cpu_offload, compile)
        self.tasks = frozenset(self._pipes)
        # What each pipeline's __call__ accepts, looked up once: inspect.signature costs milliseconds a call.
        self._accepted = {
            task: frozenset(inspect.signature(pipe.__call__).parameters) for task, pipe in self._pipes.items()
        }
        self.independent = independent
        self._exact_strength = any(
            type(pipe).__name__ not in STEP_STRENGTH_PIPELINES
            for task, pipe in self._pipes.items()
            if task in ("image-to-image", "inpaint")
        )
        image_to_image = self._pipes.get("image-to-image")
        self._encode_together = (
            device != "cpu"
            and type(image_to_image).__name__ in ENCODE_TOGETHER_PIPELINES
            # A Gaussian posterior of four channels: what _init_latents samples, and what the pipeline takes as
            # latents. Another VAE (TAESD, more channels) keeps diffusers' own path.
            and type(image_to_image.vae).__name__ == "AutoencoderKL"
            and image_to_image.vae.config.latent_channels == 4
        )
        # Batches of one: a full batch goes at once, so independent requests never wait for a window either.
        self._batcher = MicroBatcher(
            self.run, window_s=batch_window_ms / 1000, max_batch=1 if independent else max_batch
        )

    def __repr__(self) -> str:
        return f"DiffusersBackend({self.name!r}, {self.pipeline_class}, tasks={sorted(self.tasks)})"

    # -- loading ---------------------------------------------------------------

    def _load(self, dtype: Any, cpu_offload: bool, compile: bool) -> tuple[str, dict[str, Any]]:
        import diffusers
        from diffusers import (
            AutoPipelineForImage2Image,
            AutoPipelineForInpainting,
            AutoPipelineForText2Image,
            DiffusionPipeline,
        )

        try:
            class_name = DiffusionPipeline.load_config(self.source)["_class_name"]
        except (OSError, ValueError, KeyError) as e:
            offline = (
                " (HF_HUB_OFFLINE=1: only the local cache is read)"
                if os.environ.get("HF_HUB_OFFLINE")
                else ""
            )
            raise ValueError(
                f"cannot read the pipeline description of {self.source}{offline}: {str(e).splitlines()[0]}; "
                "give a folder with a model_index.json or a hub id that is downloaded"
            ) from None
        common = {"dtype": dtype, "use_safetensors": True}
        if class_name in EDIT_PIPELINES:
            pipe = getattr(diffusers, class_name).from_pretrained(self.source, **common)
            base = {task: pipe for task in EDIT_PIPELINES[class_name]}
        else:
            pipe = AutoPipelineForText2Image.from_pretrained(self.source, **common)
            base = {"text-to-image": pipe}
        self._place(pipe, cpu_offload, compile)
        if class_name not in EDIT_PIPELINES:
            for task, auto in (
                ("image-to-image", AutoPipelineForImage2Image),
                ("inpaint", AutoPipelineForInpainting),
            ):
                try:
                    base[task] = auto.from_pipe(pipe)  # shares every module: no second copy of the weights
                except ValueError:
                    log.info("%s has no %s pipeline", class_name, task)
        for p in base.values():
            p.set_progress_bar_config(disable=True)
        return class_name, base

    def _place(self, pipe: Any, cpu_offload: bool, compile: bool) -> None:
        import torch

        if cpu_offload:
            pipe.enable_model_cpu_offload(device=self.device)
        else:
            pipe.to(self.device)
        if compile:
            for attr in ("unet", "transformer"):
                if getattr(pipe, attr, None) is not None:
                    setattr(pipe, attr, torch.compile(getattr(pipe, attr)))

    # -- generating ------------------------------------------------------------

    async def generate(self, requests: Sequence[ImageRequest]) -> list[Image.Image]:
        """One image per request; concurrent callers within ``batch_window_ms`` share pipeline calls."""
        for r in requests:
            self._check(r)
        return await self._batcher.submit(list(requests))

    @property
    def batch_stats(self):  # -> BatchStats
        return self._batcher.stats

    def run(self, requests: Sequence[ImageRequest]) -> list[Image.Image]:
        """Synchronously: one pipeline call per group of requests with the same shape (per request if independent)."""
        out: list[Image.Image | None] = [None] * len(requests)
        if self.independent:  # the service hands over its own batches: split them here too
            groups = [[i] for i in range(len(requests))]
        else:
            groups = group_by_shape(requests, exact_strength=self._exact_strength)
        for group in groups:
            images = self._call([requests[i] for i in group])
            for i, image in zip(group, images, strict=True):
                out[i] = image
        return out  # type: ignore[return-value]

    def _check(self, r: ImageRequest) -> None:
        if r.task not in self.tasks:
            raise ImageBackendError(
                f"image backend {self.name} ({self.pipeline_class}) cannot do {r.task}; it can do "
                f"{', '.join(sorted(self.tasks))}"
            )

    def _call(self, batch: list[ImageRequest]) -> list[Image.Image]:
        import torch

        first = batch[0]
        self._check(first)
        pipe = self._pipes[first.task]
        size = (first.width, first.height)
        on_device = type(pipe).__name__ in PIXELS_ON_DEVICE_PIPELINES
        kwargs: dict[str, Any] = {
            "prompt": [r.prompt for r in batch],
            "height": first.height,
            "width": first.width,
            "num_inference_steps": first.steps,
            # One generator per request: its seed alone decides its noise, whatever the batch.
            "generator": [torch.Generator("cpu").manual_seed(r.seed) for r in batch],
            "output_type": "pt" if on_device else "pil",
            "callback_on_step_end": self._step_callback(first),
            # Kontext-style editors rescale to max_area (about a megapixel by default) and snap the input to
            # their preferred sizes: ask for the requested area, and keep the input as given.
            "max_area": first.width * first.height,
            "_auto_resize": False,
        }
        if first.negative_prompt is not None:
            kwargs["negative_prompt"] = [r.negative_prompt for r in batch]
        if first.guidance is not None:
            key = "true_cfg_scale" if self.pipeline_class.startswith("QwenImage") else "guidance_scale"
            kwargs[key] = first.guidance
        if first.image is not None:
            kwargs["image"] = [r.image.convert("RGB").resize(size) for r in batch]  # type: ignore[union-attr]
        if first.task == "inpaint":
            kwargs["mask_image"] = [r.mask.convert("L").resize(size) for r in batch]  # type: ignore[union-attr]
        if first.task in ("image-to-image", "inpaint"):
            # Any member's strength will do: the group shares the steps it leaves, hence the schedule.
            kwargs["strength"] = first.strength
        accepted = self._accepted[first.task]
        kwargs = {k: v for k, v in kwargs.items() if k in accepted}  # e.g. InstructPix2Pix takes no size
        with self._lock:
            try:
                if on_device and first.task == "image-to-image":
                    kwargs["image"] = self._to_unit(kwargs["image"])
                    if self._encode_together:
                        kwargs["image"] = self._init_latents(pipe, kwargs["image"], kwargs["generator"])
                images = pipe(**kwargs).images
                if on_device:
                    images = self._to_pil(images)
            except Exception as e:
                raise ImageBackendError(
                    f"image backend {self.name} ({type(pipe).__name__}) failed on a batch of {len(batch)}: "
                    f"{type(e).__name__}: {e}"
                ) from e
        return [im if im.size == size else im.resize(size) for im in images]

    def _to_unit(self, images: list[Image.Image]) -> Any:
        """RGB images as diffusers' ``pil_to_numpy`` makes them, (n, 3, h, w) float32 in [0, 1], on the device."""
        import numpy as np
        import torch

        pixels = torch.from_numpy(np.stack([np.asarray(im) for im in images])).to(self.device)
        return pixels.permute(0, 3, 1, 2).float() / 255.0

    @staticmethod
    def _init_latents(pipe: Any, unit: Any, generators: list[Any]) -> Any:
        """The init latents ``prepare_latents`` would make from ``unit`` images, with one VAE call for all of them.

        Each image's latent is drawn from its own generator, in order, as diffusers draws it, so the generators
        stand where the pipeline's own encoding leaves them for the noise it draws next.
        """
        import torch

        assert len(generators) == len(unit), "one generator per init image, as prepare_latents checks"
        image = pipe.image_processor.preprocess(unit)
        # The dtype the pipeline would encode in: its prompt embeddings' (encode_prompt's choice).
        dtype = (pipe.text_encoder if pipe.text_encoder is not None else pipe.unet).dtype
        image = image.to(device=pipe._execution_device, dtype=dtype)
        # As inside the pipeline's own call: without it autograd keeps the encoder's activations (gigabytes for
        # eight 512² images) for as long as the latents live, through the whole denoising.
        with torch.no_grad():
            posterior = pipe.vae.encode(image).latent_dist
            return pipe.vae.config.scaling_factor * posterior.sample(generators)

    @staticmethod
    def _to_pil(images: Any) -> list[Image.Image]:
        """(n, 3, h, w) in [0, 1] to RGB images, rounded as diffusers' ``numpy_to_pil`` rounds, on the device."""
        import torch

        pixels = (images.float() * 255).round().to(torch.uint8).permute(0, 2, 3, 1).contiguous().cpu().numpy()
        return [Image.fromarray(p) for p in pixels]

    def _step_callback(self, request: ImageRequest) -> Callable[..., dict[str, Any]]:
        total = request.denoising_steps

        def on_step_end(
            pipe: Any, step: int, timestep: Any, callback_kwargs: dict[str, Any]
        ) -> dict[str, Any]:
            self.steps_run += 1
            log.debug("%s: step %d of %d", self.name, step + 1, total)
            if self.on_step is not None:
                self.on_step(step + 1, total)
            return callback_kwargs

        return on_step_end
