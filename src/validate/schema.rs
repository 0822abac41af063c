//! The OpenAPI v3 checks the API server applies to a custom resource, for the
//! subset of the schema language the `Tenant` CRD uses: types, required fields,
//! unknown fields, enums, patterns, lengths, ranges and item counts.

use regex::Regex;
use serde_json::Value;

/// One schema violation, at a field path such as `spec.dingtalk.corpId`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    pub field: String,
    pub message: String,
}

/// Checks `value` against `schema`, appending what is wrong to `out`.
pub fn check(schema: &Value, value: &Value, path: &str, out: &mut Vec<Violation>) {
    let mut add = |message: String| {
        out.push(Violation {
            field: path.to_string(),
            message,
        })
    };

    if value.is_null() {
        if schema.get("nullable").and_then(Value::as_bool) != Some(true) {
            add("must not be null".into());
        }
        return;
    }
    if schema
        .get("x-kubernetes-int-or-string")
        .and_then(Value::as_bool)
        == Some(true)
    {
        if !(value.is_i64() || value.is_u64() || value.is_string()) {
            add(format!(
                "must be an integer or a string, got {}",
                kind(value)
            ));
        } else if let Some(n) = value.as_f64().filter(|_| value.is_number()) {
            check_range(schema, n, &mut add);
        }
        return;
    }
    if schema
        .get("x-kubernetes-preserve-unknown-fields")
        .and_then(Value::as_bool)
        == Some(true)
        && schema.get("type").is_none()
    {
        return;
    }

    match schema.get("type").and_then(Value::as_str) {
        Some("object") => {
            let Some(map) = value.as_object() else {
                return add(format!("must be an object, got {}", kind(value)));
            };
            for req in schema
                .get("required")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                if let Some(name) = req.as_str()
                    && !map.contains_key(name)
                {
                    out.push(Violation {
                        field: join(path, name),
                        message: "required field is missing".into(),
                    });
                }
            }
            let props = schema.get("properties").and_then(Value::as_object);
            let additional = schema.get("additionalProperties");
            for (key, child) in map {
                let child_path = join(path, key);
                if let Some(prop) = props.and_then(|p| p.get(key)) {
                    check(prop, child, &child_path, out);
                } else if let Some(add_schema) = additional.filter(|a| a.is_object()) {
                    check(add_schema, child, &child_path, out);
                } else if props.is_some() && !(path.is_empty() && is_implicit_root_field(key)) {
                    out.push(Violation {
                        field: child_path,
                        message: "unknown field".into(),
                    });
                }
            }
        }
        Some("array") => {
            let Some(items) = value.as_array() else {
                return add(format!("must be a list, got {}", kind(value)));
            };
            if let Some(max) = schema.get("maxItems").and_then(Value::as_u64)
                && items.len() as u64 > max
            {
                add(format!(
                    "must have at most {max} items, has {}",
                    items.len()
                ));
            }
            if let Some(min) = schema.get("minItems").and_then(Value::as_u64)
                && (items.len() as u64) < min
            {
                add(format!("must have at least {min} items"));
            }
            if let Some(item_schema) = schema.get("items") {
                for (i, item) in items.iter().enumerate() {
                    check(item_schema, item, &format!("{path}[{i}]"), out);
                }
            }
        }
        Some("string") => {
            let Some(s) = value.as_str() else {
                return add(format!("must be a string, got {}", kind(value)));
            };
            let len = s.chars().count() as u64;
            if let Some(max) = schema.get("maxLength").and_then(Value::as_u64)
                && len > max
            {
                add(format!("may not be longer than {max} characters"));
            }
            if let Some(min) = schema.get("minLength").and_then(Value::as_u64)
                && len < min
            {
                add(format!("must be at least {min} characters long"));
            }
            if let Some(pattern) = schema.get("pattern").and_then(Value::as_str) {
                match Regex::new(pattern) {
                    Ok(re) if !re.is_match(s) => add(format!("{s:?} does not match {pattern:?}")),
                    Ok(_) => {}
                    Err(e) => add(format!("schema pattern {pattern:?} is invalid: {e}")),
                }
            }
            if schema.get("format").and_then(Value::as_str) == Some("date-time")
                && s.parse::<jiff::Timestamp>().is_err()
            {
                add(format!("{s:?} is not an RFC 3339 date-time"));
            }
        }
        Some("integer") => {
            let Some(n) = value.as_i64().or_else(|| {
                value
                    .as_f64()
                    .filter(|f| f.fract() == 0.0 && f.abs() < MAX_EXACT_FLOAT)
                    .map(|f| f as i64)
            }) else {
                return add(format!("must be an integer, got {}", kind(value)));
            };
            check_range(schema, n as f64, &mut add);
        }
        Some("number") => {
            let Some(n) = value.as_f64() else {
                return add(format!("must be a number, got {}", kind(value)));
            };
            check_range(schema, n, &mut add);
        }
        Some("boolean") if !value.is_boolean() => {
            add(format!("must be a boolean, got {}", kind(value)));
        }
        _ => {}
    }

    if let Some(allowed) = schema.get("enum").and_then(Value::as_array)
        && !allowed.contains(value)
    {
        let names: Vec<String> = allowed.iter().map(Value::to_string).collect();
        out.push(Violation {
            field: path.to_string(),
            message: format!(
                "unsupported value {value}: supported values: {}",
                names.join(", ")
            ),
        });
    }
}

