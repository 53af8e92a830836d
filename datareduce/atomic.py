"""Write files so that a crash or interrupt never leaves a half-written one (temp file, then rename)."""
from __future__ import annotations

import io
import os
import tempfile
from pathlib import Path

from ._validate import UsageError


def _umask() -> int:
    """The process umask, read from /proc where it can be (os.umask can only be read by setting it)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


class UnwritableError(UsageError):
    """A folder a run would write to cannot be written (bad input: reported in one line, before any work)."""


def check_writable_dir(path, what: str) -> None:
    """Raise :class:`UnwritableError` ("``what`` cannot be written: …", ``what`` e.g. "--output-dir DIR") unless
    ``path`` is a folder that can be written, or can be made. Tried for real, not by permission bits (root ignores
    them, a read-only mount or /proc does not): a temp file is made in ``path``, or a temp folder in its nearest
    existing ancestor, and removed at once, so nothing stays behind either way."""
    path = Path(path).expanduser()
    target = path  # relative stays relative: the message names the folders as the user gave them
    while not os.path.lexists(target) and target != target.parent:
        target = target.parent
    problem = None
    if not target.is_dir():
        problem = f"{target} is a file, not a folder" if target.is_file() else f"{target} is not a folder"
    else:
        try:
            if target == path:
                fd, tmp = tempfile.mkstemp(dir=target, prefix=".write-test-")
                os.close(fd)
                os.unlink(tmp)
            else:
                os.rmdir(tempfile.mkdtemp(dir=target, prefix=".write-test-"))
        except OSError as e:
            action = "writing in" if target == path else "creating a folder in"
            problem = f"{action} {target} failed ({e.strerror or e})"
    if problem:
        raise UnwritableError(f"{what} cannot be written: {problem}")


def write_bytes(path, data: bytes) -> Path:
    """Atomically replace ``path`` with ``data``; the parent folder is created if missing. The file gets the
    mode a plain ``open(path, "w")`` would give a new file (0666 less the umask), not the temp file's 0600."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            if hasattr(os, "fchmod"):
                os.fchmod(f.fileno(), 0o666 & ~_umask())
            else:
                os.chmod(tmp, 0o666 & ~_umask())
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_text(path, text: str) -> Path:
    return write_bytes(path, text.encode("utf-8"))


def write_npy(path, array) -> Path:
    """Atomically write one NumPy array as ``.npy`` (no pickles)."""
    import numpy as np

    buf = io.BytesIO()
    np.save(buf, array, allow_pickle=False)
    return write_bytes(path, buf.getvalue())


def write_torch(path, obj) -> Path:
    """Atomically ``torch.save`` ``obj`` (checkpoints, selector states)."""
    import torch

    buf = io.BytesIO()
    torch.save(obj, buf)
    return write_bytes(path, buf.getvalue())
