"""Runs: ``generate``/``astream``/``resume``, the run folder, its checkpoints and its film strip."""