/// What the API server does to a custom resource between decoding and
/// validation (pruning of nulls, then defaulting): a `null` in a field that is
/// not `nullable` takes the field's default, or is dropped when it has none;
/// an absent field with a default gets it. Null list items are left alone.
pub fn apply_defaults(schema: &Value, value: &mut Value) {
    match value {
        Value::Object(map) => {
            let Some(props) = schema.get("properties").and_then(Value::as_object) else {
                return;
            };
            for (key, prop) in props {
                let nullable = prop.get("nullable").and_then(Value::as_bool) == Some(true);
                let default = prop.get("default");
                match (map.get(key), default) {
                    (None, Some(d)) => {
                        map.insert(key.clone(), d.clone());
                    }
                    (Some(Value::Null), Some(d)) if !nullable => {
                        map.insert(key.clone(), d.clone());
                    }
                    (Some(Value::Null), None) if !nullable => {
                        map.remove(key);
                    }
                    _ => {}
                }
                if let Some(child) = map.get_mut(key) {
                    apply_defaults(prop, child);
                }
            }
        }
        Value::Array(items) => {
            if let Some(item_schema) = schema.get("items") {
                items
                    .iter_mut()
                    .for_each(|item| apply_defaults(item_schema, item));
            }
        }
        _ => {}
    }
}

/// 2^53: the API server takes a float as an integer only below it.
const MAX_EXACT_FLOAT: f64 = 9_007_199_254_740_992.0;

/// Numbers written as integral floats (`1001.0`) as the integers they are,
/// as the API server stores them (its JSON encoder writes `1001`).
pub fn integral_floats_to_integers(value: &mut Value) {
    match value {
        Value::Number(n) if n.is_f64() => {
            if let Some(f) = n.as_f64()
                && f.fract() == 0.0
                && f.abs() < MAX_EXACT_FLOAT
            {
                *value = Value::from(f as i64);
            }
        }
        Value::Array(items) => items.iter_mut().for_each(integral_floats_to_integers),
        Value::Object(map) => map.values_mut().for_each(integral_floats_to_integers),
        _ => {}
    }
}

/// Only the fields `schema` does not declare, as strict field validation
/// reports them (used for parts the API server otherwise ignores, like the
/// `status` of a create).
pub fn unknown_fields(schema: &Value, value: &Value, path: &str, out: &mut Vec<Violation>) {
    let preserve = schema
        .get("x-kubernetes-preserve-unknown-fields")
        .and_then(Value::as_bool)
        == Some(true);
    match value {
        Value::Object(map) if !preserve => {
            let props = schema.get("properties").and_then(Value::as_object);
            let additional = schema.get("additionalProperties").filter(|a| a.is_object());
            for (key, child) in map {
                let child_path = join(path, key);
                match (props.and_then(|p| p.get(key)), additional) {
                    (Some(prop), _) => unknown_fields(prop, child, &child_path, out),
                    (None, Some(add)) => unknown_fields(add, child, &child_path, out),
                    // Like the API server's pruning: an object where the
                    // schema declares no fields (a string, a list without
                    // items...) has only unknown fields.
                    (None, None) => out.push(Violation {
                        field: child_path,
                        message: "unknown field".into(),
                    }),
                }
            }
        }
        Value::Array(items) if !preserve => {
            let none = Value::Object(Default::default());
            let item_schema = schema.get("items").unwrap_or(&none);
            for (i, item) in items.iter().enumerate() {
                unknown_fields(item_schema, item, &format!("{path}[{i}]"), out);
            }
        }
        _ => {}
    }
}

