"""How long a notebook still needs: the seconds its cells took last time, and the training runs
it used last time that are not trained now.

A cell's time last time (:func:`expected_durations`) knows nothing of the training cache: a
notebook whose runs were cached last time ran its training cells in seconds, and trains for
minutes once the runs are gone (a cold run, or run ids changed with the training code). So the
estimate also reads results/<profile>/training_runs.csv, the runs each notebook used with their
``train_minutes``, and counts the minutes of those whose folder under the notebook's runs dir is
not finished now (:func:`runs_to_train`); :func:`time_left` makes the progress line's text of
both. Nothing here draws or prints (:mod:`mtunet.commands.notebook_progress` does).
"""
from __future__ import annotations

import contextlib
import csv
import dataclasses
import hashlib
import json
from pathlib import Path

from mtunet.errors import UserError

# A run's folder holds one of these when its training has finished: its final weights
# (mtunet.checkpoints.FINAL_WEIGHTS; named here so that the runner need not import Keras), or,
# for a two-step run (variant B), its second step's.
FINISHED_FILES = ("final.npz", "step2-grader/final.npz")
UNKNOWN = "time left unknown"


# -- cell times ------------------------------------------------------------------------------------

def cell_durations(executed: Path) -> dict[str, float]:
    """Seconds each code cell took in an executed notebook (papermill's cell metadata), by
    cell_key. Empty when there is none."""
    try:
        cells = json.loads(executed.read_text())["cells"]
    except (OSError, ValueError, KeyError, TypeError):
        return {}
    durations = {}
    for cell in cells:
        seconds = (cell.get("metadata", {}).get("papermill") or {}).get("duration")
        if cell.get("cell_type") == "code" and isinstance(seconds, (int, float)):
            durations[cell_key(cell)] = float(seconds)
    return durations


INJECTED = "injected-parameters"


def cell_key(cell) -> str:
    """A code cell's name in duration records: a digest of its source; the parameters cell
    papermill injects is INJECTED (its values change, its cost does not)."""
    if "injected-parameters" in (cell.get("metadata", {}).get("tags") or []):
        return INJECTED
    source = cell.get("source", "")
    source = "".join(source) if isinstance(source, list) else source
    return hashlib.sha1(source.encode()).hexdigest()[:16]


def durations_file(profile: str) -> Path:
    """Remembered cell durations of a profile's notebooks: a cache beside its training runs."""
    from mtunet.config import runs_dir

    return runs_dir() / profile / "cell_seconds.json"


def expected_durations(executed: Path, remembered: Path) -> dict[str, float]:
    """Seconds each cell of a notebook is expected to take: the longer of its last executed
    copy's and the remembered ones (remember_durations). A rerun from cached training runs takes
    seconds where the first run trained for minutes; the memory keeps the minutes."""
    durations = cell_durations(executed)
    try:
        memory = json.loads(remembered.read_text()).get(executed.stem, {})
    except (OSError, ValueError, AttributeError):
        memory = {}
    for key, seconds in memory.items():
        if isinstance(seconds, (int, float)):
            durations[key] = max(durations.get(key, 0.0), float(seconds))
    return durations


def remember_durations(remembered: Path, executed: Path) -> None:
    """Record the cell durations of a notebook that just ran: per cell, the longer of this run's
    and half the remembered one (a cell that got faster for good is believed after a few runs).
    A cache: failing to write it is not an error."""
    from mtunet.files import write_text

    new = cell_durations(executed)
    if not new:
        return
    try:
        data = json.loads(remembered.read_text())
    except (OSError, ValueError):
        data = {}
    old = data.get(executed.stem, {}) if isinstance(data, dict) else {}
    data = data if isinstance(data, dict) else {}
    data[executed.stem] = {key: round(max(seconds, 0.5 * float(old.get(key, 0.0))), 2)
                           for key, seconds in new.items()}
    with contextlib.suppress(UserError, OSError):
        write_text(remembered, json.dumps(data, indent=1, sort_keys=True))


# -- training runs -------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class TrainingLeft:
    """The training runs a notebook used last time whose folder is not finished now."""
    runs: tuple[tuple[str, float], ...] = ()   # (run id, train minutes last time) of each
    checked: bool = True    # False: a run id or a to-train run's minutes could not be read

    @property
    def seconds(self) -> float:
        return 60.0 * sum(minutes for _, minutes in self.runs)


