"""Batch runner behind `run_all.sh`: executes notebooks/NN_*.ipynb in order with papermill.

A profile (profiles/<name>.yaml) is data:

    description: one line
    parameters:            # papermill parameters; each notebook receives the ones it declares
      image_size: 64
      ...
    notebooks:             # optional per-notebook overrides
      04_variant_ablation: {alpha_values: [0.1, 1.0]}

A parameter that no notebook declares (or that an override gives a notebook that does not
declare it) is an error, not papermill's silent warning. A notebook is skipped when its
executed copy exists and the stamp of (notebook source, library source, its parameters and the
stamps of the notebooks before it) is unchanged; `--force` reruns it. Training runs inside the
notebooks are cached separately (mtunet.study.runs), so a rerun only re-trains what changed.

While a notebook runs, the runner shows which step (the Markdown heading above the running cell)
runs, a progress bar over the notebook's code cells with an estimate of the time left (weighted by
how long each cell took the last time the notebook ran), and what the kernel reports about the
training run or scoring in progress ("epoch 2/4", "scoring at full size 50%"); on a terminal as
one redrawn line on stderr, otherwise as plain lines on stdout every so often. After a batch that
ran a notebook it writes results/<profile>/report.html (mtunet.report.html).

Kernels start quietly: with CurveZMQ keys (jupyter_client's transport_encryption), so ipykernel
has no "running over TCP without encryption" warning to log, and with an output stream that drops
TensorFlow's known start-up lines, which C++ code writes to the kernel's stderr before Python
logging exists (see KERNEL_NOISE); every other line, Python or C++, still reaches the notebook.
"""
from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import re
import shutil
import sys
import threading
import time
from pathlib import Path
from typing import Any

import yaml

import mtunet
from mtunet.config import project_root
from mtunet.errors import UserError
# the kernel's output filter, shared with the report page
from mtunet.kernel_output import KERNEL_ARGUMENTS, drop_kernel_noise, is_kernel_noise  # noqa: F401
from mtunet.report.executions import Execution
from mtunet.report.executions import summary as executions_summary

NOTEBOOK_PATTERN = re.compile(r"^(\d\d)_[a-z0-9_]+\.ipynb$")
# Parameters the runner itself fills in for every notebook that declares them.
RUNNER_PARAMETERS = ("profile", "data_dir", "results_dir", "figures_dir", "runs_dir",
                     "external_grading_dir")


def notebook_dir() -> Path:
    return project_root() / "notebooks"


def profile_dir() -> Path:
    return project_root() / "profiles"


def list_notebooks(folder: Path | None = None) -> list[Path]:
    folder = folder or notebook_dir()
    return sorted(p for p in folder.glob("*.ipynb") if NOTEBOOK_PATTERN.match(p.name))


def load_profile(name_or_path: str) -> dict[str, Any]:
    """Read a profile YAML by name (profiles/<name>.yaml) or path; check its shape."""
    path = Path(name_or_path)
    if not path.suffix:
        path = profile_dir() / f"{name_or_path}.yaml"
    if not path.exists():
        known = ", ".join(sorted(p.stem for p in profile_dir().glob("*.yaml")))
        raise UserError(f"{path}: no such profile (known profiles: {known})")
    try:
        profile = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise UserError(f"{path}: not valid YAML ({exc})") from None
    unknown_sections = set(profile) - {"description", "parameters", "notebooks"}
    if unknown_sections:
        raise UserError(f"{path}: unknown top-level keys {sorted(unknown_sections)} "
                        "(expected description, parameters, notebooks)")
    profile.setdefault("parameters", {})
    profile.setdefault("notebooks", {})
    profile["name"] = path.stem
    profile["path"] = str(path)
    return profile


def declared_parameters(notebook: Path) -> dict[str, Any]:
    """The names (and default values as source text) of a notebook's `parameters` cell."""
    import papermill

    try:
        return papermill.inspect_notebook(str(notebook))
    except Exception as exc:  # papermill raises plain exceptions for broken notebooks
        raise UserError(f"{notebook}: cannot read its parameters cell ({exc})") from None


