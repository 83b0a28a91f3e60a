from sensing.ingest.mqtt import CoreSession, Incoming

__all__ = ["CoreSession", "Incoming"]
