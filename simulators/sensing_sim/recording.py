"""Recordings: every message a simulated fleet sent, with its labels, in one file.

A recording is what `sensing-sim record` writes and `sensing-sim replay` publishes; it is
self-contained (the incident labels and what was sent travel with the messages), so a run can
be replayed, shared and scored again without the scenario that made it. Layout (all integers
little-endian; docs/recording-format.md has the same with an example):

    magic     8 bytes  b"SNSIMREC"
    version   u16      1
    header    u32 length, then that many bytes of UTF-8 JSON:
              {"format": "sensing-sim recording", "version": 1, "start_ms": ..,
               "duration_s": .., "speed": .. (default replay speed), "fleet": {..},
               "faults": {..}, "what": [names of the message kinds, by code], "labels": [..]}
    frames    one per message, in arrival order:
              i64 at_ms, u8 what (index into header "what"), u8 flags (bit 0: retain),
              u16 topic length, u32 payload length, u32 readings; topic (UTF-8); payload
    trailer   a frame with what = 255 and an empty topic, whose payload is UTF-8 JSON of what
              the run sent (`StreamCounts.to_dict`); nothing follows it

`at_ms` is the simulated arrival time at the broker; payloads are byte for byte what was
published (SNB1 batches, JSON status, malformed bytes). A file whose name ends in `.gz` is
gzip-compressed as a whole. A recording without its trailer was cut short: reading it raises
`RecordingError` at the point where it ends.
"""

from __future__ import annotations

import gzip
import struct
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Final, Self

import orjson

from sensing_sim.transport import KINDS_OF_MESSAGE, Message

MAGIC: Final = b"SNSIMREC"
VERSION: Final = 1
FORMAT_NAME: Final = "sensing-sim recording"
_PREAMBLE = struct.Struct("<8sHI")
_FRAME = struct.Struct("<qBBHII")
END: Final = 255
_RETAIN = 1


class RecordingError(ValueError):
    """The file is not a recording, or is damaged or cut short."""


def _open(path: Path, mode: str) -> IO[bytes]:
    if path.name.endswith(".gz"):
        return gzip.open(path, mode + "b", compresslevel=3)  # type: ignore[return-value]
    return path.open(mode + "b")


class RecordingWriter:
    """Writes a recording; use as a context manager, `write` each message, then `finish`."""

    def __init__(self, path: Path, header: dict[str, Any]) -> None:
        self.path = path
        self._codes = {name: code for code, name in enumerate(KINDS_OF_MESSAGE)}
        head = orjson.dumps({"format": FORMAT_NAME, "version": VERSION, **header,
                             "what": list(KINDS_OF_MESSAGE)})
        self._file = _open(path, "w")
        self._file.write(_PREAMBLE.pack(MAGIC, VERSION, len(head)) + head)
        self.messages = 0

    def write(self, m: Message) -> None:
        topic = m.topic.encode()
        self._file.write(_FRAME.pack(m.at_ms, self._codes[m.what], _RETAIN if m.retain else 0,
                                     len(topic), len(m.payload), m.readings))
        self._file.write(topic)
        self._file.write(m.payload)
        self.messages += 1

    def finish(self, trailer: dict[str, Any]) -> None:
        body = orjson.dumps(trailer)
        self._file.write(_FRAME.pack(0, END, 0, 0, len(body), 0) + body)
        self._file.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if not self._file.closed:
            self._file.close()


class RecordingReader:
    """Reads a recording: `header` at once, `messages()` once, then `trailer`."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._file = _open(path, "r")
        try:
            magic, version, length = _PREAMBLE.unpack(self._exactly(_PREAMBLE.size, "header"))
            if magic != MAGIC:
                raise RecordingError(f"{path} is not a sensing-sim recording")
            if version != VERSION:
                raise RecordingError(f"{path}: recording version {version} (this reads "
                                     f"{VERSION})")
            self.header: dict[str, Any] = orjson.loads(self._exactly(length, "header"))
        except (OSError, EOFError, orjson.JSONDecodeError) as exc:
            self._file.close()
            raise RecordingError(f"{path}: unreadable header: {exc}") from exc
        except RecordingError:
            self._file.close()
            raise
        self._what: list[str] = list(self.header["what"])
        self.trailer: dict[str, Any] | None = None

    @property
    def start_ms(self) -> int:
        return int(self.header["start_ms"])

    @property
    def labels(self) -> list[dict[str, Any]]:
        return list(self.header.get("labels", []))

    def _exactly(self, n: int, what: str) -> bytes:
        data = self._file.read(n)
        if len(data) != n:
            raise RecordingError(f"{self.path} ends inside a {what} (cut short?)")
        return data

    def messages(self) -> Iterator[Message]:
        try:
            while True:
                at, code, flags, topic_len, payload_len, readings = _FRAME.unpack(
                    self._exactly(_FRAME.size, "frame"))
                topic = self._exactly(topic_len, "frame").decode()
                payload = self._exactly(payload_len, "frame")
                if code == END:
                    self.trailer = orjson.loads(payload)
                    return
                if code >= len(self._what):
                    raise RecordingError(f"{self.path}: unknown message kind {code}")
                yield Message(at, topic, payload, self._what[code], readings,
                              bool(flags & _RETAIN))
        except (OSError, EOFError, UnicodeDecodeError, orjson.JSONDecodeError) as exc:
            raise RecordingError(f"{self.path}: damaged: {exc}") from exc
        finally:
            self._file.close()

    def close(self) -> None:
        self._file.close()
