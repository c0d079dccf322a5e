-- authgate native schema, version 7: the bootstrap file provisions once
-- (issue item 5; src/control/bootstrap.rs). The fingerprint of every key
-- the file provisioned (an HMAC of its access_key, never the key or the
-- access_key itself); a key found here whose token was since deleted or
-- regenerated is not provisioned again.

CREATE TABLE bootstrap_keys (
    fingerprint    text PRIMARY KEY,
    token_id       bigint NOT NULL,
    provisioned_at timestamptz NOT NULL DEFAULT now()
);
