//! YAML parsing with positions: every error names the file, line and column, and says what to do.

use std::fmt;

use serde::de::DeserializeOwned;
use serde_saphyr::{Location, Spanned};

/// A position in a YAML file, 1-based.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Position {
    /// The file as the user named it.
    pub file: String,
    /// 1-based line.
    pub line: u32,
    /// 1-based column.
    pub column: u32,
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.file, self.line, self.column)
    }
}

/// A problem with a spec: what is wrong, where, and what to do about it.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error, serde::Serialize, serde::Deserialize)]
pub struct SpecError {
    /// Where, when the problem is in a file.
    pub position: Option<Position>,
    /// What is wrong.
    pub message: String,
    /// What to do about it, when there is something specific to say.
    pub hint: Option<String>,
}

impl fmt::Display for SpecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(p) = &self.position {
            write!(f, "{p}: ")?;
        }
        f.write_str(&self.message)?;
        if let Some(h) = &self.hint {
            write!(f, " ({h})")?;
        }
        Ok(())
    }
}

impl SpecError {
    /// An error with no position (a flag, an override, an API field).
    pub fn new(message: impl Into<String>) -> Self {
        SpecError {
            position: None,
            message: message.into(),
            hint: None,
        }
    }

    /// Adds what to do.
    pub fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }
}

/// The text of one YAML file and the name to report it by.
#[derive(Clone, Debug)]
pub struct Source<'a> {
    /// The file name shown in errors.
    pub name: &'a str,
    /// The YAML text.
    pub text: &'a str,
}

impl<'a> Source<'a> {
    /// A source named `name` holding `text`.
    pub fn new(name: &'a str, text: &'a str) -> Self {
        Source { name, text }
    }

    /// The position of a location in this file.
    pub fn position(&self, loc: &Location) -> Option<Position> {
        (loc.line() > 0).then(|| Position {
            file: self.name.to_string(),
            line: loc.line() as u32,
            column: loc.column() as u32,
        })
    }

    /// The first place where `key:` is written (with `value` on the same line, if given);
    /// for errors found after parsing, such as a reference to something that does not exist.
    pub fn locate(&self, key: &str, value: Option<&str>) -> Option<Position> {
        let prefix = format!("{key}:");
        self.text.lines().enumerate().find_map(|(i, line)| {
            let trimmed = line.trim_start().trim_start_matches("- ");
            if !trimmed.starts_with(&prefix) {
                return None;
            }
            let column = match value {
                Some(v) => line.find(v)?,
                None => line.find(&prefix)?,
            };
            Some(Position {
                file: self.name.to_string(),
                line: i as u32 + 1,
                column: column as u32 + 1,
            })
        })
    }

    /// An error at the place `locate` finds, or with no position.
    pub fn error_near(
        &self,
        key: &str,
        value: Option<&str>,
        message: impl Into<String>,
    ) -> SpecError {
        SpecError {
            position: self.locate(key, value),
            message: message.into(),
            hint: None,
        }
    }

    /// An error pointing at a spanned value.
    pub fn error_at<T>(&self, at: &Spanned<T>, message: impl Into<String>) -> SpecError {
        SpecError {
            position: self.position(&at.referenced),
            message: message.into(),
            hint: None,
        }
    }

    /// Parses one document into `T`.
    pub fn parse<T: DeserializeOwned>(&self) -> Result<T, SpecError> {
        if self.text.trim().is_empty() {
            return Err(SpecError::new(format!("{} is empty", self.name))
                .hint("the file must hold a YAML mapping"));
        }
        serde_saphyr::from_str(self.text).map_err(|e| self.convert(&e))
    }

    /// Parses every `---`-separated document into `T`.
    pub fn parse_all<T: DeserializeOwned>(&self) -> Result<Vec<T>, SpecError> {
        serde_saphyr::from_multiple(self.text).map_err(|e| self.convert(&e))
    }

