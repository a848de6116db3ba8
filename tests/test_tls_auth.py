"""TLS and password authentication against a real Mosquitto with a TLS listener.

Certificates are made in the test (a CA, a server certificate for
`localhost`, and a second, unrelated CA). The broker has two listeners: the
TLS one with passwords for the gateway, and a plain one (also with a
password) for the test's subscriber.

Refusals — unknown CA, hostname mismatch, wrong password — must be logged
once (not per retry), retried with backoff, and the readings kept in the
spool until the problem is fixed, then delivered in order with no gap.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import signal
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.support import (
    GatewayProcess,
    Mosquitto,
    Subscriber,
    free_port,
    wait_port,
    write_config,
)

READER_USER, READER_PASSWORD = "reader", "reader-secret"
GW_USER, GW_PASSWORD = "gw", "correct horse battery staple"


# -- certificates -----------------------------------------------------------------------


@dataclass
class Pair:
    cert: x509.Certificate
    key: ec.EllipticCurvePrivateKey


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def make_ca(cn: str) -> Pair:
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(cn)).issuer_name(_name(cn))
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(
            digital_signature=True, content_commitment=False, key_encipherment=False,
            data_encipherment=False, key_agreement=False, key_cert_sign=True, crl_sign=True,
            encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return Pair(cert, key)


def make_leaf(ca: Pair, cn: str, dns: list[str], ips: list[str], server: bool) -> Pair:
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    sans: list[x509.GeneralName] = [x509.DNSName(d) for d in dns]
    sans += [x509.IPAddress(ipaddress.ip_address(i)) for i in ips]
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(cn)).issuer_name(ca.cert.subject)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage(
            [x509.oid.ExtendedKeyUsageOID.SERVER_AUTH if server
             else x509.oid.ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.key.public_key()),
                       critical=False)
    )
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    return Pair(builder.sign(ca.key, hashes.SHA256()), key)


def write_pair(pair: Pair, cert_path: Path, key_path: Path | None, key_mode: int = 0o644) -> None:
    cert_path.write_bytes(pair.cert.public_bytes(serialization.Encoding.PEM))
    os.chmod(cert_path, 0o644)
    if key_path is not None:
        key_path.write_bytes(pair.key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption()))
        # Mosquitto drops to its own user and must read its key; the gateway's is 0600.
        os.chmod(key_path, key_mode)


@dataclass
class Pki:
    dir: Path
    ca: Path
    other_ca: Path
    client_cert: Path
    client_key: Path


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    d = tmp_path_factory.mktemp("pki")
    os.chmod(d, 0o755)
    ca = make_ca("edge-gateway test CA")
    other = make_ca("some other CA")
    server = make_leaf(ca, "localhost", ["localhost"], [], server=True)
    client = make_leaf(ca, "greenhouse-1", [], [], server=False)
    write_pair(ca, d / "ca.pem", None)
    write_pair(other, d / "other-ca.pem", None)
    write_pair(server, d / "server.pem", d / "server.key")
    write_pair(client, d / "client.pem", d / "client.key", key_mode=0o600)
    return Pki(d, d / "ca.pem", d / "other-ca.pem", d / "client.pem", d / "client.key")


# -- the broker ---------------------------------------------------------------------------


def passwd(path: Path, users: dict[str, str]) -> None:
    path.unlink(missing_ok=True)
    for i, (user, pw) in enumerate(users.items()):
        subprocess.run(
            ["mosquitto_passwd", "-b", *(["-c"] if i == 0 else []), str(path), user, pw],
            check=True, capture_output=True, timeout=30,
        )
    os.chmod(path, 0o644)


@dataclass
class TlsBroker:
    broker: Mosquitto
    tls_port: int
    plain_port: int
    passwd: Path

    def subscriber(self, topic: str) -> Subscriber:
        sub = Subscriber(self.plain_port, topic)
        sub.client.username_pw_set(READER_USER, READER_PASSWORD)
        return sub.start()


@pytest.fixture
def tls_broker(tmp_path: Path, pki: Pki) -> Iterator[TlsBroker]:
    work = tmp_path / "broker"
    work.mkdir()
    os.chmod(work, 0o755)
    pw = work / "passwd"
    passwd(pw, {READER_USER: READER_PASSWORD, GW_USER: GW_PASSWORD})
    plain = free_port()
    # Options after the first `listener` line belong to it (the TLS one).
    b = Mosquitto(work, extra_conf=(
        f"cafile {pki.ca}\ncertfile {pki.dir / 'server.pem'}\nkeyfile {pki.dir / 'server.key'}\n"
        "tls_version tlsv1.2\n"
        f"listener {plain} 127.0.0.1\n"
        f"allow_anonymous false\npassword_file {pw}\n"
    ))
    b.start()  # waits for the first (TLS) listener only
    try:
        wait_port(plain)
        yield TlsBroker(b, b.port, plain, pw)
    finally:
        b.stop()


# -- the gateway ----------------------------------------------------------------------------


def gw_config(tmp_path: Path, port: int, *, host: str = "localhost", ca: Path,
              protocol: str = "5", password_file: Path | None = None,
              extra_tls: str = "") -> Path:
    if password_file is None:
        password_file = tmp_path / "mqtt-password"
        password_file.write_text(GW_PASSWORD + "\n")
        os.chmod(password_file, 0o600)
    return write_config(tmp_path / "gw.yaml", f"""
