"""``up`` / ``down`` / ``status`` over the three local services."""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol

from pipeline.dev.errors import ServiceError
from pipeline.dev.kafka import Kafka
from pipeline.dev.layout import DevLayout, load_layout
from pipeline.dev.postgres import Postgres
from pipeline.dev.process import log_tail
from pipeline.dev.temporal import Temporal


class Service(Protocol):
    name: str
    port: int

    def start(self) -> bool: ...
    def stop(self) -> bool: ...
    def healthy(self) -> bool: ...
    def pid(self) -> int | None: ...


@dataclass(frozen=True, slots=True)
class ServiceStatus:
    name: str
    port: int
    pid: int | None
    healthy: bool


def all_services(layout: DevLayout) -> list[Service]:
    return [Postgres(layout), Kafka(layout), Temporal(layout)]


def _select(layout: DevLayout, names: Iterable[str] | None) -> list[Service]:
    services = all_services(layout)
    if names is None:
        return services
    wanted = set(names)
    unknown = wanted - {s.name for s in services}
    if unknown:
        raise ServiceError(f"unknown service(s): {', '.join(sorted(unknown))}")
    return [s for s in services if s.name in wanted]


def up(
    layout: DevLayout | None = None,
    names: Sequence[str] | None = None,
    timeout: float = 180.0,
) -> list[str]:
    """Start what is not running and wait until every service is healthy.

    Idempotent: a running service is left alone. Returns the names of the services this
    call started.
    """
    layout = layout or load_layout()
    services = _select(layout, names)
    started = [s.name for s in services if s.start()]
    deadline = time.monotonic() + timeout
    for service in services:
        while not service.healthy():
            if service.pid() is None:
                raise ServiceError(f"{service.name} exited during start-up{_tail(service)}")
            if time.monotonic() > deadline:
                raise ServiceError(
                    f"{service.name} not healthy after {timeout:.0f}s{_tail(service)}"
                )
            time.sleep(0.3)
        if isinstance(service, Postgres):
            service.wait_healthy()
    return started


def _tail(service: Service) -> str:
    return log_tail(getattr(service, "log_file", None))


def down(layout: DevLayout | None = None, names: Sequence[str] | None = None) -> list[str]:
    """Stop the services this project started (by their pid files); returns their names."""
    layout = layout or load_layout()
    return [s.name for s in reversed(_select(layout, names)) if s.stop()]


def status(layout: DevLayout | None = None) -> list[ServiceStatus]:
    layout = layout or load_layout()
    return [ServiceStatus(s.name, s.port, s.pid(), s.healthy()) for s in all_services(layout)]
