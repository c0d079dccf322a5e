-- authgate's invalidation triggers for a Strapi 5 database (postgres.layout =
-- "strapi5"), installed by `authgate migrate --layout strapi5`.
--
-- Opt-in and data-neutral: the functions live in schema authgate; on Strapi's
-- tables (schema {strapi}) only triggers are added, and they never write.
-- They NOTIFY the channel 'authgate_strapi5_<schema of the table>', delivered
-- at commit, with the payloads of the native layout (see
-- migrations/authgate/0002_notify.sql), each followed by '@<unix ms>':
--   token:<id>:<access_key>   a token row (with its hash, when it is one)
--   token:<id>                a token's permissions or its owner link
--   user:<id>                 an admin user's status, email or roles
--   role:<id>                 a role's permissions or code
--   all                       a table was truncated
-- Writes of last_used_at alone (Strapi's and authgate's) emit nothing.
--
-- The functions run as whoever writes Strapi's tables (Strapi's own database
-- user). They call nothing in schema authgate and read only Strapi's link
-- tables, so that user needs no rights on schema authgate. They take the
-- schema from TG_TABLE_SCHEMA, so one set serves every Strapi schema of the
-- database. Deleting a permission, token, user or role row cascades to the
-- link tables, whose triggers then announce what the deletion changed.
--
-- Removing it all: DROP SCHEMA authgate CASCADE (drops the functions and,
-- with them, the triggers), unless authgate's native tables share that schema.

CREATE OR REPLACE FUNCTION authgate.strapi5_token_changed() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog AS $$
DECLARE
    ch constant text := 'authgate_strapi5_' || TG_TABLE_SCHEMA;
    sent constant text := '@' || (extract(epoch FROM clock_timestamp()) * 1000)::bigint;
BEGIN
    IF TG_OP IN ('UPDATE', 'DELETE') THEN
        PERFORM pg_notify(ch, 'token:' || OLD.id
            || CASE WHEN OLD.access_key ~ '^[0-9a-f]{128}$' THEN ':' || OLD.access_key ELSE '' END
            || sent);
    END IF;
    IF TG_OP IN ('INSERT', 'UPDATE') THEN
        PERFORM pg_notify(ch, 'token:' || NEW.id
            || CASE WHEN NEW.access_key ~ '^[0-9a-f]{128}$' THEN ':' || NEW.access_key ELSE '' END
            || sent);
    END IF;
    RETURN NULL;
END;
$$;

-- Link tables with an api_token_id column: a token's custom permissions, its
-- admin permissions, its owner.
CREATE OR REPLACE FUNCTION authgate.strapi5_token_link_changed() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog AS $$
DECLARE
    ch constant text := 'authgate_strapi5_' || TG_TABLE_SCHEMA;
    sent constant text := '@' || (extract(epoch FROM clock_timestamp()) * 1000)::bigint;
BEGIN
    IF TG_OP IN ('UPDATE', 'DELETE') THEN
        IF OLD.api_token_id IS NOT NULL THEN
            PERFORM pg_notify(ch, 'token:' || OLD.api_token_id || sent);
        END IF;
    END IF;
    IF TG_OP IN ('INSERT', 'UPDATE') THEN
        IF NEW.api_token_id IS NOT NULL THEN
            PERFORM pg_notify(ch, 'token:' || NEW.api_token_id || sent);
        END IF;
    END IF;
    RETURN NULL;
END;
$$;

-- A custom content-API permission whose action changed: every token linked to it.
CREATE OR REPLACE FUNCTION authgate.strapi5_token_permission_changed() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog AS $$
DECLARE
    ch constant text := 'authgate_strapi5_' || TG_TABLE_SCHEMA;
    sent constant text := '@' || (extract(epoch FROM clock_timestamp()) * 1000)::bigint;
    tid bigint;
BEGIN
    FOR tid IN EXECUTE format(
        'SELECT DISTINCT api_token_id FROM %I.strapi_api_token_permissions_token_lnk
         WHERE api_token_permission_id IN ($1, $2) AND api_token_id IS NOT NULL',
        TG_TABLE_SCHEMA) USING OLD.id, NEW.id
    LOOP
        PERFORM pg_notify(ch, 'token:' || tid || sent);
    END LOOP;
    RETURN NULL;
END;
$$;

