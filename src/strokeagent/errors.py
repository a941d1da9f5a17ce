"""Errors a user can act on: each message is one line saying what was wrong and what to do.

    >>> raise PolicyError("policies/x.toml: unknown stage 'paint'; use plan, draft, reflect or refine")
    Traceback (most recent call last):
    ...
    strokeagent.errors.PolicyError: policies/x.toml: unknown stage 'paint'; use plan, draft, reflect or refine

The CLI prints these as ``error: <message>`` and exits with status 2; anything
else that escapes is a bug and keeps its traceback.
"""


class StrokeAgentError(Exception):
    """Base class: the message is complete and meant for the user."""


class PromptError(StrokeAgentError, ValueError):
    """The prompt cannot be used (empty, too long)."""


class LoopError(StrokeAgentError):
    """A loop spec that cannot run (an impossible stage order, bad limits)."""


class PolicyError(StrokeAgentError, ValueError):
    """A policy file or object that cannot be built."""


class RunError(StrokeAgentError):
    """A run folder that cannot be created, read or resumed, or a stage that failed mid-run."""


class DataError(StrokeAgentError, ValueError):
    """A data set that cannot be built or read (bad suite, foreign folder, damaged shard)."""


class TrainError(StrokeAgentError, ValueError):
    """A training config or checkpoint that cannot be used."""


class StageOutputError(StrokeAgentError):
    """A stage returned something its role cannot use (a draft that gave no image)."""


class BenchError(StrokeAgentError, ValueError):
    """A suite, a bench folder or a bench option that cannot be used."""