def training_runs_used(table: Path, notebook: str) -> list[tuple[str, float | None]] | None:
    """(run id, train minutes) of every training run notebook `notebook` (its number, "04", or
    stem) used last time, from training_runs.csv (mtunet.study.runs.write_training_runs). None
    when the table says nothing of it (no table, or no row for it): a notebook that trains
    nothing, or one never run. An id or minutes that cannot be read is "" or None."""
    try:
        with open(table, newline="") as handle:
            rows = list(csv.DictReader(handle))
    except FileNotFoundError:
        return None
    except (OSError, csv.Error, UnicodeDecodeError):
        return [("", None)]                      # a table there, unreadable: nothing checkable
    number = notebook[:2]
    used = []
    for row in rows:
        name = str(row.get("notebook") or "").strip()
        if name != notebook and name.zfill(2) != number:
            continue
        try:
            minutes = float(row.get("train_minutes") or "")
        except ValueError:
            minutes = None
        used.append((str(row.get("run_id") or "").strip(), minutes))
    return used or None


def is_finished(run: Path) -> bool:
    return any((run / name).exists() for name in FINISHED_FILES)


def finished_since(runs_dir: Path, since: float) -> set[str]:
    """The run folders under `runs_dir` whose training finished at or after `since` (epoch s)."""
    done = set()
    for name in FINISHED_FILES:
        for path in runs_dir.glob(f"*/{name}"):
            with contextlib.suppress(OSError):
                if path.stat().st_mtime >= since:
                    done.add(path.relative_to(runs_dir).parts[0])
    return done


def runs_to_train(used: list[tuple[str, float | None]] | None, runs_dir: Path | None,
                  since: float | None = None) -> TrainingLeft | None:
    """Which of the runs `used` (training_runs_used) are not finished under `runs_dir` now.

    A run id missing from disk is to train (a cold run; or the training code changed, and so the
    id): its minutes last time are the best guess there is. `since` (epoch seconds: when the
    notebook started) counts runs under other ids that finished since then as trained, one
    listed run each, so that a notebook whose ids all changed still counts down. None: nothing
    known of the notebook's training (`used` is None)."""
    if used is None:
        return None
    if runs_dir is None:
        return TrainingLeft(checked=False)
    left, checked = [], True
    for run_id, minutes in used:
        if not run_id or "/" in run_id:
            checked = False
        elif not is_finished(runs_dir / run_id):
            checked = checked and minutes is not None
            left.append((run_id, minutes or 0.0))
    if since is not None and left:
        listed = {run_id for run_id, _ in used}
        others = len(finished_since(runs_dir, since) - listed)
        left = left[others:]
    return TrainingLeft(tuple(left), checked)


# -- the text ------------------------------------------------------------------------------------

def clock_text(seconds: float | None) -> str:
    """1:02:03, 4:05; ? for None."""
    if seconds is None:
        return "?"
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"


def seconds_left(cells_left: float | None, training: TrainingLeft | None) -> float | None:
    """The notebook's time left: its cells' by last time's cell times, or the training minutes
    of the runs still to train where those are more. Not their sum: cell times measured while
    the runs trained already hold the minutes; the cells' own cost besides training is small.
    None where nothing is known (no cell times and no run to train, or runs not checkable)."""
    if training is not None and not training.checked:
        return None
    to_train = training.seconds if training is not None and training.runs else None
    if cells_left is None:
        return to_train
    return max(cells_left, to_train or 0.0)


def time_left(cells_left: float | None, over: bool, training: TrainingLeft | None) -> str:
    """The progress line's time left: "~2:28 left", "≥0:04 left" (`over`: the running cell has
    outlasted its time last time, so only the cells after it count), "~25:00 left (2 runs to
    train)", or UNKNOWN. `cells_left`: seconds by last time's cell times, None without any."""
    left = seconds_left(cells_left, training)
    if left is None:
        return UNKNOWN
    runs = len(training.runs) if training is not None else 0
    by_training = runs and (cells_left is None or left > cells_left)
    mark = "≥" if over and not by_training else "~"
    to_train = f" ({runs} run{'s' if runs != 1 else ''} to train)" if runs else ""
    return f"{mark}{clock_text(left)} left{to_train}"
