"""The parts of a configuration of Temporal's own server (``temporal-server start``) that
every server this project starts shares: one cluster, no replication, a dynamic config
that serves a registered namespace within a second.

Two users: the TLS tests' server (tests/integration/temporal_tls_server.py, SQLite) and
the benchmarks' production-shaped server (bench/temporal_postgres.py, PostgreSQL). Each
writes its own ``log``/``persistence``/``global``/``services`` blocks and ends the file
with :func:`cluster_tail`.
"""

from __future__ import annotations

from pathlib import Path


def write_dynamic_config(path: Path) -> Path:
    """A registered namespace is served once the frontend's cache refreshes (10 s by
    default); 1 s here, so a server is usable right after ``register_namespace``."""
    path.write_text("system.namespaceCacheRefreshInterval:\n  - value: 1s\n")
    return path


def cluster_tail(host: str, frontend: int, http: int, dynamic: Path) -> str:
    """The YAML after ``services:``: one active cluster at the frontend, the dynamic config."""
    return f"""clusterMetadata:
  enableGlobalNamespace: false
  failoverVersionIncrement: 10
  masterClusterName: active
  currentClusterName: active
  clusterInformation:
    active:
      enabled: true
      initialFailoverVersion: 1
      rpcName: frontend
      rpcAddress: {host}:{frontend}
      httpAddress: {host}:{http}
dcRedirectionPolicy:
  policy: noop
dynamicConfigClient:
  filepath: {dynamic}
  pollInterval: 10s
"""
