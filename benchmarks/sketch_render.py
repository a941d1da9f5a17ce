"""How fast the stroke canvas draws and inspects: the numbers behind choosing Pillow.

    $ python benchmarks/sketch_render.py      # a few seconds

Times, on a 512 px canvas with 1, 4 and 12 instances on a backdrop: ``render``
(RGB pixels and the id buffer in one pass), ``inspect`` (rebuild the id buffer,
measure visibility, boxes and colours), and the PNG encoding the artifact store
does for every image. Then the whole default policy on a three-object prompt:
milliseconds inside its stages, from ``strokeagent.generate``'s timings.

Measured on the project's 2-core machine (2026-11-26, other work running, this
script at high priority): 512 px render 4-7 ms, inspect 12-20 ms, PNG encode
9-12 ms for 1-12 instances; the three-object prompt 34-58 ms inside the stages.
"""

from __future__ import annotations

import statistics
import tempfile
import time

import strokeagent
from strokeagent.core.store import png_bytes
from strokeagent.scene import parse_prompt
from strokeagent.sketch.document import Drawn, SketchDocument
from strokeagent.sketch.glyphs import render
from strokeagent.sketch.layout import solve_layout
from strokeagent.sketch.measure import inspect
from strokeagent.sketch.palette import rgb_for

PROMPTS = {
    1: "a photo of a red car on the beach",
    4: "a photo of four blue cups in a kitchen",
    12: "a photo of twelve apples in a park",
}


def best_of(fn, repeat: int = 30) -> float:  # noqa: ANN001
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times) * 1000


def main() -> None:
    print("| instances | render ms | inspect ms | PNG encode ms | layout ms (cold) |")
    print("|---|---|---|---|---|")
    for n, prompt in PROMPTS.items():
        graph = parse_prompt(prompt)
        t = time.perf_counter()
        layout = solve_layout(graph, seed=n)
        cold = (time.perf_counter() - t) * 1000
        doc = SketchDocument(size=512, background=graph.background)
        for obj in graph.objects:
            for i, box in enumerate(layout.boxes[obj.id]):
                doc = doc.add(Drawn(iid=0, object_id=obj.id, index=i, cls=obj.cls, supercategory=obj.supercategory,
                                    color=obj.color, rgb=rgb_for(obj.color, obj.cls), box=box))  # fmt: skip
        image, _ = render(doc)
        draw_ms = best_of(lambda doc=doc: render(doc))
        look_ms = best_of(lambda image=image, doc=doc: inspect(image, doc))
        png_ms = best_of(lambda image=image: png_bytes(image))
        print(f"| {n} | {draw_ms:.2f} | {look_ms:.2f} | {png_ms:.2f} | {cold:.2f} |")

    prompt = "a photo of a red apple left of a blue cup and a dog"
    with tempfile.TemporaryDirectory() as tmp:
        strokeagent.generate(prompt, policy="sketch", seed=0, out=f"{tmp}/warm")  # fonts and caches
        runs = [strokeagent.generate(prompt, policy="sketch", seed=s, out=f"{tmp}/{s}") for s in range(1, 6)]
    inside = [sum(t.seconds for t in traj.timings) * 1000 for traj in runs]
    print(
        f"\ndefault policy, {prompt!r}, seeds 1-5: {min(inside):.0f}-{max(inside):.0f} ms inside the stages"
    )


if __name__ == "__main__":
    main()
