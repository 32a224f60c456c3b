"""Local services without Docker: PostgreSQL, Apache Kafka (KRaft) and the Temporal dev server.

``pipeline dev up`` and the integration tests' session fixture both go through
:func:`pipeline.dev.services.up`, so what the tests run against is what a developer runs.
"""
