//! `--set path=value` on every create verb, as az's generic update arguments do it: the value
//! lands at any field path of the file (`a.b`, `a[0].b`, `a.0.b`), and the result is parsed
//! with the same rules as the file, so a path the file's type does not have is refused by name.

use serde_json::{Map, Value};

use crate::yaml::{Source, SpecError};

/// Parses `src` with `parse`, after applying `sets` to it. An error the file has without the
/// overrides is reported at its own line; an error the overrides bring names them.
pub fn parse_with_sets<T>(
    src: &Source<'_>,
    sets: &[String],
    parse: impl Fn(&Source<'_>) -> Result<T, SpecError>,
) -> Result<T, SpecError> {
    if sets.is_empty() {
        return parse(src);
    }
    let text = apply(src, sets)?;
    let name = format!("{} with --set", src.name);
    parse(&Source::new(&name, &text)).map_err(|e| {
        if let Err(own) = parse(src)
            && own.message == e.message
        {
            // The same problem is in the file itself: point at its line there.
            return own;
        }
        // Else name the override that brought it: the first after which it appears.
        let culprit = (1..=sets.len()).find(|&n| {
            apply(src, &sets[..n])
                .ok()
                .and_then(|t| parse(&Source::new(&name, &t)).err())
                .is_some_and(|err| err.message == e.message)
        });
        match culprit {
            Some(n) => SpecError {
                position: None,
                message: format!("--set {}: {}", sets[n - 1], e.message),
                hint: e.hint,
            },
            None => e,
        }
    })
}

/// The file's text with `sets` applied, as YAML.
pub fn apply(src: &Source<'_>, sets: &[String]) -> Result<String, SpecError> {
    let mut doc: Value = if src.text.trim().is_empty() {
        Value::Object(Map::new())
    } else {
        src.parse()?
    };
    if !doc.is_object() {
        return Err(SpecError::new(format!(
            "{} is not a YAML mapping, so --set has nowhere to go",
            src.name
        )));
    }
    for set in sets {
        let (path, value) = set.split_once('=').ok_or_else(|| {
            SpecError::new(format!("--set `{set}` has no `=`"))
                .hint("write --set path=value, e.g. --set instance_count=2")
        })?;
        let segments = segments(path)
            .map_err(|m| SpecError::new(format!("--set {path}: {m}")).hint(PATH_HINT))?;
        put(&mut doc, &segments, value)
            .map_err(|m| SpecError::new(format!("--set {path}: {m}")))?;
    }
    serde_saphyr::to_string(&doc).map_err(|e| SpecError::new(format!("cannot apply --set: {e}")))
}

const PATH_HINT: &str = "a path is field names joined by dots, with [n] for a list item: --set resources.requests.cpu=2 --set tags.team=ml";

#[derive(Debug, PartialEq)]
enum Segment {
    Key(String),
    Index(usize),
}

fn segments(path: &str) -> Result<Vec<Segment>, String> {
    let mut out = Vec::new();
    for part in path.split('.') {
        let (key, mut rest) = match part.find('[') {
            Some(i) => (&part[..i], &part[i..]),
            None => (part, ""),
        };
        if key.is_empty() && (out.is_empty() || rest.is_empty()) {
            return Err("a field name is empty".into());
        }
        if !key.is_empty() {
            out.push(match key.parse::<usize>() {
                Ok(i) => Segment::Index(i),
                Err(_) => Segment::Key(key.to_string()),
            });
        }
        while let Some(inner) = rest.strip_prefix('[') {
            let end = inner.find(']').ok_or("a `[` is not closed")?;
            let i = inner[..end]
                .parse::<usize>()
                .map_err(|_| format!("`[{}]` is not a list index", &inner[..end]))?;
            out.push(Segment::Index(i));
            rest = &inner[end + 1..];
        }
        if !rest.is_empty() {
            return Err(format!("`{rest}` after a list index"));
        }
    }
    Ok(out)
}

/// The value as az reads it: JSON when it is JSON (numbers, booleans, lists, mappings), else
/// the text; but a field that holds text keeps text (`--set name=123`).
fn typed(value: &str, current: Option<&Value>) -> Value {
    if matches!(current, Some(Value::String(_))) {
        return Value::String(value.to_string());
    }
    serde_json::from_str(value).unwrap_or_else(|_| Value::String(value.to_string()))
}

fn put(doc: &mut Value, path: &[Segment], value: &str) -> Result<(), String> {
    let Some((last, parents)) = path.split_last() else {
        return Err("no field named".into());
    };
    let mut at = doc;
    for (i, seg) in parents.iter().enumerate() {
        let next_is_index = matches!(path[i + 1], Segment::Index(_));
        at = child(at, seg, next_is_index)?;
    }
    match (last, at) {
        (Segment::Key(k), Value::Object(m)) => {
            let v = typed(value, m.get(k));
            m.insert(k.clone(), v);
        }
        (Segment::Index(i), Value::Array(a)) if *i < a.len() => {
            a[*i] = typed(value, Some(&a[*i]));
        }
        (Segment::Index(i), Value::Array(a)) if *i == a.len() => a.push(typed(value, None)),
        (Segment::Index(i), Value::Array(a)) => {
            return Err(format!(
                "the list has {} items; [{i}] is past its end",
                a.len()
            ));
        }
        (seg, other) => return Err(mismatch(seg, other)),
    }
    Ok(())
}

fn child<'a>(
    at: &'a mut Value,
    seg: &Segment,
    next_is_index: bool,
) -> Result<&'a mut Value, String> {
    match (seg, at) {
        (Segment::Key(k), Value::Object(m)) => {
            let slot = m.entry(k.clone()).or_insert(Value::Null);
            if slot.is_null() {
                *slot = if next_is_index {
                    Value::Array(Vec::new())
                } else {
                    Value::Object(Map::new())
                };
            }
            Ok(slot)
        }
        (Segment::Index(i), Value::Array(a)) => {
            let len = a.len();
            a.get_mut(*i)
                .ok_or_else(|| format!("the list has {len} items; [{i}] is past its end"))
        }
        (seg, other) => Err(mismatch(seg, other)),
    }
}

