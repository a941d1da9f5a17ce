"""The conformance suite run on the sketch critic, the VLM judge and a third-party critic; critics as reflect stages."""

import asyncio
import json

import pytest
from PIL import Image

from strokeagent.core.stages import Canvas
from strokeagent.critics import Verdict, Violation, build_critic
from strokeagent.critics.sketch import SketchCritic
from strokeagent.critics.vlm_judge import JudgeAnswer, VlmJudgeCritic, checklist
from strokeagent.errors import PolicyError
from strokeagent.scene.geneval import SuiteItem
from strokeagent.sketch.document import Drawn, SketchDocument
from strokeagent.sketch.glyphs import render
from strokeagent.testing.critics import CriticConformance


def canvas(*objects):
    doc = SketchDocument(size=256)
    for object_id, cls, sup, rgb, box in objects:
        doc = doc.add(Drawn(iid=0, object_id=object_id, cls=cls, supercategory=sup, rgb=rgb, box=box))
    return Canvas(render(doc)[0], doc.to_meta())


BLUE_CUP = ("o0", "cup", "kitchen", (40, 90, 220), (20, 90, 100, 170))
DOG_RIGHT = ("o1", "dog", "animal", (139, 69, 19), (150, 100, 230, 160))
POSITION_ROW = SuiteItem.model_validate(
    {
        "tag": "position",
        "include": [{"class": "cup", "count": 1}, {"class": "dog", "count": 1, "position": ["right of", 0]}],
        "prompt": "a photo of a dog right of a cup",
    }
)


class TestSketchCritic(CriticConformance):
    def make_critic(self):
        return SketchCritic()

    def cases(self):
        return [(canvas(BLUE_CUP), "a photo of a cup", None)]

    def good_cases(self):
        return [
            (canvas(BLUE_CUP), "a photo of a blue cup", None),
            (canvas(BLUE_CUP, DOG_RIGHT), POSITION_ROW.prompt, POSITION_ROW),
        ]

    def bad_cases(self):
        return [
            (canvas(BLUE_CUP), "a photo of two cups", None),
            (canvas(BLUE_CUP), "a photo of a red cup", None),
            (canvas(BLUE_CUP), "a photo of a dog left of a cup", None),
        ]


def test_sketch_critic_reasons_and_score():
    verdict = asyncio.run(SketchCritic().score(canvas(BLUE_CUP), "a photo of a red cup"))
    # One colour clause and one exclude clause (no second cup): one of two fails.
    assert verdict.score == 0.5
    assert [v.kind for v in verdict.violations] == ["color"]
    assert verdict.reason.startswith("expected red cup>=1")


def test_sketch_critic_refuses_plain_images():
    with pytest.raises(ValueError, match="stroke canvases only"):
        asyncio.run(SketchCritic().score(Image.new("RGB", (8, 8)), "a cup"))


class ScriptedJudge:
    """A text head that calls an image right unless the prompt mentions two of anything."""

    def __init__(self):
        self.seen = []

    async def chat(self, messages, images=(), *, schema):
        self.seen.append((messages, len(images)))
        text = messages[-1]["content"]
        if "two" in text:
            return schema(correct=False, score=0.2, violations=["only one cup is visible"])
        return schema(correct=True, score=0.9, violations=[])


class TestVlmJudge(CriticConformance):
    def make_critic(self):
        return VlmJudgeCritic(head=ScriptedJudge())

    def cases(self):
        return [(Image.new("RGB", (16, 16), "white"), "a photo of a cup", None)]

    def good_cases(self):
        return [(Image.new("RGB", (16, 16), "white"), POSITION_ROW.prompt, POSITION_ROW)]

    def bad_cases(self):
        return [(Image.new("RGB", (16, 16), "white"), "a photo of two cups", None)]


def test_vlm_judge_sends_the_image_and_the_checklist():
    head = ScriptedJudge()
    asyncio.run(VlmJudgeCritic(head).score(Image.new("RGB", (8, 8)), POSITION_ROW.prompt, scene=POSITION_ROW))
    messages, n_images = head.seen[0]
    assert n_images == 1
    # The row's clauses as sentences (a position row has no exclude clauses).
    assert messages[-1]["content"].endswith("Check each of:\n- 1 × cup\n- dog right of cup")
    assert checklist("x", None) == []


def test_vlm_judge_never_calls_a_violation_free_no_correct():
    class Grumpy:
        async def chat(self, messages, images=(), *, schema):
            return schema(correct=False, score=0.1, violations=[" "])

    verdict = asyncio.run(VlmJudgeCritic(Grumpy()).score(Image.new("RGB", (8, 8)), "a cup"))
    assert not verdict.correct and verdict.violations[0].kind == "mismatch"
    assert JudgeAnswer.model_json_schema()["properties"]["violations"]["maxItems"] == 8


class AlwaysBlue:
    """A third-party critic: right when the image's first pixel is blue."""

    async def score(self, image, prompt, *, scene=None):
        pixels = (image.image if isinstance(image, Canvas) else image).convert("RGB")
        blue = pixels.getpixel((0, 0))[2] > 200
        violations = [] if blue else [Violation(kind="color", message="not blue", cls="sky")]
        return Verdict(critic="always-blue", correct=blue, score=float(blue), violations=violations)


class TestThirdPartyCritic(CriticConformance):
    def make_critic(self):
        return AlwaysBlue()

    def cases(self):
        return []

    def good_cases(self):
        return [(Image.new("RGB", (4, 4), "blue"), "a blue sky", None)]

    def bad_cases(self):
        return [(Image.new("RGB", (4, 4), "red"), "a blue sky", None)]


def test_build_critic_by_kind_table_or_object():
    assert isinstance(build_critic("sketch"), SketchCritic)
    assert isinstance(build_critic({"kind": "sketch"}), SketchCritic)
    critic = AlwaysBlue()
    assert build_critic(critic) is critic
    with pytest.raises(PolicyError, match="unknown critic kind 'nope'"):
        build_critic("nope")
    with pytest.raises(PolicyError, match="not a critic"):
        build_critic(object())
    with pytest.raises(PolicyError, match="bad options for sketch"):
        build_critic({"kind": "sketch", "colour": 1})


POLICY = """
name = "critic_reflect"
[loop]
order = ["plan", "draft", "reflect"]
max_steps = 5
[stages.plan]
kind = "sketch.plan"
[stages.draft]
kind = "sketch.draft"
mistake_rate = 1.0
[stages.reflect]
kind = "critic.reflect"
critic = { kind = "sketch" }
"""


def test_a_critic_is_a_reflect_stage_in_a_policy_file(tmp_path):
    from strokeagent.runs.api import generate

    path = tmp_path / "critic.toml"
    path.write_text(POLICY)
    prompt = "a photo of two red apples left of a blue cup"
    traj = generate(prompt, str(path), seed=3, out=tmp_path / "run")
    reflections = [r for step in traj.steps for r in step.reflections]
    assert len(reflections) == len(traj.steps) >= 2
    last = traj.steps[-1]
    assert last.plan.done and reflections[-1].meta["judged_against"] == prompt
    assert traj.steps[0].reflections[0].meta["judged_against"] == traj.steps[0].plan.description
    # The stage's verdict is the critic's own verdict on the same canvas.
    image = traj.open_image(last.image)
    direct = asyncio.run(SketchCritic().score(Canvas(image, dict(last.image.meta)), prompt))
    assert Verdict.model_validate(reflections[-1].meta["verdict"]) == direct
    assert reflections[-1].ok == direct.correct
    assert json.loads((tmp_path / "run" / "run.json").read_text())["status"] == "finished"
