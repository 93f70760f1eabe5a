-- Issue 12's sign-in: wallets (Sign-In with Ethereum), staff passwords and sessions.

-- One account per wallet, made at its first sign-in. The address is kept lowercase (EIP-55's
-- checksum is a spelling, not another wallet).
CREATE TABLE wallet_accounts
(
    address       text PRIMARY KEY CHECK (address ~ '^0x[0-9a-f]{40}$'),
    user_id       text NOT NULL UNIQUE,
    created_at    timestamptz NOT NULL
);

-- Nonces handed out for a wallet to sign: each is used once (used_at set in the same statement that
-- checks it) and only before expires_at. Expired ones are deleted as new ones are issued.
-- Times here are unix milliseconds: compared in SQL, the same way on both stores.
CREATE TABLE sign_in_nonces
(
    nonce         text PRIMARY KEY,
    address       text NOT NULL,
    issued_at_ms  bigint NOT NULL,
    expires_at_ms bigint NOT NULL,
    used_at_ms    bigint
);
CREATE INDEX sign_in_nonces_by_expiry ON sign_in_nonces (expires_at_ms);

-- Staff sign in with a login and a password (argon2id, PHC string); both NULL for key-only staff.
ALTER TABLE staff
    ADD COLUMN login         text UNIQUE CHECK (login ~ '^[a-z0-9._-]{1,64}$'),
    ADD COLUMN password_hash text,
    ADD CONSTRAINT staff_password_has_login CHECK (password_hash IS NULL OR login IS NOT NULL);

-- Browser sessions: the token is 256 random bits, kept as SHA-256 only. A session belongs to a
-- trader (user_id) or a staff member (staff_id), never both. expires_at moves forward with use
-- (24 h after the last activity); revoked_at ends it at sign-out.
CREATE TABLE sessions
(
    token_sha256  text PRIMARY KEY,
    user_id       text,
    staff_id      text REFERENCES staff (staff_id),
    created_at_ms bigint NOT NULL,
    expires_at_ms bigint NOT NULL,
    revoked_at_ms bigint,
    CONSTRAINT sessions_one_subject CHECK ((user_id IS NULL) <> (staff_id IS NULL))
);
CREATE INDEX sessions_by_expiry ON sessions (expires_at_ms);
