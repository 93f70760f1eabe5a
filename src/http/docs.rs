//! `GET /docs`: the OpenAPI document as one small HTML page, rendered on the server from the
//! document itself. No script, no stylesheet or font from elsewhere, nothing fetched at build or
//! run time (a bundled Swagger UI would be megabytes of JavaScript for a dozen operations).

use std::fmt::Write as _;

use serde_json::Value;
use utoipa::openapi::OpenApi;

const STYLE: &str = "body{font:15px/1.5 system-ui,sans-serif;margin:0 auto;max-width:60rem;\
padding:1rem;color:#1b1b1b}h2{border-bottom:1px solid #ccc;margin-top:2rem}\
.op{border:1px solid #ddd;border-radius:6px;margin:1rem 0;padding:.5rem 1rem}\
.m{display:inline-block;min-width:4rem;font-weight:700;text-transform:uppercase}\
.get{color:#0a6b2b}.post{color:#0b4f9c}code,pre{font-family:ui-monospace,monospace;\
font-size:13px}pre{background:#f5f5f5;padding:.5rem;overflow-x:auto}\
table{border-collapse:collapse;width:100%}td,th{border-bottom:1px solid #eee;padding:.25rem;\
text-align:left;vertical-align:top;overflow-wrap:anywhere}.lock{color:#8a5a00}";

/// The page for `document`. Operations by tag, each with its security, parameters, bodies and
/// answers; then every schema, linked from where it is used.
pub fn render(document: &OpenApi) -> String {
    let json = serde_json::to_value(document).unwrap_or(Value::Null);
    let title = text(&json["info"]["title"]);
    let mut page = String::with_capacity(64 * 1024);
    let _ = write!(
        page,
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">\
         <title>{title} API</title><style>{STYLE}</style></head><body>\
         <h1>{title} API <small>{}</small></h1><p>{}</p>\
         <p>The machine-readable document: <a href=\"/openapi.json\">/openapi.json</a> \
         (OpenAPI {}).</p>",
        text(&json["info"]["version"]),
        prose(&json["info"]["description"]),
        text(&json["openapi"]),
    );
    security_schemes(&mut page, &json["components"]["securitySchemes"]);
    let tags: Vec<(String, String)> = json["tags"]
        .as_array()
        .map(|tags| {
            tags.iter()
                .map(|tag| (plain(&tag["name"]), prose(&tag["description"])))
                .collect()
        })
        .unwrap_or_default();
    for (tag, description) in &tags {
        let _ = write!(page, "<h2 id=\"tag-{tag}\">{tag}</h2><p>{description}</p>");
        for (path, item) in json["paths"].as_object().into_iter().flatten() {
            for (method, operation) in item.as_object().into_iter().flatten() {
                let tagged = operation["tags"]
                    .as_array()
                    .is_some_and(|tags| tags.iter().any(|t| t.as_str() == Some(tag)));
                if tagged {
                    render_operation(&mut page, method, path, operation);
                }
            }
        }
    }
    page.push_str("<h2 id=\"schemas\">Schemas</h2>");
    for (name, schema) in json["components"]["schemas"]
        .as_object()
        .into_iter()
        .flatten()
    {
        let _ = write!(
            page,
            "<h3 id=\"schema-{0}\">{0}</h3><pre>{1}</pre>",
            escape(name),
            linked(&serde_json::to_string_pretty(schema).unwrap_or_default()),
        );
    }
    page.push_str("</body></html>");
    page
}

fn security_schemes(page: &mut String, schemes: &Value) {
    page.push_str("<h2 id=\"security\">Credentials</h2><table>");
    for (name, scheme) in schemes.as_object().into_iter().flatten() {
        let how = match (
            plain(&scheme["type"]).as_str(),
            plain(&scheme["in"]).as_str(),
        ) {
            ("http", _) => format!("Authorization: Bearer {}", plain(&scheme["bearerFormat"])),
            ("apiKey", "cookie") => format!("cookie {}", plain(&scheme["name"])),
            ("apiKey", place) => format!("{place} parameter {}", plain(&scheme["name"])),
            (other, _) => other.to_owned(),
        };
        let _ = write!(
            page,
            "<tr><th id=\"security-{0}\">{0}</th><td><code>{1}</code></td><td>{2}</td></tr>",
            escape(name),
            escape(&how),
            prose(&scheme["description"]),
        );
    }
    page.push_str("</table>");
}

