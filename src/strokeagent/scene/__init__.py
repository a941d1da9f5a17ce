"""Scene graphs: parse a prompt into objects and relations, and order it into increments.

    >>> from strokeagent.scene import parse_prompt, plan_increments
    >>> [i.instruction for i in plan_increments(parse_prompt("a photo of a dog right of a teddy bear"))]
    ['Draw a teddy bear.', 'Add a dog to the right of the teddy bear.']

Modules: ``vocab`` (GenEval's classes, colours, counts), ``parser`` (rules),
``head_parser`` (a text head, checked), ``increments`` (the paper's build order),
``geneval`` (GenEval's metadata suites).
"""

from strokeagent.scene.geneval import SuiteItem, generate_suite, graph_from_item, load_suite, write_suite
from strokeagent.scene.graph import GENEVAL_PREDICATES, Predicate, Relation, SceneGraph, SceneObject
from strokeagent.scene.head_parser import TextHeadParser
from strokeagent.scene.increments import Increment, plan_increments
from strokeagent.scene.parser import MAX_COUNT, MAX_OBJECTS, RuleParser, SceneParser, parse_prompt
from strokeagent.scene.vocab import COCO_CLASSES, COLORS

__all__ = [
    "COCO_CLASSES",
    "COLORS",
    "GENEVAL_PREDICATES",
    "MAX_COUNT",
    "MAX_OBJECTS",
    "Increment",
    "Predicate",
    "Relation",
    "RuleParser",
    "SceneGraph",
    "SceneObject",
    "SceneParser",
    "SuiteItem",
    "TextHeadParser",
    "generate_suite",
    "graph_from_item",
    "load_suite",
    "parse_prompt",
    "plan_increments",
    "write_suite",
]
