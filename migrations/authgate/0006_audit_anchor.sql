-- authgate audit trail, version 2 (issue items 3 and 4; src/audit.rs).
-- Applied in the native schema as migration 6, and beside the table in
-- schema `authgate` in the strapi5 layout on every `migrate` (idempotent).
--
-- 1. client_request_id: what the client sent as X-Request-Id, kept apart
--    from request_id (authgate's own id). Old rows have NULL, which the
--    chain's canonical form leaves out, so they verify as before.
-- 2. Ids come from a sequence, so they never restart: a wiped table's next
--    event does not start the chain again at 1.
-- 3. Deletion is decided by the data, not by a session setting: a row may
--    go only once a retention checkpoint already in the table, newer than
--    the row, names it (changes.pruned_through >= id). The newest event
--    can therefore never go, nor the table be emptied; UPDATE and TRUNCATE
--    stay refused. A checkpoint someone forges to cover a deletion is not
--    HMACed with the audit key, so `audit verify` names it, and it cannot
--    go itself without another forged checkpoint after it.

ALTER TABLE audit_events ADD COLUMN IF NOT EXISTS client_request_id text;

CREATE SEQUENCE IF NOT EXISTS audit_events_id_seq AS bigint;
SELECT setval('audit_events_id_seq', m)
FROM (SELECT coalesce(max(id), 0) AS m FROM audit_events) head,
     audit_events_id_seq s
WHERE m > 0 AND m > CASE WHEN s.is_called THEN s.last_value ELSE 0 END;

CREATE INDEX IF NOT EXISTS audit_events_checkpoints
    ON audit_events (id) WHERE action = 'audit.checkpoint';

CREATE OR REPLACE FUNCTION audit_events_append_only() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    covered boolean := false;
BEGIN
    IF TG_OP = 'DELETE' THEN
        EXECUTE format(
            'SELECT EXISTS (SELECT 1 FROM %I.%I c
                            WHERE c.action = ''audit.checkpoint'' AND c.id > $1
                              AND jsonb_typeof(c.changes -> ''pruned_through'') = ''number''
                              AND (c.changes ->> ''pruned_through'')::numeric >= $1)',
            TG_TABLE_SCHEMA, TG_TABLE_NAME)
        INTO covered USING OLD.id;
        IF covered THEN
            RETURN OLD;
        END IF;
    END IF;
    RAISE EXCEPTION 'audit_events is append-only (% refused: only events a retention checkpoint already names may be deleted)', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END $$;
