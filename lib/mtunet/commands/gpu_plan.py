"""`python -m mtunet bench --gpu-plan`: how long a profile's whole protocol takes on a GPU, and how
many data workers keep that GPU fed, from figures measured here.

Three figures, then the arithmetic:

1. the input pipeline's images/s per CPU worker: ``FundusSequence`` with the paper's
   ``Augmentation`` at the profile's input size, run in this process with OpenCV held to one thread
   (what one ``MTUNET_DATA_WORKERS`` thread does), over a few images of each training set the
   protocol reads (IDRiD-S images with their lesion masks; the graded images). Uncached = the
   first epoch (the files read, decoded, cropped to the fundus and fitted to the square, then
   augmented); cached = a later epoch (the sequence's in-memory cache: augmentation and labels
   only). On the real data when the profile's data folder is present, else on the synthetic set;
   the report says which;
2. every training run the profile's notebooks make (:func:`profile_runs`, from the study's own
   run specs, a run shared by two steps counted once) with the images it trains on, and the
   analytic FLOPs per image of each model (``gpu_protocol.forward_gflop``; training = 3x forward);
3. an accelerator's dense bf16 peak and the share of it training reaches (``--utilisation``).

GPU time = training FLOPs of every run / (peak x utilisation) (:func:`gpu_seconds` of
``gpu_protocol``); workers needed per model = the images/s the GPU consumes at that rate / the
images/s one worker prepares, rounded up (:func:`workers_needed`). Not counted: compilation,
scoring, pseudo-labelling's and the linear probe's predictions, and early stopping (runs are
counted to their epoch cap), so the time is the training's at the assumed utilisation, no more.
"""
from __future__ import annotations

import dataclasses
import math
import time
from pathlib import Path
from typing import Any, Mapping, Sequence

from mtunet.errors import UserError

DEFAULT_UTILISATION = 0.4      # share of the dense bf16 peak assumed (README "GPU run")
MEASURED_IMAGES = 16           # images per training set the pipeline is timed on
# the training sets runs draw on, and the pipeline measurement each is read at
SEG_SETS = ("seg_train", "graded_seg_train")
MIXED_SET = "multitask"        # IDRiD-S with true masks + the graded images with pseudo masks
GRADE_SET = "pseudo_train"     # the graded images (the baseline graders')


# --------------------------------------------------------------------------------------------
# arithmetic


def gpu_images_per_s(train_gflop_per_image: float, peak_tflops: float, utilisation: float) -> float:
    """Training images/s a GPU of `peak_tflops` running at `utilisation` of it consumes."""
    if not train_gflop_per_image > 0:
        raise ValueError(f"train_gflop_per_image must be above 0, not {train_gflop_per_image}")
    from mtunet.commands.gpu_protocol import gpu_seconds

    return 1.0 / gpu_seconds(train_gflop_per_image / 1e6, peak_tflops, utilisation)


def workers_needed(gpu_rate: float, worker_rate: float) -> int:
    """Data workers that together prepare `gpu_rate` images/s at `worker_rate` each (rounded up;
    a rate within 1e-9 of a whole number of workers is that number)."""
    if not worker_rate > 0 or not gpu_rate >= 0:
        raise ValueError(f"rates must be positive: gpu {gpu_rate}, worker {worker_rate}")
    return max(1, math.ceil(gpu_rate / worker_rate - 1e-9))


def mixed_rate(parts: Sequence[tuple[int, float]]) -> float:
    """Images/s of a pipeline over several sets, `parts` = (images, images/s) of each: the
    images over the time they take together."""
    images = sum(n for n, _ in parts)
    seconds = sum(n / rate for n, rate in parts if n)
    if not images or not seconds > 0:
        raise ValueError(f"no images to mix: {parts}")
    return images / seconds


