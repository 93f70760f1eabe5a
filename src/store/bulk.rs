//! Many rows in one statement, the way each database does it best.
//!
//! PostgreSQL takes each column as one array (`SELECT * FROM UNNEST($1::text[], ...)`): one
//! statement text whatever the row count, so each connection parses and plans it once. Multi-row
//! `VALUES` made a new text for every row count; pages of 1 to 256 rows overflowed the
//! connection's statement cache and were parsed and planned again page after page (issue 10
//! measured the database's CPU per signal up by a third). SQLite has no arrays, and prepares
//! in-process and cheaply: it gets multi-row `VALUES`, in chunks under its parameter limit.

use std::future::Future;

use chrono::{DateTime, Utc};
use sqlx::postgres::PgArguments;
use sqlx::query::{Query, QueryAs};
use sqlx::{PgConnection, Postgres, QueryBuilder, SqliteConnection};

/// Rows per SQLite statement: at most 12 parameters a row stays under its 32,766.
const SQLITE_ROWS_PER_STATEMENT: usize = 1000;

/// One value of a row. Every row of a batch has the same kind of cell in each column.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Cell {
    Text(String),
    MaybeText(Option<String>),
    Int(i64),
    Time(DateTime<Utc>),
}

/// `INSERT INTO <table> (<columns>) <rows> <tail>`.
pub(crate) struct BulkInsert<'a> {
    /// `INSERT INTO table (a, b, ...)`.
    pub head: &'a str,
    /// Each column's array type on PostgreSQL, with any cast the column needs, e.g. `text[]`,
    /// `bigint[]`, `text[]::timestamptz[]`.
    pub pg_arrays: &'a [&'a str],
    /// After the rows: `ON CONFLICT ...`, or empty.
    pub tail: &'a str,
}

impl BulkInsert<'_> {
    /// The statement for PostgreSQL: the same text for any number of rows.
    pub fn postgres_sql(&self) -> String {
        let arrays = self
            .pg_arrays
            .iter()
            .enumerate()
            .map(|(index, array)| format!("${}::{array}", index + 1))
            .collect::<Vec<_>>()
            .join(", ");
        format!("{} SELECT * FROM UNNEST({arrays}) {}", self.head, self.tail)
    }
}

/// A connection that can take a `BulkInsert`: the one call the dialect-agnostic code makes.
pub(crate) trait BulkConnection {
    /// Inserts `rows`; the number of rows written.
    fn insert_rows<'a>(
        &'a mut self,
        insert: &'a BulkInsert<'a>,
        rows: &'a [Vec<Cell>],
    ) -> impl Future<Output = sqlx::Result<u64>> + Send + 'a;
}

impl BulkConnection for PgConnection {
    fn insert_rows<'a>(
        &'a mut self,
        insert: &'a BulkInsert<'a>,
        rows: &'a [Vec<Cell>],
    ) -> impl Future<Output = sqlx::Result<u64>> + Send + 'a {
        insert.postgres(self, rows)
    }
}

impl BulkConnection for SqliteConnection {
    fn insert_rows<'a>(
        &'a mut self,
        insert: &'a BulkInsert<'a>,
        rows: &'a [Vec<Cell>],
    ) -> impl Future<Output = sqlx::Result<u64>> + Send + 'a {
        insert.sqlite(self, rows)
    }
}

impl BulkInsert<'_> {
    /// One statement for every row.
    async fn postgres(
        &self,
        connection: &mut PgConnection,
        rows: &[Vec<Cell>],
    ) -> sqlx::Result<u64> {
        if rows.is_empty() {
            return Ok(0);
        }
        let sql = self.postgres_sql();
        let query = bind_columns(sqlx::query(&sql), rows, self.pg_arrays.len())?;
        Ok(query.execute(connection).await?.rows_affected())
    }

    /// As few statements as SQLite's parameter limit allows.
    async fn sqlite(
        &self,
        connection: &mut SqliteConnection,
        rows: &[Vec<Cell>],
    ) -> sqlx::Result<u64> {
        let mut written = 0;
        for chunk in rows.chunks(SQLITE_ROWS_PER_STATEMENT) {
            let mut insert = QueryBuilder::<sqlx::Sqlite>::new(self.head);
            insert.push(" ");
            insert.push_values(chunk, |mut values, row| {
                for cell in row {
                    match cell {
                        Cell::Text(text) => values.push_bind(text),
                        Cell::MaybeText(text) => values.push_bind(text),
                        Cell::Int(int) => values.push_bind(*int),
                        Cell::Time(time) => values.push_bind(*time),
                    };
                }
            });
            insert.push(" ");
            insert.push(self.tail);
            written += insert
                .build()
                .execute(&mut *connection)
                .await?
                .rows_affected();
        }
        Ok(written)
    }
}

