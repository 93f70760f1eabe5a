//! What changed between two JSON values, as a developer reads it: one line per changed leaf.
//!
//! Objects are compared key by key and arrays index by index, so a change deep inside the account
//! state is named by its path (`positions.BTC-USD.size`) instead of showing two whole states.

use std::fmt;

use serde::Serialize;
use serde_json::Value;

/// How a path changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ChangeKind {
    Added,
    Removed,
    Changed,
}

/// One changed path. `before` is `None` for an added path, `after` for a removed one (both are
/// JSON `null` then; `kind` tells them apart from a real `null`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Change {
    pub path: String,
    pub kind: ChangeKind,
    pub before: Option<Value>,
    pub after: Option<Value>,
}

/// Every path that differs between `before` and `after`, in key order (before's keys first, then
/// keys only `after` has); empty when they are equal.
pub fn diff(before: &Value, after: &Value) -> Vec<Change> {
    let mut changes = Vec::new();
    walk(&mut String::new(), before, after, &mut changes);
    changes
}

fn walk(path: &mut String, before: &Value, after: &Value, changes: &mut Vec<Change>) {
    match (before, after) {
        (Value::Object(old), Value::Object(new)) => {
            for (key, old_value) in old {
                let mark = path.len();
                push_key(path, key);
                match new.get(key) {
                    Some(new_value) => walk(path, old_value, new_value, changes),
                    None => changes.push(removed(path, old_value)),
                }
                path.truncate(mark);
            }
            for (key, new_value) in new.iter().filter(|(key, _)| !old.contains_key(*key)) {
                let mark = path.len();
                push_key(path, key);
                changes.push(added(path, new_value));
                path.truncate(mark);
            }
        }
        (Value::Array(old), Value::Array(new)) => {
            for index in 0..old.len().max(new.len()) {
                let mark = path.len();
                path.push_str(&format!("[{index}]"));
                match (old.get(index), new.get(index)) {
                    (Some(old_value), Some(new_value)) => walk(path, old_value, new_value, changes),
                    (Some(old_value), None) => changes.push(removed(path, old_value)),
                    (None, Some(new_value)) => changes.push(added(path, new_value)),
                    (None, None) => {}
                }
                path.truncate(mark);
            }
        }
        _ if before == after => {}
        _ => changes.push(Change {
            path: root_or(path),
            kind: ChangeKind::Changed,
            before: Some(before.clone()),
            after: Some(after.clone()),
        }),
    }
}

/// `a.b` for plain keys; a key that would make the path ambiguous (a dot, bracket, quote or space
/// in an idempotency key, say) is quoted: `seen_keys["a.b"]`.
fn push_key(path: &mut String, key: &str) {
    let plain = !key.is_empty()
        && !key
            .chars()
            .any(|c| matches!(c, '.' | '[' | ']' | '"') || c.is_whitespace());
    if plain {
        if !path.is_empty() {
            path.push('.');
        }
        path.push_str(key);
    } else {
        path.push('[');
        path.push_str(&Value::from(key).to_string());
        path.push(']');
    }
}

fn root_or(path: &str) -> String {
    if path.is_empty() {
        "(root)".to_owned()
    } else {
        path.to_owned()
    }
}

fn added(path: &str, value: &Value) -> Change {
    Change {
        path: root_or(path),
        kind: ChangeKind::Added,
        before: None,
        after: Some(value.clone()),
    }
}

fn removed(path: &str, value: &Value) -> Change {
    Change {
        path: root_or(path),
        kind: ChangeKind::Removed,
        before: Some(value.clone()),
        after: None,
    }
}

/// `path: before → after`, `path: added VALUE`, `path: removed`. Strings print bare, so decimals
/// read as numbers (`0.01 → 0.02`); everything else as compact JSON.
impl fmt::Display for Change {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.before, &self.after) {
            (Some(before), Some(after)) => {
                write!(f, "{}: {} → {}", self.path, Shown(before), Shown(after))
            }
            (None, Some(after)) => write!(f, "{}: added {}", self.path, Shown(after)),
            (Some(_), None) => write!(f, "{}: removed", self.path),
            (None, None) => write!(f, "{}", self.path),
        }
    }
}