def protocol_gpu_hours(runs, peak_tflops: float, utilisation: float) -> float:
    """Hours of GPU time the training of `runs` (``gpu_protocol.Planned``) needs."""
    from mtunet.commands.gpu_protocol import gpu_seconds

    return gpu_seconds(sum(r.train_pflop for r in runs), peak_tflops, utilisation) / 3600


# --------------------------------------------------------------------------------------------
# the protocol's runs


def profile_parameters(profile: str, **overrides: Any) -> dict[str, Any]:
    """A profile's study parameters (missing names take their defaults), with `overrides`."""
    from mtunet.commands.run_notebooks import load_profile
    from mtunet.study.parameters import with_defaults

    loaded = load_profile(profile)
    if loaded["notebooks"]:
        raise UserError(f"profile {profile!r} sets parameters per notebook; the GPU plan counts "
                        "profile-wide parameters only")
    return with_defaults({**loaded["parameters"], "profile": profile, **overrides})


def _wanted_runs(p: Mapping[str, Any]):
    """(experiment, RunSpec, training set) of every run the notebooks ask for, in their order,
    with the study's own spec functions (notebooks 02, 04, 05, 06)."""
    from mtunet.study import seed_segmenter, table2_segmentation as t2, tables3_4_grading as t34
    from mtunet.study.runs import Context

    ctx = Context.from_parameters(p)
    seeds = list(p["seeds"])
    yield "seed segmenter", seed_segmenter.seed_spec(ctx, p["seed_model"], p["seed_epochs"]), "seg_train"
    for init in p["init_comparison"]:   # seed_segmenter.encoder_init_comparison
        yield "encoder init", ctx.spec(model=p["seed_model"], epochs=p["seed_epochs"], seed=0,
                                       encoder_weights=init), "seg_train"
    for model in p["variants"]:
        for seed in seeds:
            yield "table1", ctx.spec(model=model, seed=seed), MIXED_SET
    for parameter, values in (("alpha", p["alpha_values"]), ("seg_loss", p["seg_losses"])):
        for value in values:
            for seed in p["ablation_seeds"]:
                yield f"ablation {parameter}", ctx.spec(model="mtunet", seed=seed,
                                                        **{parameter: value}), MIXED_SET
    for model in p["models"]:
        for seed in seeds:
            yield "table2", t2.run_spec(ctx, model, seed), SEG_SETS[model == "mtunet"]
    for encoder in p["encoders"]:
        yield "fig6", t2.run_spec(ctx, encoder, seeds[0]), SEG_SETS[1]
    if "mtunet" in p["encoders"] and ctx.base.encoder_weights != "random":
        random_ctx = dataclasses.replace(ctx, base=ctx.spec(encoder_weights="random"))
        yield "fig6", t2.run_spec(random_ctx, "mtunet", seeds[0]), SEG_SETS[1]
    for model in p["grading_models"]:
        for seed in p["grading_seeds"] or seeds:
            yield "tables3-4", t34.grader_spec(ctx, model, seed, image_size=p["grader_image_size"],
                                               epochs=p["grader_epochs"]), GRADE_SET


def training_set_sizes(n_seg_train: int, n_grade_train: int) -> dict[str, int]:
    """Images in each training set runs draw on (``pseudo_labelling.multitask_train`` and co.)."""
    return {"seg_train": n_seg_train, "graded_seg_train": n_seg_train,
            MIXED_SET: n_seg_train + n_grade_train, GRADE_SET: n_grade_train}


