"""Session fixtures for integration tests: the REAL local services, never mocks.

The services are started through the same code as ``pipeline dev up``. When one cannot
start, the tests FAIL with the reason (never skip). Services this session started are
stopped at its end; services that were already running are left alone.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator, Iterator

import psycopg
import pytest
from temporalio.client import Client

from pipeline.dev import services
from pipeline.dev.layout import DevLayout, load_layout
from pipeline.migrate import migrate


@pytest.fixture(scope="session")
def dev_layout() -> Iterator[DevLayout]:
    layout = load_layout()
    started = services.up(layout)  # raises (the test fails) when a service cannot start
    yield layout
    if started:
        services.down(layout, started)


def _admin_dsn(layout: DevLayout) -> str:
    return f"postgresql://postgres@{layout.host}:{layout.pg_port}/postgres"


def create_database(layout: DevLayout, name: str, *, migrated: bool = True) -> str:
    """Create an empty database (migrated by default) and return its DSN."""
    with psycopg.connect(_admin_dsn(layout), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    dsn = f"postgresql://postgres@{layout.host}:{layout.pg_port}/{name}"
    if migrated:
        migrate(dsn)
    return dsn


def drop_database(layout: DevLayout, name: str) -> None:
    """Drop a test database with its replication slots and connections."""
    with psycopg.connect(_admin_dsn(layout), autocommit=True) as conn:
        for _ in range(50):
            conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = %s AND pid <> pg_backend_pid()",
                (name,),
            )
            busy = conn.execute(
                "SELECT count(*) FROM pg_replication_slots WHERE database = %s AND active",
                (name,),
            ).fetchone()
            if busy is not None and busy[0] == 0:
                break
            time.sleep(0.1)
        conn.execute(
            "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots "
            "WHERE database = %s",
            (name,),
        )
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def fresh_db(dev_layout: DevLayout) -> Iterator[str]:
    """A new, migrated database for one test; dropped afterwards. Yields its DSN."""
    name = f"test_{uuid.uuid4().hex[:12]}"
    dsn = create_database(dev_layout, name)
    yield dsn
    drop_database(dev_layout, name)


@pytest.fixture
def kafka_bootstrap(dev_layout: DevLayout) -> str:
    return dev_layout.kafka_bootstrap


@pytest.fixture(scope="session")
async def temporal_client(dev_layout: DevLayout) -> AsyncIterator[Client]:
    client = await Client.connect(dev_layout.temporal_address, namespace="default")
    yield client
