//! Advanced search (issue #6, part 3): `{match: all|any, conditions: [{field,
//! op, value, enabled}]}` over everything the caller may read.
//!
//! Conditions are checked against a closed list of fields and operators
//! first ([`parse`]), so an unknown field or operator, or a value of the
//! wrong type, is a clear error listing the valid ones. The SQL is then
//! built from fixed fragments per field, with every value a bound parameter:
//! nothing the caller sends becomes SQL text.

use chrono::{DateTime, Utc};
use serde_json::Value;

use super::listing::{Arg, Dialect};

/// The kinds of value a field holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Int,
    Text,
    Bool,
    Time,
}

/// How a field is reached from `interactions i`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reach {
    /// One value per interaction: an SQL expression.
    One(&'static str, &'static str),
    /// Several values (messages' text, tags, contact emails): `FROM … WHERE
    /// <link>` and the value's column, the same in both dialects. A positive
    /// operator means "some value matches", a negative one "none does".
    Many(&'static str, &'static str),
}

struct Field {
    name: &'static str,
    kind: Kind,
    reach: Reach,
}

/// (sqlite, postgres) expressions per field.
const FIELDS: &[Field] = &[
    Field {
        name: "id",
        kind: Kind::Int,
        reach: Reach::One("i.id", "i.id"),
    },
    Field {
        name: "subject",
        kind: Kind::Text,
        reach: Reach::One("i.subject", "i.subject"),
    },
    Field {
        name: "text",
        kind: Kind::Text,
        reach: Reach::Many("messages ms WHERE ms.interaction_id = i.id", "ms.text_body"),
    },
    Field {
        name: "status",
        kind: Kind::Text,
        reach: Reach::One("i.status", "i.status"),
    },
    Field {
        name: "substatus",
        kind: Kind::Text,
        reach: Reach::One("i.substatus", "i.substatus"),
    },
    Field {
        name: "account",
        kind: Kind::Text,
        reach: Reach::One(
            "(SELECT ac.key FROM accounts ac WHERE ac.id = i.account_id)",
            "(SELECT ac.key FROM accounts ac WHERE ac.id = i.account_id)",
        ),
    },
    Field {
        name: "queue",
        kind: Kind::Text,
        reach: Reach::One(
            "(SELECT qu.name FROM queues qu WHERE qu.id = i.queue_id)",
            "(SELECT qu.name FROM queues qu WHERE qu.id = i.queue_id)",
        ),
    },
    Field {
        name: "owner",
        kind: Kind::Text,
        reach: Reach::One(
            "(SELECT ag.username FROM agents ag WHERE ag.id = i.owner_id)",
            "(SELECT ag.username FROM agents ag WHERE ag.id = i.owner_id)",
        ),
    },
    Field {
        name: "first_agent",
        kind: Kind::Text,
        reach: Reach::One(
            "(SELECT ag.username FROM agents ag WHERE ag.id = i.first_agent_id)",
            "(SELECT ag.username FROM agents ag WHERE ag.id = i.first_agent_id)",
        ),
    },
    Field {
        name: "tag",
        kind: Kind::Text,
        reach: Reach::Many(
            "interaction_tags it WHERE it.interaction_id = i.id",
            "it.tag",
        ),
    },
    Field {
        name: "disposition",
        kind: Kind::Text,
        // The path as `Level 1 / Level 2 / Level 3`.
        reach: Reach::One(
            "(SELECT group_concat(je.value, ' / ') FROM json_each(i.disposition) je)",
            "(SELECT string_agg(je.v, ' / ' ORDER BY je.n) FROM jsonb_array_elements_text(i.disposition) WITH ORDINALITY AS je (v, n))",
        ),
    },
    Field {
        name: "unread",
        kind: Kind::Bool,
        reach: Reach::One("i.unread", "i.unread"),
    },
    Field {
        name: "contact.email",
        kind: Kind::Text,
        reach: Reach::Many(
            "contact_emails ce WHERE ce.contact_id = i.contact_id",
            "ce.email",
        ),
    },
    Field {
        name: "contact.first_name",
        kind: Kind::Text,
        reach: Reach::One(
            "(SELECT co.first_name FROM contacts co WHERE co.id = i.contact_id)",
            "(SELECT co.first_name FROM contacts co WHERE co.id = i.contact_id)",
        ),
    },
    Field {
        name: "contact.last_name",
        kind: Kind::Text,
        reach: Reach::One(
            "(SELECT co.last_name FROM contacts co WHERE co.id = i.contact_id)",
            "(SELECT co.last_name FROM contacts co WHERE co.id = i.contact_id)",
        ),
    },
    Field {
        name: "created_at",
        kind: Kind::Time,
        reach: Reach::One("i.created_at", "i.created_at"),
    },
    Field {
        name: "closed_at",
        kind: Kind::Time,
        reach: Reach::One("i.closed_at", "i.closed_at"),
    },
    Field {
        name: "last_message.direction",
        kind: Kind::Text,
        reach: Reach::One("i.last_message_direction", "i.last_message_direction"),
    },
];

