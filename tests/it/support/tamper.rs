//! Changing what the database keeps append-only, as an attacker with raw access to it could.

use ledgerhook::store::Store;

/// A table whose UPDATE and DELETE triggers refuse changes.
#[derive(Debug, Clone, Copy)]
pub enum AppendOnly {
    Events,
    AuditLog,
}

/// A value bound to a placeholder.
#[derive(Debug, Clone, Copy)]
pub enum Bind<'a> {
    Text(&'a str),
    Integer(i64),
}

/// Runs `statement` on `table` in one transaction with its append-only triggers off (disabled by
/// the superuser on PostgreSQL, dropped and recreated on SQLite). Placeholders are PostgreSQL's
/// `$1`, `$2`…, bound in order; on SQLite each becomes `?`.
pub async fn tamper(store: &Store, table: AppendOnly, statement: &str, binds: &[Bind<'_>]) {
    match store {
        Store::Postgres(pg) => {
            let (table_name, trigger, enable) = match table {
                AppendOnly::Events => ("events", "events_append_only", "ENABLE"),
                // The audit trigger fires even under `session_replication_role = replica`.
                AppendOnly::AuditLog => ("audit_log", "audit_log_append_only", "ENABLE ALWAYS"),
            };
            let mut tx = pg.pool().begin().await.expect("begins");
            sqlx::raw_sql(&format!(
                "ALTER TABLE {table_name} DISABLE TRIGGER {trigger}"
            ))
            .execute(&mut *tx)
            .await
            .expect("the superuser disables the trigger");
            bound(sqlx::query(statement), binds)
                .execute(&mut *tx)
                .await
                .expect("tampers");
            sqlx::raw_sql(&format!(
                "ALTER TABLE {table_name} {enable} TRIGGER {trigger}"
            ))
            .execute(&mut *tx)
            .await
            .expect("re-enables");
            tx.commit().await.expect("commits");
        }
        Store::Sqlite(lite) => {
            let (drop, recreate) = match table {
                AppendOnly::Events => (
                    "DROP TRIGGER events_no_update",
                    "CREATE TRIGGER events_no_update BEFORE UPDATE ON events
                     BEGIN SELECT RAISE(ABORT, 'events are append-only: UPDATE refused'); END;",
                ),
                AppendOnly::AuditLog => (
                    "DROP TRIGGER audit_log_no_update; DROP TRIGGER audit_log_no_delete;",
                    // The audit trail lives in the derived file, attached as `derived`.
                    "CREATE TRIGGER derived.audit_log_no_update BEFORE UPDATE ON audit_log
                     BEGIN SELECT RAISE(ABORT, 'audit_log is append-only: UPDATE refused'); END;
                     CREATE TRIGGER derived.audit_log_no_delete BEFORE DELETE ON audit_log
                     BEGIN SELECT RAISE(ABORT, 'audit_log is append-only: DELETE refused'); END;",
                ),
            };
            let mut tx = lite.pool().begin().await.expect("begins");
            sqlx::raw_sql(drop)
                .execute(&mut *tx)
                .await
                .expect("drops the triggers");
            let statement = sqlite_placeholders(statement);
            bound(sqlx::query(&statement), binds)
                .execute(&mut *tx)
                .await
                .expect("tampers");
            sqlx::raw_sql(recreate)
                .execute(&mut *tx)
                .await
                .expect("recreates the triggers");
            tx.commit().await.expect("commits");
        }
    }
}

fn bound<'q, DB: sqlx::Database>(
    mut query: sqlx::query::Query<'q, DB, <DB as sqlx::Database>::Arguments<'q>>,
    binds: &[Bind<'q>],
) -> sqlx::query::Query<'q, DB, <DB as sqlx::Database>::Arguments<'q>>
where
    &'q str: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    i64: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
{
    for bind in binds {
        query = match *bind {
            Bind::Text(text) => query.bind(text),
            Bind::Integer(integer) => query.bind(integer),
        };
    }
    query
}

/// `$1`, `$2`… as SQLite's positional `?`.
fn sqlite_placeholders(statement: &str) -> String {
    let mut out = String::with_capacity(statement.len());
    let mut chars = statement.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '$' && chars.peek().is_some_and(char::is_ascii_digit) {
            while chars.peek().is_some_and(char::is_ascii_digit) {
                chars.next();
            }
            out.push('?');
        } else {
            out.push(c);
        }
    }
    out
}