def profile_runs(p: Mapping[str, Any], sizes: Mapping[str, int]) -> list[tuple[Any, str, Any]]:
    """(``gpu_protocol.Planned``, training set, RunSpec) of every distinct training run of the
    profile: two steps asking for the same spec on the same set (the seed segmenter and Table 2's
    first UNet, Table 1's MTUnet and the ablations at the profile's alpha and loss) train it
    once. Images held out for a run's selection are not trained on; variant B counts its two
    steps as one run of its whole network (an upper bound, as ``gpu_protocol.plan``)."""
    from mtunet.commands.gpu_protocol import Planned
    from mtunet.study.run_training import selection_task

    if p["patch_size"] is not None:
        raise UserError("the GPU plan counts whole-image profiles; this one trains on crops "
                        f"(patch_size={p['patch_size']})")
    seen, out = set(), []
    for experiment, spec, training_set in _wanted_runs(p):
        key = (dataclasses.replace(spec, tag=""), training_set)
        if key in seen:
            continue
        seen.add(key)
        held = spec.heldout_images if selection_task(spec.model) == "seg" else spec.heldout_grade_images
        images = max(0, sizes[training_set] - held)
        out.append((Planned(experiment, spec.model, spec.seed, images, spec.epochs), training_set, spec))
    return out


def set_flops(runs, flops_for=None) -> dict[tuple[str, int], float]:
    """Fill each run's forward GFLOP per image at its input size; returns {(model, size): GFLOP}.
    ``flops_for(models, size)``: ``gpu_protocol.forward_gflop`` unless given (tests)."""
    if flops_for is None:
        from mtunet.commands.gpu_protocol import forward_gflop as flops_for
    by_size: dict[int, set[str]] = {}
    for _, _, spec in runs:
        by_size.setdefault(spec.image_size, set()).add(spec.model)
    table = {(m, size): g for size, models in by_size.items()
             for m, g in flops_for(sorted(models), size).items()}
    for planned, _, spec in runs:
        planned.forward_gflop = table[(spec.model, spec.image_size)]
    return table


# --------------------------------------------------------------------------------------------
# the input pipeline, per worker


@dataclasses.dataclass
class PipelineRate:
    """One training set's images/s through FundusSequence + augmentation on one CPU worker."""

    role: str
    described: str
    images: int
    uncached: float      # first epoch: files read and decoded
    cached: float        # later epochs: from the in-memory cache


def _epoch_seconds(seq) -> float:
    t0 = time.perf_counter()
    for i in range(len(seq)):
        seq[i]
    seconds = time.perf_counter() - t0
    seq.on_epoch_end()
    return seconds


def measure_pipeline(role: str, records, image_size: int, batch_size: int, outputs,
                     preprocessing: str = "none", n_images: int = MEASURED_IMAGES,
                     cached_epochs: int = 2) -> PipelineRate:
    """Images/s of the first epoch and of the best of `cached_epochs` later ones over the first
    `n_images` records, in this thread, OpenCV held to one thread."""
    import cv2

    from mtunet.data.augment import Augmentation
    from mtunet.data.pipeline import FundusSequence

    chosen = list(records)[:n_images]
    if not chosen:
        raise UserError(f"{role}: no images to time the input pipeline on")
    seq = FundusSequence(chosen, image_size, batch_size=batch_size, outputs=outputs,
                         augmentation=Augmentation(), shuffle=True, seed=0,
                         preprocessing=preprocessing)
    threads = cv2.getNumThreads()
    cv2.setNumThreads(1)
    try:
        first = _epoch_seconds(seq)
        later = min(_epoch_seconds(seq) for _ in range(max(1, cached_epochs)))
    finally:
        cv2.setNumThreads(threads)
    return PipelineRate(role, describe_files(chosen), len(chosen), len(chosen) / first,
                        len(chosen) / later)


def describe_files(records) -> str:
    """'16 images, 1024x680 .jpg + 4 masks' from the first record's files."""
    from PIL import Image

    first = records[0]
    with Image.open(first.image_path) as image:
        width, height = image.size
    masks = len(first.masks or {})
    return (f"{len(records)} images, {width}x{height} {Path(first.image_path).suffix}"
            + (f" + {masks} masks" if masks else ""))


