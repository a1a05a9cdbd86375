"""Shared fixtures: a synthetic data root written once per session, and the real data folders."""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from mtunet.config import default_data_dir, project_root
from mtunet.data.synthetic import write_synthetic

SYNTH = dict(n_seg=12, n_grading=15, n_kaggle=20, size=128, seed=0)
TINY = dict(n_seg=3, n_grading=3, n_kaggle=4, size=64, seed=1)


@pytest.fixture(scope="session")
def synthetic_root(tmp_path_factory) -> Path:
    """Read-only synthetic data root (IDRiD/ + kaggle-eyepacs-subset/) with the SYNTH sizes. Do not modify."""
    return write_synthetic(tmp_path_factory.mktemp("synthetic"), **SYNTH)


@pytest.fixture(scope="session")
def tiny_synthetic_root(tmp_path_factory) -> Path:
    """A very small read-only synthetic data root (TINY sizes, 64 px) to copy and break."""
    return write_synthetic(tmp_path_factory.mktemp("tiny_synthetic"), **TINY)


@pytest.fixture
def synthetic_copy(tiny_synthetic_root, tmp_path) -> Path:
    """A writable copy of the tiny synthetic data root, for tests that damage it."""
    return Path(shutil.copytree(tiny_synthetic_root, tmp_path / "data"))


@pytest.fixture(scope="session")
def real_data_dir() -> Path:
    """The real data root (MTUNET_DATA_DIR, else ../shared/data beside the checkout); skips when absent."""
    path = default_data_dir()
    if not path.is_dir():
        pytest.skip(f"real data not found at {path}; set MTUNET_DATA_DIR")
    return path


@pytest.fixture(scope="session")
def real_idrid_dir(real_data_dir) -> Path:
    path = real_data_dir / "IDRiD"
    if not (path / "A. Segmentation").is_dir():
        pytest.skip(f"real data not found at {path}; set MTUNET_DATA_DIR")
    return path


@pytest.fixture(scope="session")
def real_eyepacs_dir(real_data_dir) -> Path:
    path = real_data_dir / "kaggle-eyepacs-subset"
    if not (path / "trainLabels.csv").is_file():
        pytest.skip(f"real data not found at {path}; set MTUNET_DATA_DIR")
    return path


@pytest.fixture(scope="session")
def real_messidor_dir(real_data_dir) -> Path:
    path = real_data_dir / "messidor-2"
    if not (path / "messidor_data.csv").is_file():
        pytest.skip(f"real Messidor-2 not found at {path}; set MTUNET_DATA_DIR")
    return path


@pytest.fixture(scope="session")
def real_aptos_dir(real_data_dir) -> Path:
    path = real_data_dir / "aptos2019"
    if not (path / "train.csv").is_file():
        pytest.skip(f"real APTOS 2019 not found at {path}; set MTUNET_DATA_DIR")
    return path


def _copy_checkout(root: Path) -> Path:
    """The tracked and untracked-not-ignored files of the checkout into `root`, without its
    results, figures and regression notebooks (a fresh clone's view, with uncommitted edits)."""
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=project_root(),
                           capture_output=True, text=True, check=True).stdout.split()
    for name in files:
        source = project_root() / name
        if not source.is_file() or name.startswith(("results/", "figures/", "tests/regression/")):
            continue
        target = root / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(source.read_bytes())
        target.chmod(source.stat().st_mode)
    return root


@pytest.fixture(scope="session")
def copy_checkout():
    """``copy_checkout(root)``: the project as a fresh clone would have it, written into root."""
    return _copy_checkout
