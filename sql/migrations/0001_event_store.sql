-- 0001: the append-only event store and the two api.emit_domain_event signatures.
--
-- domain_events is the single source of truth: every state change is an event, every
-- projection is a fold of events. Rows are never updated or deleted (enforced below), so
-- the WAL stream of this table is exactly its history and the pipeline only needs INSERTs.
-- Both emit_domain_event signatures of the system this grew from are kept (stream-based,
-- used by edge functions; aggregate-based, used by workflow activities); both dedupe on an
-- idempotency key so that a retried emission is a no-op that returns the first event's id.

CREATE SCHEMA IF NOT EXISTS api;

CREATE TABLE domain_events (
    id               uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
    stream_id        uuid        NOT NULL,
    stream_type      text        NOT NULL,
    stream_version   integer     NOT NULL CHECK (stream_version >= 1),
    event_type       text        NOT NULL,
    event_data       jsonb       NOT NULL DEFAULT '{}'::jsonb,
    event_metadata   jsonb       NOT NULL DEFAULT '{}'::jsonb,
    idempotency_key  text,
    created_at       timestamptz NOT NULL DEFAULT clock_timestamp(),
    CONSTRAINT domain_events_stream_version_key UNIQUE (stream_id, stream_version)
);

COMMENT ON TABLE domain_events IS
    'Append-only event store. UPDATE, DELETE and TRUNCATE are rejected by triggers.';
COMMENT ON COLUMN domain_events.idempotency_key IS
    'Set by emitters that may retry; unique when present. A repeated key adds nothing.';

CREATE UNIQUE INDEX domain_events_idempotency_key_key
    ON domain_events (idempotency_key) WHERE idempotency_key IS NOT NULL;
CREATE INDEX domain_events_event_type_idx ON domain_events (event_type, created_at);
CREATE INDEX domain_events_created_at_idx ON domain_events (created_at);

CREATE FUNCTION domain_events_reject_change() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'domain_events is append-only: % is not allowed', TG_OP
        USING ERRCODE = 'restrict_violation',
              HINT = 'Emit a compensating event with api.emit_domain_event instead.';
END;
$$;

CREATE TRIGGER domain_events_no_update_delete
    BEFORE UPDATE OR DELETE ON domain_events
    FOR EACH ROW EXECUTE FUNCTION domain_events_reject_change();
CREATE TRIGGER domain_events_no_truncate
    BEFORE TRUNCATE ON domain_events
    FOR EACH STATEMENT EXECUTE FUNCTION domain_events_reject_change();

-- The one place that appends. Serialises appends per stream (advisory lock on the stream
-- id) so stream_version is gap-free and ordered, and dedupes on the idempotency key.
CREATE FUNCTION api.append_domain_event(
    p_event_id        uuid,
    p_stream_id       uuid,
    p_stream_type     text,
    p_event_type      text,
    p_event_data      jsonb,
    p_event_metadata  jsonb,
    p_idempotency_key text
) RETURNS uuid
LANGUAGE plpgsql AS $$
DECLARE
    v_key     text := COALESCE(p_idempotency_key, p_event_metadata ->> 'idempotency_key');
    v_id      uuid;
    v_version integer;
BEGIN
    IF p_stream_id IS NULL OR p_stream_type IS NULL OR p_event_type IS NULL THEN
        RAISE EXCEPTION 'emit_domain_event: stream id, stream type and event type are required'
            USING ERRCODE = 'not_null_violation';
    END IF;
    PERFORM pg_advisory_xact_lock(hashtextextended(p_stream_id::text, 0));
    IF v_key IS NOT NULL THEN
        SELECT id INTO v_id FROM domain_events WHERE idempotency_key = v_key;
        IF FOUND THEN
            RETURN v_id;
        END IF;
    END IF;
    IF p_event_id IS NOT NULL THEN
        SELECT id INTO v_id FROM domain_events WHERE id = p_event_id;
        IF FOUND THEN
            RETURN v_id;
        END IF;
    END IF;
    SELECT COALESCE(max(stream_version), 0) + 1 INTO v_version
      FROM domain_events WHERE stream_id = p_stream_id;
    INSERT INTO domain_events (id, stream_id, stream_type, stream_version, event_type,
                               event_data, event_metadata, idempotency_key)
    VALUES (COALESCE(p_event_id, gen_random_uuid()), p_stream_id, p_stream_type, v_version,
            p_event_type, COALESCE(p_event_data, '{}'::jsonb),
            COALESCE(p_event_metadata, '{}'::jsonb), v_key)
    ON CONFLICT (idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING
    RETURNING id INTO v_id;
    IF v_id IS NULL THEN
        -- Lost a race with a concurrent emitter of the same key on another stream.
        SELECT id INTO v_id FROM domain_events WHERE idempotency_key = v_key;
    END IF;
    RETURN v_id;
END;
$$;

-- Stream-based signature (edge functions): the caller names the stream.
CREATE FUNCTION api.emit_domain_event(
    p_stream_id       uuid,
    p_stream_type     text,
    p_event_type      text,
    p_event_data      jsonb,
    p_event_metadata  jsonb DEFAULT '{}'::jsonb,
    p_idempotency_key text  DEFAULT NULL
) RETURNS uuid
LANGUAGE sql AS $$
    SELECT api.append_domain_event(NULL, p_stream_id, p_stream_type, p_event_type,
                                   p_event_data, p_event_metadata, p_idempotency_key);
$$;

-- Aggregate-based signature (workflow activities): the caller chooses the event id, which
-- makes a retried activity idempotent even without a key.
CREATE FUNCTION api.emit_domain_event(
    p_event_id        uuid,
    p_event_type      text,
    p_aggregate_type  text,
    p_aggregate_id    uuid,
    p_event_data      jsonb,
    p_event_metadata  jsonb DEFAULT '{}'::jsonb,
    p_idempotency_key text  DEFAULT NULL
) RETURNS uuid
LANGUAGE sql AS $$
    SELECT api.append_domain_event(p_event_id, p_aggregate_id, p_aggregate_type, p_event_type,
                                   p_event_data, p_event_metadata, p_idempotency_key);
$$;

-- The pipeline reads inserts of this table (and only this table) from the WAL.
CREATE PUBLICATION pipeline_domain_events FOR TABLE domain_events WITH (publish = 'insert');
