"""The stack's secrets, and the lock of a network deployment: run once at every `docker compose up`.

    python -m foundry_common.network_lock            # generate what is missing, apply the lock (the `secrets` service)
    python -m foundry_common.network_lock show       # print the logins and keys (scripts/secrets)
    python -m foundry_common.network_lock certificate   # print the HTTPS edge's certificate, for clients to trust

The folder (a named volume) is mounted at /run/secrets in the services, where their settings read a file named
after a variable like the variable itself; the environment wins (foundry_common/settings.py). Published on
loopback only (BIND_ADDRESS, and EDGE_BIND_ADDRESS for the HTTPS edge), the stack stays open as on a laptop: only
Grafana's and Prometheus's own passwords exist. Published beyond loopback, the files that lock each service are put
in place: the chat asks for a login (CHAT_PASSWORD), the router for a key (ROUTER_API_KEYS, which the chat and
Open WebUI send: ROUTER_API_KEY), Open WebUI creates its admin at first start (WEBUI_ADMIN_PASSWORD) instead of
letting the first visitor be it, and Prometheus asks for a password. Each value is generated once and kept, so
locking again gives the same ones. The HTTPS edge's certificate is self-signed, for localhost, EDGE_HOSTNAMES and
the address it is published on; clients trust `tls/edge.crt` (`scripts/secrets certificate`).
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import secrets
import sys
import warnings
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

SECRETS_DIR = Path(os.environ.get("STACK_SECRETS_DIR", "/run/secrets"))
USERNAME = "admin"  # the chat's default CHAT_USERNAME, Prometheus's and Grafana's user
OPEN_WEBUI_ADMIN_EMAIL = "admin@localhost"  # compose.yaml's default WEBUI_ADMIN_EMAIL
# Files named after the variable each service reads; present only while the stack is locked.
LOCK_FILES = ("CHAT_PASSWORD", "ROUTER_API_KEY", "ROUTER_API_KEYS", "WEBUI_ADMIN_PASSWORD")
KEPT = "kept"  # where the lock's generated values stay while the stack is open
OWN_CERTIFICATE = "own.pem"  # in tls/: a certificate of the user's, with its key, used instead of a generated one


@dataclass(frozen=True)
class Lock:
    """Whether the published address reaches beyond this machine, and why, in words for people."""

    locked: bool
    reason: str


def lock_for(*addresses: str) -> Lock:
    """Locked unless every address a port is published on (BIND_ADDRESS, EDGE_BIND_ADDRESS) is a loopback one."""
    for address in (a.strip() for a in addresses if a.strip()):
        try:
            loopback = ipaddress.ip_address(address.strip("[]")).is_loopback
        except ValueError:
            loopback = address == "localhost"
        if not loopback:
            return Lock(True, f"published on {address}, beyond this machine: every service asks for a login")
    return Lock(False, "published on loopback only (BIND_ADDRESS, EDGE_BIND_ADDRESS): open without a login")


def random_secret() -> str:
    return secrets.token_urlsafe(24)


def keep(folder: Path, name: str) -> str:
    """The value in `folder/name`, generated once."""
    path = folder / name
    if not path.is_file() or not path.read_text().strip():
        write(path, random_secret())
    return path.read_text().strip()


def write(path: Path, text: str) -> None:
    """Replace `path` whole (readable by the services' users: the volume is mounted only where it is needed)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.partial")
    partial.write_text(text if text.endswith("\n") else text + "\n")
    partial.chmod(0o644)
    partial.replace(path)


def prometheus_web_config(lock: Lock, password: str) -> str:
    """Prometheus's --web.config.file: basic auth (bcrypt) when locked, nothing otherwise."""
    if not lock.locked:
        return "# Open: the stack is published on loopback only (foundry_common/network_lock.py).\n"
    with warnings.catch_warnings():
        # The standard library's crypt (libxcrypt makes bcrypt here) is deprecated and gone in Python 3.13;
        # the images run 3.11. Move to the bcrypt package with the images' Python.
        warnings.simplefilter("ignore", DeprecationWarning)
        import crypt

        # Bcrypt, cost 10: what Prometheus accepts (ruff takes any crypt method for a weak one).
        hashed = crypt.crypt(password, crypt.mksalt(crypt.METHOD_BLOWFISH, rounds=2**10))  # noqa: S324
    return f"# Locked: {lock.reason}.\nbasic_auth_users:\n  {USERNAME}: '{hashed}'\n"


def apply(folder: Path, lock: Lock, hostnames: Iterable[str]) -> None:
    kept = folder / KEPT
    for name in ("GRAFANA_ADMIN_PASSWORD", "PROMETHEUS_PASSWORD"):
        if os.environ.get(name):  # set in .env: Grafana and Prometheus read only this file
            write(folder / name, os.environ[name])
        keep(folder, name)
    write(folder / "prometheus-web.yml", prometheus_web_config(lock, keep(folder, "PROMETHEUS_PASSWORD")))
    router_key = keep(kept, "ROUTER_API_KEY")
    values = {
        "CHAT_PASSWORD": keep(kept, "CHAT_PASSWORD"),
        "ROUTER_API_KEY": router_key,
        "ROUTER_API_KEYS": router_key,
        "WEBUI_ADMIN_PASSWORD": keep(kept, "WEBUI_ADMIN_PASSWORD"),
    }
    for name in LOCK_FILES:
        if lock.locked:
            write(folder / name, values[name])
        else:
            (folder / name).unlink(missing_ok=True)
    write_certificate(folder / "tls", sorted(set(hostnames)))


def hostnames_for(bind_address: str, extra: str) -> list[str]:
    """The names and addresses the edge's certificate is valid for."""
    names = ["localhost", "127.0.0.1", *(name.strip() for name in extra.split(",") if name.strip())]
    address = bind_address.strip()
    if address and address not in {"0.0.0.0", "::"}:  # a specific address: clients use it
        names.append(address)
    return names


def write_certificate(folder: Path, hostnames: list[str]) -> None:
    """The HTTPS edge's self-signed certificate for `hostnames`, made again when they change.

    Self-signed rather than signed by a local authority: an authority's key would sit in this folder, which every
    service mounts, and a browser that trusts it would trust anything it signs. Clients trust `edge.crt` itself."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    own = folder / OWN_CERTIFICATE
    if own.is_file():  # yours, from `scripts/secrets use-certificate`
        write(folder / "edge.pem", own.read_text())
        write(folder / "edge.crt", "".join(own.read_text().partition("-----END CERTIFICATE-----\n")[:2]))
        (folder / "hostnames").unlink(missing_ok=True)  # so that a generated one is made again without it
        return
    names_path = folder / "hostnames"
    if (folder / "edge.pem").is_file() and names_path.is_file() and names_path.read_text().split() == hostnames:
        return
    now = datetime.datetime.now(datetime.UTC)
    key = ec.generate_private_key(ec.SECP256R1())
    alternative = []
    for host in hostnames:
        try:
            alternative.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            alternative.append(x509.DNSName(host))
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"Foundry stack edge ({hostnames[0]})")])
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=397))  # browsers refuse server certificates of longer life
        .add_extension(x509.SubjectAlternativeName(alternative), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    cert = certificate.public_bytes(pem).decode()
    private = key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()).decode()
    write(folder / "edge.pem", cert + private)  # HAProxy reads the certificate and its key from one file
    write(folder / "edge.crt", cert)
    write(names_path, "\n".join(hostnames))


def use_certificate(folder: Path, pem: str) -> int:
    """Keep the user's certificate for the edge (one PEM: the certificate, its chain, its private key); nothing
    given goes back to the generated one."""
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    if not pem.strip():
        (folder / OWN_CERTIFICATE).unlink(missing_ok=True)
        print("back to the generated certificate after `docker compose up -d`", file=sys.stderr)
        return 0
    try:
        certificate = x509.load_pem_x509_certificate(pem.encode())
        key = serialization.load_pem_private_key(pem.encode(), None)  # the file's first private key block
    except (ValueError, TypeError) as exc:
        print(f"not one PEM with a certificate and its unencrypted private key: {exc}", file=sys.stderr)
        return 2
    if certificate.public_key().public_numbers() != key.public_key().public_numbers():
        print("the private key does not belong to the certificate (the first one in the file)", file=sys.stderr)
        return 2
    write(folder / OWN_CERTIFICATE, pem)
    print("kept: the edge serves it after `docker compose up -d`", file=sys.stderr)
    return 0


def show(folder: Path, lock: Lock) -> str:
    def value(name: str) -> str:
        path = folder / name
        return path.read_text().strip() if path.is_file() else "(not generated yet: run `docker compose up -d`)"

    lines = [f"The stack is {'locked' if lock.locked else 'open'}: {lock.reason}."]
    if lock.locked:
        lines += [
            f"  chat        user {USERNAME}, password {value('CHAT_PASSWORD')}",
            f"  Open WebUI  {OPEN_WEBUI_ADMIN_EMAIL} (the admin), password {value('WEBUI_ADMIN_PASSWORD')}",
            f"  router      key {value('ROUTER_API_KEY')}   (Authorization: Bearer <key>; OPENAI_API_KEY for SDKs)",
            f"  Prometheus  user {USERNAME}, password {value('PROMETHEUS_PASSWORD')}",
        ]
    lines += [
        f"  Grafana     user {USERNAME}, password {value('GRAFANA_ADMIN_PASSWORD')}   (at its first start)",
        "  HTTPS edge  (profile `edge`): trust its certificate, `scripts/secrets certificate > foundry-edge.crt`",
        "A value you set yourself (CHAT_PASSWORD, ROUTER_API_KEY, ... in .env) wins over these.",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    bind_address, edge_address = os.environ.get("BIND_ADDRESS", ""), os.environ.get("EDGE_BIND_ADDRESS", "")
    lock = lock_for(bind_address or "127.0.0.1", edge_address)
    command = args[0] if args else "apply"
    if command == "apply":
        hostnames = hostnames_for(edge_address or bind_address, os.environ.get("EDGE_HOSTNAMES", ""))
        apply(SECRETS_DIR, lock, hostnames)
        print(f"secrets: {lock.reason}", file=sys.stderr)
    elif command == "show":
        print(show(SECRETS_DIR, lock))
    elif command == "use-certificate":
        return use_certificate(SECRETS_DIR / "tls", sys.stdin.read())
    elif command == "certificate":
        print((SECRETS_DIR / "tls" / "edge.crt").read_text(), end="")
    else:
        print(f"unknown command {command!r}: use apply, show, certificate or use-certificate", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
