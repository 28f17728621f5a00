//! Printing results as a table, JSON, YAML or TSV, after an optional JMESPath `--query`.

use comfy_table::{Table, presets::NOTHING};
use serde::Serialize;
use serde_json::Value;

use crate::cli::Format;
use crate::failure::Failure;
use crate::query::{self, scalar};

/// How to print.
#[derive(Clone, Debug)]
pub struct Printer {
    /// Format.
    pub format: Format,
    /// `--query`, a JMESPath expression.
    pub query: Option<String>,
}

fn pick<'a>(v: &'a Value, path: &str) -> Option<&'a Value> {
    path.split('.').try_fold(v, |cur, key| match cur {
        Value::Object(m) => m.get(key),
        Value::Array(a) => key.parse::<usize>().ok().and_then(|i| a.get(i)),
        _ => None,
    })
}

impl Printer {
    /// Whether a long list may be printed a page at a time (TSV without `--query`: rows do not
    /// depend on each other); tables, JSON and YAML need the whole list.
    pub fn streams_pages(&self) -> bool {
        matches!(self.format, Format::Tsv) && self.query.is_none()
    }

    /// Prints one resource or a list; `columns` are (header, field path) for tables and TSV.
    pub fn print(&self, value: &impl Serialize, columns: &[(&str, &str)]) -> Result<(), Failure> {
        let mut v = serde_json::to_value(value).map_err(|e| Failure::new(e.to_string()))?;
        if let Some(q) = &self.query {
            v = query::apply(&v, q)?;
        }
        let text = match self.format {
            Format::Json => {
                serde_json::to_string_pretty(&v).map_err(|e| Failure::new(e.to_string()))?
            }
            Format::Yaml => serde_saphyr::to_string(&v)
                .map_err(|e| Failure::new(e.to_string()))?
                .trim_end()
                .to_string(),
            Format::Tsv if self.query.is_some() => match &v {
                Value::Array(items) => items.iter().map(tsv_row).collect::<Vec<_>>().join("\n"),
                one => tsv_row(one),
            },
            Format::Table if self.query.is_some() => {
                if !(v.is_object() || v.as_array().is_some_and(|a| a.iter().any(Value::is_object)))
                {
                    // A scalar or a list of them prints as values, one a line.
                    match &v {
                        Value::Array(items) => {
                            items.iter().map(scalar).collect::<Vec<_>>().join("\n")
                        }
                        one => scalar(one),
                    }
                } else {
                    az_table(query::table(
                        &v,
                        &query::hash_keys(self.query.as_deref().unwrap_or_default()),
                    ))
                }
            }
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

/// A TSV line: an object's or a list's values, tab-separated, as az prints them.
fn tsv_row(v: &Value) -> String {
    match v {
        Value::Object(m) => m.values().map(scalar).collect::<Vec<_>>().join("\t"),
        Value::Array(a) => a.iter().map(scalar).collect::<Vec<_>>().join("\t"),
        one => scalar(one),
    }
}

/// az's table: headers, a dashed rule under each, then the rows, columns padded.
fn az_table(rows: Vec<Vec<String>>) -> String {
    let Some(header) = rows.first() else {
        return String::new();
    };
    let widths: Vec<usize> = (0..header.len())
        .map(|i| {
            rows.iter()
                .map(|r| r.get(i).map_or(0, |c| c.chars().count()))
                .max()
                .unwrap_or(0)
        })
        .collect();
    let line = |cells: Vec<String>| {
        cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect::<Vec<_>>()
            .join("  ")
            .trim_end()
            .to_string()
    };
    let mut out = vec![line(header.clone())];
    out.push(line(widths.iter().map(|w| "-".repeat(*w)).collect()));
    out.extend(rows.into_iter().skip(1).map(line));
    out.join("\n")
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
