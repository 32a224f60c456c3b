"""Registering a namespace on a fresh Temporal server (the real server, not the dev server:
the dev server registers ``default`` itself). Used by the benchmarks' PostgreSQL-backed
server (bench/temporal_postgres.py) and the TLS tests' server."""

from __future__ import annotations

from google.protobuf.duration_pb2 import Duration
from temporalio.api.workflowservice.v1 import RegisterNamespaceRequest
from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode


async def ensure_namespace(client: Client, namespace: str) -> None:
    """Register ``namespace`` (one day of retention) unless it exists, then wait until the
    server serves it: a visibility call resolves the name once the namespace cache has it.
    Raises RPCError (or RuntimeError) while the server is not ready; callers retry."""
    try:
        await client.workflow_service.register_namespace(
            RegisterNamespaceRequest(
                namespace=namespace,
                workflow_execution_retention_period=Duration(seconds=86400),
            )
        )
    except RPCError as exc:
        if exc.status != RPCStatusCode.ALREADY_EXISTS:
            raise
    await client.count_workflows()
