"""Apache Kafka 4.x in KRaft mode (one combined broker+controller), run with ``java -cp``.

The broker's jars and their dependencies are resolved from Maven Central by Maven
(``scripts/kafka/pom.xml``) into a cache shared by every checkout on the machine.
"""

from __future__ import annotations

import asyncio
import base64
import os
import shutil
import subprocess
import uuid
from collections.abc import Callable
from pathlib import Path

from pipeline.dev.errors import ServiceError
from pipeline.dev.layout import KAFKA_VERSION, REPO_ROOT, DevLayout
from pipeline.dev.process import SpawnedService

LOG4J2 = """\
status = warn
appender.console.type = Console
appender.console.name = STDOUT
appender.console.layout.type = PatternLayout
appender.console.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = WARN
rootLogger.appenderRef.stdout.ref = STDOUT
logger.server.name = kafka.server.KafkaRaftServer
logger.server.level = INFO
"""


def new_cluster_id(random_bytes: Callable[[], bytes] = lambda: uuid.uuid4().bytes) -> str:
    """A KRaft cluster id: a random UUID in URL-safe base64, as ``kafka-storage
    random-uuid`` makes it, and like Kafka's ``Uuid.randomUuid`` never starting with
    ``-``: the storage tool would read such an id as an option and refuse to format (one
    id in 64; a CI run failed so)."""
    while True:
        cluster_id = base64.urlsafe_b64encode(random_bytes()).rstrip(b"=").decode()
        if not cluster_id.startswith("-"):
            return cluster_id


def _require(tool: str, hint: str) -> str:
    path = shutil.which(tool)
    if path is None:
        raise ServiceError(f"'{tool}' not found on PATH: {hint}")
    return path


def maven_jars(pom: Path, folder: Path, what: str, log4j2: str | None = None) -> Path:
    """Copy the runtime jars of ``pom`` into ``folder`` with Maven once (``.complete``
    marks a finished copy); later calls reuse the cache. ``log4j2``, when given, is written
    as ``folder/log4j2.properties`` before the copy is marked complete."""
    marker = folder / ".complete"
    if marker.exists():
        return folder
    mvn = _require("mvn", "install Maven (Debian: apt-get install maven)")
    folder.mkdir(parents=True, exist_ok=True)
    result = subprocess.run(
        [
            mvn,
            "-q",
            "-B",
            "-f",
            str(pom),
            f"-Dkafka.version={KAFKA_VERSION}",
            "dependency:copy-dependencies",
            "-DincludeScope=runtime",
            f"-DoutputDirectory={folder}",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise ServiceError(
            f"Maven could not resolve {what}:\n{result.stdout[-3000:]}{result.stderr[-3000:]}"
        )
    if log4j2 is not None:
        (folder / "log4j2.properties").write_text(log4j2)
    marker.write_text(KAFKA_VERSION + "\n")
    return folder


class Kafka(SpawnedService):
    """A single-node KRaft cluster whose internal topics have replication factor 1."""

    name = "kafka"
    stop_timeout = 30.0

    def __init__(self, layout: DevLayout) -> None:
        self.layout = layout
        self.port = layout.kafka_port
        self.root = layout.state_dir / "kafka"
        self.data_dir = self.root / "data"
        self.log_file = layout.log_dir / "kafka.log"
        self.pid_file = layout.run_dir / "kafka.pid"
        self.libs = layout.cache_dir / f"kafka-{KAFKA_VERSION}" / "libs"

    def fetch(self) -> Path:
        """Resolve the broker's classpath with Maven once; later calls reuse the cache."""
        return maven_jars(
            REPO_ROOT / "scripts" / "kafka" / "pom.xml",
            self.libs,
            f"org.apache.kafka:kafka_2.13:{KAFKA_VERSION} from Maven Central",
        )

    def _java(self) -> str:
        return _require(
            "java", "install Java 17+ (Debian: apt-get install openjdk-17-jre-headless)"
        )

    def _classpath(self) -> str:
        return f"{self.fetch()}/*"

    def _write_config(self) -> Path:
        self.root.mkdir(parents=True, exist_ok=True)
        host, port, cport = self.layout.host, self.port, self.layout.kafka_controller_port
        props = {
            "process.roles": "broker,controller",
            "node.id": "1",
            "controller.quorum.voters": f"1@{host}:{cport}",
            "listeners": f"PLAINTEXT://{host}:{port},CONTROLLER://{host}:{cport}",
            "advertised.listeners": f"PLAINTEXT://{host}:{port}",
            "controller.listener.names": "CONTROLLER",
            "listener.security.protocol.map": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
            "inter.broker.listener.name": "PLAINTEXT",
            "log.dirs": str(self.data_dir),
            # One node: every internal topic must be satisfiable with a single replica, or
            # idempotent producers, transactions and consumer groups never become ready.
            "offsets.topic.replication.factor": "1",
            "offsets.topic.num.partitions": "10",
            "transaction.state.log.replication.factor": "1",
            "transaction.state.log.min.isr": "1",
            "transaction.state.log.num.partitions": "4",
            "share.coordinator.state.topic.replication.factor": "1",
            "share.coordinator.state.topic.min.isr": "1",
            "group.initial.rebalance.delay.ms": "0",
            "num.partitions": "1",
            "auto.create.topics.enable": "true",
            "log.retention.hours": "-1",
        }
        config = self.root / "server.properties"
        config.write_text("".join(f"{k}={v}\n" for k, v in props.items()))
        (self.root / "log4j2.properties").write_text(LOG4J2)
        return config

    def _format(self, config: Path) -> None:
        if (self.data_dir / "meta.properties").exists():
            return
        result = subprocess.run(
            [
                self._java(),
                f"-Dlog4j2.configurationFile={self.root / 'log4j2.properties'}",
                "-cp",
                self._classpath(),
                "kafka.tools.StorageTool",
                "format",
                "-t",
                new_cluster_id(),
                "-c",
                str(config),
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0:
            raise ServiceError(f"formatting Kafka storage failed:\n{result.stdout}{result.stderr}")

    def start(self) -> bool:
        """Fetch, configure, format (once) and start the broker. False when it already ran."""
        if self.pid() is not None:
            return False
        self.ports_free(
            self.layout.host,
            (self.port, self.layout.kafka_controller_port),
            "PIPELINE_DEV_KAFKA_PORT / PIPELINE_DEV_KAFKA_CONTROLLER_PORT",
        )
        java = self._java()
        config = self._write_config()
        self._format(config)
        heap = os.environ.get("PIPELINE_DEV_KAFKA_HEAP", "768m")
        self.spawn_logged(
            [
                java,
                f"-Xmx{heap}",
                "-Xms256m",
                "-XX:+UseG1GC",
                "-Djava.awt.headless=true",
                f"-Dlog4j2.configurationFile={self.root / 'log4j2.properties'}",
                "-cp",
                self._classpath(),
                "kafka.Kafka",
                str(config),
            ]
        )
        return True

    def healthy(self) -> bool:
        if not self.listening(self.layout.host):
            return False
        return asyncio.run(self._metadata_ok())

    async def _metadata_ok(self) -> bool:
        from aiokafka.admin import AIOKafkaAdminClient
        from aiokafka.errors import KafkaError

        admin = AIOKafkaAdminClient(
            bootstrap_servers=self.layout.kafka_bootstrap, request_timeout_ms=3000
        )
        try:
            await admin.start()
            cluster = await admin.describe_cluster()
            return bool(cluster.get("brokers"))
        except (KafkaError, OSError):
            return False
        finally:
            await admin.close()
