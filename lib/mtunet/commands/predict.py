"""`python -m mtunet predict`: grade and segment any fundus photographs with a trained run.

    python -m mtunet predict --model runs/<profile>/<tag>/<run> [--out DIR]
                             [--batch-size N] IMAGE_OR_FOLDER...

For every readable image (JPEG/PNG/TIFF, any size, any camera; folders are expanded to the images
directly inside them, sorted by name) the image goes through the training preprocessing — crop to
the fundus disc, pad to a square, resize to the run's input size — and through the model. Then:

- a model with a grade output: the five grade probabilities are printed as a table and written to
  ``DIR/predictions.csv`` (image, predicted_grade, p0..p4);
- a model with a segmentation output: ``DIR/<stem>_mask.png`` (uint8 class index: 0 background,
  1 MA, 2 HE, 3 EX, 4 SE, 5 OD for a model with an optic-disc channel) and ``DIR/<stem>_overlay.png``
  (the lesions painted on the photograph in the colours of the paper's Fig. 6), both at the input
  image's own size: the predicted square map is mapped back through the crop and padding.

Files that cannot be read (missing, not an image, corrupt, grayscale) are listed at the end and
the rest are still processed; the exit code is 1 if any failed, else 0. An output is never written
over an input file: a clashing name gets a ``-2``, ``-3`` ... suffix.
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mtunet.data.preprocess import restore_probabilities
from mtunet.cli import positive_int
from mtunet.errors import DataError, UserError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".tif", ".tiff")


# ----------------------------------------------------------------------------------------------
# Inputs and outputs
# ----------------------------------------------------------------------------------------------


@dataclass
class Failure:
    path: str
    reason: str


@dataclass
class Prediction:
    path: str
    probs: np.ndarray | None = None        # (5,) grade probabilities
    outputs: list[Path] = field(default_factory=list)


def expand_inputs(inputs) -> tuple[list[Path], list[Failure]]:
    """Files as given (in order) and folders expanded to their image files (sorted by name)."""
    files: list[Path] = []
    failures: list[Failure] = []
    seen: set[Path] = set()
    for raw in inputs:
        p = Path(raw)
        if p.is_dir():
            found = sorted((c for c in p.iterdir()
                            if c.is_file() and c.suffix.lower() in IMAGE_SUFFIXES),
                           key=lambda c: c.name)
            if not found:
                failures.append(Failure(str(p), f"folder has no {'/'.join(IMAGE_SUFFIXES)} files"))
            candidates = found
        elif p.exists():
            candidates = [p]
        else:
            failures.append(Failure(str(p), "no such file or folder"))
            candidates = []
        for c in candidates:
            key = c.resolve()
            if key not in seen:
                seen.add(key)
                files.append(c)
    return files, failures


class OutputNames:
    """Output file names in ``out_dir`` that never hit an input file nor an earlier output."""

    def __init__(self, out_dir: Path, inputs):
        self.out_dir = out_dir
        self.protected = {Path(p).resolve() for p in inputs}
        self.used: set[Path] = set()
        self.renamed: list[tuple[Path, Path]] = []

    def stem_for(self, image: Path, suffixes: tuple[str, ...]) -> str:
        """A stem such that ``stem + s`` for every s in ``suffixes`` is free."""
        base = image.stem
        for k in range(1, 10_000):
            stem = base if k == 1 else f"{base}-{k}"
            paths = [(self.out_dir / f"{stem}{s}").resolve() for s in suffixes]
            if not any(p in self.protected or p in self.used for p in paths):
                self.used.update(paths)
                if k > 1:
                    self.renamed.append((image, self.out_dir / f"{stem}{suffixes[0]}"))
                return stem
        raise UserError(f"{self.out_dir}: cannot find a free output name for {image.name}")

    def reserve(self, name: str) -> Path:
        path = self.out_dir / name
        if path.resolve() in self.protected:
            raise UserError(f"{path} is one of the input files; choose another --out")
        self.used.add(path.resolve())
        return path


def _save_png(path: Path, array: np.ndarray) -> None:
    from PIL import Image

    Image.fromarray(array).save(path, format="PNG")


# ----------------------------------------------------------------------------------------------
# The run
# ----------------------------------------------------------------------------------------------


def load_run(run_dir: Path):
    """(model, run info dict, weights path) of a finished training run; UserError if unusable."""
    run_dir = Path(run_dir)
    if not run_dir.exists():
        raise UserError(f"--model {run_dir}: no such run folder")
    if not run_dir.is_dir():
        raise UserError(f"--model {run_dir}: not a folder (give the run folder that holds "
                        "run.json and final.npz)")
    run_json = run_dir / "run.json"
    try:
        info = json.loads(run_json.read_text()) if run_json.exists() else {}
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise UserError(f"{run_json}: not valid JSON ({exc})") from None

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from mtunet.train import FINAL_WEIGHTS
    from mtunet.train import load_run as rebuild_run

    try:
        model = rebuild_run(run_dir)
    except (ValueError, OSError, KeyError) as exc:  # weights of another architecture, bad file
        raise UserError(f"{run_dir / FINAL_WEIGHTS}: could not load the weights "
                        f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})") from None
    return model, info, run_dir / FINAL_WEIGHTS


def _input_size(model, info: dict) -> int:
    shape = info.get("input_shape")
    if not shape:
        shape = tuple(model.input_shape)[1:]
    h, w = int(shape[0]), int(shape[1])
    if h != w:
        raise UserError(f"the run's input shape {tuple(shape)} is not square; predict expects the "
                        f"square frame the data pipeline trains on")
    return h


def _as_dict(result, model) -> dict[str, np.ndarray]:
    if isinstance(result, dict):
        return {k: np.asarray(v) for k, v in result.items()}
    if isinstance(result, (list, tuple)):
        return {name: np.asarray(v) for name, v in zip(model.output_names, result)}
    return {model.output_names[0]: np.asarray(result)}


def segmentation_size(info: dict, image_size: int) -> int:
    """The side a run segments at: its ``work_size`` (crop-trained runs predict the whole fundus
    there, as the study scores them), else its input size."""
    return int((info.get("spec") or {}).get("work_size") or image_size)


def grade_preprocessing(info: dict) -> str:
    """The preprocessing the run's grade inputs went through in training (run.json's spec; "none"
    for runs recorded before it existed, and for variant B)."""
    spec = info.get("spec") or {}
    return "none" if spec.get("model") == "variant_b" else spec.get("grade_preprocessing", "none")


def _grade(model, batch: np.ndarray, result: dict, preprocessing: str):
    """The grade output for a batch of model inputs: from ``result`` (the batch as it is), or
    predicted again from the batch through the run's grade preprocessing."""
    if result.get("grade") is None or preprocessing == "none":
        return result.get("grade")
    from mtunet.data.pipeline import preprocess_grade_inputs

    normalised = preprocess_grade_inputs(batch.astype(np.uint8), preprocessing).astype(np.float32)
    return _as_dict(model.predict_on_batch(normalised), model)["grade"]


