"""The statistical claim under Table 2: paired t-tests of MTUnet against each baseline, at the
paper's 10 % level (``paper.SIGNIFICANCE_LEVEL``)."""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from mtunet.config import LESION_GROUPS
from mtunet.models.registry import label
from mtunet.paper import SIGNIFICANCE_LEVEL
from mtunet.report.claims import ALTERNATIVE_TEXT

COLUMNS = ["model", "baseline", "group", "pairing", "alternative", "n", "mean_difference",
           "statistic", "pvalue", "significant_10pct", "note"]
PAIRINGS = ("images", "runs")


def segmentation_ttests(per_image: pd.DataFrame, scores: pd.DataFrame, model: str | None = None,
                        pairing: str = "images", alternative: str = "greater") -> pd.DataFrame:
    """Paired t-tests of `model` (default MTUnet's label) against every other network, for red
    and yellow Dice.

    pairing="images": pair the per-image Dice (averaged over runs) on the same test images
    (n = test images with that lesion); pairing="runs": pair the pooled Dice of run k of each
    network (n = runs). The paper does not say which it used; both are parameters here.
    """
    from mtunet.stats import paired_ttest

    model = model or label("mtunet")
    if pairing not in PAIRINGS:
        raise ValueError(f"pairing must be one of {PAIRINGS}, not {pairing!r}")
    rows = []
    for baseline in [n for n in scores["network"].unique() if n != model]:
        for group in LESION_GROUPS:
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
                         "significant_10pct": result.significant_at(SIGNIFICANCE_LEVEL),
                         "note": getattr(result, "reason", "") or ""})
    return pd.DataFrame(rows, columns=COLUMNS)


def table2_ttests(results: Path, pairing: str = "images", alternative: str = "greater"
                  ) -> pd.DataFrame:
    """The t-tests on the files Table 2 wrote (table2_runs, segmentation_per_image); writes ttests."""
    from mtunet.report.tables import write_table

    results = Path(results)
    scores = pd.read_csv(results / "table2_runs.csv")
    per_image = pd.read_csv(results / "segmentation_per_image.csv")
    tests = segmentation_ttests(per_image, scores, pairing=pairing, alternative=alternative)
    write_table(tests, results, "ttests", f"Paired t-tests, {label('mtunet')} vs each baseline (Dice, %)",
                note=f"Paired by {pairing}; {ALTERNATIVE_TEXT.get(alternative, alternative)}; significant at "
                     f"{100 * SIGNIFICANCE_LEVEL:g} % when p < {SIGNIFICANCE_LEVEL:.2f}.")
    return tests