const OPS: &[&str] = &[
    "equals",
    "not_equals",
    "contains",
    "not_contains",
    "starts_with",
    "ends_with",
    "gt",
    "lt",
    "between",
    "in",
    "is_empty",
];

fn ops_for(kind: Kind) -> &'static [&'static str] {
    match kind {
        Kind::Text => &[
            "equals",
            "not_equals",
            "contains",
            "not_contains",
            "starts_with",
            "ends_with",
            "in",
            "is_empty",
        ],
        Kind::Int => &["equals", "not_equals", "gt", "lt", "between", "in"],
        Kind::Bool => &["equals", "not_equals"],
        Kind::Time => &["equals", "gt", "lt", "between", "is_empty"],
    }
}

/// A checked value.
#[derive(Debug, Clone, PartialEq)]
enum Val {
    Int(i64),
    Text(String),
    Bool(bool),
    Time(DateTime<Utc>),
}

/// One checked, enabled condition.
#[derive(Debug, Clone, PartialEq)]
pub struct Condition {
    field: &'static Field,
    op: &'static str,
    values: Vec<Val>,
}

impl std::fmt::Debug for Field {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name)
    }
}

impl PartialEq for Field {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name
    }
}

/// A checked search.
#[derive(Debug, Clone, PartialEq)]
pub struct Search {
    pub any: bool,
    pub conditions: Vec<Condition>,
}

/// The valid field names, for error messages and docs.
pub fn field_names() -> Vec<&'static str> {
    FIELDS.iter().map(|f| f.name).collect()
}

/// Check a request body. Every problem is reported, each naming its
/// condition and the valid choices.
pub fn parse(body: &Value) -> Result<Search, String> {
    let mut errors: Vec<String> = Vec::new();
    let Some(obj) = body.as_object() else {
        return Err(
            "the body is a JSON object: {\"match\": \"all\"|\"any\", \"conditions\": [...]}".into(),
        );
    };
    for key in obj.keys() {
        if !["match", "conditions", "cursor", "limit"].contains(&key.as_str()) {
            errors.push(format!(
                "unknown key `{key}` (valid: match, conditions, cursor, limit)"
            ));
        }
    }
    let any = match obj.get("match").map(|m| m.as_str()) {
        None | Some(Some("all")) => false,
        Some(Some("any")) => true,
        _ => {
            errors.push("match: `all` or `any`".into());
            false
        }
    };
    let list = match obj.get("conditions") {
        Some(Value::Array(list)) => list.clone(),
        None => Vec::new(),
        Some(_) => {
            errors.push("conditions: a list".into());
            Vec::new()
        }
    };
    if list.len() > 50 {
        errors.push("conditions: at most 50".into());
    }
    let mut conditions = Vec::new();
    for (n, c) in list.iter().enumerate() {
        let at = format!("conditions[{n}]");
        match condition(c, &at) {
            Ok(Some(c)) => conditions.push(c),
            Ok(None) => {}
            Err(mut e) => errors.append(&mut e),
        }
    }
    if errors.is_empty() {
        Ok(Search { any, conditions })
    } else {
        Err(errors.join("; "))
    }
}

