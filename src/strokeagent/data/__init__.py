"""Process trajectories as training data: the paper's three subsets, sharded and ``datasets``-readable.

    >>> from strokeagent.data import build_dataset, load_samples
    >>> build_dataset("geneval:16", "data/process", seed=0, shard_size=8)     # doctest: +SKIP
    >>> load_samples("data/process").num_rows                              # doctest: +SKIP
    48

Subsets (``SUBSETS``): ``multi_turn`` (scene-graph increments rendered step by
step, some steps rewritten as modify, swap or remove edits), ``conflict``
(trajectories self-sampled from a policy, judged against the whole prompt, with
the conflict analysis and a corrected instruction) and ``alignment`` (a step's
canvas, aligned or perturbed, with the measured explanation and a correction).
Samples are written in the process format of ``strokeagent.unified.process``, so
a model trained on them speaks what the ``process`` policy reads. The folder
format is in docs/data-format.md. Nothing here imports torch; ``load_samples``
imports ``datasets`` when called.
"""

from strokeagent.data.build import FORMAT, SUBSETS, build_dataset, load_samples, read_suite

__all__ = ["FORMAT", "SUBSETS", "build_dataset", "load_samples", "read_suite"]
