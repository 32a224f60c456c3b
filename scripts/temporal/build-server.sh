#!/usr/bin/env bash
# Builds Temporal's server from its Go module (never a prebuilt binary) for the test of
# Temporal over TLS (tests/integration/temporal_tls_server.py): the dev server
# (`temporal server start-dev`) has no TLS options, the real server has.
#
# Idempotent: builds once into $PIPELINE_CACHE_DIR (default ~/.cache/pipeline)
# /temporal-server-<version>/temporal-server and does nothing when that binary exists.
# Modules come through Go's module proxy as configured on the machine (`go env GOPROXY`);
# the module cache (~/go/pkg/mod) and the build cache are reused.
set -euo pipefail

VERSION=1.32.1  # 1.32.2 needs a newer Go than this project's machines have (go 1.26.8)
cache=${PIPELINE_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/pipeline}
dir=$cache/temporal-server-$VERSION
bin=$dir/temporal-server

log() { printf '[temporal-server] %s\n' "$*"; }

if [ -x "$bin" ]; then
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
GOFLAGS=-mod=mod CGO_ENABLED=0 GOBIN="$tmp" \
  go install "go.temporal.io/server/cmd/server@v$VERSION"
mv "$tmp/server" "$bin"
log "built $bin in $(( $(date +%s) - start ))s"