fn condition(c: &Value, at: &str) -> Result<Option<Condition>, Vec<String>> {
    let Some(obj) = c.as_object() else {
        return Err(vec![format!(
            "{at}: an object {{field, op, value, enabled}}"
        )]);
    };
    let mut errors = Vec::new();
    for key in obj.keys() {
        if !["field", "op", "value", "enabled"].contains(&key.as_str()) {
            errors.push(format!(
                "{at}: unknown key `{key}` (valid: field, op, value, enabled)"
            ));
        }
    }
    let enabled = match obj.get("enabled") {
        None => true,
        Some(Value::Bool(b)) => *b,
        Some(_) => {
            errors.push(format!("{at}.enabled: true or false"));
            true
        }
    };
    let field_name = obj.get("field").and_then(Value::as_str).unwrap_or("");
    let field = FIELDS.iter().find(|f| f.name == field_name);
    if field.is_none() {
        errors.push(format!(
            "{at}.field: `{field_name}` is not a field (valid: {})",
            field_names().join(", ")
        ));
    }
    let op_name = obj.get("op").and_then(Value::as_str).unwrap_or("");
    let op = OPS.iter().copied().find(|o| *o == op_name);
    match (field, op) {
        (_, None) => errors.push(format!(
            "{at}.op: `{op_name}` is not an operator (valid: {})",
            OPS.join(", ")
        )),
        (Some(f), Some(o)) if !ops_for(f.kind).contains(&o) => errors.push(format!(
            "{at}.op: `{o}` does not apply to `{}` (valid: {})",
            f.name,
            ops_for(f.kind).join(", ")
        )),
        _ => {}
    }
    let (Some(field), Some(op)) = (field, op) else {
        return Err(errors);
    };
    if !errors.is_empty() {
        return Err(errors);
    }
    let value = obj.get("value").cloned().unwrap_or(Value::Null);
    let values = match values(field.kind, op, &value) {
        Ok(v) => v,
        Err(e) => return Err(vec![format!("{at}.value: {e}")]),
    };
    // A disabled condition is checked (so the desktop learns of mistakes)
    // but ignored.
    Ok(enabled.then_some(Condition { field, op, values }))
}

fn one(kind: Kind, v: &Value) -> Result<Val, String> {
    match (kind, v) {
        (Kind::Int, Value::Number(n)) => {
            n.as_i64().map(Val::Int).ok_or_else(|| "an integer".into())
        }
        (Kind::Int, Value::String(s)) => s
            .parse()
            .map(Val::Int)
            .map_err(|_| format!("`{s}` is not an integer (ids are digits)")),
        (Kind::Text, Value::String(s)) if s.chars().count() <= 10_000 => Ok(Val::Text(s.clone())),
        (Kind::Text, Value::String(_)) => Err("at most 10,000 characters".into()),
        (Kind::Bool, Value::Bool(b)) => Ok(Val::Bool(*b)),
        (Kind::Time, Value::String(s)) => DateTime::parse_from_rfc3339(s)
            .map(|t| Val::Time(t.with_timezone(&Utc)))
            .map_err(|_| format!("`{s}` is not an RFC 3339 time")),
        (Kind::Int, _) => Err("an integer".into()),
        (Kind::Text, _) => Err("a string".into()),
        (Kind::Bool, _) => Err("true or false".into()),
        (Kind::Time, _) => Err("an RFC 3339 time, e.g. 2026-11-24T00:00:00Z".into()),
    }
}

