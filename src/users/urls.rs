//! The URLs a user pastes into TradingView, from the service's public base URL.

use uuid::Uuid;

/// The base URL from `--public-url` / `APP_HOST`: a full URL is used as given, a bare host is
/// served over https.
pub fn base_from_setting(setting: &str) -> String {
    let setting = setting.trim().trim_end_matches('/');
    if setting.starts_with("http://") || setting.starts_with("https://") {
        setting.to_owned()
    } else {
        format!("https://{setting}")
    }
}

/// Scheme 1: the token travels in the query string.
pub fn webhook_url(base: &str, token: &str) -> String {
    format!("{base}/api/webhook?token={token}")
}

/// Scheme 2: only the uuid is in the URL; the secret travels in the body.
pub fn two_factor_url(base: &str, webhook_uuid: &Uuid) -> String {
    format!("{base}/webhooks/{webhook_uuid}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bare_host_is_served_over_https() {
        assert_eq!(
            base_from_setting("hooks.example.com/"),
            "https://hooks.example.com"
        );
        assert_eq!(
            base_from_setting("http://127.0.0.1:8080"),
            "http://127.0.0.1:8080"
        );
        let uuid = Uuid::nil();
        assert_eq!(
            two_factor_url("https://h", &uuid),
            "https://h/webhooks/00000000-0000-0000-0000-000000000000"
        );
        assert_eq!(
            webhook_url("https://h", "t"),
            "https://h/api/webhook?token=t"
        );
    }
}
