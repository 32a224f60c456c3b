#!/usr/bin/env bash
# Builds Temporal's server from its Go module (never a prebuilt binary) for the test of
# Temporal over TLS (tests/integration/temporal_tls_server.py): the dev server
# (`temporal server start-dev`) has no TLS options, the real server has. Also builds the
# module's temporal-sql-tool and copies its PostgreSQL schemas, for the benchmarks'
# production-shaped server on PostgreSQL (bench/temporal_postgres.py).
#
# Idempotent: builds once into $PIPELINE_CACHE_DIR (default ~/.cache/pipeline)
# /temporal-server-<version>/ (temporal-server, temporal-sql-tool, schema/) and does
# nothing when those exist.
# Modules come through Go's module proxy as configured on the machine (`go env GOPROXY`);
# the module cache (~/go/pkg/mod) and the build cache are reused.
set -euo pipefail

VERSION=1.32.1  # 1.32.2 needs a newer Go than this project's machines have (go 1.26.8)
cache=${PIPELINE_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/pipeline}
dir=$cache/temporal-server-$VERSION
bin=$dir/temporal-server

log() { printf '[temporal-server] %s\n' "$*"; }

sql_tool=$dir/temporal-sql-tool
schema=$dir/schema/postgresql/v12
if [ -x "$bin" ] && [ -x "$sql_tool" ] && [ -d "$schema" ]; then
  log "$bin exists"
  exit 0
fi
if ! command -v go >/dev/null 2>&1; then
  log "no go command: install Go >= 1.26 to build Temporal's server (the TLS tests need it)" >&2
  exit 1
fi

log "building go.temporal.io/server/cmd/server@v$VERSION with $(go version | cut -d' ' -f3) (GOPROXY=$(go env GOPROXY)); a few minutes the first time"
mkdir -p "$dir"
tmp=$(mktemp -d "$dir/.build.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
start=$(date +%s)
# `go install pkg@version` builds the module's own go.mod/go.sum, outside any module of ours.
if [ ! -x "$bin" ]; then
  GOFLAGS=-mod=mod CGO_ENABLED=0 GOBIN="$tmp" \
    go install "go.temporal.io/server/cmd/server@v$VERSION"
  mv "$tmp/server" "$bin"
fi
if [ ! -x "$sql_tool" ]; then
  GOFLAGS=-mod=mod CGO_ENABLED=0 GOBIN="$tmp" \
    go install "go.temporal.io/server/cmd/tools/sql@v$VERSION"
  mv "$tmp/sql" "$sql_tool"
fi
if [ ! -d "$schema" ]; then
  # The module's own schema files, from the module cache the builds above filled.
  src=$(go env GOMODCACHE)/go.temporal.io/server@v$VERSION/schema/postgresql/v12
  mkdir -p "$dir/schema/postgresql"
  cp -r "$src" "$tmp/v12" && chmod -R u+w "$tmp/v12" && mv "$tmp/v12" "$schema"
fi
log "built $bin, $sql_tool and $schema in $(( $(date +%s) - start ))s"
