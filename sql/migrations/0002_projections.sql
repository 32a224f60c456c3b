-- 0002: read models (projections) and the pipeline's checkpoint table.
--
-- Every projection row remembers the position (commit_lsn, idx) of the last event folded
-- into it; an event at or before that position is ignored, which makes a redelivered or
-- replayed event a no-op (DESIGN.md invariant 3).

CREATE TABLE workflow_queue_projection (
    job_id           uuid        PRIMARY KEY,           -- id of the event that asked for the job
    stream_id        uuid        NOT NULL,
    stream_type      text        NOT NULL,
    event_type       text        NOT NULL,              -- the requesting event's type
    event_data       jsonb       NOT NULL DEFAULT '{}'::jsonb,
    status           text        NOT NULL CHECK (status IN ('pending', 'processing', 'completed', 'failed')),
    workflow_type    text,
    workflow_id      text,
    run_id           text,
    worker_id        text,
    attempts         integer     NOT NULL DEFAULT 0,
    last_error       text,
    created_at       timestamptz NOT NULL,
    claimed_at       timestamptz,
    started_at       timestamptz,
    completed_at     timestamptz,
    failed_at        timestamptz,
    updated_at       timestamptz NOT NULL,
    last_commit_lsn  pg_lsn      NOT NULL,
    last_idx         integer     NOT NULL
);
CREATE INDEX workflow_queue_projection_status_idx ON workflow_queue_projection (status);
CREATE INDEX workflow_queue_projection_stream_id_idx ON workflow_queue_projection (stream_id);
CREATE INDEX workflow_queue_projection_event_type_idx ON workflow_queue_projection (event_type);
CREATE INDEX workflow_queue_projection_created_at_idx ON workflow_queue_projection (created_at);

CREATE TABLE organizations_projection (
    id                 uuid        PRIMARY KEY,         -- the organization's stream_id
    name               text        NOT NULL,
    subdomain          text        NOT NULL,
    subdomain_metadata jsonb       NOT NULL DEFAULT '{}'::jsonb,  -- subdomain, fqdn, dns state
    status             text        NOT NULL,            -- bootstrapping | active | failed
    failure_reason     text,
    created_at         timestamptz NOT NULL,
    updated_at         timestamptz NOT NULL,
    last_commit_lsn    pg_lsn      NOT NULL,
    last_idx           integer     NOT NULL
);
CREATE INDEX organizations_projection_subdomain_idx ON organizations_projection (subdomain);

CREATE TABLE invitations_projection (
    id               uuid        PRIMARY KEY,           -- invitation_id
    organization_id  uuid        NOT NULL,
    email            text        NOT NULL,
    role             text        NOT NULL,
    status           text        NOT NULL,              -- pending | sent | revoked
    token            text        NOT NULL,
    expires_at       timestamptz NOT NULL,
    created_at       timestamptz NOT NULL,
    updated_at       timestamptz NOT NULL,
    last_commit_lsn  pg_lsn      NOT NULL,
    last_idx         integer     NOT NULL
);
CREATE INDEX invitations_projection_organization_id_idx ON invitations_projection (organization_id);

-- What the local DNS provider "publishes" (the demo's stand-in for a DNS API).
CREATE TABLE dns_records (
    record_id        uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
    fqdn             text        NOT NULL UNIQUE,
    record_type      text        NOT NULL,
    content          text        NOT NULL,
    organization_id  uuid,
    created_at       timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE pipeline_checkpoints (
    consumer         text        NOT NULL,              -- agent / consumer group name
    topic            text        NOT NULL,
    kafka_partition  integer     NOT NULL,
    kafka_offset     bigint      NOT NULL,              -- next offset to read on this partition
    commit_lsn       pg_lsn      NOT NULL,              -- position of the last event applied
    idx              integer     NOT NULL,
    updated_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (consumer, topic, kafka_partition)
);
COMMENT ON TABLE pipeline_checkpoints IS
    'Per-partition progress of each agent, written in the same transaction as the projection '
    'rows it covers: kafka_offset is the next offset to consume; (commit_lsn, idx) is the '
    'position of the last event whose effects are committed.';