struct Shown<'a>(&'a Value);

impl fmt::Display for Shown<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Value::String(text) => f.write_str(text),
            other => write!(f, "{other}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn lines(before: Value, after: Value) -> Vec<String> {
        diff(&before, &after)
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    #[test]
    fn equal_values_have_no_changes() {
        let state = json!({"a": {"b": [1, {"c": "x"}]}, "d": null});
        assert!(diff(&state, &state.clone()).is_empty());
        assert!(diff(&json!(null), &json!(null)).is_empty());
    }

    #[test]
    fn a_nested_change_is_named_by_its_path() {
        let before = json!({"positions": {"BTC-USD": {"size": "0.01", "side": "long"}}});
        let after = json!({"positions": {"BTC-USD": {"size": "0.02", "side": "long"}}});
        assert_eq!(
            lines(before.clone(), after.clone()),
            ["positions.BTC-USD.size: 0.01 → 0.02"]
        );
        let changes = diff(&before, &after);
        assert_eq!(changes[0].kind, ChangeKind::Changed);
        assert_eq!(changes[0].before, Some(json!("0.01")));
        assert_eq!(changes[0].after, Some(json!("0.02")));
    }

    #[test]
    fn added_and_removed_keys_are_reported_whole() {
        let before = json!({"in_flight": {"s-1": {"stage": "AwaitingExecution"}}, "n": 1});
        let after = json!({"in_flight": {"s-2": {"stage": "AwaitingExecution"}}, "n": 1});
        assert_eq!(
            lines(before, after),
            [
                "in_flight.s-1: removed",
                r#"in_flight.s-2: added {"stage":"AwaitingExecution"}"#,
            ]
        );
    }

    #[test]
    fn null_to_a_value_is_a_change_not_an_addition() {
        let changes = diff(&json!({"halt": null}), &json!({"halt": {"by": "op"}}));
        assert_eq!(changes.len(), 1);
        assert_eq!(changes[0].kind, ChangeKind::Changed);
        assert_eq!(changes[0].to_string(), r#"halt: null → {"by":"op"}"#);
    }

    #[test]
    fn arrays_compare_index_by_index() {
        assert_eq!(
            lines(json!({"k": [1, 2, 3]}), json!({"k": [1, 5]})),
            ["k[1]: 2 → 5", "k[2]: removed"]
        );
        assert_eq!(
            lines(json!({"k": [[1, "a"]]}), json!({"k": [[1, "a"], [2, "b"]]})),
            [r#"k[1]: added [2,"b"]"#]
        );
        assert_eq!(
            lines(json!({"k": [{"x": 1}]}), json!({"k": [{"x": 2}]})),
            ["k[0].x: 1 → 2"]
        );
    }

    #[test]
    fn a_type_change_replaces_the_value() {
        assert_eq!(
            lines(json!({"a": {"b": 1}}), json!({"a": [1]})),
            [r#"a: {"b":1} → [1]"#]
        );
        assert_eq!(lines(json!(1), json!(2)), ["(root): 1 → 2"]);
    }

    #[test]
    fn keys_that_would_be_ambiguous_are_quoted() {
        assert_eq!(
            lines(json!({"seen": {}}), json!({"seen": {"a.b c": 1}})),
            [r#"seen["a.b c"]: added 1"#]
        );
    }

    #[test]
    fn changes_serialize_with_path_before_and_after() {
        let changes = diff(&json!({"a": 1}), &json!({"b": 2}));
        assert_eq!(
            serde_json::to_value(&changes).ok(),
            Some(json!([
                {"path": "a", "kind": "removed", "before": 1, "after": null},
                {"path": "b", "kind": "added", "before": null, "after": 2},
            ]))
        );
    }
}