def set_rates(rates: Mapping[str, PipelineRate], sizes: Mapping[str, int]
              ) -> dict[str, tuple[float, float]]:
    """(uncached, cached) images/s per worker of every training set, from the two measured
    ones: segmentation sets read as seg_train, the graders' as grade_train, the multi-task set
    as its mix of both (:func:`mixed_rate`)."""
    seg, grade = rates["seg_train"], rates["grade_train"]
    n_seg, n_grade = sizes["seg_train"], sizes[GRADE_SET]
    mixed = tuple(mixed_rate([(n_seg, getattr(seg, kind)), (n_grade, getattr(grade, kind))])
                  for kind in ("uncached", "cached"))
    out = {name: (seg.uncached, seg.cached) for name in SEG_SETS}
    out.update({MIXED_SET: mixed, GRADE_SET: (grade.uncached, grade.cached)})
    return out


# --------------------------------------------------------------------------------------------
# the plan


def resolve_plan_data(p: Mapping[str, Any], data_dir: str | Path | None = None):
    """(data folder, synthetic?, the study's splits of it, a note): the given folder, else the
    profile's, else (absent, or none named) the built-in synthetic set, whose grading roles are
    the defaults' (the synthetic layout holds no APTOS or Messidor-2)."""
    from mtunet.config import resolve_path
    from mtunet.study.datasets import resolve_data_dir
    from mtunet.study.parameters import DEFAULTS
    from mtunet.study.roles import splits_from_parameters

    wanted = data_dir or p["data_dir"]
    path = resolve_path(wanted).resolve() if wanted else None
    note = ""
    if path is None or not path.is_dir():
        note = f"{wanted} not found: " if wanted else ""
        path = resolve_data_dir(None, p["synthetic"])
    synthetic = (path / "SYNTHETIC.md").is_file()
    roles = dict(p)
    if synthetic:
        roles.update({k: DEFAULTS[k] for k in ("grading_train_sets", "table3_set", "table4_set")})
    note += "synthetic images (not the paper's data)" if synthetic else "real images"
    return path, synthetic, splits_from_parameters(path, roles), note


def demand_rows(runs, rates_by_set: Mapping[str, tuple[float, float]], peak_tflops: float,
                utilisation: float) -> list[dict[str, Any]]:
    """Per model and training set: training GFLOP per image, the images/s the GPU consumes,
    one worker's images/s and the workers needed, cached epochs and first epoch."""
    rows: dict[tuple[str, str], dict[str, Any]] = {}
    for planned, training_set, spec in runs:
        if (planned.model, training_set) in rows or not planned.images:
            continue
        train_gflop = 3 * planned.forward_gflop
        gpu = gpu_images_per_s(train_gflop, peak_tflops, utilisation)
        uncached, cached = rates_by_set[training_set]
        rows[(planned.model, training_set)] = {
            "model": planned.model, "training_set": training_set, "image_size": spec.image_size,
            "train_gflop_per_image": train_gflop, "gpu_images_per_s": gpu,
            "worker_images_per_s_cached": cached, "worker_images_per_s_first_epoch": uncached,
            "workers_cached": workers_needed(gpu, cached),
            "workers_first_epoch": workers_needed(gpu, uncached)}
    return sorted(rows.values(), key=lambda r: -r["workers_cached"])


def _measure(splits, p: Mapping[str, Any], n_images: int) -> dict[str, PipelineRate]:
    """The two training sets' pipeline rates, at the profile's input size and batch."""
    size, batch = p["image_size"], p["batch_size"]
    return {"seg_train": measure_pipeline("seg_train", splits["seg_train"], size, batch,
                                          ("seg", "grade"), n_images=n_images),
            "grade_train": measure_pipeline("grade_train", splits["grade_train"], size, batch,
                                            ("grade",), p["grade_preprocessing"], n_images)}


