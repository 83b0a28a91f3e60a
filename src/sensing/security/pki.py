"""A small certificate authority made with Debian's `openssl` command: the CA, the broker's
server certificate and optional client certificates, EC P-256 keys written with mode 0600.

Every function leaves existing files alone, so running the setup again changes nothing."""

from __future__ import annotations

import ipaddress
import os
import shutil
import subprocess
import uuid
from dataclasses import dataclass
from pathlib import Path

CA_DAYS = 3650
LEAF_DAYS = 825
"""the longest lifetime browsers accept for a leaf; a broker is not a browser, but it is a
sane rotation period"""


class PkiError(RuntimeError):
    pass


@dataclass(frozen=True)
class CertKey:
    cert: Path
    key: Path

    @property
    def exists(self) -> bool:
        return self.cert.is_file() and self.key.is_file()


def _openssl(*args: str, cwd: Path) -> None:
    tool = shutil.which("openssl") or shutil.which("openssl", path="/usr/bin:/bin")
    if tool is None:
        raise PkiError("openssl is not installed (apt-get install -y openssl)")
    proc = subprocess.run([tool, *args], cwd=cwd, capture_output=True, text=True, check=False,
                          timeout=60)
    if proc.returncode != 0:
        raise PkiError(f"openssl {args[0]} failed ({proc.returncode}): {proc.stderr.strip()}")


def _private(path: Path) -> None:
    path.chmod(0o600)


def san_entry(name: str) -> str:
    """`IP:...` for an address, `DNS:...` for a host name."""
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return f"DNS:{name}"
    return f"IP:{name}"


def make_ca(directory: Path, name: str = "ca", days: int = CA_DAYS) -> CertKey:
    """A self-signed CA in `directory`/`name`.{crt,key}; kept if it already exists."""
    directory.mkdir(parents=True, exist_ok=True)
    ca = CertKey(directory / f"{name}.crt", directory / f"{name}.key")
    if ca.exists:
        return ca
    _openssl(
        "req", "-x509", "-new", "-nodes",
        "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
        "-keyout", ca.key.name, "-out", ca.cert.name, "-days", str(days),
        "-subj", f"/CN=sensing CA {uuid.uuid4().hex[:8]}",
        "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign",
        "-addext", "subjectKeyIdentifier=hash",
        cwd=directory,
    )  # fmt: skip
    _private(ca.key)
    return ca


def make_cert(directory: Path, name: str, ca: CertKey, common_name: str, *,
              sans: tuple[str, ...] = (), usage: str = "serverAuth",
              days: int = LEAF_DAYS) -> CertKey:
    """A leaf certificate signed by `ca` in `directory`/`name`.{crt,key}; kept if it exists.
    `sans` like ("IP:127.0.0.1", "DNS:localhost"); `usage` serverAuth or clientAuth."""
    directory.mkdir(parents=True, exist_ok=True)
    leaf = CertKey(directory / f"{name}.crt", directory / f"{name}.key")
    if leaf.exists:
        return leaf
    csr, ext = directory / f"{name}.csr", directory / f"{name}.ext"
    lines = [
        "basicConstraints=critical,CA:FALSE",
        "keyUsage=critical,digitalSignature,keyEncipherment",
        f"extendedKeyUsage={usage}",
        "subjectKeyIdentifier=hash",
        "authorityKeyIdentifier=keyid,issuer",
    ]
    if sans:
        lines.append("subjectAltName=" + ",".join(sans))
    ext.write_text("\n".join(lines) + "\n")
    try:
        _openssl(
            "req", "-new", "-nodes",
            "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
            "-keyout", leaf.key.name, "-out", csr.name, "-subj", f"/CN={common_name}",
            cwd=directory,
        )  # fmt: skip
        _private(leaf.key)
        _openssl(
            "x509", "-req", "-in", csr.name,
            "-CA", str(ca.cert.resolve()), "-CAkey", str(ca.key.resolve()),
            "-set_serial", str(uuid.uuid4().int >> 64),
            "-out", leaf.cert.name, "-days", str(days), "-sha256", "-extfile", ext.name,
            cwd=directory,
        )  # fmt: skip
    finally:
        csr.unlink(missing_ok=True)
        ext.unlink(missing_ok=True)
    return leaf


def readable_by_group(path: Path, group: str) -> bool:
    """Mode 0640 and group `group` when running as root and that group exists (Debian's
    mosquitto runs as user mosquitto and must read its key, password file and ACL); False
    otherwise, leaving the file as it is."""
    import grp

    if os.geteuid() != 0:
        return False
    try:
        gid = grp.getgrnam(group).gr_gid
    except KeyError:
        return False
    os.chown(path, 0, gid)
    path.chmod(0o640)
    return True