/// Binds `rows` column by column, each as one array: the parameters of `postgres_sql`.
pub(crate) fn bind_columns<'q, Q: BindColumn<'q>>(
    mut query: Q,
    rows: &'q [Vec<Cell>],
    columns: usize,
) -> sqlx::Result<Q> {
    for index in 0..columns {
        query = query.bind_column(column_of(rows, index)?);
    }
    Ok(query)
}

/// A PostgreSQL query that takes a column of a batch as one array parameter.
pub(crate) trait BindColumn<'q>: Sized {
    fn bind_column(self, column: Column<'q>) -> Self;
}

impl<'q> BindColumn<'q> for Query<'q, Postgres, PgArguments> {
    fn bind_column(self, column: Column<'q>) -> Self {
        match column {
            Column::Text(values) => self.bind(values),
            Column::MaybeText(values) => self.bind(values),
            Column::Int(values) => self.bind(values),
            Column::Time(values) => self.bind(values),
        }
    }
}

impl<'q, O> BindColumn<'q> for QueryAs<'q, Postgres, O, PgArguments> {
    fn bind_column(self, column: Column<'q>) -> Self {
        match column {
            Column::Text(values) => self.bind(values),
            Column::MaybeText(values) => self.bind(values),
            Column::Int(values) => self.bind(values),
            Column::Time(values) => self.bind(values),
        }
    }
}

/// One column of a batch, borrowed from its rows.
pub(crate) enum Column<'r> {
    Text(Vec<&'r str>),
    MaybeText(Vec<Option<&'r str>>),
    Int(Vec<i64>),
    Time(Vec<DateTime<Utc>>),
}

fn column_of(rows: &[Vec<Cell>], index: usize) -> sqlx::Result<Column<'_>> {
    let first = match rows.first() {
        Some(row) => cell(row, index)?,
        None => return Ok(Column::Text(Vec::new())),
    };
    Ok(match first {
        Cell::Text(_) => Column::Text(values_of(rows, index, |cell| match cell {
            Cell::Text(text) => Some(text.as_str()),
            _ => None,
        })?),
        Cell::MaybeText(_) => Column::MaybeText(values_of(rows, index, |cell| match cell {
            Cell::MaybeText(text) => Some(text.as_deref()),
            _ => None,
        })?),
        Cell::Int(_) => Column::Int(values_of(rows, index, |cell| match cell {
            Cell::Int(int) => Some(*int),
            _ => None,
        })?),
        Cell::Time(_) => Column::Time(values_of(rows, index, |cell| match cell {
            Cell::Time(time) => Some(*time),
            _ => None,
        })?),
    })
}

fn cell(row: &[Cell], index: usize) -> sqlx::Result<&Cell> {
    row.get(index)
        .ok_or_else(|| sqlx::Error::Protocol(format!("a bulk row has no column {index}")))
}

/// Column `index` of every row, each cell taken by `pick`; a cell of another kind is an error.
fn values_of<'r, T>(
    rows: &'r [Vec<Cell>],
    index: usize,
    pick: impl Fn(&'r Cell) -> Option<T>,
) -> sqlx::Result<Vec<T>> {
    rows.iter()
        .map(|row| {
            pick(cell(row, index)?).ok_or_else(|| {
                sqlx::Error::Protocol(format!("bulk column {index} mixes kinds of cell"))
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_postgres_statement_is_the_same_for_any_number_of_rows() {
        let insert = BulkInsert {
            head: "INSERT INTO t (a, b, c)",
            pg_arrays: &["text[]", "bigint[]", "text[]::timestamptz[]"],
            tail: "ON CONFLICT DO NOTHING",
        };
        assert_eq!(
            insert.postgres_sql(),
            "INSERT INTO t (a, b, c) SELECT * FROM UNNEST($1::text[], $2::bigint[], \
             $3::text[]::timestamptz[]) ON CONFLICT DO NOTHING"
        );
    }

    #[test]
    fn a_column_that_mixes_kinds_of_cell_is_an_error_not_a_guess() {
        let rows = vec![vec![Cell::Int(1)], vec![Cell::Text("2".to_owned())]];
        assert!(column_of(&rows, 0).is_err());
        assert!(column_of(&rows, 1).is_err());
    }
}
