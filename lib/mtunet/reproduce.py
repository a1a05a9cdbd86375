"""The experiments behind each table, as functions the notebooks call.

Each function trains (or finds cached) one run per model x seed with `mtunet.experiments`,
scores it on the test role, and returns long-form frames: one row per (network, seed, metric)
for the tables, one row per (network, seed, image) for the paired t-tests.
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd

from mtunet.config import GRADE_NAMES, REPO_ROOT
from mtunet.data.records import Record
from mtunet.experiments import RunSpec, cached_eval, train_run

SEGMENTATION_BASELINES = {"unet": "UNet", "linknet": "LinkNet", "fpn": "Feature Pyramid",
                          "deeplabv3": "DeepLabv3", "mtunet": "MTUNet"}
GRADING_BASELINES = {"nasnet_large": "NASNet", "nasnet_mobile": "NASNet",
                     "densenet201": "DenseNet-201", "resnext101": "ResNeXt-101",
                     "inception_resnet_v2": "InceptionResNetV2", "mtunet": "MTUnet"}
VARIANTS = {"variant_a": "Variant A", "variant_b": "Variant B", "mtunet": "Variant C"}
ENCODERS = {"mtunet": "VGG16", "mtunet_resnet50": "ResNet50",
            "mtunet_inception_v3": "InceptionV3", "mtunet_densenet121": "DenseNet121"}


def repo_path(path: str | Path) -> Path:
    """Relative paths in notebook parameters are relative to the repository root."""
    path = Path(path)
    return path if path.is_absolute() else REPO_ROOT / path


@dataclasses.dataclass
class Context:
    """What every experiment of one profile shares (built from the notebook's parameters)."""

    profile: str
    runs_dir: Path
    base: RunSpec
    dry_run: bool = False

    @classmethod
    def from_parameters(cls, profile: str, runs_dir: str, image_size: int, epochs: int,
                        batch_size: int, learning_rate: float, encoder_weights: str | None,
                        steps_per_epoch: int | None = None, jit_compile: bool | str = False,
                        mixed_precision: bool = False, dry_run: bool = False,
                        augment: bool = True, run_eagerly: bool = False,
                        seg_loss: str = "bce") -> "Context":
        from mtunet.losses import segmentation_loss

        segmentation_loss(seg_loss)  # an unknown loss name fails here, before any training
        base = RunSpec(model="mtunet", image_size=image_size, epochs=epochs, seg_loss=seg_loss,
                       batch_size=batch_size, learning_rate=learning_rate,
                       encoder_weights=encoder_weights, steps_per_epoch=steps_per_epoch,
                       jit_compile=jit_compile, mixed_precision=mixed_precision, augment=augment,
                       run_eagerly=run_eagerly)
        return cls(profile, repo_path(runs_dir), base, dry_run)

    def spec(self, **changes: Any) -> RunSpec:
        return dataclasses.replace(self.base, **changes)

    def train(self, spec: RunSpec, records: Sequence[Record]):
        if self.dry_run:
            return build_only(spec)
        return train_run(spec, records, self.profile, runs_root=self.runs_dir, verbose=2)

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
        return cached_eval(kind, loader or self.loader(spec, train_records), spec, train_records,
                           test_name, test_records, self.profile, runs_root=self.runs_dir)


def build_only(spec: RunSpec):
    """--dry-run: build the model (checks the parameters and the input size), train nothing."""
    from mtunet.models.registry import build_model

    n_classes = 6 if spec.include_od else 5
    return build_model(spec.model, (spec.image_size, spec.image_size, 3),
                       n_seg_classes=n_classes, encoder_weights=None)


def input_size_for(model: str, size: int) -> int:
    """`size`, or the model's smallest valid input when `size` is below it (InceptionV3: 75 px)."""
    from mtunet.models.registry import MODELS

    spec = MODELS[model]
    size = max(size, spec.min_input)
    return -(-size // spec.multiple) * spec.multiple


def segmentation_rows(network: str, seed: int, evaluation) -> tuple[list[dict], list[dict]]:
    """(table rows: red/yellow pooled Dice in %, per-image rows for the t-tests)."""
    scores = [{"network": network, "seed": seed, "metric": group,
               "value": 100 * evaluation.scores[f"{group}_dice_pooled"]}
              for group in ("red", "yellow")]
    per_image = [{"network": network, "seed": seed, "image_id": image_id, "group": group,
                  "dice": 100 * float(evaluation.per_image[group][i])}
                 for group in ("red", "yellow") for i, image_id in enumerate(evaluation.image_ids)]
    return scores, per_image


def grading_rows(network: str, seed: int, evaluation) -> list[dict]:
    return [{"network": network, "seed": seed, "grade": name, "value": 100 * float(auc)}
            for name, auc in zip(GRADE_NAMES, evaluation.auc)]


def run_segmentation_study(ctx: Context, models: Sequence[str], seeds: Sequence[int],
                           train: Sequence[Record], test: Sequence[Record], tag: str,
                           names: dict[str, str] = SEGMENTATION_BASELINES,
                           train_for: dict[str, Sequence[Record]] | None = None):
    """Train every segmenter x seed on `train` (or `train_for[model]`), score on `test`.

    Returns (scores: network/seed/metric/value, per_image: network/seed/image_id/group/dice,
    evaluations: {(model, seed): SegmentationEval}).
    """
    scores, per_image, evaluations = [], [], {}
    for model in models:
        records = (train_for or {}).get(model, train)
        for seed in seeds:
            spec = ctx.spec(model=model, seed=seed, tag=tag,
                            image_size=input_size_for(model, ctx.base.image_size))
            if ctx.dry_run:
                ctx.train(spec, records)
                continue
            evaluation = ctx.score("seg", spec, records, "seg_test", test)
            evaluations[(model, seed)] = evaluation
            s, p = segmentation_rows(names.get(model, model), seed, evaluation)
            scores += s
            per_image += p
    return (pd.DataFrame(scores, columns=["network", "seed", "metric", "value"]),
            pd.DataFrame(per_image, columns=["network", "seed", "image_id", "group", "dice"]),
            evaluations)


def run_grading_study(ctx: Context, models: Sequence[str], seeds: Sequence[int],
                      train: Sequence[Record], tests: dict[str, Sequence[Record]], tag: str,
                      image_size: int | None = None,
                      names: dict[str, str] = GRADING_BASELINES):
    """Train every grader x seed on `train`; per-grade ROC AUC on each non-empty test role.

    Returns ({test_name: scores frame network/seed/grade/value}, {(model, seed, test): GradingEval}).
    """
    scores: dict[str, list[dict]] = {name: [] for name in tests}
    evaluations = {}
    for model in models:
        for seed in seeds:
            size = ctx.base.image_size if model == "mtunet" or image_size is None else image_size
            spec = ctx.spec(model=model, seed=seed, tag=tag, image_size=input_size_for(model, size))
            if ctx.dry_run:
                ctx.train(spec, train)
                continue
            for test_name, test in tests.items():
                if not test:
                    continue
                evaluation = ctx.score("grade", spec, train, test_name, test)
                evaluations[(model, seed, test_name)] = evaluation
                scores[test_name] += grading_rows(names.get(model, model), seed, evaluation)
    return {k: pd.DataFrame(v, columns=["network", "seed", "grade", "value"])
            for k, v in scores.items()}, evaluations


def variant_scores(ctx: Context, seeds: Sequence[int], train: Sequence[Record],
                   seg_test: Sequence[Record], grade_test: Sequence[Record], tag: str,
                   variants: dict[str, str] = VARIANTS, **spec_changes: Any) -> pd.DataFrame:
    """Table 1 (and the ablations): Dice = mean of red and yellow pooled Dice on `seg_test`,
    ROC = mean over grades of the one-vs-rest AUC on `grade_test`, per network and seed."""
    rows = []
    for model, label in variants.items():
        for seed in seeds:
            spec = ctx.spec(model=model, seed=seed, tag=tag, **spec_changes)
            if ctx.dry_run:
                ctx.train(spec, train)
                continue
            load = ctx.loader(spec, train)
            seg = ctx.score("seg", spec, train, "seg_test", seg_test, loader=load)
            grade = ctx.score("grade", spec, train, "grade_test", grade_test, loader=load)
            dice = 50 * (seg.scores["red_dice_pooled"] + seg.scores["yellow_dice_pooled"])
            rows.append({"network": label, "seed": seed, "metric": "dice", "value": dice})
            rows.append({"network": label, "seed": seed, "metric": "roc",
                         "value": 100 * float(np.nanmean(grade.auc))})
            rows.append({"network": label, "seed": seed, "metric": "red_dice",
                         "value": 100 * seg.scores["red_dice_pooled"]})
            rows.append({"network": label, "seed": seed, "metric": "yellow_dice",
                         "value": 100 * seg.scores["yellow_dice_pooled"]})
    return pd.DataFrame(rows, columns=["network", "seed", "metric", "value"])


def with_pseudo_grades(records: Sequence[Record], grader, image_size: int) -> list[Record]:
    """IDRiD-S has no grades: the paper grades it with the semi-supervised model (Fig. 7)."""
    from mtunet.data.pipeline import load_arrays
    from mtunet.evaluate import predict_batches

    images, _, _ = load_arrays(list(records), image_size, progress=False)
    prob = predict_batches(grader, images)["grade"]
    return [dataclasses.replace(r, grade=int(g)) for r, g in zip(records, prob.argmax(axis=1))]


TTEST_COLUMNS = ["model", "baseline", "group", "pairing", "alternative", "n", "mean_difference",
                 "statistic", "pvalue", "significant_10pct", "note"]


def segmentation_ttests(per_image: pd.DataFrame, scores: pd.DataFrame, model: str = "MTUNet",
                        pairing: str = "images", alternative: str = "two-sided") -> pd.DataFrame:
    """Paired t-tests of `model` against every other network, for red and yellow Dice.

    pairing="images": pair the per-image Dice (averaged over runs) on the same test images
    (n = test images with that lesion); pairing="runs": pair the pooled Dice of run k of each
    network (n = runs). The paper does not say which it used; both are parameters here.
    """
    from mtunet.stats import paired_ttest

    if pairing not in ("images", "runs"):
        raise ValueError(f"pairing must be 'images' or 'runs', not {pairing!r}")
    rows = []
    for baseline in [n for n in scores["network"].unique() if n != model]:
        for group in ("red", "yellow"):
            if pairing == "images":
                frame = (per_image[per_image["group"] == group]
                         .groupby(["network", "image_id"])["dice"].mean().unstack("network"))
            else:
                frame = (scores[scores["metric"] == group]
                         .pivot_table(index="seed", columns="network", values="value"))
            if model not in frame or baseline not in frame:
                continue
            pair = frame[[model, baseline]].dropna()
            result = paired_ttest(pair[model].to_numpy(), pair[baseline].to_numpy(), alternative)
            rows.append({"model": model, "baseline": baseline, "group": group,
                         "pairing": pairing, "alternative": alternative, "n": result.n,
                         "mean_difference": result.mean_diff, "statistic": result.statistic,
                         "pvalue": result.pvalue,
                         "significant_10pct": result.significant_at(0.10),
                         "note": getattr(result, "reason", "") or ""})
    return pd.DataFrame(rows, columns=TTEST_COLUMNS)


def summarise_ablation(scores: pd.DataFrame, parameter: str) -> pd.DataFrame:
    """Ablation rows (one per parameter value): mean Dice, red, yellow and mean ROC over runs."""
    wide = scores.pivot_table(index=[parameter, "seed"], columns="metric", values="value")
    return wide.groupby(level=0).mean().reset_index()


def paper_vs_reproduced(results_dir: Path, profile: str) -> str:
    """The Markdown summary: every table side by side with the paper, and the claims table."""
    from mtunet.claims import claims_table
    from mtunet.report import to_markdown

    results_dir = Path(results_dir)
    parts = [f"# Paper vs reproduced — profile `{profile}`\n",
             "Numbers in percent. *ours* = mean ± std over runs (sample std, ddof = 1); "
             "*difference* = ours − paper. Empty cells: not run in this profile (see *status*).\n"]
    sections = [("table1_variants", "Table 1 — network variants"),
                ("ablation_alpha", "Ablation — α of Eq. 3 (MTUnet)"),
                ("ablation_loss", "Ablation — segmentation loss (MTUnet)"),
                ("table2_segmentation", "Table 2 — lesion segmentation Dice"),
                ("fig6_encoders", "Fig. 6 — encoders of MTUnet"),
                ("table3_grading_internal", "Table 3 — grading ROC AUC per grade"),
                ("table4_grading_external", "Table 4 — grading ROC AUC, external set"),
                ("ttests", "Paired t-tests (text under Table 2)")]
    for name, title in sections:
        path = results_dir / f"{name}.md"
        if path.exists():
            parts.append(path.read_text().replace("### ", "## ", 1))
        else:
            parts.append(f"## {title}\n\nnot produced in this profile\n")
    parts.append(to_markdown(claims_table(results_dir), "Claims").replace("### ", "## ", 1))
    text = "\n".join(parts)
    (results_dir / "paper_vs_reproduced.md").write_text(text)
    return text


def seed_segmenter_spec(ctx: Context, seed_model: str, seed_epochs: int) -> RunSpec:
    """The initial segmenter of Fig. 7 (notebooks 02 and 03 must agree on it)."""
    return ctx.spec(model=seed_model, epochs=seed_epochs, seed=0, tag="seed_segmenter")


def seed_scores_table(evaluation) -> pd.DataFrame:
    rows = [{"group": g, "dice_pooled": 100 * evaluation.scores[f"{g}_dice_pooled"],
             "dice_per_image": 100 * evaluation.scores[f"{g}_dice_per_image"],
             "images_with_lesion": evaluation.scores.get(f"{g}_n_images")}
            for g in ("red", "yellow", "MA", "HE", "EX", "SE")]
    return pd.DataFrame(rows)


def run_history(ctx: Context, spec: RunSpec, records: Sequence[Record]) -> pd.DataFrame:
    """The per-epoch log (history.csv) of a trained run."""
    path = ctx.runs_dir / spec.run_id(records) / "history.csv"
    return pd.read_csv(path) if path.exists() else pd.DataFrame()


def test_example(records: Sequence[Record], image_size: int, index: int = 0):
    """(image, ground-truth class map) of one test record at the working resolution."""
    from mtunet.data.preprocess import prepare_example

    return prepare_example(records[index], image_size)


def example_indexes(records: Sequence[Record], n: int = 2) -> list[int]:
    """Test images with the most annotated lesion types first (the most informative overlays)."""
    order = sorted(range(len(records)), key=lambda i: (-len(records[i].masks), records[i].image_id))
    return order[:n]


PSEUDO_FILE = "pseudo_labels.csv"


def pseudo_mask_dir(ctx: Context, seed_spec: RunSpec, seed_records: Sequence[Record]) -> Path:
    """Where the pseudo masks of this seed segmenter go (under runs/, git-ignored)."""
    return ctx.runs_dir / "pseudo_labels" / seed_spec.key(seed_records)


def save_pseudo_labels(results_dir: Path, table: pd.DataFrame, mask_dir: Path) -> None:
    results_dir = Path(results_dir)
    table.to_csv(results_dir / PSEUDO_FILE, index=False)
    try:
        where = str(Path(mask_dir).resolve().relative_to(REPO_ROOT))
    except ValueError:
        where = str(mask_dir)
    (results_dir / "pseudo_labels.json").write_text(json.dumps({"mask_dir": where}, indent=2))


def load_pseudo_labelled(results_dir: Path, records: Sequence[Record]) -> list[Record]:
    """The grade-only training records with the masks notebook 03 wrote."""
    from mtunet.errors import UserError
    from mtunet.pseudo_labels import attach_masks

    meta = Path(results_dir) / "pseudo_labels.json"
    if not meta.exists():
        raise UserError(f"{meta}: missing; run notebook 03_pseudo_labelling first")
    return attach_masks(records, repo_path(json.loads(meta.read_text())["mask_dir"]))


def grading_test_set(splits, role: str = "auto") -> tuple[str, list[Record]]:
    """The grading test role: IDRiD-D test when its images exist (the paper's), else EyePACS."""
    if role == "auto":
        role = "idrid_grading_test" if splits["idrid_grading_test"] else "grade_test"
    return role, splits[role]


def grade_seg_train(ctx: Context, seg_train: Sequence[Record], pseudo_train: Sequence[Record],
                    seed: int) -> list[Record]:
    """IDRiD-S training images with grades predicted by the Table-1 variant C model."""
    if ctx.dry_run:
        return [dataclasses.replace(r, grade=0) for r in seg_train]
    grader = ctx.train(ctx.spec(model="mtunet", seed=seed, tag="table1"), pseudo_train)
    return with_pseudo_grades(seg_train, grader, ctx.base.image_size)


def dice_intervals(evaluations: dict, test: Sequence[Record], image_size: int) -> pd.DataFrame:
    """95 % bootstrap intervals (over test images) of pooled Dice, first seed of each network."""
    from mtunet.data.pipeline import load_arrays
    from mtunet.metrics import dice_ci

    if not evaluations:
        return pd.DataFrame(columns=["network", "metric", "ci_low", "ci_high"])
    _, truth, _ = load_arrays(list(test), image_size, progress=False)
    rows, seen = [], set()
    for (model, seed), evaluation in sorted(evaluations.items(), key=lambda kv: kv[0][1]):
        if model in seen:
            continue
        seen.add(model)
        for group in ("red", "yellow"):
            low, high = dice_ci(evaluation.pred_maps, truth, group)
            rows.append({"network": SEGMENTATION_BASELINES.get(model, model), "metric": group,
                         "ci_low": 100 * low, "ci_high": 100 * high})
    return pd.DataFrame(rows)


def grading_summary(*evaluation_dicts: dict, test_name: str) -> pd.DataFrame:
    """Quadratic kappa, ECE and mean AUC per (model, seed) on one test role."""
    from mtunet.metrics import expected_calibration_error, quadratic_kappa

    rows = []
    for evaluations in evaluation_dicts:
        for (model, seed, name), ev in evaluations.items():
            if name != test_name:
                continue
            rows.append({"network": GRADING_BASELINES.get(model, model), "seed": seed,
                         "mean_auc": 100 * float(np.nanmean(ev.auc)),
                         "kappa": quadratic_kappa(ev.y_true, ev.prob.argmax(1)),
                         "ece": expected_calibration_error(ev.y_true, ev.prob),
                         "accuracy": 100 * float((ev.prob.argmax(1) == ev.y_true).mean())})
    return pd.DataFrame(rows)


def encoder_init_comparison(ctx: Context, model: str, epochs: int, inits: Sequence[str],
                            train: Sequence[Record], test: Sequence[Record]) -> pd.DataFrame:
    """The same segmenter trained from each encoder initialisation; Dice on `test` (%)."""
    rows = []
    for init in inits:
        spec = ctx.spec(model=model, epochs=epochs, seed=0, tag="encoder_init", encoder_weights=init)
        if ctx.dry_run:
            ctx.train(spec, train)
            continue
        loader = ctx.loader(spec, train)
        evaluation = ctx.score("seg", spec, train, "seg_test", test, loader=loader)
        used = json.loads((ctx.runs_dir / spec.run_id(train) / "run.json").read_text())
        rows.append({"model": model, "encoder_weights": init,
                     "encoder_init_used": used.get("encoder_init", ""),
                     **{f"{g}_dice_{kind}": 100 * evaluation.scores[f"{g}_dice_{kind}"]
                        for g in ("red", "yellow") for kind in ("pooled", "per_image")}})
    return pd.DataFrame(rows, columns=["model", "encoder_weights", "encoder_init_used"] + [
        f"{g}_dice_{kind}" for g in ("red", "yellow") for kind in ("pooled", "per_image")])
