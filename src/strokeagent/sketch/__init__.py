"""The embedded default policy: scene-graph plans drawn, inspected and fixed on a stroke canvas."""