def parameters_per_notebook(profile: dict[str, Any], notebooks: list[Path],
                            runner_values: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Give each notebook the profile parameters it declares; unknown names are errors."""
    declared = {nb.stem: set(declared_parameters(nb)) for nb in notebooks}
    everywhere = set().union(*declared.values()) if declared else set()
    shared = dict(profile["parameters"])
    unknown = sorted(set(shared) - everywhere)
    if unknown:
        raise UserError(f"{profile['path']}: parameter(s) {unknown} are declared by no notebook "
                        f"(check the spelling; declared: {sorted(everywhere)})")
    for stem, overrides in profile["notebooks"].items():
        if stem not in declared:
            raise UserError(f"{profile['path']}: 'notebooks' names {stem!r}, which is not a notebook "
                            f"(have: {sorted(declared)})")
        bad = sorted(set(overrides or {}) - declared[stem])
        if bad:
            raise UserError(f"{profile['path']}: notebook {stem} does not declare {bad}")
    result = {}
    for nb in notebooks:
        values = {**runner_values, **shared, **(profile["notebooks"].get(nb.stem) or {})}
        result[nb.stem] = {k: v for k, v in values.items() if k in declared[nb.stem]}
    return result


def library_hash() -> str:
    digest = hashlib.sha1()
    package = Path(mtunet.__file__).parent
    for path in sorted(package.rglob("*.py")):
        digest.update(path.read_bytes())
    return digest.hexdigest()


def stamp_of(notebook: Path, params: dict[str, Any], previous: str, lib: str) -> str:
    digest = hashlib.sha1()
    digest.update(notebook.read_bytes())
    digest.update(json.dumps(params, sort_keys=True, default=str).encode())
    digest.update(previous.encode())
    digest.update(lib.encode())
    return digest.hexdigest()


def _select(notebooks: list[Path], start: str | None, only: str | None) -> set[str]:
    numbers = [nb.name[:2] for nb in notebooks]
    for value, flag in ((start, "--from"), (only, "--only")):
        if value is not None and value.zfill(2) not in numbers:
            raise UserError(f"{flag} {value}: no notebook numbered {value.zfill(2)} (have {numbers})")
    if only is not None:
        return {nb.stem for nb in notebooks if nb.name[:2] == only.zfill(2)}
    if start is not None:
        return {nb.stem for nb in notebooks if nb.name[:2] >= start.zfill(2)}
    return {nb.stem for nb in notebooks}


def _explain_failure(exc: Exception, notebook: Path, output: Path) -> str:
    cell = getattr(exc, "exec_count", None)
    ename = getattr(exc, "ename", type(exc).__name__)
    evalue = getattr(exc, "evalue", str(exc))
    where = f"cell [{cell}]" if cell is not None else "a cell"
    return (f"notebook {notebook.name} failed in {where}: {ename}: {evalue}\n"
            f"  the executed notebook with the traceback: {output}")


def run(args: argparse.Namespace) -> int:
    # paths given on the command line: relative to where the user is, re-expressed relative to
    # the repository root (the notebooks resolve relative paths there; no machine paths recorded)
    root = project_root()
    for attr in ("data_dir", "external_grading_dir"):
        value = getattr(args, attr)
        if value and not os.path.isabs(value):
            setattr(args, attr, os.path.relpath(os.path.abspath(value), root))
    os.chdir(root)
    profile = load_profile(args.profile)
    name = profile["name"]
    # a dry run writes beside, never over, a profile's results
    sub = f"{name}/dry-run" if args.dry_run else name
    results_dir = root / "results" / sub
    executed_dir = results_dir / "executed"
    runner_values = {
        "profile": name,
        "data_dir": args.data_dir or profile["parameters"].get("data_dir"),
        # relative to the repository root, so executed notebooks name no machine paths
        "results_dir": f"results/{sub}",
        "figures_dir": f"figures/{sub}",
        "runs_dir": f"runs/{name}",
        "external_grading_dir": args.external_grading_dir,
    }
    notebooks = list_notebooks()
    if not notebooks:
        raise UserError(f"{notebook_dir()}: no notebooks named NN_name.ipynb")
    shared = {k: v for k, v in profile["parameters"].items() if k != "data_dir"}
    profile["parameters"] = {**shared, "data_dir": runner_values["data_dir"]}
    per_notebook = parameters_per_notebook(profile, notebooks, runner_values)
    if args.dry_run:
        for nb in notebooks:
            if "dry_run" not in declared_parameters(nb):
                raise UserError(f"{nb}: --dry-run needs a `dry_run` parameter in this notebook")
            per_notebook[nb.stem]["dry_run"] = True
    chosen = _select(notebooks, args.start, args.only)

    executed_dir.mkdir(parents=True, exist_ok=True)
    with profile_lock(results_dir / ".run_all.lock", name):
        make_inputs(profile["parameters"])
        return _run_notebooks(args, profile, notebooks, chosen, per_notebook, results_dir, root)


def _run_notebooks(args, profile, notebooks, chosen, per_notebook, results_dir: Path, root: Path) -> int:
    """Run the chosen notebooks in order. Once a notebook runs, every later one is stale: its
    inputs (the files earlier notebooks write) may have changed, whatever its own stamp says."""
    from mtunet.files import write_text

    name = profile["name"]
    executed_dir = results_dir / "executed"
    stamps_path = executed_dir / "stamps.json"
    stamps = json.loads(stamps_path.read_text()) if stamps_path.exists() else {}
    lib = library_hash()
    previous = ""
    upstream_ran = False
    started = time.time()
    timings: dict[str, float] = {}
    skipped = unselected = 0
    print(f"profile {name}: {profile.get('description', '')}".rstrip())
    for index, nb in enumerate(notebooks, 1):
        params = per_notebook[nb.stem]
        stamp = stamp_of(nb, params, previous, lib)
        previous = stamp
        output = executed_dir / nb.name
        label = f"[{index}/{len(notebooks)}] {nb.stem}"
        if nb.stem not in chosen:
            unselected += 1
            if upstream_ran and stamps.pop(nb.stem, None) is not None:
                write_text(stamps_path, json.dumps(stamps, indent=2))
                print(f"{label}: not selected; now stale (a notebook before it ran)")
            else:
                print(f"{label}: not selected")
            continue
        if (not args.force and not args.dry_run and not upstream_ran and output.exists()
                and stamps.get(nb.stem) == stamp):
            skipped += 1
            print(f"{label}: up to date, skipped (use --force to rerun)")
            continue
        print(f"{label}: running ...", flush=True)
        t0 = time.time()
        # execute into a scratch copy: a failure never replaces the last good executed notebook
        target = executed_dir / f"{nb.stem}.running.ipynb"
        progress = CellProgress(f"[{index}/{len(notebooks)}] {nb.stem[:2]}",
                                history=expected_durations(output, durations_file(name)))
        # the notebook's time on this machine, kills included (runs/<profile>/executions.csv)
        execution = None if args.dry_run else Execution(executions_file(name), nb.stem, _commit())
        try:
            with execution or contextlib.nullcontext():
                # paths relative to the repository root: papermill records them in the notebook
                execute_notebook(os.path.relpath(nb, root), os.path.relpath(target, root), params,
                                 cwd=notebook_dir(), progress=progress)
                if execution is not None:
                    execution.outcome = "done"
        except Exception as exc:  # papermill wraps the cell's exception
            progress.close()
            failed = executed_dir / f"{nb.stem}.failed.ipynb"
            if target.exists():
                target.replace(failed)
            stamps.pop(nb.stem, None)
            write_text(stamps_path, json.dumps(stamps, indent=2))
            print(_explain_failure(exc, nb, failed), file=sys.stderr)
            print(f"profile {name}: stopped at {nb.stem} after {(time.time() - started) / 60:.1f} min "
                  f"({len(timings)} notebook(s) run before it)", flush=True)
            return 1
        finally:
            progress.close()  # also on Ctrl-C: the terminal keeps no half-drawn bar
        settle_progress_bars(target)
        target.replace(output)
        (executed_dir / f"{nb.stem}.failed.ipynb").unlink(missing_ok=True)
        timings[nb.stem] = time.time() - t0
        upstream_ran = True
        if not args.dry_run:
            remember_durations(durations_file(name), output)
            stamps[nb.stem] = stamp
            write_text(stamps_path, json.dumps(stamps, indent=2))
            _update_manifest(results_dir, profile, per_notebook, nb.stem, timings[nb.stem])
        print(f"{label}: done in {_duration(timings[nb.stem])}", flush=True)
    total = time.time() - started
    print(f"profile {name}: {len(timings)} notebook(s) run in {total / 60:.1f} min, "
          f"{skipped} up to date, {unselected} not selected "
          f"({', '.join(f'{k[:2]} {v:.0f}s' for k, v in timings.items()) or 'nothing to do'})")
    report = results_dir / "report.html"
    if not args.dry_run and (timings or not report.exists()):
        _write_report(executed_dir, report, name, root)
    return 0


def _write_report(executed_dir: Path, report: Path, profile: str, root: Path) -> None:
    """results/<profile>/report.html from the executed notebooks; a failure here is a warning,
    never a failed batch (the tables and figures are made by then)."""
    from mtunet.report.html import write_report

    try:
        count = write_report(executed_dir, report, title=f"MTUnet reproduction: {profile} profile")
    except Exception as exc:  # nbconvert raises many kinds; the batch itself has succeeded
        print(f"warning: {report} not written ({type(exc).__name__}: {exc}); rebuild it with "
              f"python -m mtunet.report.html --profile {profile}", file=sys.stderr)
        return
    if count:
        where = os.path.relpath(report, root) if report.is_relative_to(root) else report
        print(f"report: {where} ({count} notebook(s), {report.stat().st_size / 1e6:.1f} MB)")


# ---------------------------------------------------------------------------------------------
# Kernels: quiet start, progress events
# ---------------------------------------------------------------------------------------------

ENGINE_NAME = "mtunet"
_engine_registered = False


def settled_progress(outputs: list[dict]) -> list[dict]:
    """A cell's outputs with every tqdm bar reduced to its final line, on stdout.

    A bar redraws itself with carriage returns on stderr, one stream output per redraw: the
    runner has shown it live, and an executed notebook (or the report page) would show a red
    stderr box of every redraw. Other stderr lines (a real warning) stay on stderr, in order.
    """
    settled: list[dict] = []
    pending: list[str] = []

    def flush() -> None:
        lines = [line.split("\r")[-1] for line in "".join(pending).split("\n")]
        for line in lines:
            if not line.strip():
                continue
            name = "stdout" if TQDM.search(line) else "stderr"
            if settled and settled[-1].get("output_type") == "stream" and settled[-1]["name"] == name \
                    and settled[-1].get("_settled"):
                settled[-1]["text"] += line + "\n"
            else:
                settled.append({"output_type": "stream", "name": name, "text": line + "\n", "_settled": True})
        pending.clear()

    for output in outputs:
        if output.get("output_type") == "stream" and output.get("name") == "stderr":
            text = output.get("text", "")
            pending.append("".join(text) if isinstance(text, list) else text)
            continue
        if pending:
            flush()
        settled.append(output)
    if pending:
        flush()
    for output in settled:
        output.pop("_settled", None)
    return settled


def settle_progress_bars(path: Path) -> None:
    """Rewrite an executed notebook with :func:`settled_progress` applied to every code cell."""
    import nbformat

    notebook = nbformat.read(str(path), as_version=nbformat.NO_CONVERT)
    for cell in notebook.cells:
        if cell.cell_type == "code" and cell.get("outputs"):
            cell.outputs = [nbformat.from_dict(o) for o in settled_progress(cell.outputs)]
    nbformat.write(notebook, str(path))


def execute_notebook(source: str | Path, target: str | Path, parameters: dict[str, Any], *,
                     cwd: str | Path, progress: CellProgress | None = None):
    """Execute one notebook as the runner does: papermill, kernel python3 started quietly (see
    the module's docstring), cells run in `cwd`, events to `progress`; writes `target`."""
    import papermill

    return papermill.execute_notebook(str(source), str(target), parameters=parameters,
                                      kernel_name="python3", progress_bar=False, cwd=str(cwd),
                                      engine_name=register_engine(), cell_progress=progress,
                                      extra_arguments=list(KERNEL_ARGUMENTS))


def register_engine() -> str:
    """Register (once) the papermill engine the runner executes notebooks with, and return its
    name: papermill's nbclient engine, with a kernel started with CurveZMQ transport keys
    (nothing for ipykernel to warn about) and cell and stream events for a CellProgress given
    as the `cell_progress` argument of papermill.execute_notebook."""
    import asyncio

    from nbclient.util import ensure_async, run_sync
    from papermill.clientwrap import PapermillNotebookClient
    from papermill.engines import NBClientEngine, papermill_engines
    from papermill.log import logger
    from papermill.utils import merge_kwargs, remove_args
    from traitlets import Any as AnyTrait

    global _engine_registered
    if _engine_registered:
        return ENGINE_NAME

    class Client(PapermillNotebookClient):
        cell_progress = AnyTrait(None, allow_none=True)

        def create_kernel_manager(self):
            km = super().create_kernel_manager()
            # jupyter_client >= 8.10 gives the kernel CurveZMQ keys when its kernelspec says it
            # can use them (ipykernel >= 7 does); older ones have no such trait and no warning
            if km.has_trait("transport_encryption"):
                with contextlib.suppress(Exception):  # a pyzmq built without CurveZMQ
                    km.transport_encryption = "auto"
            return km

        async def _async_cleanup_kernel(self):
            # jupyter_client's shutdown interrupts the kernel first (SIGINT), which an idle
            # kernel can log as "KeyboardInterrupt caught in kernel"; papermill is done with it
            # here, so ask it to shut down and give it 5 s to exit before that path runs
            km = self.km
            if km is not None and self.shutdown_kernel == "graceful":
                with contextlib.suppress(Exception):
                    if await ensure_async(km.is_alive()):
                        await ensure_async(km.request_shutdown())
                        for _ in range(50):
                            if not await ensure_async(km.is_alive()):
                                break
                            await asyncio.sleep(0.1)
            await super()._async_cleanup_kernel()

        _cleanup_kernel = run_sync(_async_cleanup_kernel)  # nbclient binds its own at class level

        def papermill_execute_cells(self):
            if self.cell_progress is not None:
                self.cell_progress.start(self.nb.cells)
            return super().papermill_execute_cells()

        def execute_cell(self, cell, cell_index, *args, **kwargs):
            if self.cell_progress is not None:
                self.cell_progress.cell_started(cell_index)
            try:
                return super().execute_cell(cell, cell_index, *args, **kwargs)
            finally:
                if self.cell_progress is not None:
                    self.cell_progress.cell_finished(cell_index)

        def process_message(self, msg, cell, cell_index):
            output = super().process_message(msg, cell, cell_index)
            if (self.cell_progress is not None and output is not None
                    and output.get("output_type") == "stream"):
                self.cell_progress.stream(output.get("text", ""))
            return output

    class Engine(NBClientEngine):
        @classmethod
        def execute_managed_notebook(cls, nb_man, kernel_name, log_output=False, stdout_file=None,
                                     stderr_file=None, start_timeout=60, execution_timeout=None,
                                     **kwargs):
            # as papermill's NBClientEngine, with the client above
            kwargs = remove_args(["input_path"], **kwargs)
            safe_kwargs = remove_args(["timeout", "startup_timeout"], **kwargs)
            final_kwargs = merge_kwargs(
                safe_kwargs, timeout=execution_timeout or kwargs.get("timeout"),
                startup_timeout=start_timeout, kernel_name=kernel_name, log=logger,
                log_output=log_output, stdout_file=stdout_file, stderr_file=stderr_file)
            return Client(nb_man, **final_kwargs).execute()

    papermill_engines.register(ENGINE_NAME, Engine)
    _engine_registered = True
    return ENGINE_NAME


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


def _clock(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"


def _duration(seconds: float) -> str:
    """7 s, 3 min 25 s, 1 h 02 min."""
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"


def _plain_heading(text: str) -> str:
    """A Markdown heading as plain text: no emphasis marks, links as their text (L_B stays)."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", text)
    text = re.sub(r"[*`]|(?<!\w)_+|_+(?!\w)", "", text)
    return " ".join(text.split())


class CellProgress:
    """Progress of one notebook's execution, fed by the papermill engine's cell events.

    The bar runs over the code cells, each weighted by the seconds it took the last time the
    notebook ran (`history`, by cell source); without history every cell weighs the same. Time
    left = the remaining weight x the seconds per unit of weight measured on the cells done so
    far (1 before any is done, when there is history); the running cell counts as done in
    proportion to its elapsed time, up to its weight. `bar` (default: stderr is a terminal)
    redraws one line on stderr every BAR_REFRESH_S; otherwise a plain line goes to stdout when
    the step changes (at most every PLAIN_STEP_MIN_S) and at least every PLAIN_EVERY_S.
    """

    def __init__(self, label: str, history: dict[str, float] | None = None, *,
                 bar: bool | None = None, out=None, err=None, clock=time.monotonic):
        self.label = label
        self.history = history or {}
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
                        step = _plain_heading(headings[-1][1])
                elif cell.get("cell_type") == "code":
                    weight = self.history.get(cell_key(cell), typical) if self.history else 1.0
                    self.weights[index] = max(weight, 0.05)
                    self.steps[index] = step
            self.started = self.clock()
            self.last_line = self.started - PLAIN_STEP_MIN_S  # the first step gets its line
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

    def describe(self) -> str:
        fraction, left, elapsed, over = self.estimate()
        code_cells = sorted(self.weights)
        position = (code_cells.index(self.current) + 1 if self.current in self.weights
                    else len(self.done))
        # the times first: a narrow terminal cuts the line's end
        left_text = f"≥{_clock(left)}" if over else f"~{_clock(left)}"  # ≥: this cell runs long
        parts = [f"{fraction * 100:3.0f}%", f"{_clock(elapsed)} elapsed, {left_text} left",
                 f"cell {position}/{len(code_cells)}"]
        if self.last_step:  # shortened: what the kernel reports comes after it
            step = self.last_step
            parts.append(step if len(step) <= 40 else step[:39].rstrip() + "…")
        if self.activity:
            parts.append(self.activity)
        return " · ".join(parts)

    # -- output -------------------------------------------------------------------------------
    def _draw(self) -> None:
        fraction = self.estimate()[0]
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


@contextlib.contextmanager
def profile_lock(path: Path, profile: str):
    """One batch per profile at a time. An OS lock (flock): a killed batch never leaves it held.
    A second batch exits with an error naming the process that holds it."""
    import fcntl

    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            raise UserError(f"profile {profile} is already being run by {holder} (lock "
                            f"{path}); wait for it to finish or stop it") from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()} since {time.strftime('%Y-%m-%d %H:%M:%S')}")
        handle.flush()
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def make_inputs(parameters: dict[str, Any]) -> None:
    """Make what a profile can make by itself before any notebook runs (the built-in synthetic
    set, when the profile has no data folder), so any notebook can be run on its own."""
    from mtunet.study.datasets import resolve_data_dir
    from mtunet.study.parameters import with_defaults

    p = with_defaults(parameters)
    if not p["data_dir"]:
        resolve_data_dir(None, p["synthetic"])


def _update_manifest(results_dir: Path, profile: dict[str, Any], parameters: dict[str, Any],
                     notebook: str, seconds: float) -> None:
    """The batch manifest, rewritten after every notebook: an interrupted batch keeps one that
    says which notebooks finished, with which parameters, at which commit."""
    from mtunet.report.manifest import write_manifest

    path = results_dir / "manifest.json"
    previous = json.loads(path.read_text()) if path.exists() else {}
    finished = previous.get("notebook_seconds", {})
    finished[notebook] = round(seconds, 1)
    write_manifest(path, profile=profile["name"],
                   executions=executions_summary(executions_file(profile["name"])),
                   profile_file=os.path.relpath(profile["path"], project_root()),
                   parameters=parameters,
                   notebook_seconds={k: finished[k] for k in sorted(finished)},
                   notebook_commits={**previous.get("notebook_commits", {}),
                                     notebook: _commit()})


def executions_file(profile: str) -> Path:
    """Every notebook execution of a profile on this machine, beside the runs it trained."""
    from mtunet.config import runs_dir

    return runs_dir() / profile / "executions.csv"


def _commit() -> str | None:
    from mtunet.report.manifest import git_commit

    return git_commit()["commit"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="run_all.sh", description=__doc__.split("\n")[0])
    parser.add_argument("--profile", default="smoke", help="profile name or YAML path (default smoke)")
    parser.add_argument("--data-dir", help="data root holding IDRiD/ and kaggle-eyepacs-subset/ "
                        "(default: the profile's; smoke generates a synthetic set)")
    parser.add_argument("--external-grading-dir", help="an external graded set (Table 4)")
    parser.add_argument("--from", dest="start", metavar="NN", help="start at notebook NN")
    parser.add_argument("--only", metavar="NN", help="run notebook NN only")
    parser.add_argument("--force", action="store_true", help="rerun notebooks even if up to date")
    parser.add_argument("--dry-run", action="store_true",
                        help="validate data and parameters and build every model; train nothing")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return run(args)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
