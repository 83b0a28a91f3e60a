"""Small directory documents for the dispatch tests, and a TOML writer for them."""

from __future__ import annotations

import json
from typing import Any


def small() -> dict[str, Any]:
    """city > district > street > community > two compounds; a grid worker of the community
    and one of compound k2 alone, a volunteer at the street, a district command, one
    resident with a relative."""
    return {
        "timezone": "Asia/Shanghai",
        "areas": [
            {"id": "city", "level": "city"},
            {"id": "d1", "level": "district", "parent": "city"},
            {"id": "s1", "level": "street", "parent": "d1"},
            {"id": "c1", "level": "community", "parent": "s1"},
            {"id": "k1", "level": "compound", "parent": "c1"},
            {"id": "k2", "level": "compound", "parent": "c1"},
        ],
        "responders": [
            {"id": "grid-1", "roles": ["grid_worker"], "areas": ["c1"],
             "contacts": [{"channel": "mqtt"}]},
            {"id": "grid-k2", "roles": ["grid_worker", "volunteer"], "areas": ["k2"]},
            {"id": "vol-s1", "roles": ["volunteer"], "areas": ["s1"],
             "quiet_hours": [{"start": "22:00", "end": "07:00"}]},
            {"id": "cmd-d1", "roles": ["district_command"], "areas": ["d1"]},
        ],
        "residents": [
            {"id": "res-1", "area": "k1", "devices": ["wearable-000001", "smoke-000001"],
             "relatives": [{"id": "rel-1", "relation": "son",
                            "contacts": [{"channel": "apprise", "url": "json://127.0.0.1/x"}]}]},
        ],
    }


def to_toml(doc: dict[str, Any]) -> str:
    """`doc` as TOML: top-level keys, every value inline."""
    return "".join(f"{key} = {_inline(value)}\n" for key, value in doc.items())


def _inline(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_inline(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{json.dumps(k)} = {_inline(v)}" for k, v in value.items()) + "}"
    raise TypeError(type(value))
