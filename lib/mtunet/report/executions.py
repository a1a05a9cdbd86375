"""How long a profile's notebooks have run on this machine, kills included.

A batch that spans days, restarts and killed processes has no single wall time to print at its
end. The runner therefore keeps ``runs/<profile>/executions.csv``: one row per notebook
execution (notebook, commit, start, seconds, outcome), and the loss selection adds its own row
("select-loss"). A row is written when the notebook
starts and its seconds are rewritten every minute while it runs, so a process killed outright
(no handler runs) still leaves its time, to the minute, in a row whose outcome stays "running".
The sum over all rows is what the results cost on this machine: an upper bound on a cold run,
which repeats no notebook.
"""
from __future__ import annotations

import csv
import io
import threading
import time
import warnings
from pathlib import Path

from mtunet.files import write_text

COLUMNS = ("notebook", "commit", "started", "seconds", "outcome")
RUNNING = "running"        # still executing, or killed before it could say otherwise
HEARTBEAT_S = 60.0


def read_rows(path: Path) -> list[dict[str, str]]:
    """The rows of an executions file ([] when there is none). Bookkeeping never stops a batch:
    a row that is not a record of an execution (a torn or hand-edited file) is dropped with a
    warning naming the file and the line."""
    try:
        text = Path(path).read_text()
    except FileNotFoundError:
        return []
    rows = []
    for line, row in enumerate(csv.DictReader(io.StringIO(text)), start=2):
        try:
            float(row.get("seconds") or "")
            if not all(row.get(k) is not None for k in COLUMNS):
                raise ValueError
        except (TypeError, ValueError):
            warnings.warn(f"{path}, line {line}: not an execution record ({row}); left out",
                          stacklevel=2)
            continue
        rows.append(row)
    return rows


def _write_rows(path: Path, rows: list[dict[str, str]]) -> None:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows({k: row.get(k, "") for k in COLUMNS} for row in rows)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text(path, buffer.getvalue())


class Execution:
    """One notebook's row in the executions file, kept current while the notebook runs.

    ``with Execution(path, "04_x", commit) as run: ...; run.outcome = "done"`` — an exception
    leaves "failed", Ctrl-C "interrupted", a kill the last heartbeat's seconds and "running"
    (which ``summary`` counts as stopped).
    """

    def __init__(self, path: Path, notebook: str, commit: str | None, *,
                 heartbeat_s: float = HEARTBEAT_S, clock=time.time):
        self.path = Path(path)
        self.notebook = notebook
        self.commit = commit or ""
        self.clock = clock
        self.heartbeat_s = heartbeat_s
        self.outcome = "failed"
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._started = ""
        self._t0 = 0.0
        self._thread: threading.Thread | None = None

    def __enter__(self) -> "Execution":
        self._t0 = self.clock()
        rows = read_rows(self.path)
        self._started = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self._t0))
        rows.append({"notebook": self.notebook, "commit": self.commit[:12],
                     "started": self._started, "seconds": "0", "outcome": RUNNING})
        _write_rows(self.path, rows)
        self._thread = threading.Thread(target=self._beat, name="executions", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        if exc_type is not None:
            self.outcome = "interrupted" if issubclass(exc_type, KeyboardInterrupt) else "failed"
        self._update(self.outcome)

    def _beat(self) -> None:
        while not self._stop.wait(self.heartbeat_s):
            self._update(RUNNING)

    def _update(self, outcome: str) -> None:
        with self._lock:
            rows = read_rows(self.path)
            # found by what it holds, not where: a row added or removed meanwhile moves it
            mine = [row for row in rows if (row["notebook"], row["started"], row["outcome"])
                    == (self.notebook, self._started, RUNNING)]
            if not mine:
                return      # the row or the file was removed under us: nothing to keep current
            mine[-1].update(seconds=f"{self.clock() - self._t0:.0f}", outcome=outcome)
            _write_rows(self.path, rows)


def summary(path: Path) -> dict[str, object] | None:
    """Seconds, executions and stopped executions (killed, interrupted or failed) in an
    executions file; None without one. A row still "running" is one a kill ended: call this
    while no other batch of the profile runs (the runner holds the profile's lock)."""
    rows = read_rows(path)
    if not rows:
        return None
    return {"seconds": round(sum(float(r["seconds"] or 0) for r in rows)),
            "executions": len(rows),
            "stopped": sum(r["outcome"] != "done" for r in rows),
            "since": min(r["started"] for r in rows)}
