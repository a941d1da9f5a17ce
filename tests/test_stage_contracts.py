"""The shipped test doubles pass the stage contracts that third-party stages can run too."""

from strokeagent.testing import (
    DrafterContract,
    PlannerContract,
    RefinerContract,
    ReflectorContract,
    ScriptedPlanner,
    ScriptedReflector,
    ShapesDrafter,
    ShapesRefiner,
)


class TestScriptedPlanner(PlannerContract):
    def make_stage(self):
        return ScriptedPlanner(steps=2)


class TestShapesDrafter(DrafterContract):
    def make_stage(self):
        return ShapesDrafter()


class TestScriptedReflector(ReflectorContract):
    def make_stage(self):
        return ScriptedReflector()


class TestShapesRefiner(RefinerContract):
    def make_stage(self):
        return ShapesRefiner()
