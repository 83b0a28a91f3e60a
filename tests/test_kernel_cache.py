"""The numba cache follows every kernel source, not only the file of the kernel cached."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import sensing.kernels
from sensing.kernels import cache_dir, source_hash


def test_the_cache_directory_changes_with_any_kernel_source(tmp_path: Path) -> None:
    kernels = tmp_path / "kernels"
    shutil.copytree(Path(sensing.kernels.__file__).parent, kernels,
                    ignore=shutil.ignore_patterns("__pycache__"))
    before = source_hash(kernels)
    assert source_hash(kernels) == before
    fault = kernels / "fault.py"
    fault.write_text(fault.read_text() + "\n# a change in a kernel that others call\n")
    assert source_hash(kernels) != before
    assert cache_dir(kernels).name == source_hash(kernels)


def test_numba_caches_under_that_directory_unless_told_otherwise(tmp_path: Path) -> None:
    code = ("import sensing.kernels, numba.core.config as c; print(c.CACHE_DIR)")
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_CACHE_DIR"}
    env["XDG_CACHE_HOME"] = str(tmp_path)
    ours = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                          check=True).stdout.strip()
    assert ours == str(tmp_path / "sensing-numba" / source_hash(
        Path(sensing.kernels.__file__).parent))
    env["NUMBA_CACHE_DIR"] = str(tmp_path / "mine")
    theirs = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                            text=True, check=True).stdout.strip()
    assert theirs == str(tmp_path / "mine")


def test_an_unusable_cache_directory_leaves_numbas_own_choice(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("")
    code = "import sensing.kernels, numba.core.config as c; print(repr(c.CACHE_DIR))"
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_CACHE_DIR"}
    env["XDG_CACHE_HOME"] = str(blocker)
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         check=True).stdout.strip()
    assert out == "''"
