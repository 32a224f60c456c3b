"""A second, secured Kafka broker for tests: a CA, certificates and SCRAM users it makes.

The same jars as the dev broker (``pipeline.dev.kafka``), its own ports and directory,
KRaft, with these listeners:

- ``SASL_SSL``  SCRAM-SHA-256, SCRAM-SHA-512 (users created at format time,
  ``--add-scram``) and PLAIN (users in the listener's JAAS config);
- ``SSL``  mutual TLS (``ssl.client.auth=required``): a client certificate of the CA;
- ``SASL_PLAINTEXT``  the same SASL users without TLS;
- a PLAINTEXT listener for the broker's own traffic, and the controller's.

The broker certificate is a PEM key store (Kafka 4 reads PEM: ``ssl.keystore.type=PEM``)
signed by a CA made with the ``openssl`` command; a second CA that signed nothing plays
the untrusted one.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from pydantic import SecretStr

from pipeline.dev.kafka import Kafka, new_cluster_id
from pipeline.dev.layout import load_layout
from pipeline.dev.process import pid_alive, port_open, stop_pid
from pipeline.handshake import kafka_handshake
from replication.kafka_client import KafkaSecurity
from tests.integration.pipeline_process import free_port

USER = "pipeline"
PASSWORD = "s3cret-Scram"
HOST = "127.0.0.1"


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def make_ca(directory: Path, name: str) -> tuple[Path, Path]:
    """A self-signed CA: (certificate, key)."""
    cert, key = directory / f"{name}.pem", directory / f"{name}.key"
    _openssl(
        "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", f"/CN={name}",
        "-keyout", str(key), "-out", str(cert), cwd=directory,
    )  # fmt: skip
    return cert, key


def issue(directory: Path, ca: tuple[Path, Path], name: str, san: str) -> tuple[Path, Path]:
    """A certificate for ``san`` (e.g. ``IP:127.0.0.1``) signed by ``ca``: (cert, key)."""
    cert, key, csr = directory / f"{name}.pem", directory / f"{name}.key", directory / f"{name}.csr"
    ext = directory / f"{name}.ext"
    ext.write_text(f"subjectAltName={san}\nextendedKeyUsage=serverAuth,clientAuth\n")
    _openssl(
        "req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={name}",
        "-keyout", str(key), "-out", str(csr), cwd=directory,
    )  # fmt: skip
    _openssl(
        "x509", "-req", "-in", str(csr), "-CA", str(ca[0]), "-CAkey", str(ca[1]),
        "-CAcreateserial", "-days", "2", "-extfile", str(ext), "-out", str(cert),
        cwd=directory,
    )  # fmt: skip
    return cert, key


@dataclass
class SecureBroker:
    root: Path
    ca: Path
    untrusted_ca: Path
    client_cert: Path
    client_key: Path
    sasl_ssl: str = ""
    ssl: str = ""
    sasl_plaintext: str = ""
    pid: int | None = None

    def security(self, protocol: str = "SASL_SSL", **changes: object) -> KafkaSecurity:
        """Client settings for one of the listeners (a SCRAM-SHA-512 user by default)."""
        base: dict[str, object] = {"protocol": protocol}
        if protocol.startswith("SASL"):
            base |= {
                "sasl_mechanism": "SCRAM-SHA-512",
                "sasl_username": USER,
                "sasl_password": SecretStr(PASSWORD),
            }
        if protocol.endswith("SSL"):
            base["ca_file"] = str(self.ca)
        if protocol == "SSL":
            base |= {"cert_file": str(self.client_cert), "key_file": str(self.client_key)}
        return KafkaSecurity(**(base | changes))  # type: ignore[arg-type]

    def env(self, protocol: str = "SASL_SSL", mechanism: str = "SCRAM-SHA-512") -> dict[str, str]:
        """``PIPELINE_KAFKA_*`` for a listener, as an operator would set them."""
        env = {
            "PIPELINE_KAFKA_BOOTSTRAP_SERVERS": self.bootstrap(protocol),
            "PIPELINE_KAFKA_SECURITY_PROTOCOL": protocol,
        }
        if protocol.startswith("SASL"):
            env |= {
                "PIPELINE_KAFKA_SASL_MECHANISM": mechanism,
                "PIPELINE_KAFKA_SASL_USERNAME": USER,
                "PIPELINE_KAFKA_SASL_PASSWORD": PASSWORD,
            }
        if protocol.endswith("SSL"):
            env["PIPELINE_KAFKA_SSL_CA_FILE"] = str(self.ca)
        if protocol == "SSL":
            env |= {
                "PIPELINE_KAFKA_SSL_CERT_FILE": str(self.client_cert),
                "PIPELINE_KAFKA_SSL_KEY_FILE": str(self.client_key),
            }
        return env

    def bootstrap(self, protocol: str = "SASL_SSL") -> str:
        return {"SASL_SSL": self.sasl_ssl, "SSL": self.ssl, "SASL_PLAINTEXT": self.sasl_plaintext}[
            protocol
        ]

    def stop(self) -> None:
        if self.pid is not None and pid_alive(self.pid):
            stop_pid(self.pid, timeout=30)
        self.pid = None


def _properties(b: SecureBroker, ports: dict[str, int], keystore: Path, data: Path) -> str:
    jaas_scram = "org.apache.kafka.common.security.scram.ScramLoginModule required;"
    jaas_plain = (
        "org.apache.kafka.common.security.plain.PlainLoginModule required "
        f'user_{USER}="{PASSWORD}";'
    )
    props = {
        "process.roles": "broker,controller",
        "node.id": "1",
        "controller.quorum.voters": f"1@{HOST}:{ports['CONTROLLER']}",
        "listeners": ",".join(f"{name}://{HOST}:{port}" for name, port in ports.items()),
        "advertised.listeners": ",".join(
            f"{name}://{HOST}:{port}" for name, port in ports.items() if name != "CONTROLLER"
        ),
        "listener.security.protocol.map": "CONTROLLER:PLAINTEXT,INTERNAL:PLAINTEXT,"
        "SASL_SSL:SASL_SSL,SSL:SSL,SASL_PLAINTEXT:SASL_PLAINTEXT",
        "controller.listener.names": "CONTROLLER",
        "inter.broker.listener.name": "INTERNAL",
        "sasl.enabled.mechanisms": "SCRAM-SHA-256,SCRAM-SHA-512,PLAIN",
        "ssl.keystore.type": "PEM",
        "ssl.keystore.location": str(keystore),
        "ssl.truststore.type": "PEM",
        "ssl.truststore.location": str(b.ca),
        "listener.name.ssl.ssl.client.auth": "required",
        "log.dirs": str(data),
        "offsets.topic.replication.factor": "1",
        "offsets.topic.num.partitions": "4",
        "transaction.state.log.replication.factor": "1",
        "transaction.state.log.min.isr": "1",
        "transaction.state.log.num.partitions": "2",
        "share.coordinator.state.topic.replication.factor": "1",
        "share.coordinator.state.topic.min.isr": "1",
        "group.initial.rebalance.delay.ms": "0",
        "num.partitions": "1",
    }
    for listener in ("sasl_ssl", "sasl_plaintext"):
        for mechanism in ("scram-sha-256", "scram-sha-512"):
            props[f"listener.name.{listener}.{mechanism}.sasl.jaas.config"] = jaas_scram
        props[f"listener.name.{listener}.plain.sasl.jaas.config"] = jaas_plain
    return "".join(f"{k}={v}\n" for k, v in props.items())


async def start_secure_broker(root: Path) -> SecureBroker:
    """Make the certificates, format the storage with SCRAM users, start the broker and
    wait until a SCRAM login over TLS succeeds."""
    broker, proc = launch(root)
    try:
        await _wait_ready(broker, proc)
    except BaseException:
        broker.stop()
        raise
    return broker


def launch(root: Path) -> tuple[SecureBroker, subprocess.Popen[bytes]]:
    """Everything up to the broker's process (not waited for)."""
    root.mkdir(parents=True, exist_ok=True)
    ca = make_ca(root, "test-ca")
    untrusted, _ = make_ca(root, "untrusted-ca")
    server = issue(root, ca, "broker", f"IP:{HOST},DNS:localhost")
    client = issue(root, ca, "client", "DNS:pipeline-client")
    keystore = root / "broker-keystore.pem"
    keystore.write_text(server[1].read_text() + server[0].read_text())
    broker = SecureBroker(root, ca[0], untrusted, client[0], client[1])
    ports = {
        name: free_port()
        for name in ("SASL_SSL", "SSL", "SASL_PLAINTEXT", "INTERNAL", "CONTROLLER")
    }
    broker.sasl_ssl = f"{HOST}:{ports['SASL_SSL']}"
    broker.ssl = f"{HOST}:{ports['SSL']}"
    broker.sasl_plaintext = f"{HOST}:{ports['SASL_PLAINTEXT']}"
    config = root / "server.properties"
    config.write_text(_properties(broker, ports, keystore, root / "data"))
    log4j = root / "log4j2.properties"
    log4j.write_text("rootLogger.level = WARN\n")
    layout = load_layout()
    libs = f"{Kafka(layout).fetch()}/*"
    java = shutil.which("java") or "java"
    cluster_id = new_cluster_id()  # never led by "-", which the tool would take for an option
    scram = [
        arg
        for mechanism in ("SCRAM-SHA-256", "SCRAM-SHA-512")
        for arg in ("--add-scram", f"{mechanism}=[name={USER},password={PASSWORD}]")
    ]
    subprocess.run(
        [java, f"-Dlog4j2.configurationFile={log4j}", "-cp", libs, "kafka.tools.StorageTool",
         "format", "-t", cluster_id, "-c", str(config), *scram],
        check=True, capture_output=True, text=True,
    )  # fmt: skip
    with (root / "broker.log").open("ab") as log:
        proc = subprocess.Popen(
            [java, "-Xmx384m", "-Xms128m", "-Djava.awt.headless=true",
             f"-Dlog4j2.configurationFile={log4j}", "-cp", libs, "kafka.Kafka", str(config)],
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True, env={**os.environ},
        )  # fmt: skip
    broker.pid = proc.pid
    return broker, proc


async def _wait_ready(
    broker: SecureBroker, proc: subprocess.Popen[bytes], timeout: float = 180
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            log = (broker.root / "broker.log").read_text(errors="replace")[-3000:]
            raise RuntimeError(f"the secure broker exited ({proc.returncode}):\n{log}")
        host, _, port = broker.sasl_ssl.rpartition(":")
        if port_open(host, int(port)):
            shake = await kafka_handshake(broker.sasl_ssl, broker.security())
            if shake.ok:
                return
        await asyncio.sleep(1)
    raise RuntimeError(f"the secure broker did not become ready in {timeout:.0f}s")
