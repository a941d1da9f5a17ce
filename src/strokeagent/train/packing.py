"""Sequence packing: many short token streams in one fixed-length row, each attending only to itself.

    >>> rows = pack([Stream(ids=[1] * 5), Stream(ids=[1] * 3), Stream(ids=[1] * 2)], max_tokens=6)
    >>> [[len(s.ids) for s in row] for row in rows]
    [[5], [3, 2]]
    >>> padding_share(rows, max_tokens=6)
    0.16666666666666666

A ``Stream`` is one causal sequence the model reads, with its targets already
aligned (``text_targets[i]``/``image_targets[i]``: what position ``i`` must
predict, -100 for nothing). Rows restart ``position_ids`` at 0 for every stream;
transformers turns such positions into a block-diagonal causal mask when no
attention mask is given (``masking_utils.find_packed_sequence_indices``), so a
packed row computes exactly what the streams would alone, without the padding
a batch of uneven sequences wastes.

Packing is first-fit decreasing, deterministic: the same streams give the same rows.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from strokeagent.errors import TrainError


@dataclass
class Stream:
    """One causal sequence: input ids, what each position predicts, and its images.

    ``gen_codes[i] >= 0`` feeds the image-generation embedding of that VQ code at
    position ``i`` instead of ``ids[i]``; ``pixels`` are the encoder inputs for the
    stream's image placeholders, in order.
    """

    ids: list[int]
    text_targets: list[int] = field(default_factory=list)
    image_targets: list[int] = field(default_factory=list)
    gen_codes: list[int] = field(default_factory=list)
    pixels: list = field(default_factory=list)  # torch tensors (3, H, W)
    kind: str = "reading"  # "reading" (a whole sample) or "painting" (one painted image's stream)

    def __post_init__(self) -> None:
        n = len(self.ids)
        self.text_targets = self.text_targets or [-100] * n
        self.image_targets = self.image_targets or [-100] * n
        self.gen_codes = self.gen_codes or [-1] * n
        if not len(self.text_targets) == len(self.image_targets) == len(self.gen_codes) == n:
            raise ValueError("a stream's targets and codes must be as long as its ids")

    def __len__(self) -> int:
        return len(self.ids)


def pack(streams: list[Stream], max_tokens: int) -> list[list[Stream]]:
    """Streams into rows of at most ``max_tokens``: first-fit decreasing, stable for ties."""
    order = sorted(range(len(streams)), key=lambda i: (-len(streams[i]), i))
    rows: list[list[Stream]] = []
    room: list[int] = []
    for i in order:
        n = len(streams[i])
        if n > max_tokens:
            raise TrainError(
                f"a training sequence has {n} tokens, more than max_tokens = {max_tokens}; "
                "raise max_tokens in the training config or use shorter samples"
            )
        slot = next((r for r, free in enumerate(room) if free >= n), None)
        if slot is None:
            rows.append([])
            room.append(max_tokens)
            slot = len(rows) - 1
        rows[slot].append(streams[i])
        room[slot] -= n
    return rows


def padding_share(rows: list[list[Stream]], max_tokens: int) -> float:
    """The share of row positions that hold padding, not tokens."""
    if not rows:
        return 0.0
    used = sum(len(s) for row in rows for s in row)
    return 1.0 - used / (len(rows) * max_tokens)
