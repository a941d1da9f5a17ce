"""process-tiny: the shipped model, its hand, its data, its recipe — and the same process stages as Janus or BAGEL."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import strokeagent
from strokeagent.core.policy import load_policy
from strokeagent.core.store import pixel_digest
from strokeagent.data.tiny import cells_of, encode, trajectory, wrong_strokes
from strokeagent.scene.geometry import holds
from strokeagent.sketch.document import SketchDocument
from strokeagent.sketch.hand import SIZE, Stroke, cell_box, paint
from strokeagent.sketch.scenes import increments_of_prompt, scene_of_prompt
from strokeagent.unified.protocol import UnifiedModel
from strokeagent.unified.tiny import SHIPPED, TinyProcessModel

ROOT = Path(__file__).resolve().parents[1]
PROMPT = "a photo of a dog left of a red cup"
#: The final canvas of `strokeagent run PROMPT --seed 0` with the shipped model (recorded when it was trained), by
#: its pixels (``pixel_digest``, its name in the run's images/), so that a change of PNG encoder keeps it.
RECORDED_FINAL = "a3b1ed96a0f93ba1f21f78f61cc39a8174efd90a52c06420b028418047ac0c1f"


@pytest.fixture(scope="module")
def model() -> TinyProcessModel:
    return TinyProcessModel()


def pixels_of(path: Path) -> str:
    with Image.open(path) as image:
        image.load()
        return pixel_digest(image)


# -- the shipped model ---------------------------------------------------------------------------


def test_the_shipped_model_is_small_and_complete():
    files = {p.name: p.stat().st_size for p in SHIPPED.iterdir()}
    assert {"model.safetensors", "tokenizer.json", "config.json", "MODEL_CARD.md", "curves.png"} <= set(files)
    assert files["model.safetensors"] <= 20 * 2**20


def test_it_is_a_unified_model_and_writes_a_plan(model):
    assert isinstance(model, UnifiedModel)
    ctx = model.new_context()
    model.add_text(ctx, f"<prompt>{PROMPT}</prompt>")
    out = model.generate_text(ctx, stop=("</des>", "</process>"), max_new_tokens=64, seed=0, temperature=0.0)
    assert out.stop_reason == "stop" and out.matched == "</des>"
    assert out.text.startswith("<ins>") and "<des>" in out.text


def test_painting_happens_in_a_fork_and_the_context_gets_only_pixels(model):
    ctx = model.new_context()
    model.add_text(ctx, f"<prompt>{PROMPT}</prompt><ins>Draw a red cup.</ins><des>A red cup.</des>")
    length, logits = ctx.length, ctx.state.logits.copy()
    image = model.generate_image(ctx, seed=0)
    assert ctx.length == length and np.array_equal(ctx.state.logits, logits)  # the strokes stayed in the fork
    assert image.size == (SIZE, SIZE) and image.info["sketch"]["instances"]
    model.add_image(ctx, image)
    assert ctx.length == length + 18  # <img>, 16 patches, </img>: the canvas, not its strokes


def test_replaying_generated_ids_gives_the_same_state(model):
    a, b = model.new_context(), model.new_context()
    for ctx in (a, b):
        model.add_text(ctx, f"<prompt>{PROMPT}</prompt>")
    out = model.generate_text(a, stop=("</des>",), max_new_tokens=64, seed=0, temperature=0.0)
    model.add_tokens(b, out.ids)
    assert a.length == b.length and np.array_equal(a.state.logits, b.state.logits)


def test_sampling_is_seeded(model):
    def draw(seed):
        ctx = model.new_context()
        model.add_text(ctx, f"<prompt>{PROMPT}</prompt>")
        return model.generate_text(ctx, stop=("</des>",), max_new_tokens=40, seed=seed, temperature=1.0).ids

    assert draw(3) == draw(3)


def test_the_torch_twin_computes_what_numpy_computes(model):
    torch = pytest.importorskip("torch")
    from safetensors.numpy import load_file

    from strokeagent.train.tiny import TinyRecipe, collate, make_net

    cfg = model.cfg
    net = make_net(cfg.vocab, TinyRecipe(dim=cfg.dim, layers=cfg.layers, heads=cfg.heads, max_len=cfg.max_len))
    weights = load_file(str(SHIPPED / "model.safetensors"))
    linear = {k for k, v in weights.items() if k.endswith(".weight") and v.ndim == 2 and "emb" not in k}
    net.load_state_dict({k: torch.from_numpy(v.T.copy() if k in linear else v) for k, v in weights.items()})
    row = encode(trajectory(PROMPT, "full", seed=1), model.tokenizer)
    with torch.no_grad():
        twin = net(collate([row], model.tokenizer.id("<patch>")))[0].numpy()
    first_branch = int(np.flatnonzero(row["branch"] > 0)[0])
    ctx = model.new_context()  # <bos> is the row's first token
    model.add_tokens(ctx, tuple(int(i) for i in row["ids"][1:first_branch]))
    assert np.abs(ctx.state.logits - twin[first_branch - 1]).max() < 1e-4


# -- runs through the process stages ----------------------------------------------------------


def test_a_run_gives_the_recorded_pixels_the_same_bytes_twice_and_the_inspection_read_pixels(tmp_path):
    traj = strokeagent.generate(PROMPT, policy="process-tiny", seed=0, out=tmp_path / "r")
    assert pixels_of(tmp_path / "r" / "final.png") == RECORDED_FINAL
    strokeagent.generate(PROMPT, policy="process-tiny", seed=0, out=tmp_path / "s")
    assert (tmp_path / "s" / "final.png").read_bytes() == (tmp_path / "r" / "final.png").read_bytes()
    canvases = [s for step in traj.steps for s in step.states if s.stage in ("draft", "refine")]
    assert canvases and all("sketch" in s.value.meta for s in canvases)  # the hand's document, for a resume


def test_a_run_paused_and_resumed_in_new_processes_equals_an_uninterrupted_one(tmp_path):
    whole = strokeagent.generate(PROMPT, policy="process-tiny", seed=2, out=tmp_path / "whole")
    run = tmp_path / "paused"
    b = strokeagent.generate(PROMPT, policy="process-tiny", seed=2, out=run, pause_before=("draft", "refine"))
    pauses = 1
    while b.final_image is None:  # each resume: a new policy object, no live context, rebuilt from the run
        b = strokeagent.resume(run, policy=load_policy("process-tiny"))
        pauses += 1
    assert pauses >= 3
    assert (run / "final.png").read_bytes() == (tmp_path / "whole" / "final.png").read_bytes()
    assert _contents(b) == _contents(whole)  # what each stage wrote; only what it paid (usage) differs


def _contents(traj) -> list:
    """Every state of a run without its usage: a stage that rebuilt the context paid more for the same output."""

    def strip(value):
        if isinstance(value, dict):
            return {k: strip(v) for k, v in value.items() if k != "usage"}
        return [strip(v) for v in value] if isinstance(value, list) else value

    return [[strip(s.value.model_dump()) for s in step.states] for step in traj.steps]


def test_every_ablation_order_runs(tmp_path):
    from strokeagent.cli.main import ablations_of

    for policy in ablations_of(load_policy("process-tiny")):
        traj = strokeagent.generate(PROMPT, policy=policy, seed=0, out=tmp_path / policy.name)
        assert traj.final_image is not None, policy.name


def test_malformed_output_of_an_untrained_model_is_recorded_not_fatal(tmp_path):
    pytest.importorskip("torch")
    from strokeagent.train.tiny import TinyRecipe, make_net, write_model

    recipe = TinyRecipe(dim=16, layers=1, heads=2, max_len=1024)
    model = TinyProcessModel(str(SHIPPED))
    folder = tmp_path / "untrained"
    write_model(folder, make_net(len(model.tokenizer), recipe), model.tokenizer, recipe)
    table = {"kind": "process-tiny", "path": str(folder)}
    (tmp_path / "b.toml").write_text("\n".join(f'{k} = "{v}"' for k, v in table.items()))
    policy_text = (ROOT / "policies" / "process-tiny.toml").read_text().replace(
        "../backends/process-tiny.toml", str(tmp_path / "b.toml")
    )
    (tmp_path / "p.toml").write_text(policy_text)
    traj = strokeagent.generate(PROMPT, policy=load_policy(tmp_path / "p.toml"), seed=0, out=tmp_path / "r")
    notes = [
        note
        for step in traj.steps
        for state in step.states
        for note in getattr(state.value, "meta", {}).get("process", {}).get("malformed", [])
    ]
    assert notes  # random weights write no well-formed plan: each gap is named, and the run still ends
    assert (tmp_path / "r" / "final.png").is_file()


def test_a_missing_model_folder_is_one_clear_error(tmp_path):
    from strokeagent.errors import PolicyError

    with pytest.raises(PolicyError, match="no process-tiny model at .* train one with"):
        TinyProcessModel(str(tmp_path))


def test_importing_and_running_it_needs_no_torch(tmp_path):
    code = (
        "import sys, strokeagent; strokeagent.generate('a red apple', policy='process-tiny', seed=0, out=sys.argv[1]);"
        "print('torch' in sys.modules)"
    )
    import subprocess

    done = subprocess.run([sys.executable, "-c", code, str(tmp_path / "r")], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False"


# -- the hand ---------------------------------------------------------------------------------


def test_the_hand_paints_exactly_at_rate_zero_and_replaces_a_redone_stroke():
    rng = np.random.default_rng(0)
    doc = paint(SketchDocument(size=SIZE), [Stroke("dog", None, 0, 1), Stroke("cup", "red", 2, 1)], rng, 0.0)
    assert [(d.cls, d.box) for d in doc.instances] == [("dog", cell_box(0, 1)), ("cup", cell_box(2, 1))]
    redone = paint(doc, [Stroke("cup", "blue", 2, 1)], rng, 0.0)
    assert [(d.cls, d.color) for d in redone.instances] == [("dog", None), ("cup", "blue")]


def test_at_rate_one_every_stroke_goes_wrong_and_the_inspection_label_sees_it():
    strokes = [Stroke("dog", "red", 1, 1), Stroke("cup", "blue", 2, 1)]
    for seed in range(20):
        doc = paint(SketchDocument(size=SIZE), strokes, np.random.default_rng(seed), 1.0)
        assert wrong_strokes(doc, strokes), seed
    assert wrong_strokes(paint(SketchDocument(size=SIZE), strokes, np.random.default_rng(0), 0.0), strokes) == []


def test_the_cells_keep_every_geneval_relation():
    from strokeagent.scene import generate_suite

    for item in generate_suite(553, seed=0):
        graph = scene_of_prompt(item.prompt)
        cells = cells_of(graph, list(increments_of_prompt(item.prompt, 5)))
        for rel in graph.relations:
            for a in cells[rel.subject]:
                for b in cells[rel.object]:
                    assert holds(rel.predicate, cell_box(*a), cell_box(*b)), item.prompt


# -- the data and the recipe --------------------------------------------------------------------


def test_a_sample_has_loss_only_where_the_model_writes(model):
    seq = trajectory(PROMPT, "full", seed=0)
    row = encode(seq, model.tokenizer)
    tok = model.tokenizer
    written = {tok.tokens[t] for t in row["target"] if t >= 0}
    assert "<inspect>" not in written and "<prompt>" not in written and "<patch>" not in written
    assert {"<ins>", "</des>", "</draw>", "</inspect>"} <= written or "</process>" in written
    branch = row["branch"]
    assert (row["pos"][branch == 0] == np.arange((branch == 0).sum())).all()  # the main line has no gaps


def test_the_shortened_recipe_trains_and_its_loss_falls_below_the_recorded_bound(tmp_path):
    pytest.importorskip("torch")
    from strokeagent.train.tiny import load_recipe, train_tiny

    recipe = load_recipe(
        ROOT / "recipes" / "process-tiny.toml",
        out=str(tmp_path / "t"), ship=False, prompts=400, samples=600, steps=160, batch=16, log_every=10, lr=4e-3,
        dim=64, layers=2, heads=2, threads=1, workers=1, warmup=10,
    )  # fmt: skip
    result = train_tiny(recipe, log=lambda line: None)
    curve = json.loads((tmp_path / "t" / "curves.json").read_text())
    assert curve[0]["loss"] > 3.0
    assert result.final_loss < 1.4  # recorded 2026-11-27: 5.4 over the first 10 steps, 1.0 after 160
    assert (tmp_path / "t" / "model" / "MODEL_CARD.md").is_file()
    TinyProcessModel(str(tmp_path / "t" / "model"))  # what it wrote loads


def test_its_inspection_reads_the_pixels_alone(model):
    """The same canvas with its document stripped (a PNG round trip) reads the same; a blank one is flagged."""
    import io

    from PIL import Image

    ctx = model.new_context()
    model.add_text(ctx, "<prompt>a photo of a dog left of a cup</prompt><ins>Draw a cup.</ins><des>A cup.</des>")
    image = model.generate_image(ctx, seed=3)
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    bare = Image.open(io.BytesIO(buffer.getvalue()))
    assert "sketch" not in bare.info
    inspections = []
    for canvas in (image, bare, Image.new("RGB", (SIZE, SIZE), (245, 243, 238))):
        fork = model.fork(ctx)
        model.add_image(fork, canvas)
        model.add_text(fork, "<inspect>")
        inspections.append(model.generate_text(fork, stop=("</inspect>",), max_new_tokens=40, seed=0).text)
    assert inspections[0] == inspections[1] and "<image_check>ok</image_check>" in inspections[0]
    assert "<image_check>the cup is wrong</image_check>" in inspections[2]
