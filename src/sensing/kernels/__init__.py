"""numba kernels: plain functions over arrays. Nothing here imports the rest of `sensing`.

numba's on-disk cache (`cache=True`) notices a change to a kernel's own file only, not to the
kernels it calls from other files: after an upgrade that changes `fault.py` alone, the cached
`checks.run_checks` would go on running the old fault checks. So unless NUMBA_CACHE_DIR says
otherwise, the cache lives in a directory named after a hash of every kernel source here.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path

from numba.core import config


def source_hash(directory: Path) -> str:
    """A short hash of the names and contents of the Python files in `directory`."""
    digest = hashlib.sha256()
    for path in sorted(directory.glob("*.py")):
        digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:16]


def cache_dir(directory: Path = Path(__file__).parent) -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache")
    if base.startswith("~"):  # no home directory (a bare service account): the temp dir
        base = os.path.join(tempfile.gettempdir(), f"sensing-{os.getuid()}")
    return Path(base) / "sensing-numba" / source_hash(directory)


def _use_own_cache_dir() -> None:
    """Unless NUMBA_CACHE_DIR is set; where the directory cannot be made, numba's own
    choice (beside the sources) stands."""
    if os.environ.get("NUMBA_CACHE_DIR"):
        return
    path = cache_dir()
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError:
        return
    config.CACHE_DIR = str(path)  # type: ignore[attr-defined]  # not in the stubs


_use_own_cache_dir()