def predict_files(model, files, image_size: int, out_dir: Path, batch_size: int = 4,
                  progress: bool = True, protected=(), seg_model=None, seg_size: int | None = None,
                  grade_preprocessing: str = "none") -> tuple[list[Prediction], list[Failure]]:
    """Predict every file; write masks/overlays into ``out_dir``; return predictions and failures.

    ``seg_model`` / ``seg_size``: segment with that model at that side instead (the same weights
    at the run's working size); the grade still comes from ``model`` at ``image_size``, its input
    through ``grade_preprocessing`` as in training (the segmentation never is)."""
    from tqdm import tqdm

    from mtunet.data.preprocess import fit_square, fundus_bbox, load_rgb
    from mtunet.report.figures import overlay

    names = OutputNames(out_dir, list(files) + list(protected))
    predictions: list[Prediction] = []
    failures: list[Failure] = []
    pending: list[tuple[Path, np.ndarray, tuple]] = []
    n_seg_channels: int | None = None

    def flush():
        nonlocal n_seg_channels
        if not pending:
            return
        batch = np.stack([fit_square(img, image_size, box) for _, img, box in pending])
        result = _as_dict(model.predict_on_batch(batch.astype(np.float32)), model)
        seg, grade = result.get("seg"), _grade(model, batch, result, grade_preprocessing)
        if seg is not None and seg_model is not None:
            big = np.stack([fit_square(img, seg_size, box) for _, img, box in pending])
            seg = _as_dict(seg_model.predict_on_batch(big.astype(np.float32)), seg_model)["seg"]
        for j, (path, img, box) in enumerate(pending):
            pred = Prediction(str(path))
            try:
                if grade is not None:
                    pred.probs = grade[j].astype(float)
                if seg is not None:
                    n_seg_channels = seg.shape[-1]
                    # probabilities back to the image's own size, then the class per pixel: the
                    # same mapping the study scores with
                    full = restore_probabilities(seg[j], img.shape[:2], box).argmax(axis=-1)
                    full = full.astype(np.uint8)
                    stem = names.stem_for(path, ("_mask.png", "_overlay.png"))
                    mask_path = out_dir / f"{stem}_mask.png"
                    overlay_path = out_dir / f"{stem}_overlay.png"
                    _save_png(mask_path, full)
                    _save_png(overlay_path, overlay(img, full, include_od=n_seg_channels > 5))
                    pred.outputs += [mask_path, overlay_path]
            except OSError as exc:
                failures.append(Failure(str(path), f"could not write output ({exc})"))
                continue
            predictions.append(pred)
        bar.update(len(pending))
        pending.clear()

    bar = tqdm(total=len(files), desc="predicting", unit="img", disable=not progress)
    for path in files:
        try:
            image = load_rgb(path)
            if image.shape[0] < 2 or image.shape[1] < 2:
                raise DataError(path, f"image is only {image.shape[1]}x{image.shape[0]} pixels")
            box = fundus_bbox(image)
        except DataError as exc:
            failures.append(Failure(str(path), exc.problem))
            bar.update(1)
            continue
        except (OSError, ValueError, MemoryError) as exc:
            failures.append(Failure(str(path), f"{type(exc).__name__}: {exc}"))
            bar.update(1)
            continue
        pending.append((path, image, box))
        if len(pending) >= batch_size:
            flush()
    flush()
    bar.close()
    for image, new in names.renamed:
        print(f"note: {image.name}: wrote {new.name} (the plain name is an input file or already "
              f"used)", file=sys.stderr)
    return predictions, failures


