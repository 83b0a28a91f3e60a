from sensing.store.lineprotocol import LineFormatter
from sensing.store.writer import StoreUnavailable, StoreWriter

__all__ = ["LineFormatter", "StoreUnavailable", "StoreWriter"]
