"""One training run of the study = a `RunSpec` + its training records; cached and resumable.

Each table step describes *which* runs it needs; this module trains each one (or finds it already
trained under `runs/<profile>/...`) and scores it, so an interrupted batch continues where it
stopped and a finished run is never trained twice. A run's id is derived from every field of its
spec, the fingerprint of its training data and the fingerprint of the code that trains it
(``mtunet.code_fingerprint``; the training itself is ``mtunet.study.run_training``), so changing a
parameter, the data or the training code trains a new run instead of silently reusing an old one;
cached scores carry the scoring code's fingerprint the same way. :class:`Context` is what every
step of one profile shares.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import warnings
from pathlib import Path
from typing import Any, Mapping, Sequence

from mtunet.config import n_seg_classes, resolve_path, runs_dir
from mtunet.data.records import Record, data_fingerprint
from mtunet.errors import UserError
from mtunet.files import write_atomic
from mtunet.study.parameters import DEFAULTS
from mtunet.study.run_training import build_untrained, grade_preprocessing_of, model_tasks, train_run


@dataclasses.dataclass(frozen=True)
class RunSpec:
    """Everything that defines one training run (model x seed x hyper-parameters)."""

    model: str                      # a name from mtunet.models.registry.MODELS
    image_size: int = DEFAULTS["image_size"]
    work_size: int | None = DEFAULTS["work_size"]
    patch_size: int | None = DEFAULTS["patch_size"]
    lesion_share: float = DEFAULTS["lesion_share"]
    lr_schedule: str = DEFAULTS["lr_schedule"]
    seed: int = 0
    epochs: int = DEFAULTS["epochs"]
    batch_size: int = DEFAULTS["batch_size"]
    learning_rate: float = DEFAULTS["learning_rate"]
    alpha: float = 1.0
    seg_loss: str = DEFAULTS["seg_loss"]
    encoder_weights: str | None = DEFAULTS["encoder_weights"]
    augment: bool = DEFAULTS["augment"]
    include_od: bool = False
    steps_per_epoch: int | None = DEFAULTS["steps_per_epoch"]
    jit_compile: bool | str = DEFAULTS["jit_compile"]
    run_eagerly: bool = DEFAULTS["run_eagerly"]
    mixed_precision: bool = DEFAULTS["mixed_precision"]
    heldout_images: int = DEFAULTS["heldout_images"]
    heldout_grade_images: int = DEFAULTS["heldout_grade_images"]
    patience: int = DEFAULTS["patience"]
    grade_batches: str = DEFAULTS["grade_batches"]
    grade_preprocessing: str = DEFAULTS["grade_preprocessing"]
    tag: str = ""                   # the step that asked for it first (not part of its key)

    @property
    def n_seg_classes(self) -> int:
        return n_seg_classes(self.include_od)

    @property
    def scoring_size(self) -> int:
        """The side segmentation is predicted at (then mapped back to each mask's own size)."""
        return self.work_size or self.image_size

    @property
    def on_crops(self) -> bool:
        return self.patch_size is not None

    def key(self, records: Sequence[Record]) -> str:
        """Hash of what the run trains: every field but the tag, its training data, and the code
        that trains it (``code_fingerprint.training_code``). Two steps that ask for the same
        training (the seed segmenter and Table 2's UNet, Table 1's MTUnet and the alpha = 1
        ablation) share one run; a run that today's code would train differently is never found
        under today's key, so it is trained again instead of being reused."""
        from mtunet.code_fingerprint import training_code

        fields = {k: v for k, v in dataclasses.asdict(self).items() if k != "tag"}
        payload = json.dumps([fields, data_fingerprint(records), training_code()], sort_keys=True)
        return hashlib.sha1(payload.encode()).hexdigest()[:10]

    def run_id(self, records: Sequence[Record]) -> str:
        """Folder of the run under the profile's runs directory: <model>-seed<k>-<hash>."""
        return f"{self.model}-seed{self.seed}-{self.key(records)}"


# The notebook/profile parameters that go into every run's spec.
RUN_PARAMETERS = ("image_size", "work_size", "patch_size", "lesion_share", "lr_schedule", "epochs",
                  "batch_size", "learning_rate", "seg_loss", "encoder_weights", "augment",
                  "steps_per_epoch", "jit_compile", "run_eagerly", "mixed_precision",
                  "heldout_images", "heldout_grade_images", "patience", "grade_batches",
                  "grade_preprocessing")


def history_by_task(frame, tasks: Sequence[str]):
    """A run's per-epoch log with a single-task model's loss and accuracy copied under the names
    a multi-task model logs them (``seg_loss``; ``grade_loss``, ``grade_acc``; and their ``val_``
    columns), so segmenters, graders and MTUnet share the panels of one training-curve figure.
    The frame is copied, never changed; a multi-task log is returned as it is."""
    tasks = tuple(tasks)
    if len(tasks) != 1 or frame is None or not len(frame):
        return frame
    out = frame.copy()
    names = {"loss": f"{tasks[0]}_loss", "acc": "grade_acc"} if tasks == ("grade",) else {"loss": "seg_loss"}
    for old, new in names.items():
        for prefix in ("", "val_"):
            if prefix + old in out.columns and prefix + new not in out.columns:
                out[prefix + new] = out[prefix + old]
    return out


def input_size_for(model: str, size: int) -> int:
    """`size`, or the model's smallest valid input when `size` is below it (InceptionV3: 75 px)."""
    from mtunet.models.registry import MODELS

    spec = MODELS[model]
    size = max(size, spec.min_input)
    return -(-size // spec.multiple) * spec.multiple


def check_crop_settings(spec: RunSpec) -> None:
    """Crops and whole images share the model's input: patch_size must equal image_size."""
    if spec.on_crops and spec.patch_size != spec.image_size:
        raise UserError(f"patch_size={spec.patch_size} must equal image_size={spec.image_size}: "
                        "crops and whole-image batches go through the same network input")
    if spec.on_crops and spec.patch_size > spec.scoring_size:
        raise UserError(f"patch_size={spec.patch_size} is larger than work_size={spec.scoring_size}")


def cached_eval(kind: str, model_loader, spec: RunSpec, train_records, test_name: str,
                test_records, runs_root: Path | None = None):
    """Score a run on a test set once; later calls read the saved scores.

    kind "seg": the whole fundus predicted at the run's scoring size (``work_size``), mapped back
    to each mask's own size and scored there, inside the fundus (``evaluate.score_segmentation``).
    kind "grade": per-grade ROC AUC on whole images at the run's input size.
    `model_loader()` is only called when the scores are not cached.
    """
    from mtunet.evaluate import (FullResSegmentationEval, GradingEval, evaluate_grading,
                                 model_at_size, score_segmentation, seg_predictor)

    from mtunet.code_fingerprint import scoring_code

    root = Path(runs_root or runs_dir())
    # the scoring code's fingerprint is in the name: a score made by other scoring code is not read
    name = f"eval-{kind}-{test_name}-{data_fingerprint(test_records)}-{scoring_code()}.npz"
    path = root / spec.run_id(train_records) / name
    cls = FullResSegmentationEval if kind == "seg" else GradingEval
    if path.exists():
        try:
            return cls.load(path)
        except Exception as exc:  # noqa: BLE001 - a file torn by a kill: score again
            warnings.warn(f"{path}: unreadable ({exc}); scoring again", stacklevel=2)
    model = model_loader()
    if kind == "seg":
        scorer = model_at_size(model, spec.scoring_size, name=spec.model)
        result = score_segmentation(seg_predictor(scorer), test_records, spec.scoring_size,
                                    include_od=spec.include_od)
    else:
        result = evaluate_grading(model, test_records, spec.image_size,
                                  preprocessing=grade_preprocessing_of(spec),
                                  cache_dir=root / "prepared",
                                  **eager_prediction_batch(model, spec.image_size))
    write_atomic(path, result.save)        # a kill while saving never leaves half a file
    return result


# A Keras model called eagerly keeps every layer's output until the call returns, so its memory
# grows with the batch (measured: NASNetLarge at 512 px, 2.7 GB per image; a batch of 5 needed
# 16 GB), where a traced prediction frees them as it goes. Eager grading batches hold at most
# this many pixels: 16 images at 128 px (evaluate_grading's batch), one at 512.
EAGER_PREDICTION_PIXELS = 16 * 128 * 128


def eager_prediction_batch(model, image_size: int) -> dict[str, int]:
    """``batch_size`` for :func:`mtunet.evaluate.evaluate_grading` when `model` runs eagerly and
    its images are larger than 128 px (empty: its default; predictions do not depend on it)."""
    if not getattr(model, "run_eagerly", False) or image_size <= 128:
        return {}
    return {"batch_size": max(1, EAGER_PREDICTION_PIXELS // (image_size * image_size))}


def grade_only(model):
    """The part of a multi-task model that computes the grade (MTUnet without its decoder): the
    same grades at about a quarter of MTUnet's prediction time at 128 px (0.14 vs 0.58 s per image,
    measured on 2 loaded cores). A grade-only model is returned as it is."""
    import keras

    outputs = model.output
    if isinstance(outputs, dict) and "grade" in outputs and len(outputs) > 1:
        return keras.Model(model.input, {"grade": outputs["grade"]}, name=f"{model.name}_grade")
    return model


def grade_loader(load):
    """A loader (see ``Context.loader``) returning :func:`grade_only` of its model, built once."""
    memo: list = []

    def loaded():
        if not memo:
            memo.append(grade_only(load()))
        return memo[0]
    return loaded


@dataclasses.dataclass
class Context:
    """What every step of one profile shares: where runs are cached and the base run spec.

    ``before_training`` (optional) is called with each spec the context is about to train (not
    load): a command's budget hook, for example, raises there to stop before a new run starts.
    """

    profile: str
    runs_dir: Path
    base: RunSpec
    dry_run: bool = False
    before_training: Any = None
    trained: list = dataclasses.field(default_factory=list)   # (spec, records, seconds, cached)
    # the model of the last run trained or loaded, by run id: scoring straight after training
    # reuses it instead of building the network again and reading its weights back (one model
    # only, so memory stays flat over a notebook's many runs)
    _last: dict = dataclasses.field(default_factory=dict, repr=False)
    # every run this context trained, loaded, scored or read, by run id: (spec, its run folder),
    # for the inventory of training runs (``training_runs``)
    used: dict = dataclasses.field(default_factory=dict, repr=False)

    @classmethod
    def from_parameters(cls, parameters: Mapping[str, Any], **changes: Any) -> "Context":
        """From notebook/profile parameters (missing names take their defaults)."""
        from mtunet.losses import segmentation_loss
        from mtunet.study.parameters import with_defaults

        p = with_defaults(parameters)
        segmentation_loss(p["seg_loss"])  # an unknown loss name fails here, before any training
        base = RunSpec(model="mtunet", **{name: p[name] for name in RUN_PARAMETERS})
        check_crop_settings(base)
        return cls(p["profile"], resolve_path(p["runs_dir"]), base, bool(p["dry_run"]), **changes)

    def spec(self, **changes: Any) -> RunSpec:
        return dataclasses.replace(self.base, **changes)

    def run_dir(self, spec: RunSpec, records: Sequence[Record]) -> Path:
        folder = self.runs_dir / spec.run_id(records)
        self.used.setdefault(folder.name, (spec, folder))
        return folder

    def is_trained(self, spec: RunSpec, records: Sequence[Record]) -> bool:
        from mtunet.train import FINAL_WEIGHTS

        run = self.run_dir(spec, records)
        return (run / FINAL_WEIGHTS).exists() or (run / "step2-grader" / FINAL_WEIGHTS).exists()

    def train(self, spec: RunSpec, records: Sequence[Record]):
        if self.dry_run:
            return build_untrained(spec)
        import time

        run_id = self.run_dir(spec, records).name
        if run_id in self._last:
            return self._last[run_id]
        cached = self.is_trained(spec, records)
        if not cached:
            record_training_cpu(self.run_dir(spec, records))
            if self.before_training is not None:
                self.before_training(spec)
        started = time.time()
        model = train_run(spec, records, run_id, self.runs_dir, verbose=2)
        self.trained.append((spec, list(records), time.time() - started, cached))
        self._last.clear()
        self._last[run_id] = model
        return model

    def loader(self, spec: RunSpec, records: Sequence[Record]):
        """A function returning the trained model, training it at most once, only if called."""
        memo: list = []

        def load():
            if not memo:
                memo.append(self.train(spec, records))
            return memo[0]
        return load

    def score(self, kind: str, spec: RunSpec, train_records, test_name: str, test_records,
              loader=None):
        """Scores of a run on a test role (cached); trains the run first if needed."""
        self.run_dir(spec, train_records)
        return cached_eval(kind, loader or self.loader(spec, train_records), spec, train_records,
                           test_name, test_records, runs_root=self.runs_dir)

    def history(self, spec: RunSpec, records: Sequence[Record]):
        """The per-epoch log (history.csv) of a trained run (empty when there is none)."""
        import pandas as pd

        path = self.run_dir(spec, records) / "history.csv"
        return pd.read_csv(path) if path.exists() else pd.DataFrame()

    def run_info(self, spec: RunSpec, records: Sequence[Record]) -> dict[str, Any]:
        """The run's run.json (model, encoder initialisation actually used, ...)."""
        return json.loads((self.run_dir(spec, records) / "run.json").read_text())

    def encoder_init(self, spec: RunSpec, records: Sequence[Record]) -> str:
        """How the run's encoder started, as its run.json records it ("hed-bsds500", "random",
        ...); a two-step run (variant B) names both steps; "" for a run not trained (a dry run)."""
        run = self.run_dir(spec, records)
        return "; ".join(("" if folder == run else f"{folder.name.split('-', 1)[-1]}: ")
                         + json.loads((folder / "run.json").read_text()).get("encoder_init", "?")
                         for folder in run_steps(run))


def run_steps(folder: Path) -> list[Path]:
    """The folders holding a run's run.json: the run itself, or its steps (variant B's
    step1-segmenter, step2-grader); none for a run never trained."""
    if (folder / "run.json").exists():
        return [folder]
    return sorted(step for step in folder.glob("step*") if (step / "run.json").exists())


# One line per training session of a run (its start, and each resume): the CPU it ran on. A run
# resumed on another CPU type is what neither type makes alone from nothing.
TRAINED_ON = "trained_on.jsonl"


def record_training_cpu(folder: Path) -> None:
    """Append the CPU this session trains `folder`'s run on to its trained_on.jsonl; warn when
    the run started on another CPU type (it resumes, but no one CPU remakes it from nothing)."""
    import time

    from mtunet.report.manifest import cpu

    folder.mkdir(parents=True, exist_ok=True)
    here = cpu()
    earlier = [c for c in training_cpus(folder) if c != here["label"]]
    if earlier:
        warnings.warn(f"{folder.name}: started on {earlier[0]}, resumes on {here['label']}: the "
                      "run finishes, but a cold rerun on either CPU type gives other numbers "
                      "(delete the folder to train it from nothing here)", stacklevel=2)
    line = json.dumps({"started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "cpu_type": here["type"],
                       "cpu": here["label"]})
    with open(folder / TRAINED_ON, "a") as handle:
        handle.write(line + "\n")


def training_cpus(folder: Path) -> list[str]:
    """The CPU types (labels) that trained the run in `folder`, in order, each once; [] where the
    run predates the record or a line cannot be read."""
    labels: list[str] = []
    try:
        lines = (folder / TRAINED_ON).read_text().splitlines()
    except OSError:
        return labels
    for line in lines:
        try:
            label = json.loads(line)["cpu"]
        except (ValueError, KeyError, TypeError):
            continue
        if label not in labels:
            labels.append(label)
    return labels


TRAINING_RUNS = "training_runs"
TRAINING_RUN_COLUMNS = ["notebook", "run_id", "model", "seed", "tag", "alpha", "seg_loss", "encoder_init",
                        "dtype_policy", "epochs", "best_epoch", "cap_hit", "train_minutes",
                        "resumed", "resume_exact",
                        "trained_by", "training_code", "same_training_code", "trained_on"]


def run_inventory_row(spec: RunSpec, folder: Path) -> dict[str, Any] | None:
    """One training run as its files describe it; a two-step run (variant B) sums its steps.
    None for a run with no run.json (never trained, or a dry run)."""
    import pandas as pd

    from mtunet.code_fingerprint import training_code

    steps = run_steps(folder)
    if not steps:
        return None
    infos = [json.loads((step / "run.json").read_text()) for step in steps]
    histories = [pd.read_csv(step / "history.csv") for step in steps if (step / "history.csv").exists()]
    seconds = sum(float(h["epoch_seconds"].sum()) for h in histories if "epoch_seconds" in h)
    exact = [i.get("resume_exact") for i in infos if i.get("resume_exact") is not None]
    tasks = model_tasks(spec.model)
    codes = {str(i.get("training_code", "")) for i in infos}
    commits = {str((i.get("trained_by") or {}).get("commit") or "")[:7]
               + ("+changes" if (i.get("trained_by") or {}).get("dirty") else "") for i in infos}
    return {"run_id": folder.name, "model": spec.model, "seed": spec.seed, "tag": spec.tag,
            "alpha": spec.alpha if len(tasks) > 1 else "",       # only where they apply
            "seg_loss": spec.seg_loss if "seg" in tasks else "",
            "encoder_init": "; ".join(str(i.get("encoder_init", "")) for i in infos),
            "dtype_policy": infos[0].get("dtype_policy", ""),
            "epochs": int(sum(len(h) for h in histories)), **_selection_fields(infos),
            "train_minutes": round(seconds / 60, 1),
            "resumed": any(bool(i.get("resumed")) for i in infos),
            "resume_exact": all(exact) if exact else None,
            # which commit trained it, with which training code, and whether that is today's
            "trained_by": "; ".join(sorted(commits)), "training_code": "; ".join(sorted(codes)),
            "same_training_code": codes == {training_code()},
            "trained_on": "; ".join(training_cpus(folder))}


def _selection_fields(infos: Sequence[dict]) -> dict[str, Any]:
    """The kept epoch and whether the cap ended the run, per step (``mtunet.heldout``); empty for
    runs without held-out images."""
    chosen = [i["heldout"] for i in infos if i.get("heldout")]
    return {"best_epoch": "; ".join(str(h.get("best_epoch")) for h in chosen),
            "cap_hit": "; ".join(str(bool(h.get("cap_hit"))) for h in chosen)}


def _epoch_text(value) -> str:
    """An epoch number as written in the table: ``3`` (not the ``3.0`` a table read back with
    blanks holds), ``"3; 5"`` for a two-step run, blank for a run without held-out images."""
    if value is None or (isinstance(value, float) and math.isnan(value)) or value == "":
        return ""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def write_training_runs(ctx: Context, results: Path, notebook: str):
    """results/<profile>/training_runs.csv: every training run notebook `notebook` used (trained,
    loaded from the cache, or scored), how it started, how long its epochs took and whether it
    was ever interrupted and resumed (and whether bit for bit). Rows of other notebooks are kept;
    this notebook's are replaced. Returns this notebook's rows."""
    import pandas as pd

    from mtunet.report.tables import read_table, write_table

    rows = [row for spec, folder in ctx.used.values()
            if (row := run_inventory_row(spec, folder)) is not None]
    mine = pd.DataFrame([{"notebook": notebook, **row} for row in rows], columns=TRAINING_RUN_COLUMNS)
    if ctx.dry_run:
        return mine
    earlier = read_table(results, TRAINING_RUNS)
    if earlier is not None and len(earlier):
        earlier = earlier[earlier["notebook"].astype(str).str.zfill(2) != notebook]
        table = pd.concat([earlier, mine], ignore_index=True) if len(mine) else earlier
    else:
        table = mine
    table = table.assign(notebook=table["notebook"].astype(str).str.zfill(2)).sort_values(
        ["notebook", "run_id"], kind="stable").reset_index(drop=True)
    table = table.reindex(columns=TRAINING_RUN_COLUMNS)
    for column in ("alpha", "seg_loss", "resume_exact"):     # blank: does not apply / never interrupted
        values = table[column].astype(object)
        table[column] = values.where(values.notna() & (values != ""), "")
    table["best_epoch"] = table["best_epoch"].map(_epoch_text)
    write_table(table, results, TRAINING_RUNS, "Training runs used by each notebook",
                note="train_minutes: the epochs' own time (no building, tracing or scoring); "
                     "resumed: continued from a checkpoint after an interruption; resume_exact: "
                     "every restart is known to reproduce the uninterrupted run bit for bit; "
                     "trained_by: the commit that trained it (+changes: with uncommitted changes); "
                     "training_code: the fingerprint of the code that trained it "
                     "(mtunet.code_fingerprint); same_training_code: it is the fingerprint of the "
                     "code that wrote this table.")
    return mine
