"""numba kernels: plain functions over arrays. Nothing here imports the rest of `sensing`.

numba's on-disk cache (`cache=True`) notices a change to a kernel's own file only, not to the
kernels it calls from other files: after an upgrade that changes `fault.py` alone, the cached
`checks.run_checks` would go on running the old fault checks. So unless NUMBA_CACHE_DIR says
otherwise, the cache lives in a directory named after a hash of every kernel source here.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from numba.core import config


def source_hash(directory: Path) -> str:
    """A short hash of the names and contents of the Python files in `directory`."""
    digest = hashlib.sha256()
    for path in sorted(directory.glob("*.py")):
        digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:16]


def cache_dir(directory: Path = Path(__file__).parent) -> Path:
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "sensing-numba" / source_hash(directory)


if not os.environ.get("NUMBA_CACHE_DIR"):
    config.CACHE_DIR = str(cache_dir())  # type: ignore[attr-defined]  # not in the stubs
