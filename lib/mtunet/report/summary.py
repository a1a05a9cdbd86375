"""paper_vs_reproduced.md: every table of a profile beside the paper's, then the claims table.

It sits above both :mod:`mtunet.report.tables` (which writes and reads the tables) and
:mod:`mtunet.report.claims` (which reads them to decide the paper's claims).
"""
from __future__ import annotations

from pathlib import Path

from mtunet.files import write_text
from mtunet.report.claims import claims_table
from mtunet.report.tables import to_markdown

SUMMARY_SECTIONS = [("table1_variants", "Table 1 — network variants"),
                    ("ablation_alpha", "Ablation — α of Eq. 3 (MTUnet)"),
                    ("ablation_loss", "Ablation — segmentation loss (MTUnet)"),
                    ("table2_segmentation", "Table 2 — lesion segmentation Dice"),
                    ("table2_aupr", "Table 2 — AUPR per lesion"),
                    ("fig6_encoders", "Fig. 6 — encoders of MTUnet"),
                    ("table3_grading_internal", "Table 3 — grading ROC AUC per grade"),
                    ("table4_grading_external", "Table 4 — grading ROC AUC, external set"),
                    ("ttests", "Paired t-tests (text under Table 2)")]


def paper_vs_reproduced(results_dir: Path, profile: str) -> str:
    """The Markdown summary: every table side by side with the paper, and the claims table;
    written to paper_vs_reproduced.md."""
    results_dir = Path(results_dir)
    parts = [f"# Paper vs reproduced — profile `{profile}`\n",
             "Numbers in percent. *ours* = mean ± std over runs (sample std, ddof = 1); "
             "*difference* = ours − paper. Empty cells: not run in this profile (see *status*).\n"]
    for name, title in SUMMARY_SECTIONS:
        path = results_dir / f"{name}.md"
        if path.exists():
            parts.append(path.read_text().replace("### ", "## ", 1))
        else:
            parts.append(f"## {title}\n\nnot produced in this profile\n")
    parts.append(to_markdown(claims_table(results_dir), "Claims").replace("### ", "## ", 1))
    text = "\n".join(parts)
    write_text(results_dir / "paper_vs_reproduced.md", text)
    return text
