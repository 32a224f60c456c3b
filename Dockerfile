# The pipeline image: `pipeline run` (reader + agents), `pipeline worker`, `pipeline migrate`.
FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
WORKDIR /app
COPY pyproject.toml README.md ./
COPY pipeline ./pipeline
COPY replication ./replication
COPY sql ./sql
COPY contracts/organization-bootstrap-events.yaml ./contracts/
RUN pip install --no-cache-dir . && useradd --system --uid 10001 pipeline && mkdir -p /var/lib/pipeline && chown pipeline /var/lib/pipeline
ENV PIPELINE_MIGRATIONS_DIR=/app/sql/migrations PIPELINE_CONTRACT_PATH=/app/contracts/organization-bootstrap-events.yaml PIPELINE_DATA_DIR=/var/lib/pipeline
USER pipeline
ENTRYPOINT ["pipeline"]
CMD ["run"]