gateway:
  id: tls-test
  simulate: true
  stop_timeout: 2s
mqtt:
  host: {host}
  port: {port}
  protocol: "{protocol}"
  username: {GW_USER}
  password_file: {password_file}
  reconnect_min: 1s
  reconnect_max: 1s
  tls:
    ca_file: {ca}
{extra_tls}
buffer:
  path: {tmp_path}/spool.db
devices:
  - name: probe
    driver: tmp102
    address: 0x48
    interval: 100ms
""")


def seqs(sub: Subscriber, topic: str) -> list[int]:
    return [m.json()["seq"] for m in sub.on(topic)]


def spooled(path: Path) -> int:
    with sqlite3.connect(path) as db:
        n: int = db.execute("SELECT count(*) FROM messages").fetchone()[0]
    return n


TOPIC = "gateway/tls-test/probe"


@pytest.mark.parametrize("protocol", ["5", "3.1.1"])
def test_tls_with_password_delivers(tmp_path: Path, pki: Pki, tls_broker: TlsBroker,
                                    protocol: str) -> None:
    sub = tls_broker.subscriber("gateway/tls-test/#")
    cfg = gw_config(tmp_path, tls_broker.tls_port, ca=pki.ca, protocol=protocol)
    gw = GatewayProcess(cfg, tmp_path / "gw.log").start()
    try:
        assert sub.wait_for(lambda s: s.count(TOPIC) >= 5), gw.output()
    finally:
        code = gw.stop()
        sub.stop()
    assert code == 0, gw.output()
    got = seqs(sub, TOPIC)
    assert got == list(range(1, len(got) + 1))
    out = gw.output()
    assert GW_PASSWORD not in out  # the secret is never logged, even at debug level
    connects = [line for line in out.splitlines() if "Sending CONNECT" in line]
    assert connects, out
    if protocol == "5":
        # A session that outlives a short drop (clean start 0, expiry from the config).
        assert all("c0," in c and "SessionExpiryInterval : 3600" in c for c in connects)
    else:
        assert all("c1," in c and "SessionExpiryInterval" not in c for c in connects)
    assert "readable by others" not in out


def test_client_certificate_and_tls13_floor(tmp_path: Path, pki: Pki,
                                            tls_broker: TlsBroker) -> None:
    sub = tls_broker.subscriber(TOPIC)
    cfg = gw_config(tmp_path, tls_broker.tls_port, ca=pki.ca, extra_tls=(
        f"    cert_file: {pki.client_cert}\n    key_file: {pki.client_key}\n"
        "    min_version: '1.3'\n"))
    gw = GatewayProcess(cfg, tmp_path / "gw.log").start()
    try:
        assert sub.wait_for(lambda s: s.count(TOPIC) >= 3), gw.output()
    finally:
        assert gw.stop() == 0, gw.output()
        sub.stop()


def wait_log(gw: GatewayProcess, text: str, timeout: float = 30.0, times: int = 1) -> None:
    deadline = time.monotonic() + timeout
    while gw.output().count(text) < times:
        assert time.monotonic() < deadline, f"{text!r} not logged:\n{gw.output()[-3000:]}"
        time.sleep(0.2)


def logged(out: str, text: str) -> int:
    """Lines at WARNING or above containing `text`."""
    return sum(1 for line in out.splitlines()
               if (" WARNING " in line or " ERROR " in line or " CRITICAL " in line)
               and text in line)


def refused_then_fixed_by_restart(tmp_path: Path, tls_broker: TlsBroker, bad_cfg: Path,
                                  message: str, good_cfg_text: str) -> None:
    """Run with `bad_cfg` until refused several times, stop, fix the config, run again."""
    sub = tls_broker.subscriber(TOPIC)
    gw = GatewayProcess(bad_cfg, tmp_path / "gw.log").start()
    try:
        wait_log(gw, message)
        # It retries: the broker sees one failed handshake per attempt ...
        deadline = time.monotonic() + 60
        while tls_broker.broker.log.read_text().count("OpenSSL Error") < 4:
            assert time.monotonic() < deadline, tls_broker.broker.log.read_text()
            time.sleep(0.2)
        assert sub.count(TOPIC) == 0
    finally:
        code = gw.stop()
    out = gw.output()
    assert code == 0, out
    # ... but the gateway said so once (per state change), not per retry, and
    # nothing else complains per retry at warning level or above.
    assert logged(out, message) == 1, out
    assert logged(out, "") == 1, out
    assert "Traceback" not in out
    kept = spooled(tmp_path / "spool.db")
    assert kept >= 10  # 100 ms interval for seconds, all still in the spool

    bad_cfg.write_text(good_cfg_text)
    gw2 = GatewayProcess(bad_cfg, tmp_path / "gw2.log").start()
    try:
        assert sub.wait_for(lambda s: s.count(TOPIC) >= kept + 3, timeout=60), gw2.output()
    finally:
        assert gw2.stop() == 0, gw2.output()
        sub.stop()
    got = seqs(sub, TOPIC)
    assert got[: kept + 3] == list(range(1, kept + 4))  # nothing lost, order kept


def test_unknown_ca_is_refused_logged_once_and_kept(tmp_path: Path, pki: Pki,
                                                    tls_broker: TlsBroker) -> None:
    cfg = gw_config(tmp_path, tls_broker.tls_port, ca=pki.other_ca)
    good = cfg.read_text().replace(str(pki.other_ca), str(pki.ca))
    refused_then_fixed_by_restart(tmp_path, tls_broker, cfg,
                                  "TLS certificate verification failed", good)


def test_hostname_mismatch_is_refused(tmp_path: Path, pki: Pki, tls_broker: TlsBroker) -> None:
    # The server certificate names `localhost` only; 127.0.0.1 is not in it.
    cfg = gw_config(tmp_path, tls_broker.tls_port, ca=pki.ca, host="127.0.0.1")
    good = cfg.read_text().replace("host: 127.0.0.1", "host: localhost")
    refused_then_fixed_by_restart(tmp_path, tls_broker, cfg, "mismatch", good)


def test_insecure_skips_hostname_check_loudly(tmp_path: Path, pki: Pki,
                                              tls_broker: TlsBroker) -> None:
    sub = tls_broker.subscriber(TOPIC)
    cfg = gw_config(tmp_path, tls_broker.tls_port, ca=pki.ca, host="127.0.0.1",
                    extra_tls="    insecure: true\n")
    gw = GatewayProcess(cfg, tmp_path / "gw.log").start()
    try:
        assert sub.wait_for(lambda s: s.count(TOPIC) >= 3), gw.output()
    finally:
        assert gw.stop() == 0
        sub.stop()
    assert "hostname is NOT checked" in gw.output()


# Mosquitto answers a wrong password with "Not authorized" on both protocols
# (MQTT 5 reason 0x87, 3.1.1 return code 5).
@pytest.mark.parametrize(("protocol", "reason"), [
    ("5", "connection refused by localhost:"),
    ("3.1.1", "connection refused by localhost:"),
])
def test_wrong_password_refused_then_fixed_on_the_broker(
    tmp_path: Path, pki: Pki, tls_broker: TlsBroker, protocol: str, reason: str
) -> None:
    pw = tmp_path / "mqtt-password"
    pw.write_text("not the password\n")
    os.chmod(pw, 0o644)  # readable by others: warned about
    cfg = gw_config(tmp_path, tls_broker.tls_port, ca=pki.ca, protocol=protocol,
                    password_file=pw)
    sub = tls_broker.subscriber(TOPIC)
    gw = GatewayProcess(cfg, tmp_path / "gw.log").start()
    try:
        wait_log(gw, reason)
        # Several more refused attempts (reconnect_max 1 s), each a CONNECT in paho's log.
        wait_log(gw, "Sending CONNECT", timeout=60, times=4)
        assert sub.count(TOPIC) == 0
        out = gw.output()
        assert logged(out, reason) == 1, out
        assert logged(out, "") == 2, out  # that and the password file's mode
        assert "Not authorized" in out and "check mqtt.username" in out
        assert "mqtt.password_file" in out and "readable by others" in out
        assert "not the password" not in out

        # The operator fixes the broker's password file; Mosquitto reloads it on SIGHUP.
        passwd(tls_broker.passwd, {READER_USER: READER_PASSWORD, GW_USER: "not the password"})
        assert tls_broker.broker.proc is not None
        os.kill(tls_broker.broker.proc.pid, signal.SIGHUP)
        assert sub.wait_for(lambda s: s.count(TOPIC) >= 60, timeout=60), gw.output()
    finally:
        code = gw.stop()
        sub.stop()
    assert code == 0
    got = seqs(sub, TOPIC)
    assert got[:60] == list(range(1, 61))  # the spooled ones first, none lost
