"""What the runner shows: a notebook's progress while it runs, and the batch's lines.

While a notebook runs, :class:`CellProgress` shows which step (the Markdown heading above the
running cell) runs, a bar over the notebook's code cells with the time left (the cells' times
last time, and the training runs not yet trained: mtunet.commands.notebook_estimate), and what
the kernel reports about the training run or scoring in progress ("epoch 2/4", "scoring at full
size 50%"); on a terminal as one redrawn line on stderr, otherwise as plain lines on stdout every
so often. The batch's own lines (a failure, the summary) are made here too; the papermill engine
that feeds the events is in mtunet.commands.notebook_execution.
"""
from __future__ import annotations

import re
import shutil
import sys
import threading
import time
from pathlib import Path

from mtunet.commands.notebook_estimate import (TrainingLeft, cell_key, clock_text, runs_to_train,
                                               time_left)

HEADING = re.compile(r"^ {0,3}(#{1,3})\s+(.+?)\s*#*\s*$", re.M)
EPOCH = re.compile(r"\bEpoch (\d+)/(\d+)")
# the line Keras (verbose=2) prints at the end of an epoch: "18/18 - 22s - 1s/step - loss: ..."
EPOCH_END = re.compile(r"^\s*\d+/\d+ - \d+(?:\.\d+)?m?s - ", re.M)
# a tqdm bar in a stream: "scoring at full size:  50%|█████     | 2/4 [...]"
TQDM = re.compile(r"([^\r\n|:]{1,60}):\s+(\d{1,3})%\|")
# the most the cells done so far may scale the remaining cells' remembered durations: beyond it the
# difference is a run that was cached last time and trains now (or the reverse), not machine speed
MAX_SPEED_RATIO = 3.0
BAR_REFRESH_S = 1.0       # terminal: redraw the progress line this often
PLAIN_EVERY_S = 60.0      # log file / CI: a progress line at least this often while a cell runs
PLAIN_STEP_MIN_S = 10.0   # ... and one when the step changes, at most this often
TRAINING_RECHECK_S = 10.0  # look for runs that finished training at most this often


def duration_text(seconds: float) -> str:
    """7 s, 3 min 25 s, 1 h 02 min."""
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"