def run_gpu_plan(profile: str = "paper", data_dir: str | Path | None = None,
                 peak_tflops: float | None = None, utilisation: float = DEFAULT_UTILISATION,
                 n_images: int = MEASURED_IMAGES, image_size: int | None = None,
                 batch_size: int | None = None, overrides: Mapping[str, Any] | None = None,
                 machine: str = "", flops_for=None, out=print) -> dict[str, Any]:
    """Measure, count and print the GPU plan of `profile` (``image_size``, ``batch_size`` and
    ``overrides`` change its parameters); returns the figures as a dict."""
    from mtunet.commands.gpu_protocol import H100_BF16_DENSE_TFLOPS

    started = time.perf_counter()
    peak = peak_tflops or H100_BF16_DENSE_TFLOPS
    changes = dict(overrides or {})
    if image_size:
        changes.update(image_size=image_size, grader_image_size=image_size)
    if batch_size:
        changes["batch_size"] = batch_size
    p = profile_parameters(profile, **changes)
    path, synthetic, splits, note = resolve_plan_data(p, data_dir)
    sizes = training_set_sizes(len(splits["seg_train"]), len(splits["grade_train"]))
    runs = profile_runs(p, sizes)
    flops = set_flops(runs, flops_for)
    rates = _measure(splits, p, n_images)
    rows = demand_rows(runs, set_rates(rates, sizes), peak, utilisation)
    planned = [r for r, _, _ in runs]
    res = {"profile": profile, "parameters": {k: p[k] for k in ("image_size", "batch_size", "epochs",
                                                                "seeds", "grader_image_size")},
           "data_dir": str(path), "synthetic": synthetic, "data_note": note, "machine": machine,
           "training_sets": sizes, "n_runs": len(planned),
           "image_steps": sum(r.image_steps for r in planned),
           "train_pflop": sum(r.train_pflop for r in planned),
           "forward_gflop": {f"{m}@{s}": g for (m, s), g in flops.items()},
           "peak_tflops": peak, "utilisation": utilisation,
           "gpu_hours": protocol_gpu_hours(planned, peak, utilisation),
           "pipeline": {k: dataclasses.asdict(v) for k, v in rates.items()}, "workers": rows,
           "runs": [dataclasses.asdict(r) | {"training_set": s} for r, s, _ in runs]}
    res["wall_s"] = time.perf_counter() - started
    for line in plan_lines(res, planned):
        out(line)
    return res


def plan_lines(res: Mapping[str, Any], planned) -> list[str]:
    """The printed plan (estimates, every figure named with where it came from)."""
    from mtunet.commands.gpu_protocol import sizing_text

    q, util, peak = res["parameters"], res["utilisation"], res["peak_tflops"]
    sizes, hours = res["training_sets"], res["gpu_hours"]
    lines = [f"mtunet bench --gpu-plan: profile {res['profile']} ({q['image_size']}-px whole images, "
             f"batch {q['batch_size']}, {q['epochs']} epochs, seeds {q['seeds']}); estimates from "
             "figures measured here",
             f"  data           {res['data_dir']}: {res['data_note']}; seg_train {sizes['seg_train']}, "
             f"grade_train {sizes[GRADE_SET]} images",
             f"  pipeline       one CPU worker ({res['machine'] or 'this machine'}; one thread, OpenCV "
             f"1 thread), FundusSequence + augmentation at {q['image_size']} px, batch "
             f"{q['batch_size']}: first epoch (read, decode, crop, fit, augment) | cached epochs"]
    for rate in res["pipeline"].values():
        lines.append(f"                 {rate['role']:<12} {rate['described']}: "
                     f"{rate['uncached']:,.1f} | {rate['cached']:,.1f} images/s")
    mtunet = res["forward_gflop"].get(f"mtunet@{q['image_size']}")
    if mtunet is not None:
        lines.append(f"  FLOPs/image    mtunet at {q['image_size']} px: forward {mtunet:,.1f} GFLOP, "
                     f"training ~3x = {3 * mtunet:,.1f} GFLOP (analytic, from the layer shapes)")
    lines.append(f"  runs           {res['n_runs']} distinct training runs (a run two steps share "
                 "counted once), to their epoch cap:")
    lines += ["                 " + line for line in
              sizing_text(planned, peak, util, None).splitlines()]
    lines.append(f"  GPU time       {res['train_pflop']:,.1f} PFLOP / ({peak:,.1f} TFLOP/s dense bf16 "
                 f"x {util:.0%}) = {60 * hours:,.0f} min ({hours:,.2f} GPU-hours) of training on one "
                 "GPU; compilation, scoring and predictions not included")
    lines.append(f"  data workers   per model, at {util:.0%} of the peak: the images/s the GPU consumes, "
                 "one worker's images/s, the workers needed (cached epochs | first epoch)")
    lines.append(f"                 {'model':<20} {'training set':<17} {'GFLOP/img':>9} {'GPU img/s':>10} "
                 f"{'worker img/s':>17} {'workers':>11}")
    for row in res["workers"]:
        worker = (f"{row['worker_images_per_s_cached']:,.1f} | "
                  f"{row['worker_images_per_s_first_epoch']:,.1f}")
        workers = f"{row['workers_cached']} | {row['workers_first_epoch']}"
        lines.append(f"                 {row['model']:<20} {row['training_set']:<17} "
                     f"{row['train_gflop_per_image']:>9,.1f} {row['gpu_images_per_s']:>10,.1f} "
                     f"{worker:>17} {workers:>11}")
    if res["workers"]:
        top = res["workers"][0]
        lines.append(f"  most workers   {top['workers_cached']} (cached epochs) | "
                     f"{top['workers_first_epoch']} (first epoch), for {top['model']} on "
                     f"{top['training_set']}; MTUnet: " + ", ".join(
                         f"{r['workers_cached']} | {r['workers_first_epoch']} on {r['training_set']}"
                         for r in res["workers"] if r["model"] == "mtunet"))
    lines.append(f"  wall time      {res['wall_s']:.0f} s")
    return lines


