"""Atomic writes give their files the mode a plain open() would (0666 less the umask), not mkstemp's 0600."""
import os
import stat
import subprocess
import sys

import numpy as np
import pytest

from datareduce import atomic


def _mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.mark.parametrize("umask", [0o022, 0o027, 0o002], ids=oct)
def test_atomic_files_follow_the_umask(tmp_path, umask):
    old = os.umask(umask)
    try:
        plain = tmp_path / "plain.txt"
        plain.write_text("x")  # how any other file of a run is made
        made = [atomic.write_text(tmp_path / "a.txt", "x"), atomic.write_npy(tmp_path / "a.npy", np.zeros(3)),
                atomic.write_torch(tmp_path / "a.pth", {"x": 1})]
        atomic.write_text(tmp_path / "a.txt", "replaced")  # replacing keeps the same mode
    finally:
        os.umask(old)
    assert _mode(plain) == 0o666 & ~umask
    for path in made:
        assert _mode(path) == 0o666 & ~umask, path


def test_atomic_mode_in_a_fresh_process(tmp_path):
    """The umask a shell sets (here 0o077) is honoured too: private stays private."""
    code = "import os, sys; os.umask(0o077); from datareduce.atomic import write_text; write_text(sys.argv[1], 'x')"
    subprocess.run([sys.executable, "-c", code, str(tmp_path / "f.txt")], check=True, timeout=60)
    assert _mode(tmp_path / "f.txt") == 0o600
    code = "import os, sys; os.umask(0o002); from datareduce.atomic import write_text; write_text(sys.argv[1], 'x')"
    subprocess.run([sys.executable, "-c", code, str(tmp_path / "g.txt")], check=True, timeout=60)
    assert _mode(tmp_path / "g.txt") == 0o664
