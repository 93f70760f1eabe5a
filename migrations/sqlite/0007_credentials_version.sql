-- Issue 9: the service keeps every active user's credential digests in memory, so an unknown
-- credential is refused without a query. On PostgreSQL every change is announced (NOTIFY); SQLite
-- has no announcements and the CLI changes users from another process, so a trigger counts every
-- change here, and the service rereads this one row before refusing a credential it does not know
-- (at most one such read at a time, shared by every request waiting for it).
CREATE TABLE credentials_version (
    id      integer PRIMARY KEY CHECK (id = 1),
    version integer NOT NULL
);
INSERT INTO credentials_version (id, version) VALUES (1, 0);

CREATE TRIGGER users_inserted_credentials_version AFTER INSERT ON users
BEGIN
    UPDATE credentials_version SET version = version + 1 WHERE id = 1;
END;

CREATE TRIGGER users_updated_credentials_version AFTER UPDATE ON users
BEGIN
    UPDATE credentials_version SET version = version + 1 WHERE id = 1;
END;

CREATE TRIGGER users_deleted_credentials_version AFTER DELETE ON users
BEGIN
    UPDATE credentials_version SET version = version + 1 WHERE id = 1;
END;
