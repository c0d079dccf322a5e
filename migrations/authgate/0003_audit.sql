-- authgate native schema, version 3: the audit trail (src/audit.rs).
-- Append-only: a trigger refuses UPDATE, DELETE and TRUNCATE, except the
-- retention job's DELETE, which sets authgate.audit_retention = 'on' for
-- its own transaction and leaves a checkpoint event behind.

CREATE TABLE audit_events (
    id          bigint PRIMARY KEY,
    at          timestamptz NOT NULL,
    action      text NOT NULL,
    actor       text NOT NULL,
    via         text NOT NULL,
    target_kind text NOT NULL,
    target_id   bigint NOT NULL,
    target_name text NOT NULL,
    changes     jsonb NOT NULL,
    request_id  text,
    client_ip   text,
    prev_hash   text NOT NULL,
    hash        text NOT NULL
);
CREATE INDEX audit_events_at_idx ON audit_events (at);

CREATE FUNCTION audit_events_append_only() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' AND current_setting('authgate.audit_retention', true) = 'on' THEN
        RETURN OLD;
    END IF;
    RAISE EXCEPTION 'audit_events is append-only (% refused)', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END $$;

CREATE TRIGGER audit_events_append_only
    BEFORE UPDATE OR DELETE ON audit_events
    FOR EACH ROW EXECUTE FUNCTION audit_events_append_only();
CREATE TRIGGER audit_events_no_truncate
    BEFORE TRUNCATE ON audit_events
    FOR EACH STATEMENT EXECUTE FUNCTION audit_events_append_only();
