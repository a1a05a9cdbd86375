"""A cached run or score is reused only by the code that would make it again (issue: cold reruns
gave other numbers than the committed ones, from runs that older code had trained)."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from mtunet import code_fingerprint as cf


@pytest.fixture
def library_copy(tmp_path) -> Path:
    """A copy of lib/ (only mtunet/) to edit, as a change to the code would."""
    target = tmp_path / "lib"
    shutil.copytree(cf.LIBRARY / cf.PACKAGE, target / cf.PACKAGE,
                    ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    return target


def _edit(library: Path, module: str, old: str, new: str) -> None:
    path = cf.module_files(library)[module]
    text = path.read_text()
    assert old in text, f"{old!r} not in {path}"
    path.write_text(text.replace(old, new, 1))


def _training(library: Path) -> str:
    return cf.closure_fingerprint(cf.TRAINING_ROOTS, cf.NOT_TRAINING, library)


def test_comments_docstrings_and_blank_lines_do_not_count_code_does():
    code = 'def f(x):\n    """Why."""\n    return x + 1  # one\n'
    assert cf.normalized_source(code) == "def f(x):\n    return x + 1"
    assert cf.normalized_source('"""Module."""\n\n# note\n' + code) == cf.normalized_source(code)
    assert cf.normalized_source(code.replace("x + 1", "x + 2")) != cf.normalized_source(code)
    # a '#' inside a string is code, not a comment
    assert "'#'" in cf.normalized_source("s = '#'  # real comment\n")


def test_the_training_closure_holds_the_training_code_and_no_report_code():
    modules = cf.import_closure(cf.TRAINING_ROOTS, cf.NOT_TRAINING)
    for needed in ("mtunet.train", "mtunet.losses", "mtunet.data.crops", "mtunet.data.augment",
                   "mtunet.data.pipeline", "mtunet.data.interleave", "mtunet.models.mtunet",
                   "mtunet.models.segmentation", "mtunet.models.registry", "mtunet.study.run_training"):
        assert needed in modules
    assert not [m for m in modules if m.startswith(("mtunet.report", "mtunet.commands"))]
    assert "mtunet.study.runs" not in modules        # the cache and the inventory are not training


def test_changing_training_code_changes_the_fingerprint_and_report_code_does_not(library_copy):
    before = _training(library_copy)
    _edit(library_copy, "mtunet.report.claims", "def ", "def _added_helper():\n    return 1\n\n\ndef ")
    assert _training(library_copy) == before
    _edit(library_copy, "mtunet.losses", "\nimport ", "\n# a comment only\nimport ")
    assert _training(library_copy) == before
    _edit(library_copy, "mtunet.data.crops", "\nimport ", "\nSAMPLER_CHANGED = True\nimport ")
    assert _training(library_copy) != before


def test_scores_depend_on_the_scoring_code(library_copy):
    before = cf.closure_fingerprint(cf.SCORING_ROOTS, cf.NOT_TRAINING, library_copy)
    _edit(library_copy, "mtunet.metrics", "\nimport ", "\nTHRESHOLD_CHANGED = True\nimport ")
    assert cf.closure_fingerprint(cf.SCORING_ROOTS, cf.NOT_TRAINING, library_copy) != before


def test_an_unknown_root_is_an_error():
    with pytest.raises(ValueError, match="not modules"):
        cf.import_closure(("mtunet.no_such_module",))


def test_a_cached_run_is_reused_after_a_report_change_and_retrained_after_a_training_change(
        tmp_path, library_copy, monkeypatch):
    """End to end on a tiny run: the run trained by today's code is found again while only report
    code changes, and is not found (a new run id, nothing trained under it) once the loss changes."""
    from mtunet.data.records import Record
    from mtunet.data.synthetic import write_synthetic
    from mtunet.data import load_data_root
    from mtunet.study.parameters import DEFAULTS
    from mtunet.study.runs import Context

    root = write_synthetic(tmp_path / "data", n_seg=2, n_grading=2, n_kaggle=2, size=64, seed=3)
    records: list[Record] = [r for r in load_data_root(root).idrid_seg if r.split == "train"]
    ctx = Context.from_parameters({**DEFAULTS, "profile": "test", "runs_dir": str(tmp_path / "runs"),
                                   "image_size": 32, "work_size": 64, "patch_size": 32,
                                   "steps_per_epoch": 1, "batch_size": 2, "epochs": 1,
                                   "run_eagerly": True, "encoder_weights": "random"})
    spec = ctx.spec(model="unet", seed=0)
    monkeypatch.setattr(cf, "training_code", lambda: _training(library_copy))
    ctx.train(spec, records)
    trained_id = spec.run_id(records)
    assert ctx.is_trained(spec, records)
    info = ctx.run_info(spec, records)
    assert info["training_code"] == _training(library_copy)       # recorded beside the run
    assert "commit" in info["trained_by"]

    recorded = dict(info["trained_by"], commit="0123456789abcdef")    # as if an earlier commit
    run_json = ctx.runs_dir / trained_id / "run.json"
    import json
    run_json.write_text(json.dumps({**info, "trained_by": recorded}))
    ctx._last.clear()
    ctx.train(spec, records)                          # loaded, not trained: the record is kept
    assert ctx.run_info(spec, records)["trained_by"] == recorded

    _edit(library_copy, "mtunet.report.tables", "\nimport ", "\nREPORT_ONLY = 1\nimport ")
    assert spec.run_id(records) == trained_id and ctx.is_trained(spec, records)

    _edit(library_copy, "mtunet.losses", "\nimport ", "\nLOSS_CHANGED = 1\nimport ")
    assert spec.run_id(records) != trained_id
    assert not ctx.is_trained(spec, records)
    assert not (ctx.runs_dir / spec.run_id(records)).exists()
