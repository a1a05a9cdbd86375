"""Multi-task training under crops: whole-image batches and lesion-crop batches, interleaved.

MTUnet and variant A learn the grade from whole fundus images and the lesions from lesion-scale
crops. One Keras epoch walks both sequences in a fixed interleaved order (each part's batches
spread evenly over the epoch); a part can have a task switched off (its sample weight set to 0),
e.g. the segmentation loss of the whole-image batches, whose masks are too coarse at that size.
Batch ``i`` of epoch ``e`` depends only on ``(i, e)`` and the parts' own seeds, so a resumed run
sees the batches of an uninterrupted one.
"""
from __future__ import annotations

from typing import Sequence

import keras
import numpy as np


def interleave_order(lengths: Sequence[int]) -> list[tuple[int, int]]:
    """(part, batch) pairs: the batches of every part, each part spread evenly over the whole."""
    slots = [((j + 0.5) / n, p, j) for p, n in enumerate(lengths) for j in range(n)]
    return [(p, j) for _, p, j in sorted(slots)]


class InterleavedSequence(keras.utils.PyDataset):
    """The batches of ``parts`` (PyDatasets with the same batch format) in one epoch.

    switch_off: per part, the output names whose sample weight is zeroed in that part's batches.
    limits:     per part, at most that many of its batches per epoch (the first ones of the part's
                own per-epoch order, so a shuffled part shows other images in the next epoch);
                None: all of them. Keeps a large graded set from swamping a crop budget.
    """

    def __init__(self, parts: Sequence[keras.utils.PyDataset],
                 switch_off: Sequence[Sequence[str]] | None = None,
                 limits: Sequence[int | None] | None = None, **pydataset_kwargs):
        super().__init__(**pydataset_kwargs)
        if not parts:
            raise ValueError("InterleavedSequence needs at least one part")
        self.parts = list(parts)
        self.switch_off = [tuple(s) for s in (switch_off or [()] * len(self.parts))]
        limits = list(limits or [None] * len(self.parts))
        if len(self.switch_off) != len(self.parts) or len(limits) != len(self.parts):
            raise ValueError(f"switch_off and limits need one entry per part ({len(self.parts)})")
        self.order = interleave_order([len(p) if n is None else min(n, len(p))
                                       for p, n in zip(self.parts, limits)])

    def __len__(self) -> int:
        return len(self.order)

    def __getitem__(self, i: int):
        if not 0 <= i < len(self):
            raise IndexError(f"batch {i} out of range (0..{len(self) - 1})")
        part, j = self.order[i]
        x, y, sw = self.parts[part][j]
        for name in self.switch_off[part]:
            if name in sw:
                sw = {**sw, name: np.zeros_like(sw[name])}
        return x, y, sw

    def set_epoch(self, epoch: int) -> None:
        for part in self.parts:
            part.set_epoch(epoch)

    def on_epoch_end(self) -> None:
        for part in self.parts:
            part.on_epoch_end()
