"""replication: read ``domain_events`` from the WAL (pgoutput) and produce it into Kafka."""
