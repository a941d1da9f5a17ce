import pytest

from strokeagent.core.loop import StageNodes, build_graph, compile_loop
from strokeagent.core.policy import LoopSpec, Policy
from strokeagent.core.store import ArtifactStore
from strokeagent.errors import LoopError, PolicyError
from strokeagent.testing import ShapesDrafter, test_policy

RUNNABLE = [
    ("draft",),
    ("plan", "draft"),
    ("draft", "reflect"),
    ("plan", "draft", "reflect"),
    ("draft", "reflect", "refine"),
    ("plan", "draft", "reflect", "refine"),
]

REFUSED = {
    (): "it is empty",
    ("plan",): "no stage draws",
    ("draft", "draft"): "appears twice",
    ("draft", "plan"): "plan plans after draft draws",
    ("reflect", "draft"): "reflect inspects before anything is drawn",
    ("draft", "refine"): "refine needs an inspection",
    ("draft", "refine", "reflect"): "refine needs an inspection",
    ("plan", "draft", "refine"): "refine needs an inspection",
}


@pytest.mark.parametrize("order", RUNNABLE)
def test_every_runnable_order_compiles_with_one_node_per_stage(order, tmp_path):
    policy = test_policy(order=order)
    graph = compile_loop(policy, ArtifactStore(tmp_path))
    nodes = set(graph.get_graph().nodes) - {"__start__", "__end__"}
    assert nodes == set(order)


@pytest.mark.parametrize(("order", "reason"), REFUSED.items())
def test_impossible_orders_are_refused_with_the_reason(order, reason):
    with pytest.raises(LoopError, match=reason):
        LoopSpec(order=order)


def test_a_stage_name_must_be_a_name_and_have_a_stage():
    with pytest.raises(LoopError, match="stage name 'pa int' in the order is not a name"):
        LoopSpec(order=("plan", "pa int"))
    with pytest.raises(PolicyError, match="the loop runs paint but no paint stage is given"):
        test_policy(order=("plan", "paint", "draft"))


def test_parse_names_the_place_and_the_field():
    with pytest.raises(
        LoopError, match=r"my.toml \[loop\]: max_steps: Input should be greater than or equal to 1"
    ):
        LoopSpec.parse({"max_steps": 0}, where="my.toml [loop]")
    with pytest.raises(LoopError, match="my.toml: stage order draft → refine cannot run"):
        LoopSpec.parse({"order": ["draft", "refine"]}, where="my.toml")


def test_reflect_routes_to_refine_until_max_refines_then_moves_on(tmp_path):
    policy = test_policy(steps=2, fail_rounds=5, max_refines=2)
    nodes = StageNodes(policy, ArtifactStore(tmp_path))

    def state(images: int, reflections_ok: list[bool], done=False, steps=1, reflection_done=False):
        from strokeagent.core.state import ImageRef, Plan, Reflection, Step, Trajectory

        ref = ImageRef(sha256="a" * 64, width=1, height=1)
        last = Step(
            index=steps - 1,
            plan=Plan(instruction="i", done=done),
            images=[ref] * images,
            reflections=[Reflection(ok=ok, done=reflection_done) for ok in reflections_ok],
        )
        earlier = [Step(index=i, plan=Plan(instruction="i")) for i in range(steps - 1)]
        return {"trajectory": Trajectory(prompt="p", seed=0, steps=[*earlier, last]).model_dump(mode="json")}

    assert nodes.after_inspections("refine")(state(1, [False])) == "refine"
    assert nodes.after_inspections("refine")(state(2, [False, False])) == "refine"
    assert nodes.after_inspections("refine")(state(3, [False, False, False])) == "plan"  # out of refines: next step
    assert nodes.after_inspections("refine")(state(1, [True])) == "plan"
    assert nodes.after_inspections("refine")(state(1, [True], done=True)) == "__end__"
    assert nodes.after_inspections("refine")(state(1, [True], steps=2)) == "__end__"  # max_steps reached
    # A model that closes the process after its inspection ends the run without another plan...
    assert nodes.after_inspections("refine")(state(1, [True], reflection_done=True)) == "__end__"
    # ...but a conflict it found is still refined first.
    assert nodes.after_inspections("refine")(state(1, [False], reflection_done=True)) == "refine"


def test_fixed_stop_rule_ignores_done(tmp_path):
    policy = test_policy(steps=1).with_loop(stop="fixed", max_steps=3)
    nodes = StageNodes(policy, ArtifactStore(tmp_path))
    from strokeagent.core.state import Plan, Reflection, Step, Trajectory

    closed = Step(index=0, plan=Plan(instruction="i", done=True), reflections=[Reflection(done=True)])
    traj = Trajectory(prompt="p", seed=0, steps=[closed])
    assert nodes.after_step({"trajectory": traj.model_dump(mode="json")}) == "plan"


def test_policy_refuses_a_missing_or_wrong_stage():
    with pytest.raises(PolicyError, match="the loop runs plan but no plan stage is given"):
        Policy(name="p", loop=LoopSpec(order=("plan", "draft")), stages={"draft": ShapesDrafter()})

    class SyncPlanner:
        def plan(self, view):
            return None

    with pytest.raises(
        PolicyError, match=r"SyncPlanner cannot be the plan stage: it needs `async def plan"
    ):
        Policy(name="p", loop=LoopSpec(order=("plan", "draft")), stages={"draft": ShapesDrafter(), "plan": SyncPlanner()})


def test_pause_before_a_stage_not_in_the_loop_is_refused(tmp_path):
    with pytest.raises(LoopError, match="cannot pause before 'refine'"):
        compile_loop(test_policy(order=("draft",)), ArtifactStore(tmp_path), pause_before=("refine",))


def test_build_graph_can_be_extended_before_compiling(tmp_path):
    graph = build_graph(StageNodes(test_policy(order=("draft",)), ArtifactStore(tmp_path)))
    graph.add_node("extra", lambda state: state)
    assert "extra" in graph.nodes


def test_describe():
    assert (
        LoopSpec(order=("draft",), max_steps=1).describe()
        == "draft, up to 1 steps, stop when the planner says done"
    )
