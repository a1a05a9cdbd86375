"""How the runner executes a notebook: papermill with its own engine, one batch per profile at a
time, and the records an execution leaves.

Kernels start quietly: with CurveZMQ keys (jupyter_client's transport_encryption), so ipykernel
has no "running over TCP without encryption" warning to log, and with an output stream that drops
TensorFlow's known start-up lines, which C++ code writes to the kernel's stderr before Python
logging exists (mtunet.kernel_output); every other line, Python or C++, still reaches the
notebook. The engine feeds a CellProgress (mtunet.commands.notebook_progress) with cell and
stream events. An executed notebook's tqdm bars are settled to their last line; each execution is
one row of runs/<profile>/executions.csv (mtunet.report.executions) and the batch manifest
(results/<profile>/manifest.json) is rewritten after every notebook.
"""
from __future__ import annotations

import contextlib
import json
import os
import time
from pathlib import Path
from typing import Any

from mtunet.commands.notebook_progress import TQDM, CellProgress
from mtunet.config import project_root
from mtunet.errors import UserError
from mtunet.kernel_output import KERNEL_ARGUMENTS
from mtunet.report.executions import summary as executions_summary

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
    name: papermill's nbclient engine, with the client of :func:`_client_class`."""
    from papermill.engines import papermill_engines

    global _engine_registered
    if not _engine_registered:
        papermill_engines.register(ENGINE_NAME, _engine_class(_client_class()))
        _engine_registered = True
    return ENGINE_NAME


def _quiet_client_class():
    """papermill's notebook client, with a kernel started with CurveZMQ transport keys (nothing
    for ipykernel to warn about) and asked to shut down before it is interrupted."""
    import asyncio

    from nbclient.util import ensure_async, run_sync
    from papermill.clientwrap import PapermillNotebookClient

    class QuietClient(PapermillNotebookClient):
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

    return QuietClient


def _client_class():
    """The quiet client (:func:`_quiet_client_class`), with cell and stream events for a
    CellProgress given as the `cell_progress` argument of papermill.execute_notebook."""
    from traitlets import Any as AnyTrait

    class Client(_quiet_client_class()):
        cell_progress = AnyTrait(None, allow_none=True)

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

    return Client


def _engine_class(client):
    """papermill's NBClientEngine, executing with `client`."""
    from papermill.engines import NBClientEngine
    from papermill.log import logger
    from papermill.utils import merge_kwargs, remove_args

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
            return client(nb_man, **final_kwargs).execute()

    return Engine



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


def update_manifest(results_dir: Path, profile: dict[str, Any], parameters: dict[str, Any],
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
                   profile_bases=profile.get("bases", []),
                   parameters=parameters,
                   notebook_seconds={k: finished[k] for k in sorted(finished)},
                   notebook_commits={**previous.get("notebook_commits", {}),
                                     notebook: commit()})


def executions_file(profile: str) -> Path:
    """Every notebook execution of a profile on this machine, beside the runs it trained."""
    from mtunet.config import runs_dir

    return runs_dir() / profile / "executions.csv"


def commit() -> str | None:
    """The commit the working copy is at (None outside git)."""
    from mtunet.report.manifest import git_commit

    return git_commit()["commit"]
