from sensing.dedup.journal import DedupJournal
from sensing.dedup.window import DedupWindow

__all__ = ["DedupJournal", "DedupWindow"]