-- An admin permission whose action or subject changed: every role and every
-- admin token linked to it.
CREATE OR REPLACE FUNCTION authgate.strapi5_permission_changed() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog AS $$
DECLARE
    ch constant text := 'authgate_strapi5_' || TG_TABLE_SCHEMA;
    sent constant text := '@' || (extract(epoch FROM clock_timestamp()) * 1000)::bigint;
    rid bigint;
    tid bigint;
BEGIN
    FOR rid IN EXECUTE format(
        'SELECT DISTINCT role_id FROM %I.admin_permissions_role_lnk
         WHERE permission_id IN ($1, $2) AND role_id IS NOT NULL',
        TG_TABLE_SCHEMA) USING OLD.id, NEW.id
    LOOP
        PERFORM pg_notify(ch, 'role:' || rid || sent);
    END LOOP;
    FOR tid IN EXECUTE format(
        'SELECT DISTINCT api_token_id FROM %I.admin_permissions_api_token_lnk
         WHERE permission_id IN ($1, $2) AND api_token_id IS NOT NULL',
        TG_TABLE_SCHEMA) USING OLD.id, NEW.id
    LOOP
        PERFORM pg_notify(ch, 'token:' || tid || sent);
    END LOOP;
    RETURN NULL;
END;
$$;

CREATE OR REPLACE FUNCTION authgate.strapi5_user_changed() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog AS $$
BEGIN
    PERFORM pg_notify('authgate_strapi5_' || TG_TABLE_SCHEMA,
        'user:' || OLD.id || '@' || (extract(epoch FROM clock_timestamp()) * 1000)::bigint);
    RETURN NULL;
END;
$$;

CREATE OR REPLACE FUNCTION authgate.strapi5_user_role_changed() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog AS $$
DECLARE
    ch constant text := 'authgate_strapi5_' || TG_TABLE_SCHEMA;
    sent constant text := '@' || (extract(epoch FROM clock_timestamp()) * 1000)::bigint;
BEGIN
    IF TG_OP IN ('UPDATE', 'DELETE') THEN
        IF OLD.user_id IS NOT NULL THEN
            PERFORM pg_notify(ch, 'user:' || OLD.user_id || sent);
        END IF;
    END IF;
    IF TG_OP IN ('INSERT', 'UPDATE') THEN
        IF NEW.user_id IS NOT NULL THEN
            PERFORM pg_notify(ch, 'user:' || NEW.user_id || sent);
        END IF;
    END IF;
    RETURN NULL;
END;
$$;

CREATE OR REPLACE FUNCTION authgate.strapi5_role_changed() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog AS $$
BEGIN
    PERFORM pg_notify('authgate_strapi5_' || TG_TABLE_SCHEMA,
        'role:' || OLD.id || '@' || (extract(epoch FROM clock_timestamp()) * 1000)::bigint);
    RETURN NULL;
END;
$$;

CREATE OR REPLACE FUNCTION authgate.strapi5_role_permission_changed() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog AS $$
DECLARE
    ch constant text := 'authgate_strapi5_' || TG_TABLE_SCHEMA;
    sent constant text := '@' || (extract(epoch FROM clock_timestamp()) * 1000)::bigint;
BEGIN
    IF TG_OP IN ('UPDATE', 'DELETE') THEN
        IF OLD.role_id IS NOT NULL THEN
            PERFORM pg_notify(ch, 'role:' || OLD.role_id || sent);
        END IF;
    END IF;
    IF TG_OP IN ('INSERT', 'UPDATE') THEN
        IF NEW.role_id IS NOT NULL THEN
            PERFORM pg_notify(ch, 'role:' || NEW.role_id || sent);
        END IF;
    END IF;
    RETURN NULL;
END;
$$;

CREATE OR REPLACE FUNCTION authgate.strapi5_truncated() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog AS $$
BEGIN
    PERFORM pg_notify('authgate_strapi5_' || TG_TABLE_SCHEMA,
        'all@' || (extract(epoch FROM clock_timestamp()) * 1000)::bigint);
    RETURN NULL;
END;
$$;

-- The triggers. Each table gets authgate_notify (rows inserted or deleted),
-- authgate_notify_update (rows updated, filtered to the columns that matter
-- where there are such columns) and authgate_notify_truncate.

-- Tokens: not on last_used_at (or description, updated_at, ...) alone.
DROP TRIGGER IF EXISTS authgate_notify ON {strapi}.strapi_api_tokens;
CREATE TRIGGER authgate_notify AFTER INSERT OR DELETE ON {strapi}.strapi_api_tokens
    FOR EACH ROW EXECUTE FUNCTION authgate.strapi5_token_changed();
