-- The vault: per-owner secrets encrypted with AES-256-GCM-SIV (src/vault). Only ciphertext and
-- its nonce are stored; the key version names the master key that sealed it (the keys live in the
-- key file, never here). Rows are replaced, not appended: the access record is in the ledger.
CREATE TABLE vault_secrets (
    owner_id    TEXT   NOT NULL,
    field       TEXT   NOT NULL,
    key_version BIGINT NOT NULL CHECK (key_version > 0),
    nonce       BYTEA  NOT NULL,
    ciphertext  BYTEA  NOT NULL,
    updated_at  TEXT   NOT NULL,
    PRIMARY KEY (owner_id, field)
);
-- `keys rotate` looks for rows under older keys.
CREATE INDEX vault_secrets_key_version ON vault_secrets (key_version);
