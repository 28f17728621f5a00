//! `--query` as in az: a JMESPath expression over the result, and az's table for what it picks
//! (the keys of a multiselect hash as columns, in the order the query names them).

use serde_json::Value;

use crate::failure::Failure;

/// Applies a JMESPath query. A plain field path over a list (`--query name` on `job list`)
/// picks that field of each item, as Berth's dotted paths always did.
pub fn apply(v: &Value, query: &str) -> Result<Value, Failure> {
    let expr = jmespath::compile(query).map_err(|e| {
        Failure::new(format!("--query `{query}` is not a valid JMESPath expression: {e}"))
            .hint("see https://jmespath.org; e.g. --query \"{name: name, state: provisioning_state}\" or --query \"[].name\"")
    })?;
    let run = |data: &Value| -> Result<Value, Failure> {
        let found = expr
            .search(data)
            .map_err(|e| Failure::new(format!("--query `{query}`: {e}")))?;
        serde_json::to_value(&*found).map_err(|e| Failure::new(e.to_string()))
    };
    let picked = run(v)?;
    let plain_path = query
        .split('.')
        .all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'));
    match v {
        Value::Array(items) if picked.is_null() && plain_path => items
            .iter()
            .map(run)
            .collect::<Result<Vec<_>, _>>()
            .map(Value::Array),
        _ => Ok(picked),
    }
}

/// The keys of the query's outermost multiselect hash, in the order written
/// (`[].{name: name, state: status}` gives `name`, `state`).
pub fn hash_keys(query: &str) -> Vec<String> {
    let q = query.trim();
    let Some(open) = q.find('{') else {
        return Vec::new();
    };
    let (mut depth, mut keys, mut start) = (0i32, Vec::new(), open + 1);
    let mut in_quote: Option<char> = None;
    for (i, c) in q.char_indices().skip(open) {
        if let Some(qc) = in_quote {
            if c == qc {
                in_quote = None;
            }
            continue;
        }
        match c {
            '\'' | '"' | '`' => in_quote = Some(c),
            '{' | '[' | '(' => depth += 1,
            '}' | ']' | ')' => {
                depth -= 1;
                if depth == 0 {
                    keys.extend(key_of(&q[start..i]));
                    break;
                }
            }
            ',' if depth == 1 => {
                keys.extend(key_of(&q[start..i]));
                start = i + 1;
            }
            _ => {}
        }
    }
    keys
}

fn key_of(pair: &str) -> Option<String> {
    let (k, _) = pair.split_once(':')?;
    Some(k.trim().trim_matches('"').to_string())
}

/// az's table for a query result: rows of objects with their keys as columns (first letter
/// upper-cased, as az prints them), a list of scalars as one `Result` column, a scalar as is.
pub fn table(v: &Value, order: &[String]) -> Vec<Vec<String>> {
    let rows: Vec<&Value> = match v {
        Value::Array(a) => a.iter().collect(),
        Value::Null => Vec::new(),
        one => vec![one],
    };
    let objects = rows.iter().all(|r| r.is_object()) && !rows.is_empty();
    if !objects {
        let mut out = vec![vec!["Result".to_string()]];
        out.extend(rows.iter().map(|r| vec![scalar(r)]));
        return out;
    }
    let mut columns: Vec<String> = order.to_vec();
    for r in &rows {
        if let Value::Object(m) = r {
            for k in m.keys() {
                if !columns.contains(k) {
                    columns.push(k.clone());
                }
            }
        }
    }
    let mut out = vec![columns.iter().map(|c| capitalize(c)).collect::<Vec<_>>()];
    for r in rows {
        out.push(
            columns
                .iter()
                .map(|c| r.get(c).map(scalar).unwrap_or_default())
                .collect(),
        );
    }
    out
}

fn capitalize(s: &str) -> String {
    let mut c = s.chars();
    c.next()
        .map(|f| f.to_uppercase().chain(c).collect())
        .unwrap_or_default()
}

/// A value as one table cell or TSV field.
pub fn scalar(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn compute() -> Value {
        json!({"name": "aks-compute", "provisioning_state": "Succeeded", "type": "kubernetes", "free": {"cpu": "2"}})
    }

    #[test]
    fn a_multiselect_hash_renames_fields() {
        let q = "{ name: name, provisioningState: provisioning_state, type: type }";
        let v = apply(&compute(), q).unwrap_or_default();
        assert_eq!(
            v,
            json!({"name": "aks-compute", "provisioningState": "Succeeded", "type": "kubernetes"})
        );
        assert_eq!(hash_keys(q), ["name", "provisioningState", "type"]);
        assert_eq!(
            table(&v, &hash_keys(q)),
            [
                vec!["Name", "ProvisioningState", "Type"],
                vec!["aks-compute", "Succeeded", "kubernetes"]
            ]
        );
    }

    #[test]
    fn keys_keep_the_order_the_query_writes() {
        let q = "[].{z: name, a: free.cpu}";
        let v = apply(&json!([compute()]), q).unwrap_or_default();
        assert_eq!(hash_keys(q), ["z", "a"]);
        assert_eq!(table(&v, &hash_keys(q))[0], ["Z", "A"]);
        assert_eq!(table(&v, &hash_keys(q))[1], ["aks-compute", "2"]);
    }

    #[test]
    fn a_multiselect_list_and_projections() {
        assert_eq!(
            apply(&compute(), "[name, type]").unwrap_or_default(),
            json!(["aks-compute", "kubernetes"])
        );
        let list = json!([{"name": "a", "status": "Completed"}, {"name": "b", "status": "Failed"}]);
        assert_eq!(
            apply(&list, "[?status=='Failed'].name").unwrap_or_default(),
            json!(["b"])
        );
        assert_eq!(apply(&list, "length(@)").unwrap_or_default(), json!(2));
    }

    #[test]
    fn a_plain_path_over_a_list_picks_each_items_field() {
        let list = json!([{"name": "a"}, {"name": "b"}]);
        assert_eq!(apply(&list, "name").unwrap_or_default(), json!(["a", "b"]));
        assert_eq!(
            apply(&compute(), "free.cpu").unwrap_or_default(),
            json!("2")
        );
    }

    #[test]
    fn a_list_of_scalars_is_one_result_column() {
        assert_eq!(
            table(&json!(["a", "b"]), &[]),
            [vec!["Result"], vec!["a"], vec!["b"]]
        );
    }

    #[test]
    fn an_invalid_query_says_so() {
        let err = apply(&compute(), "{name: ")
            .err()
            .map(|f| f.message)
            .unwrap_or_default();
        assert!(err.contains("is not a valid JMESPath expression"), "{err}");
    }

    proptest::proptest! {
        #[test]
        fn any_query_is_an_answer_or_an_error_never_a_panic(
            query in "([a-z_]{1,6}|\\.|\\[|\\]|\\{|\\}|:|,|\\*|\\?|\\||&|!|=|<|>|'|`|\\(|\\)|@|[0-9]| ){0,16}"
        ) {
            let data = json!([compute(), {"name": 1, "tags": {"a": [1, 2]}}, null]);
            let _ = apply(&data, &query);
            let _ = apply(&compute(), &query);
        }
    }
}
