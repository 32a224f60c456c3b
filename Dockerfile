# The pipeline image: `pipeline run` (reader + agents), `pipeline worker`, `pipeline migrate`.

# The base image is pinned by digest (a tag moves under you; a digest cannot): the
# python:3.11-slim image list this digest names was taken from public Dockerfiles that pin
# it, NOT verified against the registry from where this was written (no registry access).
# Verify or bump it with `docker buildx imagetools inspect python:3.11-slim` (or let
# Renovate/Dependabot keep it current); tests/unit/deploy/test_dockerfile.py fails on an
# unpinned base.
ARG PYTHON_IMAGE=python:3.11-slim@sha256:9c900dea9e8fb7e16277c179b555cc72d29a352dbc33cff48ad5a0412fd5bfc7

# The reader's hot modules compiled with mypyc (scripts/build_native.py); the image works
# without them too (pure Python), but drains the WAL faster with them.
FROM ${PYTHON_IMAGE} AS native
RUN apt-get update && apt-get install -y --no-install-recommends gcc libc6-dev \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY requirements ./requirements
RUN pip install --no-cache-dir -r requirements/runtime.lock \
    && pip install --no-cache-dir "$(grep -o '^mypy==[^ ]*' requirements/dev.lock)" setuptools
COPY pyproject.toml README.md ./
COPY pipeline ./pipeline
COPY replication ./replication
COPY scripts/build_native.py ./scripts/
RUN pip install --no-cache-dir --no-deps . && python scripts/build_native.py

FROM ${PYTHON_IMAGE}
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
WORKDIR /app
# Exact versions (requirements/runtime.lock), then the project without resolving again.
COPY requirements/runtime.lock ./requirements/
RUN pip install --no-cache-dir -r requirements/runtime.lock
COPY pyproject.toml README.md ./
COPY pipeline ./pipeline
COPY replication ./replication
COPY --from=native /app/replication/*.so /app/replication/_native.json ./replication/
COPY sql ./sql
COPY contracts/organization-bootstrap-events.yaml ./contracts/
RUN pip install --no-cache-dir --no-deps . && (cd / && python -c "import replication.frame_loop as m; assert m.__file__.endswith('.so'), m.__file__") && useradd --system --uid 10001 pipeline && mkdir -p /var/lib/pipeline && chown pipeline /var/lib/pipeline
ENV PIPELINE_MIGRATIONS_DIR=/app/sql/migrations PIPELINE_CONTRACT_PATH=/app/contracts/organization-bootstrap-events.yaml PIPELINE_DATA_DIR=/var/lib/pipeline PIPELINE_WEB_PORT=6066
USER pipeline
EXPOSE 6066
# `pipeline run` serves /healthz on $PIPELINE_WEB_PORT (the worker has no web server:
# compose disables this check for it; Kubernetes uses its own probes).
HEALTHCHECK --interval=10s --timeout=3s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('PIPELINE_WEB_PORT', '6066'), timeout=2)"]
ENTRYPOINT ["pipeline"]
CMD ["run"]
