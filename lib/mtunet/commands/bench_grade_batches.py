"""`bench`'s grade-batch figure: what a whole-image grade batch of a multi-task network costs
through the whole network (the interleaved recipe: its segmentation loss off, the decoder still
run forward and backward) and through the encoder and grade head only (the paired recipe,
``mtunet.models.paired``)."""
from __future__ import annotations

import numpy as np


def time_grade_batches(model, config, arrays, batch: int, warmup: int, steps: int,
                       fit_timed) -> dict:
    """Images/s of whole-image grade batches: the full model with its segmentation weight at 0,
    then its grade path alone (same weights, same images, same grade targets). ``fit_timed``:
    bench's timed fit (seconds of each timed step)."""
    import keras

    from mtunet.train import compile_model

    x, y, sw = arrays
    n = steps * batch
    compile_model(model, config)
    seg_off = {**sw, "seg": np.zeros_like(sw["seg"])}
    full = fit_timed(model, x, warmup, steps, y=y, sample_weight=seg_off, batch_size=batch,
                      shuffle=False)
    grade_path = keras.Model(model.input, {"grade": model.output["grade"]}, name="grade_path")
    compile_model(grade_path, config)
    alone = fit_timed(grade_path, x, warmup, steps, y={"grade": y["grade"]},
                       sample_weight={"grade": sw["grade"]}, batch_size=batch, shuffle=False)
    full_rate, alone_rate = n / float(sum(full)), n / float(sum(alone))
    return {"grade_batch_full_images_per_s": full_rate,
            "grade_batch_encoder_images_per_s": alone_rate,
            "grade_batch_speedup": alone_rate / full_rate}


def report_line(r: dict) -> str | None:
    if "grade_batch_speedup" not in r:
        return None
    return (f"  grade batches  whole network, segmentation loss off (interleaved): "
            f"{r['grade_batch_full_images_per_s']:.3f} images/s; encoder + grade head only "
            f"(paired): {r['grade_batch_encoder_images_per_s']:.3f} images/s = "
            f"{r['grade_batch_speedup']:.2f}x")