fn render_operation(page: &mut String, method: &str, path: &str, operation: &Value) {
    let _ = write!(
        page,
        "<div class=\"op\"><p><span class=\"m {0}\">{0}</span> <code>{1}</code> — {2}</p>",
        escape(method),
        escape(path),
        text(&operation["summary"]),
    );
    if operation["description"].is_string() {
        let _ = write!(page, "<p>{}</p>", prose(&operation["description"]));
    }
    let who: Vec<String> = operation["security"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|requirement| requirement.as_object())
        .flat_map(|requirement| requirement.keys())
        .map(|name| format!("<a href=\"#security-{0}\">{0}</a>", escape(name)))
        .collect();
    let who = if let Some(own) = operation["x-credentials"].as_str() {
        prose(&Value::from(own))
    } else if who.is_empty() {
        "public".to_owned()
    } else {
        who.join(" or ")
    };
    let roles: Vec<String> = operation["x-roles"]
        .as_array()
        .into_iter()
        .flatten()
        .map(text)
        .collect();
    let roles = if roles.is_empty() {
        String::new()
    } else {
        format!(" — roles: {}", roles.join(", "))
    };
    let _ = write!(page, "<p class=\"lock\">Credentials: {who}{roles}</p>");
    if let Some(parameters) = operation["parameters"].as_array() {
        page.push_str("<table><tr><th>parameter</th><th>in</th><th>schema</th><th></th></tr>");
        for parameter in parameters {
            let _ = write!(
                page,
                "<tr><td><code>{}</code>{}</td><td>{}</td><td><code>{}</code></td><td>{}</td></tr>",
                text(&parameter["name"]),
                if parameter["required"] == Value::Bool(true) {
                    " (required)"
                } else {
                    ""
                },
                text(&parameter["in"]),
                linked(&parameter["schema"].to_string()),
                prose(&parameter["description"]),
            );
        }
        page.push_str("</table>");
    }
    let body = &operation["requestBody"];
    if body.is_object() {
        let _ = write!(
            page,
            "<p>Body: {} {}</p>",
            prose(&body["description"]),
            contents(&body["content"]),
        );
    }
    page.push_str("<table><tr><th>answer</th><th></th><th>body</th></tr>");
    for (status, response) in operation["responses"].as_object().into_iter().flatten() {
        let _ = write!(
            page,
            "<tr><td>{}</td><td>{}</td><td>{}</td></tr>",
            escape(status),
            prose(&response["description"]),
            contents(&response["content"]),
        );
    }
    page.push_str("</table></div>");
}

/// Each media type with its schema (a link when it is a named one).
fn contents(content: &Value) -> String {
    content
        .as_object()
        .into_iter()
        .flatten()
        .map(|(media, body)| {
            format!(
                "<code>{}</code> {}",
                escape(media),
                linked(&body["schema"].to_string())
            )
        })
        .collect::<Vec<_>>()
        .join("<br>")
}

/// Escaped, with every `#/components/schemas/X` reference turned into a link to X.
fn linked(json: &str) -> String {
    const PREFIX: &str = "#/components/schemas/";
    let escaped = escape(json);
    let mut out = String::with_capacity(escaped.len());
    let mut rest = escaped.as_str();
    while let Some(at) = rest.find(PREFIX) {
        out.push_str(&rest[..at]);
        let after = &rest[at + PREFIX.len()..];
        let end = after
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(after.len());
        let name = &after[..end];
        let _ = write!(out, "<a href=\"#schema-{name}\">{name}</a>");
        rest = &after[end..];
    }
    out.push_str(rest);
    out
}

/// A JSON string's text, escaped; anything else as empty.
fn text(value: &Value) -> String {
    escape(value.as_str().unwrap_or_default())
}

/// A description: escaped text whose `backticked` words are shown as code, as the document's
/// descriptions (Markdown) mean them.
fn prose(value: &Value) -> String {
    let mut out = String::new();
    for (index, part) in text(value).split('`').enumerate() {
        if index % 2 == 1 {
            let _ = write!(out, "<code>{part}</code>");
        } else {
            out.push_str(part);
        }
    }
    out
}

fn plain(value: &Value) -> String {
    value.as_str().unwrap_or_default().to_owned()
}

fn escape(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    for c in raw.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_lists_every_operation_and_escapes_text() {
        let page = render(&super::super::api::openapi());
        for (method, path) in super::super::api::operations() {
            let shown = format!(
                "{0}\">{0}</span> <code>{1}</code>",
                method.as_str().to_lowercase(),
                escape(&path)
            );
            assert!(page.contains(&shown), "{method} {path}");
        }
        assert!(page.contains("<a href=\"#schema-ErrorBody\">ErrorBody</a>"));
        assert!(!page.contains("<script"));
        assert_eq!(
            escape("<a href='x'>&\""),
            "&lt;a href=&#39;x&#39;&gt;&amp;&quot;"
        );
    }

    #[test]
    fn backticks_in_descriptions_are_code() {
        assert_eq!(
            prose(&Value::from("the `token` <b>")),
            "the <code>token</code> &lt;b&gt;"
        );
    }
}
