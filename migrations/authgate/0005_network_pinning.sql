-- authgate native schema, version 5: network pinning (issue 16).
-- A token may be limited to networks: requests from any other client
-- address are refused (403 Client address not allowed). Empty: anywhere.
-- `cidr` refuses host bits set past the prefix (10.0.0.1/8), as authgate
-- does; authgate writes IPv4 blocks in IPv4 form (src/cidr.rs).
-- A constant default: no table rewrite, whatever the table's size.

ALTER TABLE tokens ADD COLUMN allowed_cidrs cidr[] NOT NULL DEFAULT '{}';

-- A change of the list alters decisions, so it is announced like the other
-- decision columns (0002_notify.sql) on every replica. A trigger of its
-- own rather than a longer column list on tokens_notify, which other
-- migrations may redefine; it fires only when the list really changes.
CREATE TRIGGER tokens_allowed_cidrs_notify
    AFTER UPDATE OF allowed_cidrs ON tokens
    FOR EACH ROW
    WHEN (OLD.allowed_cidrs IS DISTINCT FROM NEW.allowed_cidrs)
    EXECUTE FUNCTION authgate_tokens_changed();
