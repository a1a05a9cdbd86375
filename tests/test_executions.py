"""The executions file: a notebook's time on the machine survives a failure, Ctrl-C and a kill."""
import threading

import pytest

from mtunet.report.executions import Execution, read_rows, summary
from mtunet.report.readme import wall_time


class Clock:
    def __init__(self):
        self.now = 1_000.0

    def __call__(self):
        return self.now


def test_each_outcome_is_recorded_with_its_seconds(tmp_path):
    path, clock = tmp_path / "runs" / "executions.csv", Clock()
    with Execution(path, "01_a", "0123456789abcdef", clock=clock) as run:
        clock.now += 90
        run.outcome = "done"
    with pytest.raises(ValueError):
        with Execution(path, "02_b", None, clock=clock):
            clock.now += 30
            raise ValueError("a cell failed")
    with pytest.raises(KeyboardInterrupt):
        with Execution(path, "02_b", "abc", clock=clock):
            clock.now += 15
            raise KeyboardInterrupt
    rows = read_rows(path)
    assert [(r["notebook"], r["commit"], r["seconds"], r["outcome"]) for r in rows] == [
        ("01_a", "0123456789ab", "90", "done"), ("02_b", "", "30", "failed"),
        ("02_b", "abc", "15", "interrupted")]
    assert summary(path) == {"seconds": 135, "executions": 3, "stopped": 2,
                             "since": rows[0]["started"]}


def test_a_killed_execution_leaves_its_last_heartbeat(tmp_path):
    """A kill runs no handler: what stays is the row the heartbeat last rewrote."""
    path, clock = tmp_path / "executions.csv", Clock()
    run = Execution(path, "04_c", "abc", clock=clock, heartbeat_s=0.01)
    run.__enter__()
    assert read_rows(path)[0]["outcome"] == "running"
    clock.now += 600
    beat = threading.Event()
    for _ in range(200):                     # wait for a heartbeat to see the new time
        if read_rows(path)[0]["seconds"] == "600":
            beat.set()
            break
        threading.Event().wait(0.01)
    run._stop.set()                          # the process dies here: no __exit__
    assert beat.is_set()
    assert summary(path)["stopped"] == 1 and summary(path)["seconds"] == 600


def test_no_file_no_summary_and_no_sentence(tmp_path):
    assert summary(tmp_path / "none.csv") is None and wall_time(None) == ""
    text = wall_time({"seconds": 5 * 3600 + 360, "executions": 12, "stopped": 3,
                      "since": "2026-11-26T19:55:11Z"})
    assert "5.1 h" in text and "12 executions of the notebooks and the loss selection since 2026-11-26" in text
    assert "3 of them stopped" in text


def test_a_row_added_while_a_notebook_runs_does_not_misplace_its_time(tmp_path):
    path, clock = tmp_path / "executions.csv", Clock()
    with Execution(path, "04_c", "abc", clock=clock) as run:
        rows = read_rows(path)
        rows.insert(0, {"notebook": "select-loss", "commit": "", "started": "2026-01-01T00:00:00Z",
                        "seconds": "60", "outcome": "done"})
        from mtunet.report.executions import _write_rows
        _write_rows(path, rows)
        clock.now += 30
        run.outcome = "done"
    assert [(r["notebook"], r["seconds"], r["outcome"]) for r in read_rows(path)] == [
        ("select-loss", "60", "done"), ("04_c", "30", "done")]


def test_a_damaged_file_loses_its_bad_rows_with_a_warning_and_never_stops_the_batch(tmp_path):
    path = tmp_path / "executions.csv"
    path.write_text("notebook,commit,started,seconds,outcome\n"
                    "01_a,abc,2026-01-01T00:00:00Z,12,done\n"
                    "02_b,abc,2026-01-01T00:01:00Z,twelve,done\n"
                    "03_c,abc\n")
    with pytest.warns(UserWarning, match="not an execution record") as caught:
        assert summary(path)["seconds"] == 12
    assert sorted(str(w.message).split(", line ")[1][:1] for w in caught) == ["3", "4"]
    with pytest.warns(UserWarning):
        with Execution(path, "04_d", "abc", clock=Clock()) as run:
            run.outcome = "done"
    assert [r["notebook"] for r in read_rows(path)] == ["01_a", "04_d"]
