"""sensing: the stream core of a community-safety sensing pipeline."""

__version__ = "0.1.0"
