-- authgate native schema, version 1: tokens, users, roles and permissions.
-- Runs with search_path set to the configured schema.

CREATE TABLE roles (
    id          bigserial PRIMARY KEY,
    name        text NOT NULL UNIQUE,
    -- 'super-admin' marks the role whose members hold every permission.
    code        text UNIQUE,
    description text NOT NULL DEFAULT '',
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);
INSERT INTO roles (name, code, description)
VALUES ('super-admin', 'super-admin', 'Holds every permission');

CREATE TABLE users (
    id         bigserial PRIMARY KEY,
    email      text NOT NULL,
    name       text NOT NULL DEFAULT '',
    is_active  boolean NOT NULL DEFAULT true,
    blocked    boolean NOT NULL DEFAULT false,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX users_email_key ON users (lower(email));

CREATE TABLE user_roles (
    user_id bigint NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    role_id bigint NOT NULL REFERENCES roles (id) ON DELETE CASCADE,
    PRIMARY KEY (user_id, role_id)
);
CREATE INDEX user_roles_role_id ON user_roles (role_id);

CREATE TABLE role_permissions (
    id         bigserial PRIMARY KEY,
    role_id    bigint NOT NULL REFERENCES roles (id) ON DELETE CASCADE,
    action     text NOT NULL,
    subject    text,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX role_permissions_key ON role_permissions (role_id, action, coalesce(subject, ''));

CREATE TABLE tokens (
    id            bigserial PRIMARY KEY,
    kind          text NOT NULL CHECK (kind IN ('content-api', 'admin')),
    name          text NOT NULL CHECK (name <> ''),
    description   text NOT NULL DEFAULT '',
    -- content-API tokens only: read-only, full-access or custom.
    type          text CHECK (type IN ('read-only', 'full-access', 'custom')),
    -- lower-case hex HMAC-SHA512(salt, key); the key itself is never stored.
    access_key    text NOT NULL UNIQUE,
    -- v1:<iv>:<ciphertext>:<tag> when an encryption key is configured.
    encrypted_key text,
    -- milliseconds; NULL = unlimited.
    lifespan      bigint CHECK (lifespan IS NULL OR lifespan > 0),
    expires_at    timestamptz,
    last_used_at  timestamptz,
    -- admin tokens only; deleting the owner deletes their tokens.
    owner_id      bigint REFERENCES users (id) ON DELETE CASCADE,
    -- per-token override of rate_limit.per_token (requests per window).
    rate_limit    integer CHECK (rate_limit IS NULL OR rate_limit >= 0),
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT tokens_kind_shape CHECK (
        (kind = 'admin' AND owner_id IS NOT NULL AND type IS NULL)
        OR (kind = 'content-api' AND owner_id IS NULL AND type IS NOT NULL)
    ),
    CONSTRAINT tokens_kind_name_key UNIQUE (kind, name)
);
CREATE INDEX tokens_owner_id ON tokens (owner_id);

CREATE TABLE token_permissions (
    id         bigserial PRIMARY KEY,
    token_id   bigint NOT NULL REFERENCES tokens (id) ON DELETE CASCADE,
    action     text NOT NULL,
    subject    text,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX token_permissions_key ON token_permissions (token_id, action, coalesce(subject, ''));

-- Removing a permission from a role removes it from the admin tokens of that
-- role's users, in the same transaction, unless the owner still holds it
-- through another role or is a super admin.
CREATE FUNCTION authgate_role_permission_revoked() RETURNS trigger
LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
BEGIN
    DELETE FROM token_permissions tp
    USING tokens t, user_roles ur
    WHERE tp.token_id = t.id
      AND t.kind = 'admin'
      AND t.owner_id = ur.user_id
      AND ur.role_id = OLD.role_id
      AND tp.action = OLD.action
      AND tp.subject IS NOT DISTINCT FROM OLD.subject
      AND NOT EXISTS (
          SELECT 1 FROM user_roles ur2
          JOIN roles r2 ON r2.id = ur2.role_id
          LEFT JOIN role_permissions rp2
                 ON rp2.role_id = ur2.role_id
                AND rp2.id <> OLD.id
                AND rp2.action = OLD.action
                AND rp2.subject IS NOT DISTINCT FROM OLD.subject
          WHERE ur2.user_id = t.owner_id
            AND (r2.code = 'super-admin' OR rp2.id IS NOT NULL)
      );
    RETURN OLD;
END;
$$;
CREATE TRIGGER role_permissions_revoke_from_tokens
    AFTER DELETE ON role_permissions
    FOR EACH ROW EXECUTE FUNCTION authgate_role_permission_revoked();
