-- 0005: the SQL API's defaults agree with the contract (issue 15 item 10).
--
-- api.emit_domain_event declares p_event_metadata DEFAULT '{}', but the contract
-- (contracts/organization-bootstrap-events.yaml) requires event_metadata.source for every
-- event type, and event_metadata.causation_id for the three the pipeline emits from
-- another event. A caller using the function as declared wrote an event that the agents
-- dead-lettered later, and was told nothing at emit time. From now on, for the event
-- types of the contract, before the row is stored:
--   * a missing (or JSON null) source becomes 'api.emit_domain_event': the emitter is the
--     SQL API, which is true, and the event is valid;
--   * metadata that is not a JSON object, a source that is not a string of 1..128
--     characters, or a missing causation_id where the contract requires one is refused
--     with SQLSTATE 23514 (check_violation), naming the field and the event type; no
--     default can invent the event that caused another.
-- A BEFORE INSERT trigger rather than a new function body: it holds for both signatures
-- and for any later replacement of them. Event types the contract does not describe are
-- left alone. tests/unit/test_metadata_migration.py checks these lists against the
-- contract, so a contract change that needs a new rule fails the tests.

CREATE FUNCTION domain_events_metadata_contract() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    v_source jsonb;
BEGIN
    IF NEW.event_type NOT IN (
        'organization.bootstrap.initiated',
        'workflow.queue.pending',
        'workflow.queue.claimed',
        'organization.bootstrap.workflow_started',
        'organization.created',
        'organization.dns.created',
        'organization.dns.removed',
        'user.invited',
        'invitation.email.sent',
        'invitation.revoked',
        'invitation.accepted',
        'organization.bootstrap.completed',
        'organization.bootstrap.failed',
        'workflow.queue.completed',
        'workflow.queue.failed'
    ) THEN
        RETURN NEW;
    END IF;
    IF jsonb_typeof(NEW.event_metadata) IS DISTINCT FROM 'object' THEN
        RAISE EXCEPTION 'emit_domain_event: event_metadata must be a JSON object for %, got %',
                NEW.event_type, jsonb_typeof(NEW.event_metadata)
            USING ERRCODE = 'check_violation',
                  HINT = 'Pass p_event_metadata => ''{"source": "<emitter>"}''::jsonb.';
    END IF;
    v_source := NEW.event_metadata -> 'source';
    IF v_source IS NULL OR v_source = 'null'::jsonb THEN
        NEW.event_metadata := NEW.event_metadata
            || jsonb_build_object('source', 'api.emit_domain_event');
    ELSIF jsonb_typeof(v_source) <> 'string'
          OR char_length(v_source #>> '{}') NOT BETWEEN 1 AND 128 THEN
        RAISE EXCEPTION 'emit_domain_event: event_metadata.source must be a string of 1 to 128 characters for %, got %',
                NEW.event_type, v_source
            USING ERRCODE = 'check_violation',
                  HINT = 'Name the emitter, e.g. p_event_metadata => ''{"source": "api"}''::jsonb.';
    END IF;
    IF NEW.event_type IN (
        'workflow.queue.pending',
        'workflow.queue.claimed',
        'organization.bootstrap.workflow_started'
    ) AND NEW.event_metadata -> 'causation_id' IS NULL THEN
        RAISE EXCEPTION 'emit_domain_event: event_metadata.causation_id is required for %',
                NEW.event_type
            USING ERRCODE = 'check_violation',
                  HINT = 'Set it to the id of the event that caused this one.';
    END IF;
    RETURN NEW;
END;
$$;

COMMENT ON FUNCTION domain_events_metadata_contract() IS
    'Defaults event_metadata.source and refuses metadata the contract rejects (0005).';

CREATE TRIGGER domain_events_metadata_contract
    BEFORE INSERT ON domain_events
    FOR EACH ROW EXECUTE FUNCTION domain_events_metadata_contract();
