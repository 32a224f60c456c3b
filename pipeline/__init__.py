"""pipeline: PostgreSQL event store -> Kafka -> Faust agents -> Temporal, exactly once."""

__version__ = "0.1.0"
