//! Printing results as a table, JSON, YAML or TSV, with an optional `--query` field.

use comfy_table::{Table, presets::NOTHING};
use serde::Serialize;
use serde_json::Value;

use crate::cli::Format;
use crate::failure::Failure;

/// How to print.
#[derive(Clone, Debug)]
pub struct Printer {
    /// Format.
    pub format: Format,
    /// `--query` path.
    pub query: Option<String>,
}

fn pick<'a>(v: &'a Value, path: &str) -> Option<&'a Value> {
    path.split('.').try_fold(v, |cur, key| match cur {
        Value::Object(m) => m.get(key),
        Value::Array(a) => key.parse::<usize>().ok().and_then(|i| a.get(i)),
        _ => None,
    })
}

fn scalar(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

impl Printer {
    /// Prints one resource or a list; `columns` are (header, field path) for tables and TSV.
    pub fn print(&self, value: &impl Serialize, columns: &[(&str, &str)]) -> Result<(), Failure> {
        let mut v = serde_json::to_value(value).map_err(|e| Failure::new(e.to_string()))?;
        if let Some(q) = &self.query {
            v = match &v {
                Value::Array(items) => Value::Array(
                    items
                        .iter()
                        .map(|i| pick(i, q).cloned().unwrap_or(Value::Null))
                        .collect(),
                ),
                one => pick(one, q).cloned().ok_or_else(|| {
                    Failure::new(format!("--query: the result has no field `{q}`"))
                })?,
            };
        }
        let text = match self.format {
            Format::Json => {
                serde_json::to_string_pretty(&v).map_err(|e| Failure::new(e.to_string()))?
            }
            Format::Yaml => serde_saphyr::to_string(&v)
                .map_err(|e| Failure::new(e.to_string()))?
                .trim_end()
                .to_string(),
            Format::Tsv | Format::Table if self.query.is_some() => match &v {
                Value::Array(items) => items.iter().map(scalar).collect::<Vec<_>>().join("\n"),
                one => scalar(one),
            },
            Format::Tsv => rows(&v, columns)
                .iter()
                .map(|r| r.join("\t"))
                .collect::<Vec<_>>()
                .join("\n"),
            Format::Table => {
                let mut t = Table::new();
                t.load_preset(NOTHING);
                t.set_header(columns.iter().map(|(h, _)| h.to_string()));
                for r in rows(&v, columns) {
                    t.add_row(r);
                }
                t.to_string()
            }
        };
        if !text.is_empty() {
            println!("{text}");
        }
        Ok(())
    }
}

fn rows(v: &Value, columns: &[(&str, &str)]) -> Vec<Vec<String>> {
    let items: Vec<&Value> = match v {
        Value::Array(a) => a.iter().collect(),
        one => vec![one],
    };
    items
        .iter()
        .map(|i| {
            columns
                .iter()
                .map(|(_, path)| pick(i, path).map(scalar).unwrap_or_default())
                .collect()
        })
        .collect()
}
