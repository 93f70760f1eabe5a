-- The service keeps every active user's credential digests in memory, so an unknown credential
-- is refused without a query. NOTIFY cannot make such a refusal final: it is delivered some time
-- after the commit (a user created by the CLI may send before the service hears of it), and a row
-- written by any other path is never announced at all. So, as on SQLite (its migration 0007), a
-- trigger counts every change to `users`, and the service rereads this one row before refusing a
-- credential it does not know (at most one such read at a time, shared by every waiting request).
-- Statement-level triggers: one bump per statement, however many rows it changes.
CREATE TABLE credentials_version (
    id      integer PRIMARY KEY CHECK (id = 1),
    version bigint  NOT NULL
);
INSERT INTO credentials_version (id, version) VALUES (1, 0);

CREATE FUNCTION bump_credentials_version() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    UPDATE credentials_version SET version = version + 1 WHERE id = 1;
    RETURN NULL;
END;
$$;

CREATE TRIGGER users_changed_credentials_version
    AFTER INSERT OR UPDATE OR DELETE ON users
    FOR EACH STATEMENT EXECUTE FUNCTION bump_credentials_version();
