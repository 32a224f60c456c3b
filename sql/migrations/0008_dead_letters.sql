-- 0008: dead letters, once per (position, reason) (DESIGN.md invariant 7).
--
-- A record the reader cannot convert, or that an agent rejects, is set aside here before
-- its copy goes to the dead-letter topic. The key is the event's position plus the kind
-- of reason, so a redelivered, restarted or replayed record that fails the same way finds
-- its row and sends nothing again. ``published`` turns true once Kafka holds the copy; a
-- row that stays false is a dead-letter send that failed for good (shown by
-- ``pipeline status`` and ``pipeline dead-letters list``).
CREATE TABLE pipeline_dead_letters (
    dead_letter_key  text        PRIMARY KEY,  -- '<commit_lsn>/<idx>/<reason_kind>', or '<topic>[p]@offset/<reason_kind>' without a position
    commit_lsn       pg_lsn,
    idx              integer,
    reason_kind      text        NOT NULL,
    reason           text        NOT NULL,
    source           text        NOT NULL,     -- 'reader' or the agent: 'projection'
    event_id         uuid,                     -- the row's id, when known
    original_topic   text,
    original_partition integer,
    original_offset  bigint,
    record_key       bytea,
    record_value     bytea,                    -- the record as consumed (a claim check stays a claim check)
    record_headers   jsonb       NOT NULL DEFAULT '[]'::jsonb,  -- [[name, base64 value], ...]
    published        boolean     NOT NULL DEFAULT false,
    attempts         integer     NOT NULL DEFAULT 0,
    last_error       text,
    redriven_at      timestamptz,
    created_at       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX pipeline_dead_letters_position_idx ON pipeline_dead_letters (commit_lsn, idx);
CREATE INDEX pipeline_dead_letters_unpublished_idx ON pipeline_dead_letters (published) WHERE NOT published;