fn mismatch(seg: &Segment, found: &Value) -> String {
    let what = match found {
        Value::String(s) => format!("the text `{s}`"),
        Value::Array(_) => "a list".into(),
        Value::Object(_) => "a mapping".into(),
        other => format!("`{other}`"),
    };
    match seg {
        Segment::Key(k) => format!("cannot set `{k}` inside {what}"),
        Segment::Index(i) => format!("cannot take item [{i}] of {what}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(text: &str, sets: &[&str]) -> Result<Value, String> {
        let sets: Vec<String> = sets.iter().map(|s| s.to_string()).collect();
        let out = apply(&Source::new("f.yml", text), &sets).map_err(|e| e.to_string())?;
        serde_saphyr::from_str(&out).map_err(|e| e.to_string())
    }

    #[test]
    fn values_land_at_nested_paths_with_their_json_types() {
        let v = set(
            "name: blue\ninstance_count: 1\n",
            &[
                "instance_count=3",
                "request_settings.request_timeout_ms=9000",
                "tags.team=ml",
            ],
        )
        .expect("applies");
        assert_eq!(v["instance_count"], 3);
        assert_eq!(v["request_settings"]["request_timeout_ms"], 9000);
        assert_eq!(v["tags"]["team"], "ml");
    }

    #[test]
    fn a_text_field_keeps_text() {
        let v = set("name: blue\nversion: '1'\n", &["name=123", "version=2"]).expect("applies");
        assert_eq!(v["name"], "123");
        assert_eq!(v["version"], "2");
    }

    #[test]
    fn list_items_are_addressed_both_ways() {
        let v = set(
            "args: [a, b]\nsteps:\n  - name: x\n",
            &["args[1]=c", "steps.0.name=y", "args[2]=d"],
        )
        .expect("applies");
        assert_eq!(v["args"], serde_json::json!(["a", "c", "d"]));
        assert_eq!(v["steps"][0]["name"], "y");
    }

    #[test]
    fn paths_through_values_that_are_not_mappings_are_refused() {
        let err = set("environment: azureml:env:1\n", &["environment.image=x"]).unwrap_err();
        assert!(err.contains("cannot set `image` inside the text"), "{err}");
        assert!(
            set("a: [1]\n", &["a[5]=2"])
                .unwrap_err()
                .contains("past its end")
        );
        assert!(set("a: 1\n", &["novalue"]).unwrap_err().contains("no `=`"));
        assert!(set("a: 1\n", &["a..b=1"]).unwrap_err().contains("empty"));
    }

    #[test]
    fn an_empty_file_takes_every_field_from_sets() {
        let v = set("", &["name=m", "path=./model"]).expect("applies");
        assert_eq!(v["path"], "./model");
    }

    #[test]
    fn a_path_the_type_does_not_have_is_named_by_the_parser() {
        #[derive(Debug, serde::Deserialize)]
        #[serde(deny_unknown_fields)]
        #[allow(dead_code)]
        struct Small {
            name: String,
        }
        let err = parse_with_sets(
            &Source::new("f.yml", "name: a\n"),
            &["colour=red".into()],
            |s| s.parse::<Small>(),
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.starts_with("--set colour=red: unknown field `colour`"),
            "{err}"
        );
    }

    #[test]
    fn an_error_already_in_the_file_points_at_its_line() {
        #[derive(Debug, serde::Deserialize)]
        #[serde(deny_unknown_fields)]
        #[allow(dead_code)]
        struct Small {
            name: String,
            count: Option<u32>,
        }
        let err = parse_with_sets(
            &Source::new("f.yml", "name: a\ncount: lots\n"),
            &["name=b".into()],
            |s| s.parse::<Small>(),
        )
        .unwrap_err()
        .to_string();
        assert!(err.starts_with("f.yml:2:"), "{err}");
    }
}