def plain_heading(text: str) -> str:
    """A Markdown heading as plain text: no emphasis marks, links as their text (L_B stays)."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", text)
    text = re.sub(r"[*`]|(?<!\w)_+|_+(?!\w)", "", text)
    return " ".join(text.split())


class CellProgress:
    """Progress of one notebook's execution, fed by the papermill engine's cell events.

    The bar runs over the code cells, each weighted by the seconds it took the last time the
    notebook ran (`history`, by cell source); without history every cell weighs the same. The
    cells' time left = the remaining weight x the seconds per unit of weight measured on the
    cells done so far (1 before any is done, when there is history); the running cell counts as
    done in proportion to its elapsed time, up to its weight. The runs the notebook used last
    time (`training_runs`, from notebook_estimate.training_runs_used) that are not finished under
    `runs_dir` count with their training minutes where those are more (looked for again every
    TRAINING_RECHECK_S); with neither cell times nor runs to train, the time left is unknown.
    `bar` (default: stderr is a terminal) redraws one line on stderr every BAR_REFRESH_S;
    otherwise a plain line goes to stdout when the step changes (at most every
    PLAIN_STEP_MIN_S) and at least every PLAIN_EVERY_S.
    """

    def __init__(self, label: str, history: dict[str, float] | None = None, *,
                 training_runs: list[tuple[str, float | None]] | None = None,
                 runs_dir: Path | None = None, bar: bool | None = None, out=None, err=None,
                 clock=time.monotonic, wall=time.time):
        self.label = label
        self.history = history or {}
        self.training_runs = training_runs
        self.runs_dir = runs_dir
        self.training: TrainingLeft | None = None
        self.training_checked = 0.0
        self.wall = wall
        self.wall_started = wall()
        self.bar = sys.stderr.isatty() if bar is None else bar
        self.out = out or sys.stdout
        self.err = err or sys.stderr
        self.clock = clock
        self.lock = threading.RLock()
        self.weights: dict[int, float] = {}
        self.steps: dict[int, str] = {}
        self.done: set[int] = set()
        self.done_seconds = 0.0
        self.current: int | None = None
        self.current_since = 0.0
        self.activity = ""
        self.runs_started = 0
        self.epochs_done = 0
        self.epoch_of = ""
        self.started = self.clock()
        self.last_line = self.started
        self.last_step = ""
        self._drawn = False
        self._stop = threading.Event()
        self._ticker: threading.Thread | None = None

    # -- events -------------------------------------------------------------------------------
    def start(self, cells) -> None:
        step = ""
        known = [self.history[cell_key(c)] for c in cells
                 if c.get("cell_type") == "code" and cell_key(c) in self.history]
        typical = sorted(known)[len(known) // 2] if known else 1.0
        with self.lock:
            for index, cell in enumerate(cells):
                if cell.get("cell_type") == "markdown":
                    headings = HEADING.findall("".join(cell.get("source", "")))
                    if headings:
                        step = plain_heading(headings[-1][1])
                elif cell.get("cell_type") == "code":
                    weight = self.history.get(cell_key(cell), typical) if self.history else 1.0
                    self.weights[index] = max(weight, 0.05)
                    self.steps[index] = step
            self.started = self.clock()
            self.last_line = self.started - PLAIN_STEP_MIN_S  # the first step gets its line
            self.wall_started = self.wall()
            self._check_training()
        self._ticker = threading.Thread(target=self._tick, name="cell-progress", daemon=True)
        self._ticker.start()

    def cell_started(self, index: int) -> None:
        if index not in self.weights:
            return
        with self.lock:
            self.current, self.current_since = index, self.clock()
            self.activity, self.runs_started, self.epochs_done, self.epoch_of = "", 0, 0, ""
            step = self.steps[index]
            changed = step != self.last_step
            self.last_step = step
            if self.bar:
                self._draw()
            elif changed and self.clock() - self.last_line >= PLAIN_STEP_MIN_S:
                self._print_line()

    def cell_finished(self, index: int) -> None:
        if index not in self.weights:
            return
        with self.lock:
            if self.current == index:
                self.done_seconds += self.clock() - self.current_since
                self.current = None
            self.done.add(index)
            self.activity = ""
            self._check_training()
            if self.bar:
                self._draw()

    def stream(self, text) -> None:
        """A stream output of the running cell: keep what it says about training or scoring.
        Keras's "Epoch k/N" (a run with several epochs; "Epoch 1/N" starts a run), its end-of-
        epoch line (counted: runs of one epoch print no "Epoch" line), a tqdm bar's "what: NN%"
        (until it reaches 100 %)."""
        text = "".join(text) if isinstance(text, list) else str(text)
        epochs = EPOCH.findall(text)
        ends = len(EPOCH_END.findall(text))
        bars = TQDM.findall(text)
        if not (epochs or ends or bars):
            return
        with self.lock:
            self.runs_started += sum(1 for k, _ in epochs if k == "1")
            self.epochs_done += ends
            if epochs:
                k, n = epochs[-1]
                run = f"run {self.runs_started}, " if self.runs_started > 1 else ""
                self.epoch_of = f"{run}epoch {k}/{n}"
            training = self.epoch_of or (f"{self.epochs_done} epoch(s) trained"
                                         if self.epochs_done else "")
            what, percent = bars[-1] if bars else ("", "100")
            self.activity = f"{what.strip()} {percent}%" if int(percent) < 100 else training
            if self.bar:
                self._draw()

    def close(self) -> None:
        """Stop the ticker and clear the bar's line (again: a no-op)."""
        self._stop.set()
        if self._ticker is not None and self._ticker is not threading.current_thread():
            self._ticker.join(timeout=5)
        with self.lock:
            if self.bar and self._drawn:
                self.err.write("\r\x1b[K")
                self.err.flush()
                self._drawn = False

    # -- state --------------------------------------------------------------------------------
    def estimate(self) -> tuple[float, float | None, float, bool]:
        """(fraction done, seconds left or None when unknown, seconds elapsed, whether the
        running cell has outlasted its expected time: then `left` is only the cells after it)."""
        now = self.clock()
        total = sum(self.weights.values()) or 1.0
        done_weight = sum(self.weights[i] for i in self.done)
        if done_weight > 0 and self.done_seconds > 0:
            scale = self.done_seconds / done_weight
            if self.history:   # a slower or faster machine, not a cell cached last time and trained now
                scale = min(max(scale, 1 / MAX_SPEED_RATIO), MAX_SPEED_RATIO)
        else:
            scale = 1.0 if self.history else None
        running = 0.0
        left_in_cell = 0.0
        over = False
        if self.current is not None:
            weight = self.weights[self.current]
            in_cell = now - self.current_since
            if scale:
                running = min(in_cell / scale, weight)
                left_in_cell = max(weight * scale - in_cell, 0.0)
                over = in_cell > weight * scale + 5.0
        rest = sum(w for i, w in self.weights.items()
                   if i not in self.done and i != self.current)
        fraction = min((done_weight + running) / total, 1.0)
        left = None if scale is None else left_in_cell + rest * scale
        return fraction, left, now - self.started, over

    def _check_training(self) -> None:
        """Look again which runs are still to train (at the start, after each cell, and from
        :meth:`shown` every TRAINING_RECHECK_S): a few file checks under the runs dir."""
        if self.training_runs is not None:
            self.training = runs_to_train(self.training_runs, self.runs_dir, self.wall_started)
            self.training_checked = self.clock()

    def shown(self) -> tuple[float, float, str]:
        """(fraction done, seconds elapsed, the time-left text) as the line shows them: the cells'
        estimate, unless the runs still to train take longer (then the fraction is the elapsed
        time's share of the elapsed and training time). No cell times: the cells' time unknown."""
        fraction, left, elapsed, over = self.estimate()
        if self.training_runs is not None and \
                self.clock() - self.training_checked >= TRAINING_RECHECK_S:
            self._check_training()
        training = self.training
        cells_left = left if self.history else None
        if training is not None and training.checked and training.seconds > (cells_left or 0.0):
            fraction = min(fraction, elapsed / (elapsed + training.seconds))
        return fraction, elapsed, time_left(cells_left, over, training)

    def describe(self) -> str:
        fraction, elapsed, left_text = self.shown()
        code_cells = sorted(self.weights)
        position = (code_cells.index(self.current) + 1 if self.current in self.weights
                    else len(self.done))
        # the times first: a narrow terminal cuts the line's end
        parts = [f"{fraction * 100:3.0f}%", f"{clock_text(elapsed)} elapsed, {left_text}",
                 f"cell {position}/{len(code_cells)}"]
        if self.last_step:  # shortened: what the kernel reports comes after it
            step = self.last_step
            parts.append(step if len(step) <= 40 else step[:39].rstrip() + "…")
        if self.activity:
            parts.append(self.activity)
        return " · ".join(parts)

    # -- output -------------------------------------------------------------------------------
    def _draw(self) -> None:
        fraction = self.shown()[0]
        width = 20
        filled = fraction * width
        full = int(filled)
        partial = " ▏▎▍▌▋▊▉"[int((filled - full) * 8)] if full < width else ""
        bar = ("█" * full + partial).ljust(width)
        line = f"{self.label} |{bar}| {self.describe()}"
        columns = shutil.get_terminal_size((100, 20)).columns
        if len(line) >= columns:
            line = line[:max(columns - 2, 10)] + "…"
        self.err.write("\r" + line + "\x1b[K")
        self.err.flush()
        self._drawn = True

    def _print_line(self) -> None:
        print(f"  {self.label} {self.describe()}", file=self.out, flush=True)
        self.last_line = self.clock()

    def _tick(self) -> None:
        while not self._stop.wait(BAR_REFRESH_S if self.bar else 1.0):
            with self.lock:
                if self.bar:
                    self._draw()
                elif self.current is not None and self.clock() - self.last_line >= PLAIN_EVERY_S:
                    self._print_line()



def failure_message(exc: Exception, notebook: Path, output: Path) -> str:
    """What a notebook that failed in a cell gets on stderr (papermill's exception names it)."""
    cell = getattr(exc, "exec_count", None)
    ename = getattr(exc, "ename", type(exc).__name__)
    evalue = getattr(exc, "evalue", str(exc))
    where = f"cell [{cell}]" if cell is not None else "a cell"
    return (f"notebook {notebook.name} failed in {where}: {ename}: {evalue}\n"
            f"  the executed notebook with the traceback: {output}")


def stopped_line(profile: str, notebook: str, seconds: float, ran_before: int) -> str:
    return (f"profile {profile}: stopped at {notebook} after {seconds / 60:.1f} min "
            f"({ran_before} notebook(s) run before it)")


def summary_line(profile: str, timings: dict[str, float], skipped: int, unselected: int,
                 seconds: float) -> str:
    """The batch's last line: what ran (seconds each), what was up to date, what not chosen."""
    ran = ", ".join(f"{k[:2]} {v:.0f}s" for k, v in timings.items()) or "nothing to do"
    return (f"profile {profile}: {len(timings)} notebook(s) run in {seconds / 60:.1f} min, "
            f"{skipped} up to date, {unselected} not selected ({ran})")
