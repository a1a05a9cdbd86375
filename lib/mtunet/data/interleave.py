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

# the inputs of a paired batch (mtunet.models.paired.paired_training_model)
SEG_INPUT = "image"
GRADE_INPUT = "grade_image"


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


class PairedSequence(keras.utils.PyDataset):
    """Batches for :func:`mtunet.models.paired.paired_training_model`: batch ``i`` pairs crop batch
    ``i`` (its segmentation targets) with whole-image batch ``i`` of the grade part (its grades),
    cycling through the grade part when it is shorter; an epoch is the crop part's length.

    ``x = {"image": crops, "grade_image": whole images}``, ``y`` and the sample weights hold
    ``"seg"`` from the crops and ``"grade"`` from the whole images. Batch ``i`` of epoch ``e``
    depends only on ``(i, e)`` and the parts' seeds, as the parts' own batches do.
    """

    def __init__(self, crops: keras.utils.PyDataset, grades: keras.utils.PyDataset,
                 **pydataset_kwargs):
        super().__init__(**pydataset_kwargs)
        if not len(crops) or not len(grades):
            raise ValueError("PairedSequence needs a crop part and a grade part with batches")
        self.crops, self.grades = crops, grades

    def __len__(self) -> int:
        return len(self.crops)

    def __getitem__(self, i: int):
        if not 0 <= i < len(self):
            raise IndexError(f"batch {i} out of range (0..{len(self) - 1})")
        cx, cy, csw = self.crops[i]
        gx, gy, gsw = self.grades[i % len(self.grades)]
        return ({SEG_INPUT: cx, GRADE_INPUT: gx}, {"seg": cy["seg"], "grade": gy["grade"]},
                {"seg": csw["seg"], "grade": gsw["grade"]})

    def set_epoch(self, epoch: int) -> None:
        self.crops.set_epoch(epoch)
        self.grades.set_epoch(epoch)

    def on_epoch_end(self) -> None:
        self.crops.on_epoch_end()
        self.grades.on_epoch_end()