fn check_range(schema: &Value, n: f64, add: &mut impl FnMut(String)) {
    if let Some(min) = schema.get("minimum").and_then(Value::as_f64)
        && n < min
    {
        add(format!("must be greater than or equal to {min}"));
    }
    if let Some(max) = schema.get("maximum").and_then(Value::as_f64)
        && n > max
    {
        add(format!("must be less than or equal to {max}"));
    }
}

/// Fields every object has at its root, which the API server checks by its own rules.
fn is_implicit_root_field(key: &str) -> bool {
    matches!(key, "apiVersion" | "kind" | "metadata")
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_f64() => "number",
        Value::Number(_) => "integer",
        Value::String(_) => "string",
        Value::Array(_) => "list",
        Value::Object(_) => "object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn violations(schema: Value, value: Value) -> Vec<Violation> {
        let mut out = Vec::new();
        check(&schema, &value, "", &mut out);
        out
    }

    #[test]
    fn required_unknown_and_enum() {
        let schema = json!({"type":"object","required":["mode"],"properties":{"mode":{"type":"string","enum":["A","B"]}}});
        assert_eq!(violations(schema.clone(), json!({"mode":"A"})), vec![]);
        let v = violations(schema.clone(), json!({"mode":"C","extra":1}));
        assert_eq!(v.len(), 2, "{v:?}");
        assert!(
            v.iter()
                .any(|v| v.field == "extra" && v.message == "unknown field")
        );
        assert!(
            v.iter()
                .any(|v| v.field == "mode" && v.message.contains("unsupported value"))
        );
        assert_eq!(violations(schema, json!({}))[0].field, "mode");
    }

    #[test]
    fn strings_numbers_lists() {
        let s = json!({"type":"string","maxLength":3,"pattern":"^[a-z]+$"});
        assert!(violations(s.clone(), json!("abc")).is_empty());
        assert_eq!(violations(s, json!("ABCD")).len(), 2);
        let n = json!({"type":"integer","minimum":1});
        assert!(violations(n.clone(), json!(1)).is_empty());
        assert_eq!(violations(n.clone(), json!(0)).len(), 1);
        assert_eq!(violations(n, json!("1")).len(), 1);
        let l = json!({"type":"array","maxItems":1,"items":{"type":"integer"}});
        let v = violations(l, json!([1, "x"]));
        assert_eq!(v.len(), 2);
        assert!(v.iter().any(|v| v.field == "[1]"));
    }

    #[test]
    fn nulls_and_defaults_like_the_api_server() {
        let schema = json!({"type":"object","properties":{
            "a":{"type":"string","default":"x"},
            "b":{"type":"string"},
            "c":{"type":"string","nullable":true,"default":"y"},
            "d":{"type":"object","default":{},"properties":{"e":{"type":"integer","default":1}}},
            "l":{"type":"array","items":{"type":"integer"}}}});
        let mut v = json!({"a": null, "b": null, "c": null, "l": [1, null]});
        apply_defaults(&schema, &mut v);
        assert_eq!(
            v,
            json!({"a": "x", "c": null, "d": {"e": 1}, "l": [1, null]})
        );
    }

    #[test]
    fn unknown_fields_only() {
        let schema = json!({"type":"object","properties":{"m":{"type":"string","enum":["A"]}}});
        let mut out = Vec::new();
        unknown_fields(&schema, &json!({"m": "Z", "x": 1}), "status", &mut out);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].field, "status.x");
    }

    #[test]
    fn int_or_string_and_date_time() {
        let s = json!({"x-kubernetes-int-or-string": true});
        assert!(violations(s.clone(), json!(5)).is_empty());
        assert!(violations(s.clone(), json!("10%")).is_empty());
        assert_eq!(violations(s, json!(true)).len(), 1);
        let bounded = json!({"x-kubernetes-int-or-string": true, "minimum": 0, "maximum": 10});
        assert!(violations(bounded.clone(), json!(10)).is_empty());
        assert!(
            violations(bounded.clone(), json!("99")).is_empty(),
            "strings are not ranged"
        );
        assert_eq!(violations(bounded, json!(11)).len(), 1);
        let t = json!({"type":"string","format":"date-time"});
        assert!(violations(t.clone(), json!("2026-01-01T00:00:00Z")).is_empty());
        assert_eq!(violations(t, json!("tomorrow")).len(), 1);
    }
}
