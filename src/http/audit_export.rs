//! Answers an audit request: one JSON page with the next cursor, or the whole filtered trail
//! streamed as JSON Lines or CSV.
//!
//! Exports hold memory flat however long the trail: rows are read `EXPORT_PAGE` at a time by
//! position (keyset, each page one short query, no transaction held open), rendered, and handed
//! to the connection as they come; the next page is read only when the client has taken the
//! previous one. An export reads up to the trail's head when it was requested, so it is the
//! trail as of that moment however much is appended while it streams.

use std::fmt::Write as _;

use axum::body::{Body, Bytes};
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

use super::audit_params::{encode_cursor, AuditRequest, Format};
use super::error::{ApiError, Result};
use super::sorted_json;
use crate::store::{AuditFilter, AuditRow, Store};

/// Rows per query while exporting: ~1 MB of rendered rows at the trail's typical ~1 KB a row.
const EXPORT_PAGE: i64 = 1000;

const CSV_COLUMNS: [&str; 12] = [
    "position",
    "account_id",
    "aggregate_type",
    "sequence",
    "event_type",
    "event_version",
    "signal_id",
    "recorded_at",
    "payload",
    "metadata",
    "prev_hash",
    "hash",
];

/// A row as every format shows it. `payload` and `metadata` are the stored JSON text, unparsed:
/// the row's hash covers them byte for byte, so an auditor can recompute it from this.
#[derive(Serialize, ToSchema)]
pub struct AuditRowView<'a> {
    /// The row's place in the chain.
    position: i64,
    account_id: &'a str,
    aggregate_type: &'a str,
    /// The event's sequence number in its stream.
    sequence: i64,
    #[schema(example = "OrderFilled")]
    event_type: &'a str,
    event_version: &'a str,
    signal_id: Option<&'a str>,
    #[schema(format = DateTime)]
    recorded_at: String,
    /// The event as stored: JSON text.
    payload: &'a str,
    /// The event's metadata as stored: JSON text.
    metadata: &'a str,
    /// Hex SHA-256 of the previous row (64 zeros for the first).
    prev_hash: &'a str,
    /// Hex SHA-256 over this row and `prev_hash`.
    hash: &'a str,
}

impl<'a> AuditRowView<'a> {
    fn new(row: &'a AuditRow) -> Self {
        Self {
            position: row.position,
            account_id: &row.account_id,
            aggregate_type: &row.aggregate_type,
            sequence: row.sequence,
            event_type: &row.event_type,
            event_version: &row.event_version,
            signal_id: row.signal_id.as_deref(),
            recorded_at: row.recorded_at.clone(),
            payload: &row.payload,
            metadata: &row.metadata,
            prev_hash: &row.prev_hash,
            hash: &row.hash,
        }
    }
}

/// One page of the trail (`format=json`).
#[derive(Serialize, ToSchema)]
pub struct AuditPage<'a> {
    /// Present when more rows match: pass it as `cursor`.
    pub next_cursor: Option<String>,
    pub rows: Vec<AuditRowView<'a>>,
}

pub async fn respond(store: Store, request: AuditRequest) -> Result<Response> {
    match request.format {
        Format::Json => page(&store, &request).await,
        Format::JsonLines | Format::Csv => {
            // The trail as of the request, however many rows are appended meanwhile.
            let head = store
                .audit()
                .head()
                .await
                .map_err(ApiError::internal)?
                .map_or(0, |head| head.position);
            Ok(export(store, request, head))
        }
    }
}

async fn page(store: &Store, request: &AuditRequest) -> Result<Response> {
    // One row more than asked tells whether another page exists.
    let mut rows = store
        .audit()
        .rows(&request.filter, request.after, None, request.limit + 1)
        .await
        .map_err(ApiError::internal)?;
    let more = rows.len() as i64 > request.limit;
    rows.truncate(usize::try_from(request.limit).unwrap_or(0));
    let next_cursor = rows
        .last()
        .filter(|_| more)
        .map(|row| encode_cursor(row.position));
    let rows = rows.iter().map(AuditRowView::new).collect();
    let mut response = sorted_json(&AuditPage { next_cursor, rows })?.into_response();
    not_cached(&mut response);
    Ok(response)
}

