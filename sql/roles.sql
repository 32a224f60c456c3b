-- Least-privilege roles of the pipeline (docs/security.md). Idempotent: run it as the
-- owner of the schema (the role that runs `pipeline migrate`, with CREATEROLE, or a
-- superuser) after every migration, in the application's database:
--
--   psql "$OWNER_DATABASE_URL" -v ON_ERROR_STOP=1 -f sql/roles.sql
--
-- It creates three LOGIN roles without passwords (set them: ALTER ROLE ... PASSWORD) and
-- grants each exactly what its component does. Roles are cluster-wide; the grants are
-- per database, so run it in every database the pipeline uses.
--
-- Ordering: the owner runs the migrations, which create the tables, the `api` functions
-- and the publication `pipeline_domain_events`; none of these roles can create or alter
-- any of them. The reader creates (and, when its initial snapshot never finished, drops)
-- its replication slot itself: the REPLICATION attribute allows exactly that.

DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'pipeline_reader') THEN
        CREATE ROLE pipeline_reader LOGIN REPLICATION;
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'pipeline_agents') THEN
        CREATE ROLE pipeline_agents LOGIN;
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'pipeline_worker') THEN
        CREATE ROLE pipeline_worker LOGIN;
    END IF;
END;
$$;
-- Re-assert the attributes on roles that existed before (never more than these).
ALTER ROLE pipeline_reader LOGIN REPLICATION NOSUPERUSER NOCREATEDB NOCREATEROLE NOBYPASSRLS;
ALTER ROLE pipeline_agents LOGIN NOREPLICATION NOSUPERUSER NOCREATEDB NOCREATEROLE NOBYPASSRLS;
ALTER ROLE pipeline_worker LOGIN NOREPLICATION NOSUPERUSER NOCREATEDB NOCREATEROLE NOBYPASSRLS;

-- Nobody but the owner creates objects in public (PostgreSQL < 15 lets PUBLIC do it).
REVOKE CREATE ON SCHEMA public FROM PUBLIC;
GRANT USAGE ON SCHEMA public TO pipeline_reader, pipeline_agents, pipeline_worker;

-- ---- reader: WAL -> Kafka (replication/) -------------------------------------------
-- The initial snapshot copies domain_events (SELECT in the slot's exported snapshot);
-- the streaming itself needs only REPLICATION and the publication, which the migrations
-- created. pipeline_reader_snapshots records that the snapshot is complete.
GRANT SELECT ON domain_events TO pipeline_reader;
GRANT SELECT, INSERT, UPDATE ON pipeline_reader_snapshots TO pipeline_reader;
-- Dead letters once (migration 0008): the reader sets aside rows it cannot convert, the
-- agents the records they reject; both record them before sending the copy.
GRANT SELECT, INSERT, UPDATE ON pipeline_dead_letters TO pipeline_reader, pipeline_agents;

-- ---- appending events: only through api.emit_domain_event ----------------------------
-- Both signatures are SECURITY DEFINER (migration 0006): the caller needs EXECUTE and no
-- privilege on domain_events; the append function itself is not granted.
GRANT USAGE ON SCHEMA api TO pipeline_agents, pipeline_worker;
GRANT EXECUTE ON FUNCTION api.emit_domain_event(uuid, text, text, jsonb, jsonb, text)
    TO pipeline_agents, pipeline_worker;
GRANT EXECUTE ON FUNCTION api.emit_domain_event(uuid, text, text, uuid, jsonb, jsonb, text)
    TO pipeline_agents, pipeline_worker;

-- ---- agents: enqueue, starter, projection; the accept page; replay, status -----------
-- The starter reads a job's history from the store (pipeline/agents/jobstore.py), replay
-- counts it; the projections and checkpoints are upserted (INSERT ... ON CONFLICT DO
-- UPDATE, SELECT ... FOR UPDATE); the accept page reads invitations_projection.
GRANT SELECT ON domain_events TO pipeline_agents;
GRANT SELECT, INSERT, UPDATE
    ON workflow_queue_projection, organizations_projection, invitations_projection,
       pipeline_checkpoints
    TO pipeline_agents;

-- ---- worker: the bootstrap's activities (pipeline/bootstrap/) ------------------------
-- Activities read back the events they emitted (by idempotency key) and the local DNS
-- provider publishes into dns_records (a real provider needs nothing here).
GRANT SELECT ON domain_events TO pipeline_worker;
GRANT SELECT, INSERT, DELETE ON dns_records TO pipeline_worker;
