"""Writing files so that a kill never leaves a truncated one that a later run trusts: write a
temporary file beside the target, fsync it, then rename it into place (atomic on POSIX file
systems). One implementation for result tables, figures, stamps, manifests and checkpoints."""
from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import IO, Callable

from mtunet.errors import UserError


def temporary_path(path: Path) -> Path:
    """Where `path` is written before it is renamed into place (a kill can leave it behind; it
    is never read)."""
    return path.with_name(path.name + ".tmp")


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms without directory file descriptors
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_path(path: str | Path):
    """Yield a temporary path beside `path`; it replaces `path` (fsynced) only if the block
    succeeds. A folder that cannot be written (read-only, full) is one UserError naming the file."""
    path = Path(path)
    tmp = temporary_path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        yield tmp
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
        _fsync_dir(path.parent)
    except OSError as exc:
        raise UserError(f"{path}: cannot write ({exc.strerror or exc})") from None
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink()


def write_atomic(path: str | Path, write: Callable[[IO[bytes]], None]) -> Path:
    """`path` written by `write(binary file)`, atomically, e.g.
    ``write_atomic(p, lambda f: np.savez_compressed(f, **arrays))``."""
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            write(f)
    return Path(path)


def write_text(path: str | Path, text: str) -> Path:
    """`path` holds `text`, written atomically."""
    return write_atomic(path, lambda f: f.write(text.encode()))