DROP TRIGGER IF EXISTS authgate_notify_update ON {strapi}.strapi_api_tokens;
CREATE TRIGGER authgate_notify_update AFTER UPDATE ON {strapi}.strapi_api_tokens
    FOR EACH ROW WHEN (OLD.access_key IS DISTINCT FROM NEW.access_key
                    OR OLD.kind IS DISTINCT FROM NEW.kind
                    OR OLD.type IS DISTINCT FROM NEW.type
                    OR OLD.name IS DISTINCT FROM NEW.name
                    OR OLD.expires_at IS DISTINCT FROM NEW.expires_at
                    OR OLD.id IS DISTINCT FROM NEW.id)
    EXECUTE FUNCTION authgate.strapi5_token_changed();
DROP TRIGGER IF EXISTS authgate_notify_truncate ON {strapi}.strapi_api_tokens;
CREATE TRIGGER authgate_notify_truncate AFTER TRUNCATE ON {strapi}.strapi_api_tokens
    FOR EACH STATEMENT EXECUTE FUNCTION authgate.strapi5_truncated();

-- Custom content-API permissions (deletions cascade to the link table).
DROP TRIGGER IF EXISTS authgate_notify_update ON {strapi}.strapi_api_token_permissions;
CREATE TRIGGER authgate_notify_update AFTER UPDATE ON {strapi}.strapi_api_token_permissions
    FOR EACH ROW WHEN (OLD.action IS DISTINCT FROM NEW.action OR OLD.id IS DISTINCT FROM NEW.id)
    EXECUTE FUNCTION authgate.strapi5_token_permission_changed();
DROP TRIGGER IF EXISTS authgate_notify_truncate ON {strapi}.strapi_api_token_permissions;
CREATE TRIGGER authgate_notify_truncate AFTER TRUNCATE ON {strapi}.strapi_api_token_permissions
    FOR EACH STATEMENT EXECUTE FUNCTION authgate.strapi5_truncated();

DROP TRIGGER IF EXISTS authgate_notify ON {strapi}.strapi_api_token_permissions_token_lnk;
CREATE TRIGGER authgate_notify AFTER INSERT OR UPDATE OR DELETE ON {strapi}.strapi_api_token_permissions_token_lnk
    FOR EACH ROW EXECUTE FUNCTION authgate.strapi5_token_link_changed();
DROP TRIGGER IF EXISTS authgate_notify_truncate ON {strapi}.strapi_api_token_permissions_token_lnk;
CREATE TRIGGER authgate_notify_truncate AFTER TRUNCATE ON {strapi}.strapi_api_token_permissions_token_lnk
    FOR EACH STATEMENT EXECUTE FUNCTION authgate.strapi5_truncated();

-- Admin token owners.
DROP TRIGGER IF EXISTS authgate_notify ON {strapi}.strapi_api_tokens_admin_user_owner_lnk;
CREATE TRIGGER authgate_notify AFTER INSERT OR UPDATE OR DELETE ON {strapi}.strapi_api_tokens_admin_user_owner_lnk
    FOR EACH ROW EXECUTE FUNCTION authgate.strapi5_token_link_changed();
DROP TRIGGER IF EXISTS authgate_notify_truncate ON {strapi}.strapi_api_tokens_admin_user_owner_lnk;
CREATE TRIGGER authgate_notify_truncate AFTER TRUNCATE ON {strapi}.strapi_api_tokens_admin_user_owner_lnk
    FOR EACH STATEMENT EXECUTE FUNCTION authgate.strapi5_truncated();

-- Admin users: status and email.
DROP TRIGGER IF EXISTS authgate_notify ON {strapi}.admin_users;
CREATE TRIGGER authgate_notify AFTER DELETE ON {strapi}.admin_users
    FOR EACH ROW EXECUTE FUNCTION authgate.strapi5_user_changed();
DROP TRIGGER IF EXISTS authgate_notify_update ON {strapi}.admin_users;
CREATE TRIGGER authgate_notify_update AFTER UPDATE ON {strapi}.admin_users
    FOR EACH ROW WHEN (OLD.is_active IS DISTINCT FROM NEW.is_active
                    OR OLD.blocked IS DISTINCT FROM NEW.blocked
                    OR OLD.email IS DISTINCT FROM NEW.email
                    OR OLD.id IS DISTINCT FROM NEW.id)
    EXECUTE FUNCTION authgate.strapi5_user_changed();
