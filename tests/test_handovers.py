"""Hand-overs between notebooks cannot go stale, result files are written whole, one batch per
profile runs at a time, and a notebook that runs makes the later ones stale."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from mtunet.commands import run_notebooks
from mtunet.data.records import Record
from mtunet.data.synthetic import write_palette_mask
from mtunet.errors import UserError
from mtunet.files import atomic_path, write_text
from mtunet.study import pseudo_labelling


def _pseudo_masks(tmp_path: Path):
    import numpy as np

    records = [Record(f"img{i}", tmp_path / f"img{i}.jpg", grade=i % 5) for i in range(3)]
    folder = tmp_path / "runs" / "pseudo_labels" / "abc"
    folder.mkdir(parents=True)
    for r in records[:2]:
        mask = np.zeros((8, 8), bool)
        mask[2:4, 2:4] = True
        write_palette_mask(folder / f"{r.image_id}_EX.tif", mask)
    results = tmp_path / "results"
    pseudo_labelling.save(results, pd.DataFrame({"image_id": [r.image_id for r in records]}),
                          records, folder)
    return records, folder, results


def test_pseudo_masks_load_back_with_their_files(tmp_path):
    records, folder, results = _pseudo_masks(tmp_path)
    loaded = pseudo_labelling.load(results, records)
    assert [sorted(r.masks) for r in loaded] == [["EX"], ["EX"], []]
    assert all(r.has_masks for r in loaded)
    assert json.loads((results / "pseudo_labels.json").read_text())["mask_files"] == 2


def test_missing_pseudo_masks_name_the_notebook_to_rerun(tmp_path):
    records, folder, results = _pseudo_masks(tmp_path)
    shutil.rmtree(folder)
    with pytest.raises(UserError, match="rerun notebook 03_pseudo_labelling"):
        pseudo_labelling.load(results, records)


def test_changed_pseudo_masks_are_refused(tmp_path):
    records, folder, results = _pseudo_masks(tmp_path)
    (folder / "img0_EX.tif").unlink()
    with pytest.raises(UserError, match="not the ones notebook 03_pseudo_labelling wrote"):
        pseudo_labelling.load(results, records)


def test_no_handover_file_says_which_notebook_makes_it(tmp_path):
    with pytest.raises(UserError, match="run notebook 03_pseudo_labelling first"):
        pseudo_labelling.load(tmp_path, [])


def test_a_failed_write_keeps_the_previous_file(tmp_path):
    target = write_text(tmp_path / "table.csv", "a,b\n1,2\n")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("a,b\n1,")          # half written, then the process "dies"
            raise RuntimeError("killed")
    assert target.read_text() == "a,b\n1,2\n"
    assert [p.name for p in tmp_path.iterdir()] == ["table.csv"]


def test_a_full_or_read_only_results_folder_is_one_clear_error(tmp_path, monkeypatch):
    import errno

    def full(*args):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "replace", full)
    with pytest.raises(UserError, match=r"t\.md: cannot write \(No space left on device\)"):
        write_text(tmp_path / "t.md", "x")
    assert list(tmp_path.iterdir()) == []


def test_a_second_batch_on_the_same_profile_is_refused(tmp_path):
    lock = tmp_path / ".run_all.lock"
    code = ("import sys; from mtunet.commands.run_notebooks import profile_lock; "
            "from mtunet.errors import UserError\n"
            f"try:\n    with profile_lock(__import__('pathlib').Path({str(lock)!r}), 'smoke'): pass\n"
            "except UserError as e:\n    print(e); sys.exit(3)")
    with run_notebooks.profile_lock(lock, "smoke"):
        held = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
        assert held.returncode == 3
        assert "already being run by pid" in held.stdout and str(os.getpid()) in held.stdout
    free = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert free.returncode == 0, free.stdout + free.stderr


def test_a_killed_batch_leaves_no_lock_behind(tmp_path):
    lock = tmp_path / ".run_all.lock"
    holder = subprocess.Popen([sys.executable, "-c",
                               "import time, pathlib; from mtunet.commands.run_notebooks import profile_lock\n"
                               f"with profile_lock(pathlib.Path({str(lock)!r}), 'smoke'):\n"
                               "    print('held', flush=True); time.sleep(60)"],
                              stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    holder.kill()
    holder.wait()
    with run_notebooks.profile_lock(lock, "smoke"):
        pass


def test_a_notebook_that_runs_makes_the_later_ones_stale(tmp_path, monkeypatch):
    """--only 01 after a full batch: 02-07 lose their stamps, so the next batch reruns them."""
    import papermill

    ran = []

    def fake_execute(source, target, **kwargs):
        ran.append(Path(source).stem)
        shutil.copy(Path(source), Path(target))

    monkeypatch.setattr(papermill, "execute_notebook", fake_execute)
    monkeypatch.setenv("MTUNET_PROJECT_DIR", str(run_notebooks.project_root()))
    profile = run_notebooks.load_profile("smoke")
    notebooks = run_notebooks.list_notebooks()
    per_notebook = run_notebooks.parameters_per_notebook(profile, notebooks, {})
    results = tmp_path / "results"
    executed = results / "executed"
    executed.mkdir(parents=True)
    monkeypatch.setattr(run_notebooks, "_update_manifest", lambda *a, **k: None)
    monkeypatch.chdir(tmp_path)            # the runner passes papermill paths relative to the root
    args = run_notebooks.build_parser().parse_args([])
    everything = {nb.stem for nb in notebooks}
    assert run_notebooks._run_notebooks(args, profile, notebooks, everything, per_notebook,
                                        results, tmp_path) == 0
    assert ran == [nb.stem for nb in notebooks]
    ran.clear()
    first = notebooks[0].stem
    assert run_notebooks._run_notebooks(args, profile, notebooks, {first}, per_notebook,
                                        results, tmp_path) == 0
    stamps = json.loads((executed / "stamps.json").read_text())
    assert ran == [] and set(stamps) == everything           # up to date: nothing ran
    args.force = True
    assert run_notebooks._run_notebooks(args, profile, notebooks, {first}, per_notebook,
                                        results, tmp_path) == 0
    stamps = json.loads((executed / "stamps.json").read_text())
    assert ran == [first] and set(stamps) == {first}          # the later ones are stale now


def test_pseudo_masks_marked_complete_are_reused_and_changed_ones_are_not(tmp_path):
    """A re-executed notebook 03 reads the masks an earlier execution finished (no marker after a
    kill mid-labelling; a changed mask or another set of images means predicting again)."""
    records, folder, _ = _pseudo_masks(tmp_path)
    assert pseudo_labelling.cached_labels(folder, records) is None          # never marked complete
    table = pd.DataFrame({"image_id": [r.image_id for r in records], "EX_fraction": [0.1, 0.2, 0.0]})
    pseudo_labelling.remember_labels(folder, records, table)
    again = pseudo_labelling.cached_labels(folder, records)
    assert again.table.equals(table) and [sorted(r.masks) for r in again.records] == [["EX"], ["EX"], []]
    assert pseudo_labelling.cached_labels(folder, records[:2]) is None      # other images
    (folder / "img0_EX.tif").unlink()
    assert pseudo_labelling.cached_labels(folder, records) is None          # a mask changed