def grade_table(predictions: list[Prediction]) -> str:
    """A fixed-width table: image, predicted grade, p0..p4."""
    from mtunet.config import GRADE_NAMES

    rows = [p for p in predictions if p.probs is not None]
    width = max([len("image")] + [len(Path(p.path).name) for p in rows])
    head = f"{'image':<{width}}  {'grade':<17}" + "".join(f"{f'p{g}':>7}" for g in range(5))
    lines = [head, "-" * len(head)]
    for p in rows:
        g = int(np.argmax(p.probs))
        label = f"{g} {GRADE_NAMES[g]}" if g < len(GRADE_NAMES) else str(g)
        lines.append(f"{Path(p.path).name:<{width}}  {label:<17}"
                     + "".join(f"{v:7.3f}" for v in p.probs))
    return "\n".join(lines)


def write_predictions_csv(path: Path, predictions: list[Prediction]) -> None:
    rows = [p for p in predictions if p.probs is not None]
    n = len(rows[0].probs) if rows else 5
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["image", "predicted_grade"] + [f"p{g}" for g in range(n)])
        for p in rows:
            writer.writerow([p.path, int(np.argmax(p.probs))] + [f"{v:.6f}" for v in p.probs])


# ----------------------------------------------------------------------------------------------
# CLI
# ----------------------------------------------------------------------------------------------


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "predict", help="grade and segment fundus photographs with a trained run",
        description="Grade and segment fundus photographs (JPEG/PNG/TIFF, any size) with a run "
                    "folder written by training (run.json + final.npz). Prints the grade "
                    "probabilities and writes predictions.csv, and per image <stem>_mask.png "
                    "(0 background, 1 MA, 2 HE, 3 EX, 4 SE, 5 OD) and <stem>_overlay.png at the "
                    "image's own size. Unreadable files are listed at the end (exit code 1).")
    p.add_argument("inputs", nargs="+", metavar="IMAGE_OR_FOLDER",
                   help="image files, or folders whose image files are all predicted")
    p.add_argument("--model", required=True, type=Path, metavar="RUN_DIR",
                   help="training run folder (holds run.json and final.npz)")
    p.add_argument("--out", type=Path, default=Path("predictions"),
                   help="output folder (default ./predictions)")
    p.add_argument("--batch-size", type=positive_int, default=4, help="images per model call (default 4)")
    p.set_defaults(func=main)
    return p


def main(args) -> int:
    files, failures = expand_inputs(args.inputs)
    model, info, ckpt = load_run(args.model)
    size = _input_size(model, info)
    seg_size = segmentation_size(info, size)
    seg_model = None
    if seg_size != size and isinstance(model.output, dict) and "seg" in model.output:
        from mtunet.evaluate import model_at_size

        seg_model = model_at_size(model, seg_size, name=info.get("model"))
    out_dir = Path(args.out)
    if out_dir.exists() and not out_dir.is_dir():
        raise UserError(f"--out {out_dir}: exists and is not a folder")
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"--out {out_dir}: cannot create the folder ({exc.strerror})") from None
    print(f"model {info.get('model', model.name)} from {ckpt} ({size}x{size} input"
          + (f", segmenting at {seg_size}x{seg_size}" if seg_model is not None else "")
          + f"); {len(files)} image(s) -> {out_dir}", file=sys.stderr)

    predictions, read_failures = predict_files(model, files, size, out_dir,
                                               batch_size=args.batch_size, seg_model=seg_model,
                                               seg_size=seg_size,
                                               grade_preprocessing=grade_preprocessing(info))
    failures += read_failures
    graded = [p for p in predictions if p.probs is not None]
    if graded:
        print(grade_table(predictions))
        csv_path = out_dir / "predictions.csv"
        if csv_path.resolve() in {f.resolve() for f in files}:
            raise UserError(f"{csv_path} is one of the input files; choose another --out")
        write_predictions_csv(csv_path, predictions)
        print(f"wrote {csv_path}", file=sys.stderr)
    n_seg = sum(1 for p in predictions if p.outputs)
    if n_seg:
        print(f"wrote {n_seg} mask(s) and overlay(s) to {out_dir}", file=sys.stderr)
    if failures:
        print(f"could not read {len(failures)} file(s):", file=sys.stderr)
        for f in failures:
            print(f"  {f.path}: {f.reason}", file=sys.stderr)
        return 1
    return 0
