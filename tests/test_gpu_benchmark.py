"""benchmarks/gpu.py --tiny on the CPU: the same code the GPU run uses, end to end, as one subprocess."""

from __future__ import annotations

import json
import math
import os
import platform
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("diffusers", reason="the benchmark's diffusion half needs the diffusers extra")
pytest.importorskip("transformers", reason="the benchmark's Janus half needs transformers")

pytestmark = pytest.mark.slow  # a subprocess that builds two tiny models and runs 11 trajectories (~25-60 s)

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu.py"
RATIOS = (
    "backend_batched_vs_raw",
    "trajectory_ratio",
    "concurrent_vs_raw",
    "unified_image_tokens_per_s",
    "unified_text_tokens_per_s",
    "transformers_text_tokens_per_s",
    "transformers_image_tokens_per_s",
    "unified_image_vs_transformers",
    "unified_prefill_saved",
)


def test_tiny_run_prints_one_json_object_with_positive_figures(tmp_path):
    out = tmp_path / "gpu.json"
    result = subprocess.run(
        [sys.executable, str(SCRIPT), "--tiny", "--device", "cpu", "--repeats", "1", "--out", str(out),
         "--profile", str(tmp_path / "profile")],  # fmt: skip
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    figures = json.loads(result.stdout)  # stdout is the JSON object and nothing else
    assert figures == json.loads(out.read_text()) and "unfinished_after" not in figures  # the last write is whole
    for key in ("device", "torch", "date", "kernel", *RATIOS):
        assert key in figures, key
    for key in RATIOS:
        value = figures[key]
        assert isinstance(value, float) and math.isfinite(value) and value > 0, (key, value)
    assert figures["device"].startswith("cpu") and figures["sizes"] == "tiny"
    assert figures["kernel"] == platform.release()
    host = figures["host_cpus"]
    assert host["visible"] == os.cpu_count() and 1 <= host["affinity"] <= host["visible"]
    assert host["torch_threads"] == 1  # --device cpu: one
    assert figures["trajectory_ratio"] >= 1.0  # the wall time holds the stages' time
    assert figures["unified_prefill_saved"] < 1.0
    # The tiny run also re-encodes: the count it reports is what re-encoding really prefills, same bytes.
    unified = figures["unified"]
    assert unified["unified_same_bytes"]
    assert abs(unified["unified_count_off_by"]) <= 0.01 * unified["unified_prefilled_reencode"]
    assert figures["trajectories"]["trajectory_steps"] == 3
    backend = figures["backend"]  # image to image with the init images encoded together and one by one
    assert backend["image_to_image_8_s"] > 0 and backend["image_to_image_8_encoding_one_by_one_s"] > 0
    assert 0 <= backend["image_to_image_encode_largest_pixel_difference"] <= 1
    ratios = figures["trajectories"]["trajectory_ratios"]  # the headline is the median of three runs
    assert len(ratios) == 3 and figures["trajectory_ratio"] == sorted(ratios)[1]
    assert len(figures["trajectories"]["trajectory_beside_ms"]) == 3
    # The recorded rerun stored and encoded each of its 6 images once (3 drafts, 3 refinements).
    assert len(figures["trajectories"]["trajectory_image_put_ms"]) == 6
    assert len(figures["trajectories"]["trajectory_png_ms"]) == 6
    # Every decode mode timed (the CPU default: dynamic and static) has its figure; the headline is the best.
    by_decode = unified["unified_image_tokens_per_s_by_decode"]
    assert set(by_decode) == {"dynamic", "static"} and not unified["unified_image_errors"]
    assert all(v > 0 for v in by_decode.values())
    assert figures["unified_image_tokens_per_s"] == max(by_decode.values())
    assert unified["unified_process_decode"] == unified["unified_image_decode"]
    assert unified["unified_process_text_decode"] == unified["unified_text_decode"]
    assert unified["transformers_text_tokens"] == 64 and 0 < unified["unified_text_tokens"] <= 64
    # Text is timed in the plain loop and in each mode that painted; the headline is the best of them.
    text = unified["unified_text_tokens_per_s_by_decode"]
    assert set(text) == set(unified["unified_text_first_s"]) == {"dynamic", "static"}
    assert figures["unified_text_tokens_per_s"] == max(text.values()) == text[unified["unified_text_decode"]]
    assert set(unified["unified_text_tokens_per_s_long_context_by_decode"]) == {"dynamic", "static"}
    assert 0 < unified["unified_text_long_context_tokens"] <= 64
    assert figures["backend"]["backend_calls_per_8"] == 1.0  # eight concurrent requests, one pipeline call
    assert figures["backend"]["backend_run_direct_s"] > 0 and figures["backend"]["raw_on_launcher_thread_s"] > 0
    assert figures["backend"]["raw_on_new_thread_s"] > 0
    assert figures["backend"]["independent_8_s"] > 0 and figures["backend"]["independent_vs_batched"] > 0
    # Eight trajectories of 3 steps paint 6 images each: every one went through a batch.
    assert sum(figures["trajectories"]["concurrent_batch_sizes"]) == 8 * 6
    assert set(unified["unified_shared_by_stage"]) == {"plan", "draft", "reflect", "refine"}
    assert unified["convolutions_model_thread_s"] > 0 and unified["convolutions_new_thread_s"] > 0
    assert unified["sampling_on_device_ms"] > 0 and unified["sampling_on_cpu_ms"] > 0
    assert unified["sampling_on_cpu_one_thread_ms"] > 0 and unified["cpu_threads"] == 1  # --device cpu: one
    calls = unified["unified_shared_calls"]
    assert [c[0] for c in calls[:2]] == ["plan", "draft"]
    for stage, row in unified["unified_shared_by_stage"].items():
        assert row["calls"] == sum(1 for c in calls if c[0] == stage)
    # --profile: one table per part, with the operators of the threads that did the work (the batcher's too).
    names = ("backend-raw", "backend-concurrent", "trajectory", "concurrent-call", "janus-image",
             "janus-text-prompt", "janus-text-long")
    for name in names:
        table = (tmp_path / "profile" / f"{name}.txt").read_text()
        assert "Self CPU" in table and "aten::" in table, name
    # The eight's image-to-image call, by model: where a call's fixed cost goes beside its denoising steps.
    call = (tmp_path / "profile" / "concurrent-call.txt").read_text().split("By model")[1]
    assert {line.split()[0] for line in call.splitlines()[1:]} == {
        "text_encoder.forward", "unet.forward", "vae.encode", "vae.decode"
    }  # fmt: skip


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--steps", "0"], "argument --steps: '0': give a whole number above 0"),
        (["--repeats", "-1"], "argument --repeats: '-1': give a whole number above 0"),
        (["--out", "{tmp}/missing/gpu.json"], "give a file path in a folder that exists"),
        (["--out", "{tmp}"], "give a file path in a folder that exists"),
        (["--profile", "{tmp}/a-file"], "that is a file; give a folder (made if missing)"),
    ],
)
def test_bad_arguments_are_one_line_before_any_work(tmp_path, args, message):
    (tmp_path / "a-file").write_text("x")
    result = subprocess.run(
        [sys.executable, str(SCRIPT), "--tiny", "--device", "cpu", *(a.format(tmp=tmp_path) for a in args)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.splitlines()[-1].endswith(message) and "Traceback" not in result.stderr


def test_past_its_time_the_run_skips_what_can_wait_and_says_so(tmp_path):
    result = subprocess.run(
        [sys.executable, str(SCRIPT), "--tiny", "--device", "cpu", "--repeats", "1", "--images", "1",
         "--within", "0", "--profile", str(tmp_path / "profile")],  # fmt: skip
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    figures = json.loads(result.stdout)
    assert figures["skipped"] == ["the Janus profile: 0 s were used up"]
    assert not (tmp_path / "profile" / "janus-image.txt").exists()
    assert (tmp_path / "profile" / "backend-raw.txt").exists()  # the diffusion half is never skipped
    assert figures["unified"]["unified_seed"] == 0  # no second seed tried, whatever the first one painted
    assert figures["unified_prefill_saved"] > 0


def test_when_every_decode_mode_asked_for_fails_the_plain_loop_still_gives_a_figure(monkeypatch):
    import torch

    monkeypatch.syspath_prepend(str(SCRIPT.parent))
    import gpu

    class NoGraphs:  # a model whose `compiled` decode fails, as it might on a GPU torch.compile cannot handle
        decode, num_image_tokens, device = "dynamic", 4, torch.device("cpu")
        painted: list[str] = []
        _image_logits = None

        def _step(self, eager, decode):
            raise RuntimeError("no CUDA graphs here")

        def new_context(self):
            return []

        def add_text(self, ctx, text):
            pass

        def generate_image(self, ctx, seed, guidance):
            if self.decode == "compiled":
                raise RuntimeError("no CUDA graphs here")
            self.painted.append(self.decode)

    figures = gpu.measure_image_tokens(NoGraphs(), images=1, decodes=["compiled"])
    assert figures["unified_image_decode"] == "dynamic" and figures["unified_image_tokens_per_s"] > 0
    assert figures["unified_image_errors"] == {"compiled": "RuntimeError: no CUDA graphs here"}
    assert NoGraphs.painted == ["dynamic", "dynamic"]  # a warm-up (nothing had worked yet), then the timed image


def test_the_compiled_agreement_check_passes_a_right_cache_and_fails_one_left_behind(tmp_path):
    pytest.importorskip("torch")
    from strokeagent.testing.unified import build_tiny_janus
    from strokeagent.unified.janus import JanusModel

    sys.path.insert(0, str(SCRIPT.parent))
    import gpu

    model = JanusModel(str(build_tiny_janus(tmp_path / "janus")), decode="compiled")
    right = gpu.measure_compiled_agreement(model)
    for kind in ("text", "image"):  # compiled kernels round a little; a cache left behind is far off
        assert right[f"compiled_{kind}_vs_eager"] < 1e-4 < right[f"left_behind_{kind}_vs_eager"] / 100, right
    model._step = lambda eager, decode: gpu.cache_left_behind(eager)  # a compiled step that loses the updates
    wrong = gpu.measure_compiled_agreement(model)
    for kind in ("text", "image"):
        assert wrong[f"compiled_{kind}_vs_eager"] == wrong[f"left_behind_{kind}_vs_eager"] > 0.01, wrong


def test_when_text_s_compile_would_pass_the_time_it_is_skipped_and_only_images_compile(tmp_path):
    result = subprocess.run(
        [sys.executable, str(SCRIPT), "--tiny", "--device", "cpu", "--repeats", "1", "--images", "1",
         "--decode", "compiled", "--within", "0"],  # fmt: skip
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    figures = json.loads(result.stdout)
    unified = figures["unified"]
    assert figures["skipped"][0].startswith("compiled text: its compile (about")
    assert set(unified["unified_text_tokens_per_s_by_decode"]) == {"dynamic"}
    assert unified["unified_process_decode"] == "compiled" and unified["unified_process_text_decode"] == "dynamic"
    assert set(unified) >= {"compiled_image_vs_eager", "left_behind_image_vs_eager"}
    assert "compiled_text_vs_eager" not in unified
    assert set(unified["unified_image_compile_s"]) == {"compiled"}
    # The compile is timed apart, before the first image, which no longer pays it.
    assert unified["unified_image_compile_s"]["compiled"] > unified["unified_image_first_s"]["compiled"] > 0


def test_the_compile_timed_apart_is_the_one_the_first_image_would_have_paid(tmp_path):
    import torch
    from torch._dynamo.utils import counters

    from strokeagent.testing.unified import build_tiny_janus
    from strokeagent.unified.janus import JanusModel

    sys.path.insert(0, str(SCRIPT.parent))
    import gpu

    torch._dynamo.reset()
    model = JanusModel(str(build_tiny_janus(tmp_path / "janus")), decode="compiled")
    ctx = gpu.prompt_context(model)
    before = counters["stats"]["unique_graphs"]
    assert gpu.first_compiled_step(model, ctx) > 0
    compiled = counters["stats"]["unique_graphs"] - before
    assert compiled >= 1
    model.generate_image(ctx, seed=0, guidance=5.0)  # the warm-up image: no compile of its own
    assert counters["stats"]["unique_graphs"] - before == compiled
