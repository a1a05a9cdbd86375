"""Names shared by every part of the study: classes, lesion groups, grades and default paths.

The paper's segmentation map is h x w x 5 with a per-pixel softmax. We read the five channels as
background, microaneurysms (MA), haemorrhages (HE), hard exudates (EX) and soft exudates (SE);
the optic disc (OD) is an optional sixth channel (Fig. 6 shows it in purple).
"""
from __future__ import annotations

import numbers
import os
from pathlib import Path

LESIONS: tuple[str, ...] = ("MA", "HE", "EX", "SE")
LESION_NAMES = {"MA": "Microaneurysms", "HE": "Haemorrhages", "EX": "Hard Exudates",
                "SE": "Soft Exudates", "OD": "Optic Disc"}
CLASS_NAMES: tuple[str, ...] = ("background",) + LESIONS
CLASS_NAMES_WITH_OD: tuple[str, ...] = CLASS_NAMES + ("OD",)
CLASS_INDEX = {name: i for i, name in enumerate(CLASS_NAMES_WITH_OD)}
# Label-map value of a pixel the segmentation loss ignores (taught neither as a lesion nor as
# background): the lesions a record's masks cannot be trusted with (Record.ignored). One-hot, it
# is an all-zero row (mtunet.data.preprocess.one_hot_labels), which the losses skip.
IGNORE_LABEL = 255

# Lesion groups the paper reports Dice for (Table 2): red = MA u HE, yellow = EX u SE.
LESION_GROUPS: dict[str, tuple[int, ...]] = {
    "red": (CLASS_INDEX["MA"], CLASS_INDEX["HE"]),
    "yellow": (CLASS_INDEX["EX"], CLASS_INDEX["SE"]),
}

N_GRADES = 5
GRADE_NAMES: tuple[str, ...] = ("No DR", "Mild", "Moderate", "Severe", "Proliferative")



def group_classes(group) -> tuple[int, ...]:
    """Class indexes of a lesion group: "red"/"yellow", a lesion name ("MA"), an int or a tuple."""
    if isinstance(group, str):
        if group in LESION_GROUPS:
            return tuple(LESION_GROUPS[group])
        if group in CLASS_INDEX:
            return (CLASS_INDEX[group],)
        raise ValueError(f"unknown lesion group {group!r}; use one of "
                         f"{sorted(LESION_GROUPS) + list(CLASS_INDEX)} or a tuple of indexes")
    if isinstance(group, numbers.Integral):
        return (int(group),)
    return tuple(int(g) for g in group)


# Colours of the lesion overlays (RGB), as in the paper's Fig. 6.
CLASS_COLOURS = {"MA": (255, 40, 40), "HE": (200, 0, 0), "EX": (255, 230, 0),
                 "SE": (255, 170, 0), "OD": (160, 60, 220)}

PROJECT_MARKERS = ("profiles", "notebooks")   # folders that make a directory the project root


def project_root(start: Path | None = None) -> Path:
    """The project folder outputs are written under: $MTUNET_PROJECT_DIR, else the nearest folder
    at or above the working directory that holds profiles/ and notebooks/, else the working
    directory. Never the package's own location: an installed package must not write into
    site-packages."""
    env = os.environ.get("MTUNET_PROJECT_DIR")
    if env:
        return Path(env).resolve()
    here = Path(start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if all((folder / marker).is_dir() for marker in PROJECT_MARKERS):
            return folder
    return here


def resolve_path(path: str | Path) -> Path:
    """Relative paths in parameters and options are relative to the project root."""
    path = Path(path)
    return path if path.is_absolute() else project_root() / path


def relative_to_project(path: str | Path) -> str:
    """`path` relative to the project root where it lies inside it (executed notebooks and
    result files name no machine paths), else as given."""
    try:
        return str(Path(path).resolve().relative_to(project_root()))
    except ValueError:
        return str(path)


def n_seg_classes(include_od: bool = False) -> int:
    """Channels of the segmentation map: background + the four lesions (+ the optic disc)."""
    return len(CLASS_NAMES_WITH_OD) if include_od else len(CLASS_NAMES)


def default_data_dir() -> Path:
    """Where the real datasets live: $MTUNET_DATA_DIR, else ../shared/data beside the project."""
    env = os.environ.get("MTUNET_DATA_DIR")
    return Path(env) if env else project_root().parent / "shared" / "data"


def runs_dir() -> Path:
    """Git-ignored folder for checkpoints, logs and caches ($MTUNET_RUNS_DIR overrides)."""
    env = os.environ.get("MTUNET_RUNS_DIR")
    return Path(env) if env else project_root() / "runs"
