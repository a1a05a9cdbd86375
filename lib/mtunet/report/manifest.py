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


# Instruction sets that decide which kernels oneDNN (TensorFlow) and XLA (JAX) run on a CPU, and
# so how a training run's float sums are rounded; the other flags do not change a result.
ISA_FLAGS = ("sse4_2", "avx", "avx2", "fma", "avx512f", "avx512bw", "avx512vl", "avx512_vnni",
             "avx512_bf16", "avx512_fp16", "avx_vnni", "amx_tile", "amx_bf16", "amx_int8")
CPUINFO = Path("/proc/cpuinfo")
CPU_CACHES = Path("/sys/devices/system/cpu/cpu0/cache")


def _first_processor(cpuinfo: Path) -> dict[str, str]:
    """The `key: value` lines of the first processor in /proc/cpuinfo ({} where it is absent)."""
    fields: dict[str, str] = {}
    try:
        text = cpuinfo.read_text()
    except OSError:
        return fields
    for line in text.splitlines():
        if not line.strip():
            if fields:
                break
            continue
        key, _, value = line.partition(":")
        fields.setdefault(key.strip(), value.strip())
    return fields


def _caches(folder: Path) -> dict[str, str]:
    """{"L1d": "48K", "L2": "1024K", ...} from sysfs ({} where it is absent)."""
    caches = {}
    for index in sorted(folder.glob("index*")):
        try:
            level = (index / "level").read_text().strip()
            kind = (index / "type").read_text().strip()
            size = (index / "size").read_text().strip()
        except OSError:
            continue
        suffix = {"Data": "d", "Instruction": "i"}.get(kind, "")
        caches[f"L{level}{suffix}"] = size
    return caches


def cpu(cpuinfo: Path = CPUINFO, caches: Path = CPU_CACHES) -> dict[str, Any]:
    """The CPU type a training run's numbers depend on: the same code and data give the same
    numbers byte for byte on one type, and other numbers on another (oneDNN's kernels and their
    blocking follow the instruction set, the cache sizes and the thread count, and training
    carries a rounding difference into every weight). ``label`` names it for people; ``type`` is
    a short hash of everything here, so two runs can be compared."""
    fields = _first_processor(cpuinfo)
    flags = set(fields.get("flags", fields.get("Features", "")).split())
    info = {"model_name": fields.get("model name") or platform.processor() or platform.machine(),
            "vendor": fields.get("vendor_id", ""),
            "family": fields.get("cpu family", ""), "model": fields.get("model", ""),
            "stepping": fields.get("stepping", ""),
            "isa": [f for f in ISA_FLAGS if f in flags], "caches": _caches(caches),
            "cpus": os.cpu_count()}
    info["type"] = hashlib.sha1(json.dumps(info, sort_keys=True).encode()).hexdigest()[:8]
    info["label"] = cpu_label(info)
    return info


def cpu_label(info: dict[str, Any]) -> str:
    """"AMD EPYC, family 26 model 2, AVX-512 + BF16, L2 1024K, 2 CPUs [3f2a91c0]": one line."""
    isa = set(info.get("isa") or [])
    widest = ("AMX" if "amx_tile" in isa else "AVX-512" if "avx512f" in isa
              else "AVX2" if "avx2" in isa else "AVX" if "avx" in isa else "")
    if widest and "avx512_bf16" in isa:
        widest += " + BF16"
    parts = [info.get("model_name") or "unknown CPU"]
    if info.get("family") or info.get("model"):
        parts.append(f"family {info.get('family')} model {info.get('model')}")
    parts += [widest] if widest else []
    l2 = (info.get("caches") or {}).get("L2")
    parts += [f"L2 {l2}"] if l2 else []
    parts.append(f"{info.get('cpus')} CPUs")
    return ", ".join(parts) + (f" [{info['type']}]" if info.get("type") else "")


def environment() -> dict[str, Any]:
    backend = os.environ.get("KERAS_BACKEND", "tensorflow")
    return {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "keras_backend": backend,
        "packages": package_versions(),
        "cpu_count": os.cpu_count(),
        "cpu": cpu(),
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
