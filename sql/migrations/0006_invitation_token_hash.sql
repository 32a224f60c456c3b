-- 0006: invitation tokens leave the read model; the emit functions run as their owner.
--
-- user.invited now carries token_hash (SHA-256 of the token, which is derived with an HMAC
-- and exists only in the invitation email). The projection keeps the hash alone. Rows
-- folded from events written before this migration carried the plaintext token: they get
-- no hash and can never be accepted (the projection can be rebuilt by replay and gives
-- the same result). What an operator does about the plaintext tokens already in
-- domain_events and Kafka is in docs/operations.md ("Invitation tokens").
ALTER TABLE invitations_projection DROP COLUMN token;
ALTER TABLE invitations_projection ADD COLUMN token_hash text;
COMMENT ON COLUMN invitations_projection.token_hash IS
    'SHA-256 (hex) of the invitation token; NULL for invitations issued before 0006, which cannot be accepted.';
COMMENT ON COLUMN invitations_projection.status IS 'pending | sent | accepted | revoked';

-- Least privilege (sql/roles.sql): the roles that append events get EXECUTE on the two
-- api.emit_domain_event signatures and nothing on domain_events itself, so the functions
-- run as their owner (the role that runs the migrations), with a fixed search_path.
-- Nobody but the owner may call them until sql/roles.sql grants it: a superuser (the
-- documented set-up before least-privilege roles) is not affected.
ALTER FUNCTION api.emit_domain_event(uuid, text, text, jsonb, jsonb, text)
    SECURITY DEFINER SET search_path FROM CURRENT;
ALTER FUNCTION api.emit_domain_event(uuid, text, text, uuid, jsonb, jsonb, text)
    SECURITY DEFINER SET search_path FROM CURRENT;
ALTER FUNCTION api.append_domain_event(uuid, uuid, text, text, jsonb, jsonb, text)
    SET search_path FROM CURRENT;
REVOKE EXECUTE ON FUNCTION api.emit_domain_event(uuid, text, text, jsonb, jsonb, text) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION api.emit_domain_event(uuid, text, text, uuid, jsonb, jsonb, text) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION api.append_domain_event(uuid, uuid, text, text, jsonb, jsonb, text) FROM PUBLIC;
