-- Issue 12's sign-in: wallets, staff passwords and sessions. Mirrors migrations/postgres/0017.

CREATE TABLE wallet_accounts
(
    address       text PRIMARY KEY CHECK (length(address) = 42 AND address = lower(address)
        AND substr(address, 1, 2) = '0x' AND substr(address, 3) NOT GLOB '*[^0-9a-f]*'),
    user_id       text NOT NULL UNIQUE,
    created_at    text NOT NULL
) STRICT;

-- Times here are unix milliseconds: compared in SQL, the same way on both stores.
CREATE TABLE sign_in_nonces
(
    nonce         text PRIMARY KEY,
    address       text NOT NULL,
    issued_at_ms  integer NOT NULL,
    expires_at_ms integer NOT NULL,
    used_at_ms    integer
) STRICT;
CREATE INDEX sign_in_nonces_by_expiry ON sign_in_nonces (expires_at_ms);

-- SQLite cannot add a UNIQUE column: the index below makes it unique.
ALTER TABLE staff ADD COLUMN login text CHECK (login IS NULL OR (length(login) BETWEEN 1 AND 64
    AND login NOT GLOB '*[^a-z0-9._-]*'));
ALTER TABLE staff ADD COLUMN password_hash text CHECK (password_hash IS NULL OR login IS NOT NULL);
CREATE UNIQUE INDEX staff_login ON staff (login);

CREATE TABLE sessions
(
    token_sha256  text PRIMARY KEY,
    user_id       text,
    staff_id      text REFERENCES staff (staff_id),
    created_at_ms integer NOT NULL,
    expires_at_ms integer NOT NULL,
    revoked_at_ms integer,
    CHECK ((user_id IS NULL) <> (staff_id IS NULL))
) STRICT;
CREATE INDEX sessions_by_expiry ON sessions (expires_at_ms);