fn values(kind: Kind, op: &str, v: &Value) -> Result<Vec<Val>, String> {
    match op {
        "is_empty" => match v {
            Value::Null | Value::Bool(true) => Ok(vec![Val::Bool(true)]),
            Value::Bool(false) => Ok(vec![Val::Bool(false)]),
            _ => Err("true (is empty), false (is not empty), or absent".into()),
        },
        "between" => match v.as_array().map(Vec::as_slice) {
            Some([a, b]) => Ok(vec![one(kind, a)?, one(kind, b)?]),
            _ => Err("a list of two values [from, to]".into()),
        },
        "in" => match v.as_array() {
            Some(list) if !list.is_empty() && list.len() <= 500 => {
                list.iter().map(|x| one(kind, x)).collect()
            }
            _ => Err("a list of 1 to 500 values".into()),
        },
        _ => Ok(vec![one(kind, v)?]),
    }
}

/// `x LIKE pattern` with the caller's text taken literally: `\`, `%` and
/// `_` escaped.
fn like_pattern(text: &str, prefix: &str, suffix: &str) -> String {
    let mut p = String::with_capacity(text.len() + 4);
    p.push_str(prefix);
    for c in text.chars() {
        if matches!(c, '\\' | '%' | '_') {
            p.push('\\');
        }
        p.push(c);
    }
    p.push_str(suffix);
    p
}

fn arg_of(v: &Val) -> Arg {
    match v {
        Val::Int(i) => Arg::Int(*i),
        Val::Text(t) => Arg::Text(t.clone()),
        Val::Bool(b) => Arg::Bool(*b),
        Val::Time(t) => Arg::Time(*t),
    }
}

/// The SQL of a checked search, one boolean expression over `i`.
pub(crate) fn search_sql(
    s: &Search,
    dialect: Dialect,
    arg: &mut dyn FnMut(Arg) -> String,
) -> Option<String> {
    if s.conditions.is_empty() {
        return None;
    }
    let parts: Vec<String> = s
        .conditions
        .iter()
        .map(|c| condition_sql(c, dialect, arg))
        .collect();
    Some(format!(
        "({})",
        parts.join(if s.any { "\n  OR " } else { "\n  AND " })
    ))
}

fn condition_sql(c: &Condition, dialect: Dialect, arg: &mut dyn FnMut(Arg) -> String) -> String {
    let negative = matches!(c.op, "not_equals" | "not_contains");
    // The positive test of one value `x`.
    let mut test = |x: &str| -> String {
        let text = c.field.kind == Kind::Text;
        // Text compares case-insensitively (lower() on both sides; SQLite's
        // lower() folds ASCII letters only).
        let lhs = if text {
            format!("lower({x})")
        } else {
            x.to_string()
        };
        let val = |v: &Val, arg: &mut dyn FnMut(Arg) -> String| {
            let p = arg(arg_of(v));
            if text { format!("lower({p})") } else { p }
        };
        let like = |pattern: String, arg: &mut dyn FnMut(Arg) -> String| {
            let p = arg(Arg::Text(pattern));
            format!("{lhs} LIKE lower({p}) ESCAPE '\\'")
        };
        let text_of = |v: &Val| match v {
            Val::Text(t) => t.clone(),
            _ => String::new(),
        };
        match c.op {
            "equals" | "not_equals" => format!("{lhs} = {}", val(&c.values[0], arg)),
            "contains" | "not_contains" => {
                like(like_pattern(&text_of(&c.values[0]), "%", "%"), arg)
            }
            "starts_with" => like(like_pattern(&text_of(&c.values[0]), "", "%"), arg),
            "ends_with" => like(like_pattern(&text_of(&c.values[0]), "%", ""), arg),
            "gt" => format!("{lhs} > {}", val(&c.values[0], arg)),
            "lt" => format!("{lhs} < {}", val(&c.values[0], arg)),
            "between" => format!(
                "{lhs} BETWEEN {} AND {}",
                val(&c.values[0], arg),
                val(&c.values[1], arg)
            ),
            "in" => {
                let list: Vec<String> = c.values.iter().map(|v| val(v, arg)).collect();
                format!("{lhs} IN ({})", list.join(", "))
            }
            // is_empty is handled below.
            _ => "FALSE".into(),
        }
    };
    let empty_wanted = matches!(c.values.first(), Some(Val::Bool(true)));
    match c.field.reach {
        Reach::One(sqlite, postgres) => {
            let expr = match dialect {
                Dialect::Sqlite => sqlite,
                Dialect::Postgres => postgres,
            };
            one_sql(c, expr, negative, empty_wanted, &mut test)
        }
        Reach::Many(from, col) if c.op == "is_empty" => {
            let some =
                format!("EXISTS (SELECT 1 FROM {from} AND {col} IS NOT NULL AND {col} <> '')");
            if empty_wanted {
                format!("NOT {some}")
            } else {
                some
            }
        }
        Reach::Many(from, col) => {
            let positive = test(col);
            let exists = format!("EXISTS (SELECT 1 FROM {from} AND {positive})");
            if negative {
                format!("NOT {exists}")
            } else {
                exists
            }
        }
    }
}