struct Export {
    store: Store,
    filter: AuditFilter,
    format: Format,
    after: i64,
    head: i64,
    header_sent: bool,
    done: bool,
}

fn export(store: Store, request: AuditRequest, head: i64) -> Response {
    let state = Export {
        store,
        filter: request.filter,
        format: request.format,
        after: request.after,
        head,
        header_sent: false,
        done: false,
    };
    let chunks = futures::stream::unfold(state, |mut state| async move {
        if !state.header_sent {
            state.header_sent = true;
            if state.format == Format::Csv {
                let header = format!("{}\r\n", CSV_COLUMNS.join(","));
                return Some((Ok(Bytes::from(header)), state));
            }
        }
        if state.done || state.after >= state.head {
            return None;
        }
        let rows = state
            .store
            .audit()
            .rows(&state.filter, state.after, Some(state.head), EXPORT_PAGE)
            .await;
        match rows {
            Ok(rows) => {
                let last = rows.last()?.position;
                state.after = last;
                state.done = (rows.len() as i64) < EXPORT_PAGE;
                Some((Ok(render(&rows, state.format)), state))
            }
            Err(error) => {
                // The status line is long gone: ending the body early is all that is left, and
                // a client sees a truncated transfer, never a short export that looks whole.
                tracing::error!(%error, "an audit export failed while streaming");
                state.done = true;
                Some((Err(std::io::Error::other("the audit export failed")), state))
            }
        }
    });
    let (content_type, file) = match request.format {
        Format::Csv => ("text/csv; charset=utf-8; header=present", "audit.csv"),
        _ => ("application/x-ndjson", "audit.jsonl"),
    };
    let mut response = Body::from_stream(chunks).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    if let Ok(disposition) = HeaderValue::from_str(&format!("attachment; filename=\"{file}\"")) {
        headers.insert(header::CONTENT_DISPOSITION, disposition);
    }
    not_cached(&mut response);
    response
}

/// Audit rows are another person's financial history: no cache on the way keeps a copy.
fn not_cached(response: &mut Response) {
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
}

fn render(rows: &[AuditRow], format: Format) -> Bytes {
    let mut out = String::with_capacity(rows.len() * 1024);
    for row in rows {
        let view = AuditRowView::new(row);
        match format {
            Format::Csv => csv_line(&mut out, &view),
            _ => {
                // Serializing borrowed strings and integers cannot fail.
                if let Ok(line) = serde_json::to_string(&view) {
                    out.push_str(&line);
                }
                out.push('\n');
            }
        }
    }
    Bytes::from(out)
}

/// One RFC 4180 record. Values are written exactly as stored (no spreadsheet-formula escaping,
/// which would alter the record), so the export equals the JSON pages field for field.
fn csv_line(out: &mut String, row: &AuditRowView<'_>) {
    let fields: [&str; 12] = [
        &row.position.to_string(),
        row.account_id,
        row.aggregate_type,
        &row.sequence.to_string(),
        row.event_type,
        row.event_version,
        row.signal_id.unwrap_or(""),
        &row.recorded_at,
        row.payload,
        row.metadata,
        row.prev_hash,
        row.hash,
    ];
    for (index, field) in fields.iter().enumerate() {
        if index > 0 {
            out.push(',');
        }
        csv_field(out, field);
    }
    out.push_str("\r\n");
}

fn csv_field(out: &mut String, value: &str) {
    if value.contains([',', '"', '\n', '\r']) {
        let _ = write!(out, "\"{}\"", value.replace('"', "\"\""));
    } else {
        out.push_str(value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field(value: &str) -> String {
        let mut out = String::new();
        csv_field(&mut out, value);
        out
    }

    #[test]
    fn csv_fields_are_quoted_only_when_needed_and_quotes_doubled() {
        assert_eq!(field("OrderFilled"), "OrderFilled");
        assert_eq!(field(""), "");
        assert_eq!(field(r#"{"a":1,"b":"x"}"#), r#""{""a"":1,""b"":""x""}""#);
        assert_eq!(field("line\nbreak"), "\"line\nbreak\"");
        assert_eq!(field("cr\r"), "\"cr\r\"");
        assert_eq!(field("say \"hi\""), "\"say \"\"hi\"\"\"");
    }
}
