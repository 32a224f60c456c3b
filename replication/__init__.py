"""replication: read ``domain_events`` from the WAL (pgoutput) and produce it into Kafka."""

from replication import native

# Compiled hot modules (scripts/build_native.py) must match their sources.
native.check()
