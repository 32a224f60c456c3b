"""Kafka's own command-line tools, from Maven Central like the broker (``pipeline dev kafka``).

``kafka-configs.sh`` and friends are thin shell wrappers around a Java main class; the
broker's cached jars do not hold them (they live in the ``kafka-tools`` artifact), so this
resolves that artifact once into ``<cache>/kafka-<version>/tools`` (scripts/kafka/tools/
pom.xml) and runs a tool's main class with the tools' and the broker's jars on the class
path. Nothing is downloaded at run time beyond that one-time resolution, which
``scripts/setup.sh`` performs.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from pipeline.dev.errors import ServiceError
from pipeline.dev.kafka import Kafka, _require, maven_jars
from pipeline.dev.layout import KAFKA_VERSION, REPO_ROOT, DevLayout

# The shell scripts of Kafka's bin/ folder -> the main class each one runs.
TOOLS: dict[str, str] = {
    "kafka-configs": "kafka.admin.ConfigCommand",
    "kafka-topics": "org.apache.kafka.tools.TopicCommand",
    "kafka-consumer-groups": "org.apache.kafka.tools.consumer.group.ConsumerGroupCommand",
    "kafka-console-consumer": "org.apache.kafka.tools.consumer.ConsoleConsumer",
    "kafka-console-producer": "org.apache.kafka.tools.ConsoleProducer",
    "kafka-delete-records": "org.apache.kafka.tools.DeleteRecordsCommand",
    "kafka-get-offsets": "org.apache.kafka.tools.GetOffsetShell",
    "kafka-transactions": "org.apache.kafka.tools.TransactionsCommand",
    "kafka-leader-election": "org.apache.kafka.tools.LeaderElectionCommand",
    "kafka-log-dirs": "org.apache.kafka.tools.LogDirsCommand",
}

QUIET_LOG4J2 = """\
status = error
appender.stderr.type = Console
appender.stderr.name = STDERR
appender.stderr.target = SYSTEM_ERR
appender.stderr.layout.type = PatternLayout
appender.stderr.layout.pattern = %d %p %c %m%n
rootLogger.level = WARN
rootLogger.appenderRef.stderr.ref = STDERR
"""


class KafkaTools:
    """The cached tools folder of this machine, and how to run one tool."""

    def __init__(self, layout: DevLayout) -> None:
        self.layout = layout
        self.folder = layout.cache_dir / f"kafka-{KAFKA_VERSION}" / "tools"

    def fetch(self) -> Path:
        """Resolve kafka-tools with Maven once; later calls reuse the cache."""
        return maven_jars(
            REPO_ROOT / "scripts" / "kafka" / "tools" / "pom.xml",
            self.folder,
            f"org.apache.kafka:kafka-tools:{KAFKA_VERSION}",
            log4j2=QUIET_LOG4J2,
        )

    def command(self, tool: str, args: Sequence[str]) -> list[str]:
        """The java command line running tool with args (fetching the jars if needed)."""
        main = TOOLS.get(tool.removesuffix(".sh"))
        if main is None:
            raise ServiceError(f"unknown Kafka tool {tool!r}: one of {', '.join(sorted(TOOLS))}")
        tools = self.fetch()
        libs = Kafka(self.layout).fetch()
        java = _require(
            "java", "install Java 17+ (Debian: apt-get install openjdk-17-jre-headless)"
        )
        return [
            java,
            "-Xmx256m",
            f"-Dlog4j2.configurationFile={tools / 'log4j2.properties'}",
            "-cp",
            f"{tools}/*:{libs}/*",
            main,
            *args,
        ]
