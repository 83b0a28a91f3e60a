"""The default checks, beside the default threshold rules (`sensing.detect.rules`)."""

from __future__ import annotations

from typing import Any

from sensing.detect.checks import Check
from sensing.detect.fall import Fall
from sensing.detect.fault import default_fault_checks
from sensing.detect.inactivity import Inactivity


def default_checks() -> list[Check[Any]]:
    """The fault checks, fall and daytime inactivity."""
    return [*default_fault_checks(), Fall(), Inactivity()]
