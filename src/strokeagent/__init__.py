"""strokeagent: process-driven image generation — plan, draft, reflect, refine."""

__version__ = "0.1.0"
