"""Scene graphs: parse a prompt into objects and relations, and order it into increments."""

from strokeagent.scene.graph import GENEVAL_PREDICATES, Predicate, Relation, SceneGraph, SceneObject

__all__ = ["GENEVAL_PREDICATES", "Predicate", "Relation", "SceneGraph", "SceneObject"]
