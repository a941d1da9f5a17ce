"""Test doubles that ship with the library: simple, deterministic stages with a known cost.

    >>> policy = test_policy(steps=2)
    >>> traj = generate("three shapes", policy=policy, seed=1)   # doctest: +SKIP
    >>> len(traj.steps)                                            # doctest: +SKIP
    2

The shapes stages draw seeded rectangles on a small canvas; the scripted
reflector finds a conflict in the first ``fail_rounds`` inspections of every
step. ``delay`` makes each call take a known time (for the overhead benchmark
and for killing a run mid-way). Policy files can use them as kinds
``testing.plan``, ``testing.draft``, ``testing.reflect``, ``testing.refine``.

Doubles for the other interfaces live beside their builders and are
re-exported here where they are light: ``ScriptedTextHead`` (a text head that
answers from a script). Tiny random-weight models: ``strokeagent.testing.diffusers``
(pipelines), ``strokeagent.testing.heads`` (chat and vision heads),
``strokeagent.testing.unified`` (Janus), ``strokeagent.testing.critics`` (detectors,
CLIP, and the critic conformance suite). The stage contracts any stage can run
(``PlannerContract`` ... ``StageContract``) are ``strokeagent.testing.contracts``.
"""

from strokeagent.testing.contracts import (  # noqa: F401 - the stage contracts, here too
    DrafterContract,
    PlannerContract,
    RefinerContract,
    ReflectorContract,
    StageContract,
    _StageContract,
)
from strokeagent.testing.doubles import (  # noqa: F401 - the stage doubles
    CountingNote,
    ScriptedPlanner,
    ScriptedReflector,
    ShapesDrafter,
    ShapesRefiner,
    test_policy,
)
from strokeagent.testing.heads import HeadCall, ScriptedTextHead  # noqa: F401 - the text-head double, here too
