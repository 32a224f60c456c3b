-- 0004: what the replication reader must remember outside the slot.
--
-- When the reader creates its slot it copies the rows already in domain_events (read in
-- the slot's exported snapshot) into Kafka before streaming. A crash in the middle would
-- leave a slot whose snapshot is lost, so completion is recorded here; a slot without a
-- completed snapshot is dropped and created again.
CREATE TABLE pipeline_reader_snapshots (
    slot_name         text        PRIMARY KEY,
    consistent_point  pg_lsn      NOT NULL,  -- the slot's start: the snapshot holds everything before it
    rows_copied       bigint      NOT NULL,
    completed_at      timestamptz NOT NULL DEFAULT now()
);
