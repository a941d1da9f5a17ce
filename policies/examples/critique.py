"""A custom stage, exactly as the README shows it: one async method, named run."""

from strokeagent import Note, TrajectoryView


class Critique:  # a custom stage: one async method, named run
    async def run(self, view: TrajectoryView) -> Note:  # returns Plan, Canvas, Reflection or Note
        return Note(text=f"seen in step {len(view.steps)}")
