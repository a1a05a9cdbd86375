"""Run manifests: what produced a result, so every number traces back to a commit and its inputs."""
from __future__ import annotations

import hashlib
import json
import os
import platform
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path
from typing import Any, Iterable

from mtunet.config import project_root

PACKAGES = ("keras", "tensorflow", "tensorflow-cpu", "jax", "jaxlib", "numpy", "scipy",
            "scikit-learn", "pandas", "opencv-python-headless", "papermill", "mtunet")


# what the batch writes: changes there do not make the code that wrote them differ from the commit
OUTPUT_FOLDERS = ("results", "figures")


def git_commit(root: Path | None = None) -> dict[str, Any]:
    """The checkout's commit and whether its code had uncommitted changes (None outside git).
    Changes under the output folders do not count: a batch rewrites them as it goes, and what
    matters is whether the commit named is the code that made the results."""
    root = root or project_root()

    def run(*args: str) -> str | None:
        try:
            return subprocess.run(["git", *args], cwd=root, capture_output=True, text=True,
                                  timeout=10, check=True).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return None

    status = run("status", "--porcelain", "--untracked-files=no", "--", ".",
                 *(f":(exclude){folder}" for folder in OUTPUT_FOLDERS))
    return {"commit": run("rev-parse", "HEAD"), "dirty": bool(status) if status is not None else None}


def package_versions(names: Iterable[str] = PACKAGES) -> dict[str, str]:
    versions = {}
    for name in names:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions


def fingerprint_files(paths: Iterable[Path]) -> str:
    """A short hash of file names, sizes and the first 64 KiB of each file: cheap but specific."""
    digest = hashlib.sha1()
    for path in sorted(Path(p) for p in paths):
        digest.update(path.name.encode())
        try:
            stat = path.stat()
            digest.update(str(stat.st_size).encode())
            with open(path, "rb") as handle:
                digest.update(handle.read(65536))
        except OSError:
            digest.update(b"<missing>")
    return digest.hexdigest()[:16]


def environment() -> dict[str, Any]:
    backend = os.environ.get("KERAS_BACKEND", "tensorflow")
    return {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "keras_backend": backend,
        "packages": package_versions(),
        "cpu_count": os.cpu_count(),
    }


def build_manifest(**fields: Any) -> dict[str, Any]:
    manifest = {"created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "git": git_commit(),
                "environment": environment()}
    manifest.update(fields)
    return manifest


def write_manifest(path: Path, **fields: Any) -> dict[str, Any]:
    """Write a manifest atomically (a crash never leaves half a JSON file)."""
    from mtunet.files import write_text

    manifest = build_manifest(**fields)
    write_text(path, json.dumps(manifest, indent=2, default=str))
    return manifest
