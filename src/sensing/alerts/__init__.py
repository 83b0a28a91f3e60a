from sensing.alerts.book import AlertBook, UnknownAlert

__all__ = ["AlertBook", "UnknownAlert"]
