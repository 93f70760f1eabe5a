//! What both benches need: a scratch PostgreSQL database's URL and a clean exit on a signal.

#[cfg(unix)]
pub async fn interrupted() -> &'static str {
    use tokio::signal::unix::{signal, SignalKind};
    match signal(SignalKind::terminate()) {
        Ok(mut terminate) => tokio::select! {
            _ = tokio::signal::ctrl_c() => "interrupted",
            _ = terminate.recv() => "terminated",
        },
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
            "interrupted"
        }
    }
}

#[cfg(not(unix))]
pub async fn interrupted() -> &'static str {
    let _ = tokio::signal::ctrl_c().await;
    "interrupted"
}

/// `url` with its path (the database name) replaced by `database`.
pub fn with_database(url: &str, database: &str) -> Option<String> {
    let scheme_end = url.find("://")? + 3;
    let rest = &url[scheme_end..];
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let after = &rest[authority_end..];
    let query = after.find('?').map_or("", |at| &after[at..]);
    Some(format!(
        "{}{}/{database}{query}",
        &url[..scheme_end],
        &rest[..authority_end]
    ))
}
