from __future__ import annotations


class WireError(ValueError):
    """A payload that cannot be used; the message is the dead-letter reason."""
