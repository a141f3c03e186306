"""The lock of a network deployment: which addresses lock, which files each state leaves, what is kept."""

from __future__ import annotations

import ipaddress
import warnings
from pathlib import Path

import pytest
import yaml
from cryptography import x509

from foundry_common.network_lock import LOCK_FILES, apply, hostnames_for, lock_for, show, use_certificate

pytestmark = pytest.mark.unit

LOCKED = lock_for("0.0.0.0")
OPEN = lock_for("127.0.0.1")


@pytest.mark.parametrize(
    ("addresses", "locked"),
    [
        (("127.0.0.1",), False),
        (("127.0.0.2",), False),
        (("::1",), False),
        (("localhost",), False),
        (("127.0.0.1", ""), False),
        (("0.0.0.0",), True),
        (("192.168.1.20",), True),
        (("::",), True),
        (("127.0.0.1", "0.0.0.0"), True),  # the edge published on the network locks the rest too
        (("chat.example.lan",), True),
    ],
)
def test_only_loopback_stays_open(addresses: tuple[str, ...], locked: bool) -> None:
    lock = lock_for(*addresses)
    assert lock.locked is locked
    assert ("login" in lock.reason) and (addresses[-1] in lock.reason if locked else "loopback" in lock.reason)


def files(folder: Path) -> set[str]:
    return {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()}


def test_locking_puts_each_services_file_in_place_and_opening_removes_them_keeping_the_values(tmp_path: Path) -> None:
    apply(tmp_path, LOCKED, ["localhost"])
    assert set(LOCK_FILES) <= files(tmp_path)
    values = {name: (tmp_path / name).read_text() for name in LOCK_FILES}
    assert values["ROUTER_API_KEY"] == values["ROUTER_API_KEYS"], "the clients' key is the router's"
    assert len(set(values.values())) == 3 and all(len(v.strip()) >= 24 for v in values.values())

    apply(tmp_path, OPEN, ["localhost"])
    assert not set(LOCK_FILES) & files(tmp_path)
    assert {"GRAFANA_ADMIN_PASSWORD", "PROMETHEUS_PASSWORD"} <= files(tmp_path), "never a default password"

    apply(tmp_path, LOCKED, ["localhost"])
    assert {name: (tmp_path / name).read_text() for name in LOCK_FILES} == values, "locked again: the same values"


def test_prometheus_asks_for_its_password_only_when_locked(tmp_path: Path) -> None:
    apply(tmp_path, OPEN, ["localhost"])
    assert yaml.safe_load((tmp_path / "prometheus-web.yml").read_text()) is None
    apply(tmp_path, LOCKED, ["localhost"])
    users = yaml.safe_load((tmp_path / "prometheus-web.yml").read_text())["basic_auth_users"]
    password = (tmp_path / "PROMETHEUS_PASSWORD").read_text().strip()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        import crypt  # what network_lock.py hashes with (deprecated in 3.11, the images' Python)

        assert crypt.crypt(password, users["admin"]) == users["admin"]
        assert crypt.crypt("admin", users["admin"]) != users["admin"]
    assert users["admin"].startswith("$2b$"), "bcrypt, the only hash Prometheus takes"


def test_a_password_set_in_the_environment_wins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GRAFANA_ADMIN_PASSWORD", "chosen by the team")
    apply(tmp_path, OPEN, ["localhost"])
    assert (tmp_path / "GRAFANA_ADMIN_PASSWORD").read_text().strip() == "chosen by the team"


def names_of(certificate: x509.Certificate) -> set[str]:
    alternative = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return {str(n) for n in alternative.get_values_for_type(x509.IPAddress)} | set(
        alternative.get_values_for_type(x509.DNSName)
    )


def test_the_edge_certificate_names_the_published_address_and_is_made_again_when_names_change(tmp_path: Path) -> None:
    hostnames = sorted(set(hostnames_for("192.168.1.20", "chat.example.lan")))
    apply(tmp_path, LOCKED, hostnames)
    first = x509.load_pem_x509_certificate((tmp_path / "tls" / "edge.crt").read_bytes())
    assert names_of(first) == {"localhost", "127.0.0.1", "192.168.1.20", "chat.example.lan"}
    assert ipaddress.ip_address("192.168.1.20")  # an IP SAN, as browsers need for an address
    apply(tmp_path, LOCKED, hostnames)
    assert x509.load_pem_x509_certificate((tmp_path / "tls" / "edge.crt").read_bytes()) == first, "kept"
    apply(tmp_path, LOCKED, sorted({*hostnames, "ai.example.lan"}))
    assert "ai.example.lan" in names_of(x509.load_pem_x509_certificate((tmp_path / "tls" / "edge.crt").read_bytes()))
    assert hostnames_for("0.0.0.0", "") == ["localhost", "127.0.0.1"], "every address: no address to name"


def test_your_own_certificate_replaces_the_generated_one_and_a_wrong_key_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    other = tmp_path / "other"
    apply(other, LOCKED, ["chat.example.lan"])
    mine = (other / "tls" / "edge.pem").read_text()
    apply(tmp_path, LOCKED, ["localhost"])
    generated = (tmp_path / "tls" / "edge.pem").read_text()
    tls = tmp_path / "tls"

    assert use_certificate(tls, (other / "tls" / "edge.crt").read_text()) == 2
    assert "private key" in capsys.readouterr().err
    assert (
        use_certificate(
            tls, mine.split("-----BEGIN PRIVATE KEY")[0] + generated.split("-----END CERTIFICATE-----\n")[1]
        )
        == 2
    )
    assert "does not belong" in capsys.readouterr().err

    assert use_certificate(tls, mine) == 0
    apply(tmp_path, LOCKED, ["localhost"])
    assert (tls / "edge.pem").read_text() == mine
    assert (tls / "edge.crt").read_text() == (other / "tls" / "edge.crt").read_text()
    assert use_certificate(tls, "") == 0
    apply(tmp_path, LOCKED, ["localhost"])
    assert (tls / "edge.pem").read_text() != mine


def test_show_prints_each_login_when_locked(tmp_path: Path) -> None:
    apply(tmp_path, LOCKED, ["localhost"])
    text = show(tmp_path, LOCKED)
    for name in (*LOCK_FILES, "PROMETHEUS_PASSWORD", "GRAFANA_ADMIN_PASSWORD"):
        assert (tmp_path / name).read_text().strip() in text, name
    assert "locked" in text.splitlines()[0]
    open_text = show(tmp_path, OPEN)
    assert "open" in open_text.splitlines()[0]
    assert (tmp_path / "kept" / "CHAT_PASSWORD").read_text().strip() not in open_text, "no login to give when open"