# --------------------------------------------------------------------------------------------
# CLI (options of `bench`)


def _positive(text: str) -> float:
    """argparse type: a number above 0 (gpu_protocol's, imported when the option is given)."""
    from mtunet.commands.gpu_protocol import _positive_float

    return _positive_float(text)


def _share(text: str) -> float:
    """argparse type: a share in (0, 1]."""
    import argparse

    value = _positive(text)
    if value > 1:
        raise argparse.ArgumentTypeError(f"{value} must be at most 1 (a share of the peak)")
    return value


def add_arguments(p) -> None:
    """`bench`'s --gpu-plan options."""
    from mtunet.cli import positive_int

    g = p.add_argument_group("GPU plan (--gpu-plan: only the plan runs, not the benchmark)")
    g.add_argument("--gpu-plan", action="store_true",
                   help="print the GPU time of the profile's whole protocol and the data workers a "
                        "GPU needs, from the input pipeline's images/s measured here on a few images "
                        "and the analytic FLOPs (about a minute; trains nothing)")
    g.add_argument("--profile", default="paper", help="profile to plan (default paper)")
    g.add_argument("--gpu-tflops", type=_positive, default=None,
                   help="the GPU's dense bf16 peak, TFLOP/s (default: an H100/H200 SXM's, "
                        "gpu_protocol.H100_BF16_DENSE_TFLOPS)")
    g.add_argument("--utilisation", type=_share, default=DEFAULT_UTILISATION,
                   help=f"share of that peak training reaches (default {DEFAULT_UTILISATION})")
    g.add_argument("--plan-images", type=positive_int, default=MEASURED_IMAGES,
                   help=f"images per training set the pipeline is timed on (default {MEASURED_IMAGES})")
    g.add_argument("--data-dir", default=None,
                   help="data folder (default: the profile's; the synthetic set when absent)")


def main(args, machine: str = "") -> dict[str, Any]:
    """Run the plan from `bench`'s parsed options (--size / --batch override the profile's)."""
    return run_gpu_plan(args.profile, args.data_dir, args.gpu_tflops, args.utilisation,
                        args.plan_images, image_size=args.size, batch_size=args.batch,
                        machine=machine)
