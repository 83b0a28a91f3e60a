"""Users by role and the Mosquitto ACL rendered for them from `deploy/mosquitto/acl.template`.

The template's lines before the first `#role NAME` apply to everyone (the gateways' patterns on
%u); each `#role` block becomes one `user` section per user of that role, with {user}, {tier}
and {area} filled in. Gateways need no section: the patterns are their rights.
"""

from __future__ import annotations

import re
from enum import StrEnum
from pathlib import Path

from pydantic import BaseModel, ConfigDict, field_validator, model_validator

from sensing.services import PROJECT_ROOT
from sensing.wire.topics import is_valid_name

DEFAULT_TEMPLATE = PROJECT_ROOT / "deploy" / "mosquitto" / "acl.template"
ANY = "+"
"""a responder's tier or area when it is not limited to one"""


class Role(StrEnum):
    GATEWAY = "gateway"
    CORE = "core"
    OPERATOR = "operator"
    RESPONDER = "responder"
    API = "api"


class User(BaseModel):
    """One MQTT user. Its name is also the topic level it may speak for (a gateway id, or the
    responder in `sensing/v1/ack/{responder}`), hence the names' alphabet."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    role: Role
    tier: str = ANY
    """responders: the dispatch tier they read (`+`: every tier)"""
    area: str = ANY
    """responders: the area they read (`+`: every area)"""

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not is_valid_name(v):
            raise ValueError(f"user name {v!r} must match [A-Za-z0-9_-]{{1,64}} (it is a topic "
                             "level: the gateway id, or the responder of its acks)")
        return v

    @field_validator("tier", "area")
    @classmethod
    def _scope(cls, v: str) -> str:
        if v != ANY and not is_valid_name(v):
            raise ValueError(f"tier or area {v!r} must match [A-Za-z0-9_-]{{1,64}} or be +")
        return v

    @model_validator(mode="after")
    def _scoped_only_responders(self) -> User:
        if self.role is not Role.RESPONDER and (self.tier != ANY or self.area != ANY):
            raise ValueError(f"{self.name}: only responders have a tier and an area")
        return self

    @classmethod
    def responder(cls, spec: str) -> User:
        """From `NAME[:TIER[:AREA]]`, e.g. `grid-7:grid` or `vol-3:volunteers:shuangqiaozi`."""
        name, _, scope = spec.partition(":")
        tier, _, area = scope.partition(":")
        return cls(name=name, role=Role.RESPONDER, tier=tier or ANY, area=area or ANY)


class Template:
    """A parsed ACL template: the shared lines and one block of lines per role."""

    ROLE_LINE = re.compile(r"^#role\s+(\S+)\s*$")

    def __init__(self, text: str) -> None:
        self.shared: list[str] = []
        self.roles: dict[Role, list[str]] = {}
        current: list[str] = self.shared
        for line in text.splitlines():
            match = self.ROLE_LINE.match(line)
            if match:
                try:
                    role = Role(match.group(1))
                except ValueError:
                    raise ValueError(f"ACL template: unknown role {match.group(1)!r}") from None
                current = self.roles.setdefault(role, [])
                continue
            current.append(line)

    @classmethod
    def load(cls, path: Path = DEFAULT_TEMPLATE) -> Template:
        return cls(path.read_text(encoding="utf-8"))

    def render(self, users: list[User]) -> str:
        out = [*self.shared]
        for user in sorted(users, key=lambda u: (u.role.value, u.name)):
            block = self.roles.get(user.role)
            if block is None:
                if user.role is Role.GATEWAY:
                    continue
                raise ValueError(f"ACL template has no #role {user.role.value} block")
            out += ["", f"user {user.name}"]
            out += [line.format(user=user.name, tier=user.tier, area=user.area)
                    for line in block if line.strip() and not line.lstrip().startswith("#")]
        return "\n".join(out).rstrip("\n") + "\n"
