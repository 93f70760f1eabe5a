//! Which request id a request is known by. A caller's `X-Request-Id` ends up in every event's
//! metadata, the append-only audit trail and its exports, so only a short, plain one is kept;
//! anything else is dropped and the request gets a generated id instead.

use axum::extract::Request;
use axum::http::{HeaderMap, HeaderValue};

use super::REQUEST_ID_HEADER;

/// Longest caller-chosen request id kept (a UUID is 36 characters).
pub const MAX_REQUEST_ID_CHARS: usize = 64;

/// The id, if it is 1 to 64 characters of `[A-Za-z0-9._-]`.
pub fn acceptable(value: &HeaderValue) -> Option<&str> {
    let bytes = value.as_bytes();
    let plain = |byte: &u8| byte.is_ascii_alphanumeric() || matches!(byte, b'.' | b'_' | b'-');
    let fits = !bytes.is_empty() && bytes.len() <= MAX_REQUEST_ID_CHARS && bytes.iter().all(plain);
    fits.then(|| value.to_str().ok()).flatten()
}

/// The request's one acceptable id; several ids are as bad as a malformed one.
pub fn of(headers: &HeaderMap) -> Option<&str> {
    let mut values = headers.get_all(REQUEST_ID_HEADER).iter();
    match (values.next(), values.next()) {
        (Some(value), None) => acceptable(value),
        _ => None,
    }
}

/// Runs before the id is set: removes a caller's id that is not acceptable, so the request gets a
/// generated one (and the response names the id that was used).
pub async fn drop_unacceptable(mut request: Request) -> Request {
    let headers = request.headers_mut();
    if headers.contains_key(REQUEST_ID_HEADER) && of(headers).is_none() {
        headers.remove(REQUEST_ID_HEADER);
    }
    request
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_short_plain_ids_are_acceptable() {
        let ok = |text: &str| {
            let value = HeaderValue::from_str(text).expect("a header value");
            acceptable(&value).map(str::to_owned)
        };
        assert_eq!(ok("tv-alert.42_A").as_deref(), Some("tv-alert.42_A"));
        assert_eq!(ok(&"a".repeat(64)).map(|id| id.len()), Some(64));
        for bad in ["", " ", "a b", "a/b", "<x>", "a;b", "é"] {
            assert_eq!(ok(bad), None, "{bad:?}");
        }
        assert_eq!(ok(&"a".repeat(65)), None);
        assert_eq!(
            acceptable(&HeaderValue::from_bytes(b"a\xffb").expect("obs-text")),
            None
        );
    }

    #[test]
    fn two_ids_are_none() {
        let mut headers = HeaderMap::new();
        headers.append(REQUEST_ID_HEADER, HeaderValue::from_static("one"));
        assert_eq!(of(&headers), Some("one"));
        headers.append(REQUEST_ID_HEADER, HeaderValue::from_static("two"));
        assert_eq!(of(&headers), None);
    }
}
