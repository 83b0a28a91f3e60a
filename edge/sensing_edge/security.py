"""How the edge agent authenticates to the broker and protects the connection.

`username` with `password` (or `password_file`, its first line) logs in with MQTT credentials.
`ca_file` turns on TLS and trusts only that CA; `tls=True` turns on TLS with the system CA store.
`cert_file` + `key_file` add a client certificate (mutual TLS). The broker's certificate is always
verified (TLS 1.2 at least); `tls_insecure_skip_hostname` only stops checking its host name.
`apply_security(client, security)` configures a paho client; the password is never logged.
"""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import Self

from paho.mqtt import client as mqtt
from pydantic import (
    BaseModel,
    ConfigDict,
    SecretStr,
    ValidationInfo,
    field_validator,
    model_validator,
)


def _readable(path: Path, field: str) -> Path:
    """The path, if it names a regular file this process can read; a clear error otherwise."""
    if not path.exists():
        raise ValueError(f"{field}: {path} does not exist")
    if not path.is_file():
        raise ValueError(f"{field}: {path} is not a regular file")
    try:
        with path.open("rb") as f:
            f.read(1)
    except OSError as e:
        raise ValueError(f"{field}: cannot read {path}: {e.strerror or e}") from None
    return path


def _first_line(path: Path) -> str:
    text = path.read_text(encoding="utf-8")
    lines = text.splitlines()
    return lines[0].strip() if lines else ""


class BrokerSecurity(BaseModel):
    """Credentials and TLS options for the agent's MQTT connection. All optional: the default
    is a plain, anonymous connection (fine on loopback, not across a network)."""

    # hide_input_in_errors: a ValidationError would otherwise print the whole input, password
    # included, next to any error of the model
    model_config = ConfigDict(frozen=True, extra="forbid", hide_input_in_errors=True)

    username: str | None = None
    password: SecretStr | None = None
    # the password is the first line of this file, stripped; exclusive with `password`
    password_file: Path | None = None
    # TLS, verifying the broker against this CA (PEM)
    ca_file: Path | None = None
    # client certificate and its private key (PEM, unencrypted) for mutual TLS
    cert_file: Path | None = None
    key_file: Path | None = None
    # TLS with the system CA store (implied by `ca_file`)
    tls: bool = False
    # Verify the broker's certificate chain but not that it names the host we connect to. Only
    # for a broker addressed by IP whose certificate has no matching SAN; a certificate with the
    # right SAN (IP:... or DNS:...) is the proper fix, as this lets any holder of a certificate
    # from the same CA impersonate the broker.
    tls_insecure_skip_hostname: bool = False

    @field_validator("username")
    @classmethod
    def _username_not_empty(cls, v: str | None) -> str | None:
        if v is not None and not v:
            raise ValueError("username must not be empty (leave it unset for no login)")
        return v

    @field_validator("password_file", "ca_file", "cert_file", "key_file")
    @classmethod
    def _file_readable(cls, v: Path | None, info: ValidationInfo) -> Path | None:
        return None if v is None else _readable(v, info.field_name or "file")

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if self.password is not None and self.password_file is not None:
            raise ValueError("password and password_file are exclusive: give one of them")
        if (self.password is not None or self.password_file is not None) and not self.username:
            which = "password" if self.password is not None else "password_file"
            raise ValueError(f"{which} needs a username (MQTT sends no password without one)")
        if self.password_file is not None and not _first_line(self.password_file):
            raise ValueError(f"password_file: {self.password_file} has an empty first line")
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("cert_file and key_file go together: give both or neither")
        if self.cert_file is not None and self.ca_file is None:
            raise ValueError("cert_file/key_file (client certificate) need ca_file")
        if self.tls_insecure_skip_hostname and not self.uses_tls:
            raise ValueError("tls_insecure_skip_hostname needs TLS (ca_file or tls=true)")
        return self

    @property
    def uses_tls(self) -> bool:
        return self.tls or self.ca_file is not None

    def password_value(self) -> str | None:
        """The password in clear: `password`, or the first line of `password_file` (read now,
        so a rotated file is picked up on the next `apply_security`)."""
        if self.password is not None:
            return self.password.get_secret_value()
        if self.password_file is not None:
            return _first_line(self.password_file)
        return None


def apply_security(client: mqtt.Client, security: BrokerSecurity) -> None:
    """Configure credentials and TLS on a paho client; call before `connect()`, once."""
    if security.username is not None:
        client.username_pw_set(security.username, security.password_value())
    if security.uses_tls:
        client.tls_set(
            ca_certs=None if security.ca_file is None else str(security.ca_file),
            certfile=None if security.cert_file is None else str(security.cert_file),
            keyfile=None if security.key_file is None else str(security.key_file),
            cert_reqs=ssl.CERT_REQUIRED,
            # a client context: verifies the certificate and the host name, and (Python 3.10+)
            # refuses anything below TLS 1.2
            tls_version=ssl.PROTOCOL_TLS_CLIENT,
        )
        if security.tls_insecure_skip_hostname:
            client.tls_insecure_set(True)
