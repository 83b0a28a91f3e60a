from sensing.dedup.window import DedupWindow

__all__ = ["DedupWindow"]
