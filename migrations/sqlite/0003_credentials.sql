-- Issue 4's credentials: the two-factor scheme (webhook uuid + secret), an API key for the trader's
-- own endpoints, a disabled flag and per-user rate-limit settings. Secrets are stored as the SHA-256
-- of a 256-bit random value, never the value itself (see ARCHITECTURE.md, "Credentials").
--
-- Users created before this migration keep their token and get NULL here: the two-factor scheme and
-- the API key fail for them exactly like unknown credentials until `ledgerhook users rotate-webhook`
-- and `users rotate-api-key` issue them. Nothing secret can be generated inside SQL and shown to
-- anyone, so issuing them lazily by command is the only way the user can ever learn them.
--
-- Mirrors migrations/postgres/0003: SQLite adds one column per statement and cannot add a table
-- constraint, so the "both or neither" checks sit on the second column of each pair.
ALTER TABLE users ADD COLUMN webhook_uuid text;
ALTER TABLE users ADD COLUMN webhook_secret_sha256 text
    CHECK ((webhook_uuid IS NULL) = (webhook_secret_sha256 IS NULL));
ALTER TABLE users ADD COLUMN api_key_sha256 text;
-- NULL = active. Disabling keeps the account and its ledger; only the credentials stop working.
ALTER TABLE users ADD COLUMN disabled_at text;
-- NULL = the service default (10 requests per 60 s).
ALTER TABLE users ADD COLUMN rate_limit_requests integer CHECK (rate_limit_requests > 0);
ALTER TABLE users ADD COLUMN rate_limit_window_seconds integer
    CHECK (rate_limit_window_seconds > 0
        AND (rate_limit_requests IS NULL) = (rate_limit_window_seconds IS NULL));

-- Lookups by credential; NULLs (users not yet issued one) do not clash.
CREATE UNIQUE INDEX users_webhook_uuid ON users (webhook_uuid);
CREATE UNIQUE INDEX users_api_key_sha256 ON users (api_key_sha256);