    fn convert(&self, e: &serde_saphyr::Error) -> SpecError {
        let inner = e.without_snippet();
        let position = inner.location().and_then(|l| self.position(&l));
        let raw = inner.render_with_options(
            serde_saphyr::render_options!(snippets: serde_saphyr::SnippetMode::Off),
        );
        let mut message = strip_location_suffix(&raw);
        let mut hint = hint_for(&message);
        if let Some(placeholder) = position
            .as_ref()
            .and_then(|p| self.text.lines().nth(p.line.saturating_sub(1) as usize))
            .and_then(template_placeholder)
        {
            message = format!("`{placeholder}` is a template placeholder, not a value");
            hint = Some(
                "replace it with the value (or put it in quotes if it is meant literally)".into(),
            );
        }
        SpecError {
            position,
            message,
            hint,
        }
    }
}

/// An unquoted `{{NAME}}` on a line (Microsoft's samples are templates filled in by scripts):
/// YAML reads it as a mapping, so say what it is instead.
fn template_placeholder(line: &str) -> Option<&str> {
    let start = line.find("{{")?;
    let end = line[start..].find("}}")? + start + 2;
    let before = line[..start].trim_end();
    (!before.ends_with(['"', '\''])).then(|| &line[start..end])
}

/// The parser appends " at line X column Y"; we report the position in front instead.
fn strip_location_suffix(raw: &str) -> String {
    let first = raw.lines().next().unwrap_or(raw);
    match first.rfind(" at line ") {
        Some(i) => first[..i].trim_end_matches([',', ':']).to_string(),
        None => first.to_string(),
    }
}

fn hint_for(message: &str) -> Option<String> {
    if message.contains("unknown field") {
        Some("remove the field or check its spelling against the Azure ML YAML schema".into())
    } else if message.contains("missing field") {
        Some("add the field".into())
    } else if message.contains("invalid type") {
        Some("check the value's type against the Azure ML YAML schema".into())
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Small {
        name: String,
        count: u32,
    }

    #[test]
    fn unknown_field_has_position_and_hint() {
        let src = Source::new("x.yaml", "name: a\ncount: 1\ncolour: red\n");
        let err = src
            .parse::<Small>()
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            err.starts_with("x.yaml:3:1: unknown field `colour`"),
            "{err}"
        );
        assert!(err.contains("remove the field"), "{err}");
    }

    #[test]
    fn wrong_type_has_position() {
        let src = Source::new("x.yaml", "name: a\ncount: lots\n");
        let err = src
            .parse::<Small>()
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.starts_with("x.yaml:2:8:"), "{err}");
    }

    #[test]
    fn malformed_yaml_has_position() {
        let src = Source::new("x.yaml", "name: a\n  count: [1\n");
        let err = src.parse::<Small>().err();
        assert!(
            err.as_ref().and_then(|e| e.position.as_ref()).is_some(),
            "{err:?}"
        );
    }

    #[test]
    fn an_unquoted_template_placeholder_is_named() {
        let src = Source::new("x.yaml", "name: {{ENDPOINT_NAME}}\ncount: 1\n");
        let err = src
            .parse::<Small>()
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            err.starts_with("x.yaml:1:")
                && err.contains("`{{ENDPOINT_NAME}}` is a template placeholder"),
            "{err}"
        );
    }

    #[test]
    fn locates_keys() {
        let src = Source::new("x.yaml", "a: 1\nresources:\n  instance_type: big\n");
        assert_eq!(
            src.locate("instance_type", Some("big"))
                .map(|p| (p.line, p.column)),
            Some((3, 18))
        );
        assert_eq!(src.locate("a", None).map(|p| p.line), Some(1));
        assert_eq!(src.locate("nope", None), None);
    }

    #[test]
    fn empty_file_is_reported() {
        let src = Source::new("x.yaml", "\n");
        let err = src
            .parse::<Small>()
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains("x.yaml is empty"), "{err}");
    }
}