DROP TRIGGER IF EXISTS authgate_notify_truncate ON {strapi}.admin_users;
CREATE TRIGGER authgate_notify_truncate AFTER TRUNCATE ON {strapi}.admin_users
    FOR EACH STATEMENT EXECUTE FUNCTION authgate.strapi5_truncated();

DROP TRIGGER IF EXISTS authgate_notify ON {strapi}.admin_users_roles_lnk;
CREATE TRIGGER authgate_notify AFTER INSERT OR UPDATE OR DELETE ON {strapi}.admin_users_roles_lnk
    FOR EACH ROW EXECUTE FUNCTION authgate.strapi5_user_role_changed();
DROP TRIGGER IF EXISTS authgate_notify_truncate ON {strapi}.admin_users_roles_lnk;
CREATE TRIGGER authgate_notify_truncate AFTER TRUNCATE ON {strapi}.admin_users_roles_lnk
    FOR EACH STATEMENT EXECUTE FUNCTION authgate.strapi5_truncated();

-- Roles: the super admin's code.
DROP TRIGGER IF EXISTS authgate_notify ON {strapi}.admin_roles;
CREATE TRIGGER authgate_notify AFTER DELETE ON {strapi}.admin_roles
    FOR EACH ROW EXECUTE FUNCTION authgate.strapi5_role_changed();
DROP TRIGGER IF EXISTS authgate_notify_update ON {strapi}.admin_roles;
CREATE TRIGGER authgate_notify_update AFTER UPDATE ON {strapi}.admin_roles
    FOR EACH ROW WHEN (OLD.code IS DISTINCT FROM NEW.code OR OLD.id IS DISTINCT FROM NEW.id)
    EXECUTE FUNCTION authgate.strapi5_role_changed();
DROP TRIGGER IF EXISTS authgate_notify_truncate ON {strapi}.admin_roles;
CREATE TRIGGER authgate_notify_truncate AFTER TRUNCATE ON {strapi}.admin_roles
    FOR EACH STATEMENT EXECUTE FUNCTION authgate.strapi5_truncated();

-- Admin permissions: action and subject (not properties or conditions,
-- which authgate leaves to Strapi); deletions cascade to the link tables.
DROP TRIGGER IF EXISTS authgate_notify_update ON {strapi}.admin_permissions;
CREATE TRIGGER authgate_notify_update AFTER UPDATE ON {strapi}.admin_permissions
    FOR EACH ROW WHEN (OLD.action IS DISTINCT FROM NEW.action
                    OR OLD.subject IS DISTINCT FROM NEW.subject
                    OR OLD.id IS DISTINCT FROM NEW.id)
    EXECUTE FUNCTION authgate.strapi5_permission_changed();
DROP TRIGGER IF EXISTS authgate_notify_truncate ON {strapi}.admin_permissions;
CREATE TRIGGER authgate_notify_truncate AFTER TRUNCATE ON {strapi}.admin_permissions
    FOR EACH STATEMENT EXECUTE FUNCTION authgate.strapi5_truncated();

DROP TRIGGER IF EXISTS authgate_notify ON {strapi}.admin_permissions_role_lnk;
CREATE TRIGGER authgate_notify AFTER INSERT OR UPDATE OR DELETE ON {strapi}.admin_permissions_role_lnk
    FOR EACH ROW EXECUTE FUNCTION authgate.strapi5_role_permission_changed();
DROP TRIGGER IF EXISTS authgate_notify_truncate ON {strapi}.admin_permissions_role_lnk;
CREATE TRIGGER authgate_notify_truncate AFTER TRUNCATE ON {strapi}.admin_permissions_role_lnk
    FOR EACH STATEMENT EXECUTE FUNCTION authgate.strapi5_truncated();

DROP TRIGGER IF EXISTS authgate_notify ON {strapi}.admin_permissions_api_token_lnk;
CREATE TRIGGER authgate_notify AFTER INSERT OR UPDATE OR DELETE ON {strapi}.admin_permissions_api_token_lnk
    FOR EACH ROW EXECUTE FUNCTION authgate.strapi5_token_link_changed();
DROP TRIGGER IF EXISTS authgate_notify_truncate ON {strapi}.admin_permissions_api_token_lnk;
CREATE TRIGGER authgate_notify_truncate AFTER TRUNCATE ON {strapi}.admin_permissions_api_token_lnk
    FOR EACH STATEMENT EXECUTE FUNCTION authgate.strapi5_truncated();
