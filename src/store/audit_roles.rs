//! Before PostgreSQL's migrations: the audit trail's roles, ready for migration 0005.
//!
//! 0005 hands the audit tables to `ledgerhook_audit_owner`, and since PostgreSQL 15 the schema
//! `public` no longer lets everyone create in it: a new owner needs CREATE on the tables' schema,
//! which 0005 never grants. A superuser skips that check, so only the documented production path,
//! a migrating login with CREATEROLE that is not a superuser, was refused ("permission denied for
//! schema public"). An applied migration cannot change (its checksum is recorded), so the grant is
//! made here, before the migrations run, while 0005 is still to come. The roles are created as
//! 0005 would (it then finds them there).

use sqlx::PgPool;

use super::Result;

const BEFORE_THE_AUDIT_TABLES: &str = r#"
DO $$
DECLARE
    wanted text;
BEGIN
    -- Instances starting together on a new database take turns (one GRANT at a time).
    PERFORM pg_advisory_xact_lock(hashtextextended('ledgerhook audit roles', 0));
    IF to_regclass('_sqlx_migrations') IS NOT NULL THEN
        IF EXISTS (SELECT 1 FROM _sqlx_migrations WHERE version = 5) THEN
            RETURN;
        END IF;
    END IF;
    FOREACH wanted IN ARRAY ARRAY['ledgerhook_audit_owner', 'ledgerhook_audit_writer'] LOOP
        IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = wanted) THEN
            BEGIN
                EXECUTE format('CREATE ROLE %I NOLOGIN NOINHERIT', wanted);
            EXCEPTION WHEN duplicate_object OR unique_violation THEN
                NULL; -- another database's migration created it at the same moment
            END;
        END IF;
    END LOOP;
    EXECUTE format('GRANT CREATE ON SCHEMA %I TO ledgerhook_audit_owner', current_schema());
END;
$$;
"#;

/// Idempotent; does nothing once migration 0005 is applied.
pub(super) async fn prepare(pool: &PgPool) -> Result<()> {
    sqlx::raw_sql(BEFORE_THE_AUDIT_TABLES).execute(pool).await?;
    Ok(())
}
