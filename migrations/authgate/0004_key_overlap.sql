-- authgate native schema, version 4: rotation with overlap.
-- `authgate token regenerate ID --keep-old-for DURATION` (REST
-- `keepOldForSeconds`) moves the replaced hash here, with the time its key
-- stops working. The lookup finds a token by either hash and tells the
-- gateway until when the presented key is valid, so every replica refuses
-- the old key on time by its own clock, from its cache too, without an
-- event. One previous key per token: a further regenerate replaces it (or,
-- without the option, clears it).

ALTER TABLE tokens
    ADD COLUMN previous_access_key text,
    ADD COLUMN previous_key_expires_at timestamptz,
    ADD CONSTRAINT tokens_previous_key_shape
        CHECK ((previous_access_key IS NULL) = (previous_key_expires_at IS NULL));
-- Not unique: a previous key whose overlap has ended may stay behind, and
-- lookups prefer a current key over a previous one.
CREATE INDEX tokens_previous_access_key ON tokens (previous_access_key)
    WHERE previous_access_key IS NOT NULL;

-- A change to the previous key alone (an owner losing access, below; an
-- edit by hand) announces the hash that stops working. When `access_key`
-- changes too, `tokens_notify` (0002) already announces the token, and its
-- id covers every cached hash of it.
CREATE FUNCTION authgate_previous_key_changed() RETURNS trigger
LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
BEGIN
    IF OLD.previous_access_key IS NOT NULL THEN
        PERFORM authgate_notify('token:' || OLD.id || ':' || OLD.previous_access_key);
    END IF;
    IF TG_OP = 'UPDATE' AND NEW.previous_access_key IS NOT NULL
       AND NEW.previous_access_key IS DISTINCT FROM OLD.previous_access_key THEN
        PERFORM authgate_notify('token:' || NEW.id || ':' || NEW.previous_access_key);
    END IF;
    RETURN NULL;
END;
$$;
CREATE TRIGGER tokens_previous_key_notify
    AFTER DELETE OR UPDATE OF previous_access_key, previous_key_expires_at
    ON tokens FOR EACH ROW EXECUTE FUNCTION authgate_previous_key_changed();

-- An owner losing access (deactivated or blocked) ends the overlap of
-- their admin tokens for good: re-activating them brings back the current
-- keys only. (Deleting the owner deletes the tokens.)
CREATE FUNCTION authgate_owner_lost_access() RETURNS trigger
LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
BEGIN
    UPDATE tokens SET previous_access_key = NULL, previous_key_expires_at = NULL
    WHERE owner_id = NEW.id AND previous_access_key IS NOT NULL;
    RETURN NULL;
END;
$$;
CREATE TRIGGER users_lost_access_end_overlap
    AFTER UPDATE OF is_active, blocked ON users
    FOR EACH ROW WHEN (NOT NEW.is_active OR NEW.blocked)
    EXECUTE FUNCTION authgate_owner_lost_access();
