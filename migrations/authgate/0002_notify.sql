-- Invalidation events: every change that can alter a decision NOTIFYs the
-- channel 'authgate_<schema>' with what changed, delivered at commit, as
-- '<what>@<unix ms>' (the time lets replicas measure propagation lag):
--   token:<id>:<access_key>   a token row (its hash, so a replica drops it in O(1))
--   token:<id>                a token's permissions
--   user:<id>                 a user's status, email or roles
--   role:<id>                 a role's permissions or code
-- Writes to last_used_at alone emit nothing. Every function pins its
-- search_path to the schema it was created in, so a writer with another
-- search_path (psql, the CMS) still reaches the right tables and channel.

CREATE FUNCTION authgate_notify(payload text) RETURNS void
LANGUAGE sql SET search_path FROM CURRENT AS $$
    SELECT pg_notify('authgate_' || current_schema(),
                     payload || '@' || (extract(epoch FROM clock_timestamp()) * 1000)::bigint);
$$;

CREATE FUNCTION authgate_tokens_changed() RETURNS trigger
LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
BEGIN
    IF TG_OP IN ('UPDATE', 'DELETE') THEN
        PERFORM authgate_notify('token:' || OLD.id || ':' || OLD.access_key);
    END IF;
    IF TG_OP IN ('INSERT', 'UPDATE') THEN
        PERFORM authgate_notify('token:' || NEW.id || ':' || NEW.access_key);
    END IF;
    RETURN NULL;
END;
$$;
CREATE TRIGGER tokens_notify
    AFTER INSERT OR DELETE OR UPDATE OF kind, name, type, access_key, expires_at, owner_id, rate_limit
    ON tokens FOR EACH ROW EXECUTE FUNCTION authgate_tokens_changed();

CREATE FUNCTION authgate_token_permissions_changed() RETURNS trigger
LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
DECLARE
    tid bigint;
BEGIN
    IF TG_OP = 'DELETE' THEN tid := OLD.token_id; ELSE tid := NEW.token_id; END IF;
    PERFORM authgate_notify('token:' || tid);
    RETURN NULL;
END;
$$;
CREATE TRIGGER token_permissions_notify
    AFTER INSERT OR UPDATE OR DELETE ON token_permissions
    FOR EACH ROW EXECUTE FUNCTION authgate_token_permissions_changed();

CREATE FUNCTION authgate_users_changed() RETURNS trigger
LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
BEGIN
    PERFORM authgate_notify('user:' || OLD.id);
    RETURN NULL;
END;
$$;
CREATE TRIGGER users_notify
    AFTER DELETE OR UPDATE OF email, is_active, blocked
    ON users FOR EACH ROW EXECUTE FUNCTION authgate_users_changed();

CREATE FUNCTION authgate_user_roles_changed() RETURNS trigger
LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
BEGIN
    IF TG_OP IN ('UPDATE', 'DELETE') THEN PERFORM authgate_notify('user:' || OLD.user_id); END IF;
    IF TG_OP IN ('INSERT', 'UPDATE') THEN PERFORM authgate_notify('user:' || NEW.user_id); END IF;
    RETURN NULL;
END;
$$;
CREATE TRIGGER user_roles_notify
    AFTER INSERT OR UPDATE OR DELETE ON user_roles
    FOR EACH ROW EXECUTE FUNCTION authgate_user_roles_changed();

CREATE FUNCTION authgate_role_permissions_changed() RETURNS trigger
LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
BEGIN
    IF TG_OP IN ('UPDATE', 'DELETE') THEN PERFORM authgate_notify('role:' || OLD.role_id); END IF;
    IF TG_OP IN ('INSERT', 'UPDATE') THEN PERFORM authgate_notify('role:' || NEW.role_id); END IF;
    RETURN NULL;
END;
$$;
CREATE TRIGGER role_permissions_notify
    AFTER INSERT OR UPDATE OR DELETE ON role_permissions
    FOR EACH ROW EXECUTE FUNCTION authgate_role_permissions_changed();

CREATE FUNCTION authgate_roles_changed() RETURNS trigger
LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
BEGIN
    PERFORM authgate_notify('role:' || OLD.id);
    RETURN NULL;
END;
$$;
CREATE TRIGGER roles_notify
    AFTER DELETE OR UPDATE OF code
    ON roles FOR EACH ROW EXECUTE FUNCTION authgate_roles_changed();