/// A condition on a single-valued field.
fn one_sql(
    c: &Condition,
    expr: &str,
    negative: bool,
    empty_wanted: bool,
    test: &mut dyn FnMut(&str) -> String,
) -> String {
    match c.op {
        "is_empty" => {
            let empty = if c.field.kind == Kind::Text {
                format!("({expr} IS NULL OR {expr} = '')")
            } else {
                format!("({expr} IS NULL)")
            };
            if empty_wanted {
                empty
            } else {
                format!("NOT {empty}")
            }
        }
        _ => {
            let positive = test(expr);
            if negative {
                // A missing value is "not equal" to anything.
                format!("({expr} IS NULL OR NOT ({positive}))")
            } else {
                format!("({positive})")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn unknown_fields_operators_and_wrong_types_list_the_valid_ones() {
        let e = parse(&json!({"match": "some", "conditions": [
            {"field": "colour", "op": "equals", "value": "red"},
            {"field": "subject", "op": "resembles", "value": "x"},
            {"field": "unread", "op": "contains", "value": true},
            {"field": "created_at", "op": "gt", "value": "yesterday"},
            {"field": "id", "op": "between", "value": [1]},
        ]}))
        .unwrap_err();
        for part in [
            "match",
            "conditions[0].field",
            "contact.email",
            "conditions[1].op",
            "not_contains",
            "conditions[2].op",
            "conditions[3].value",
            "conditions[4].value",
        ] {
            assert!(e.contains(part), "{part} missing from: {e}");
        }
    }

    #[test]
    fn disabled_conditions_are_checked_but_dropped() {
        let s = parse(&json!({"conditions": [
            {"field": "subject", "op": "contains", "value": "x", "enabled": false},
            {"field": "unread", "op": "equals", "value": true},
        ]}))
        .unwrap();
        assert_eq!(s.conditions.len(), 1);
        assert!(
            parse(&json!({"conditions": [
                {"field": "subject", "op": "gt", "value": "x", "enabled": false}
            ]}))
            .is_err()
        );
    }

    #[test]
    fn values_never_reach_the_sql_text() {
        let hostile = "x' OR '1'='1'; DROP TABLE interactions; -- %_\\";
        let s = parse(&json!({"match": "any", "conditions": [
            {"field": "subject", "op": "contains", "value": hostile},
            {"field": "tag", "op": "in", "value": [hostile, "b"]},
            {"field": "contact.email", "op": "not_equals", "value": hostile},
        ]}))
        .unwrap();
        for dialect in [Dialect::Sqlite, Dialect::Postgres] {
            let mut args = Vec::new();
            let sql = search_sql(&s, dialect, &mut |a| {
                args.push(a);
                format!("?{}", args.len())
            })
            .unwrap();
            assert!(!sql.contains("DROP"), "{sql}");
            assert!(!sql.contains("'1'"), "{sql}");
            assert!(args.contains(&Arg::Text(
                "%x' OR '1'='1'; DROP TABLE interactions; -- \\%\\_\\\\%".into()
            )));
        }
    }

    #[test]
    fn like_patterns_escape_wildcards() {
        assert_eq!(like_pattern("50%_off\\", "%", "%"), "%50\\%\\_off\\\\%");
    }
}
