"""The MQTT source authenticates to a real Mosquitto: mutual TLS, user and password file."""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from edgeloop.errors import ConfigError
from edgeloop.node.config import MqttSourceConfig, parse_node_config
from edgeloop.node.mqtt_source import MqttSource, Tls
from edgeloop.node.sensor_payload import encode_block
from edgeloop.telemetry.frame import SensorCatalog, SensorSpec
from edgeloop.transport.mqtt_session import new_client
from services import INSTALL_HINT, Mosquitto, mosquitto_binary

CAT = SensorCatalog.of([SensorSpec("m1.vib", "m1")])
TOPIC = "edgeloop/default/gw1/sensors"


def _binary() -> str:
    binary = mosquitto_binary()
    if binary is None:
        pytest.fail(INSTALL_HINT + " (this test configures its own broker: it needs the binary)")
    return str(binary)


def _issue(
    name: str, key: ec.EllipticCurvePrivateKey, issuer: tuple[x509.Name, Any] | None, ca: bool
) -> x509.Certificate:
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    issuer_name, issuer_key = issuer if issuer is not None else (subject, key)
    now = datetime.datetime.now(datetime.UTC)
    b = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if not ca:
        san = [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]
        b = b.add_extension(x509.SubjectAlternativeName(san), critical=False)
    return b.sign(issuer_key, hashes.SHA256())


def _write(d: Path, name: str, cert: x509.Certificate, key: ec.EllipticCurvePrivateKey) -> None:
    (d / f"{name}.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (d / f"{name}.key").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )


def _pki(d: Path) -> None:
    """A CA, a broker certificate for 127.0.0.1 and a client certificate for gw1."""
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = _issue("edgeloop test CA", ca_key, None, ca=True)
    _write(d, "ca", ca, ca_key)
    for name in ("broker", "gw1"):
        key = ec.generate_private_key(ec.SECP256R1())
        _write(d, name, _issue(name, key, (ca.subject, ca_key), ca=False), key)


async def _receives(src: MqttSource, publish: Any) -> list[float]:
    assert await src.wait_subscribed(10), src.status()["last_error"]
    publish()
    it = src.__aiter__()
    frame = await asyncio.wait_for(it.__anext__(), 10)
    await src.close()
    return [float(v) for v in frame.value]


async def _refused(src: MqttSource) -> str:
    subscribed = await src.wait_subscribed(1.0)
    st = src.status()
    await src.close()
    assert not subscribed and not st["connected"]
    return str(st["last_error"])


def test_mutual_tls_without_a_client_certificate_is_refused_with_one_it_works(
    tmp_path: Path,
) -> None:
    _pki(tmp_path)
    extra = (
        f"cafile {tmp_path / 'ca.pem'}",
        f"certfile {tmp_path / 'broker.pem'}",
        f"keyfile {tmp_path / 'broker.key'}",
        "require_certificate true",
        "use_identity_as_username true",
    )
    broker = Mosquitto(_binary(), tmp_path / "mq", extra).start()
    ca = str(tmp_path / "ca.pem")
    mine = Tls(ca, str(tmp_path / "gw1.pem"), str(tmp_path / "gw1.key"))

    def publish() -> None:
        c = new_client("sensor")
        c.tls_set(ca_certs=mine.ca_file, certfile=mine.cert_file, keyfile=mine.key_file)
        c.connect(broker.host, broker.port)
        c.loop_start()
        c.publish(
            f"{TOPIC}/m1.vib", encode_block("", 0, 500_000, np.arange(3)), 1
        ).wait_for_publish(10)
        c.disconnect()
        c.loop_stop()

    def src(tls: Tls | None, cid: str) -> MqttSource:
        return MqttSource(CAT, broker.host, broker.port, f"{TOPIC}/#", cid, tls=tls)

    try:
        without = asyncio.run(_refused(src(Tls(ca), "no-cert")))
        plain = asyncio.run(_refused(src(None, "plain")))
        got = asyncio.run(_receives(src(mine, "gw1"), publish))
    finally:
        broker.stop()
    assert without.startswith("connection closed before the broker accepted it")
    assert plain.startswith("connection closed before the broker accepted it")
    assert got == [0.0, 1.0, 2.0]


def test_user_and_password_file(tmp_path: Path) -> None:
    passwd = tmp_path / "passwd"
    subprocess.run(
        ["mosquitto_passwd", "-b", "-c", str(passwd), "gw1", "s3cret"],
        check=True,
        capture_output=True,
    )
    passwd.chmod(0o600)
    extra = ("allow_anonymous false", f"password_file {passwd}")
    broker = Mosquitto(_binary(), tmp_path / "mq", extra).start()
    (tmp_path / "good").write_text("s3cret\n")
    (tmp_path / "bad").write_text("guess\n")

    def from_config(password_file: str) -> MqttSource:
        cfg = parse_node_config(
            {
                "node_id": "gw1",
                "sources": [
                    {
                        "type": "mqtt",
                        "host": broker.host,
                        "port": broker.port,
                        "username": "gw1",
                        "password_file": password_file,
                        "client_id": f"c-{Path(password_file).name}",
                    }
                ],
            }
        )
        source = cfg.sources[0]
        assert isinstance(source, MqttSourceConfig)
        return MqttSource.from_config(cfg, source, CAT)

    def publish() -> None:
        c = new_client("sensor")
        c.username_pw_set("gw1", "s3cret")
        c.connect(broker.host, broker.port)
        c.loop_start()
        c.publish(f"{TOPIC}/m1.vib", encode_block("", 0, 500_000, [7.0]), 1).wait_for_publish(10)
        c.disconnect()
        c.loop_stop()

    try:
        refused = asyncio.run(_refused(from_config(str(tmp_path / "bad"))))
        got = asyncio.run(_receives(from_config(str(tmp_path / "good")), publish))
        with pytest.raises(ConfigError, match=r"password_file: cannot read .*missing"):
            from_config(str(tmp_path / "missing"))
    finally:
        broker.stop()
    assert refused == "connect refused: Not authorized"
    assert got == [7.0]


def test_credentials_config_is_checked() -> None:
    with pytest.raises(ConfigError, match="password_file: needs a username"):
        parse_node_config({"node_id": "gw1", "sources": [{"type": "mqtt", "password_file": "/x"}]})
    with pytest.raises(ConfigError, match="cert_file and key_file go together"):
        parse_node_config(
            {
                "node_id": "gw1",
                "sources": [{"type": "mqtt", "tls": {"ca_file": "ca.pem", "cert_file": "c"}}],
            }
        )
