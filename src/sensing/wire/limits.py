"""What the contract allows of a reading's names, times and sizes, for every codec and the edge
agent's local input (no numpy here: the edge agent imports it). docs/contract.md ("Names" and
"Limits") documents every constant below.
"""

from __future__ import annotations

import re

from sensing.wire.errors import Code
from sensing.wire.kinds import KINDS

MAX_DEVICE_ID = 128
MAX_CHANNEL_NAME = 64
DEVICE_ID_ALPHABET = "A-Za-z0-9_.:-"
CHANNEL_ALPHABET = "A-Za-z0-9_.-"
DEVICE_ID_PATTERN = re.compile(f"[{DEVICE_ID_ALPHABET}]{{1,{MAX_DEVICE_ID}}}")
RESERVED_FIELDS = ("seq", "epoch", "battery")
"""A reading's own fields in its stored line. A channel of one of these names is stored as the
field `ch_<name>` (sensing.store.lineprotocol.field_key), so `ch_seq`, `ch_epoch` and
`ch_battery` are no channel names: else two channels would share one field, one value lost."""
RENAMED_PREFIX = "ch_"
RENAMED_FIELDS = frozenset(RENAMED_PREFIX + name for name in RESERVED_FIELDS)
_NOT_RENAMED = f"(?!{RENAMED_PREFIX}(?:{'|'.join(RESERVED_FIELDS)})(?:\n|\\Z))"
"""what a channel name must not be, as a lookahead: its end is a newline in a joined table"""
CHANNEL_PATTERN = re.compile(f"{_NOT_RENAMED}[{CHANNEL_ALPHABET}]{{1,{MAX_CHANNEL_NAME}}}")
"""Device ids and channel names: ASCII letters, digits and a few marks, nothing that line
protocol, MQTT or a shell would have to escape (no space, comma, quote, slash, `=`, `+`, `#`,
backslash or control character), and short: a stored line stays far below any store's limit.
Channel names besides are none of RENAMED_FIELDS."""
_DEVICE_IDS = re.compile(f"(?:[{DEVICE_ID_ALPHABET}]{{1,{MAX_DEVICE_ID}}}\n)*")
_CHANNELS = re.compile(f"(?:{_NOT_RENAMED}[{CHANNEL_ALPHABET}]{{1,{MAX_CHANNEL_NAME}}}\n)*")

TS_MIN_MS = 946_684_800_000  # 2000-01-01T00:00:00Z
TS_MAX_MS = 4_102_444_800_000  # 2100-01-01T00:00:00Z
MAX_FUTURE_MS = 300_000
"""How far ahead of the core's clock a reading's or status's `ts` may be: 5 minutes of clock
skew between a gateway and the core. Later ones are refused (`ts_out_of_range`); earlier ones
are accepted back to TS_MIN_MS (a gateway's backlog)."""

MAX_READINGS_PER_MESSAGE = 100_000
MAX_VALUES_PER_READING = 64
MAX_VALUES_PER_MESSAGE = 1_000_000
MAX_DEVICES_PER_MESSAGE = 10_000
"""entries of one message's device table (SNB) or distinct devices of one JSON array"""
MAX_CHANNELS_PER_MESSAGE = 256
MAX_STATUS_BYTES = 4096

MAX_DEVICES_PER_GATEWAY = 10_000
"""distinct device ids a gateway may introduce over the core's lifetime (readings of devices
the core already knows always pass); beyond it, readings of new ones: `too_many_devices`"""
MAX_CHANNELS_PER_GATEWAY = 256
"""distinct channel names a gateway may introduce over the core's lifetime; beyond it, a
reading with a new one: `too_many_channels`"""
MAX_CHANNELS = 4096
"""distinct channel names in all (metric names in the store); the contract's channels, which
the detectors use, are known from the start and never refused"""
MAX_DEVICES = 250_000
"""distinct device ids in all: a district's worth, with room (the district scenario has
100,000). The core keeps about 1.4 KB per device (registry, dedup window, detectors), so
about 350 MB at the bound."""

MAX_GATEWAYS = 20_000
MAX_AREAS = 20_000
"""gateways and areas the core takes in all (a district has about 1,000 gateways); a message
naming a new one beyond: `too_many_gateways`"""

MAX_LINE_BYTES = 16_384
"""The longest stored line of a reading the limits above allow: its tags (area and gateway of
64 bytes, device id of 128, kind), MAX_VALUES_PER_READING fields of a 64-byte channel name
(or `ch_` and one) with a 24-character float, battery, seq, epoch and timestamp come to less
(checked below and in tests). VictoriaMetrics reads lines of up to 256 KiB, InfluxDB longer."""
_LONGEST_LINE = (len("reading,area=,gateway=,device=,kind= ") + 64 + 64 + MAX_DEVICE_ID
                 + max(map(len, KINDS)) + MAX_VALUES_PER_READING * (3 + MAX_CHANNEL_NAME + 26)
                 + len("battery=") + 25 + len("seq=i,epoch=i ") + 3 * 20)
if _LONGEST_LINE > MAX_LINE_BYTES:
    raise ImportError(f"a reading's line can reach {_LONGEST_LINE} bytes > MAX_LINE_BYTES")


def is_device_id(name: str) -> bool:
    return DEVICE_ID_PATTERN.fullmatch(name) is not None


def is_channel_name(name: str) -> bool:
    return CHANNEL_PATTERN.fullmatch(name) is not None


def _all_match(pattern: re.Pattern[str], names: tuple[str, ...] | list[str]) -> bool:
    """Whether every name matches, in one regex call over the names joined by newlines (outside
    the alphabets); as many newlines as names: none of them held one."""
    joined = "\n".join(names) + "\n"
    return pattern.fullmatch(joined) is not None and joined.count("\n") == len(names)


def all_device_ids(names: tuple[str, ...] | list[str]) -> bool:
    """Whether every name is a device id."""
    return _all_match(_DEVICE_IDS, names) if names else True


def all_channel_names(names: tuple[str, ...] | list[str]) -> bool:
    """Whether every name is a channel name."""
    return _all_match(_CHANNELS, names) if names else True


def bad_device_reason(device: str, kind: str) -> str | None:
    """Why a (device, kind) pair breaks the contract, or None."""
    return None if (bad := bad_device(device, kind)) is None else bad[0]


def bad_device(device: str, kind: str) -> tuple[str, Code] | None:
    """(reason, code) why a (device, kind) pair breaks the contract, or None."""
    if not is_device_id(device):
        return (f"device id {device[:40]!r} must be 1-{MAX_DEVICE_ID} characters of "
                f"[{DEVICE_ID_ALPHABET}]", Code.NAME_INVALID)
    if kind not in KINDS:
        return (f"device {device!r}: unknown kind {kind[:40]!r} (expected one of "
                f"{', '.join(KINDS)})", Code.KIND_UNKNOWN)
    return None


def bad_channel_reason(channel: str) -> str | None:
    """Why a channel name breaks the contract, or None."""
    if is_channel_name(channel):
        return None
    if channel in RENAMED_FIELDS:
        return (f"channel {channel!r} is reserved: a channel named "
                f"{channel.removeprefix(RENAMED_PREFIX)!r} is stored as the field {channel!r}")
    return (f"channel {channel[:40]!r} must be 1-{MAX_CHANNEL_NAME} characters of "
            f"[{CHANNEL_ALPHABET}]")
