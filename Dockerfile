# The pipeline image: `pipeline run` (reader + agents), `pipeline worker`, `pipeline migrate`.

# The reader's hot modules compiled with mypyc (scripts/build_native.py); the image works
# without them too (pure Python), but drains the WAL faster with them.
FROM python:3.11-slim AS native
RUN apt-get update && apt-get install -y --no-install-recommends gcc libc6-dev \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY pyproject.toml README.md ./
COPY pipeline ./pipeline
COPY replication ./replication
COPY scripts/build_native.py ./scripts/
RUN pip install --no-cache-dir . mypy setuptools && python scripts/build_native.py

FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
WORKDIR /app
COPY pyproject.toml README.md ./
COPY pipeline ./pipeline
COPY replication ./replication
COPY --from=native /app/replication/*.so /app/replication/_native.json ./replication/
COPY sql ./sql
COPY contracts/organization-bootstrap-events.yaml ./contracts/
RUN pip install --no-cache-dir . && (cd / && python -c "import replication.hotpath as m; assert m.__file__.endswith('.so'), m.__file__") && useradd --system --uid 10001 pipeline && mkdir -p /var/lib/pipeline && chown pipeline /var/lib/pipeline
ENV PIPELINE_MIGRATIONS_DIR=/app/sql/migrations PIPELINE_CONTRACT_PATH=/app/contracts/organization-bootstrap-events.yaml PIPELINE_DATA_DIR=/var/lib/pipeline
USER pipeline
ENTRYPOINT ["pipeline"]
CMD ["run"]
