//! MLflow's search filters (`metrics.rmse < 1 and params.alpha = '0.5'`) and orderings
//! (`metrics.rmse DESC`), applied to experiments and runs.

use std::cmp::Ordering;

use berth_store::tracking::{Experiment, Run};

use super::error::MlflowError;

/// What a filter looks at.
pub enum Subject<'a> {
    /// An experiment: `name`, times, `tags.*`.
    Experiment(&'a Experiment),
    /// A run: attributes, `metrics.*`, `params.*`, `tags.*`.
    Run(&'a Run),
}

/// A value a clause compares.
#[derive(Clone, Debug, PartialEq)]
enum Val {
    Num(f64),
    Text(String),
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Entity {
    Attribute,
    Metric,
    Param,
    Tag,
}

#[derive(Clone, Debug, PartialEq)]
struct Field {
    entity: Entity,
    key: String,
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Op {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    Like,
    ILike,
    In,
    NotIn,
}

#[derive(Clone, Debug, PartialEq)]
struct Clause {
    field: Field,
    op: Op,
    values: Vec<Val>,
}

/// A parsed filter: clauses that must all hold.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Filter(Vec<Clause>);

fn bad(filter: &str, why: &str) -> MlflowError {
    MlflowError::Invalid(format!(
        "the filter `{filter}` is not valid: {why}; write clauses like `metrics.rmse < 1 and params.alpha = '0.5'`"
    ))
}

/// Splits a filter into words, quoted strings, operators and parentheses.
fn tokens(text: &str) -> Result<Vec<String>, MlflowError> {
    let mut out = Vec::new();
    let chars: Vec<char> = text.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c.is_whitespace() {
            i += 1;
        } else if c == '\'' || c == '"' || c == '`' {
            let end = chars[i + 1..]
                .iter()
                .position(|&d| d == c)
                .ok_or_else(|| bad(text, "a quote is not closed"))?;
            out.push(chars[i..i + end + 2].iter().collect());
            i += end + 2;
        } else if "=!<>".contains(c) {
            let two = chars.get(i + 1) == Some(&'=');
            out.push(chars[i..i + 1 + usize::from(two)].iter().collect());
            i += 1 + usize::from(two);
        } else if "(),".contains(c) {
            out.push(c.to_string());
            i += 1;
        } else {
            let start = i;
            while i < chars.len() && !chars[i].is_whitespace() && !"=!<>(),'\"".contains(chars[i]) {
                // A quoted key may follow the entity's dot: metrics.`my key`.
                if chars[i] == '`' {
                    break;
                }
                i += 1;
            }
            if i < chars.len() && chars[i] == '`' {
                let end = chars[i + 1..]
                    .iter()
                    .position(|&d| d == '`')
                    .ok_or_else(|| bad(text, "a quote is not closed"))?;
                i += end + 2;
            }
            out.push(chars[start..i].iter().collect());
        }
    }
    Ok(out)
}

fn unquote(t: &str) -> Option<&str> {
    let first = t.chars().next()?;
    (t.len() >= 2 && matches!(first, '\'' | '"' | '`') && t.ends_with(first))
        .then(|| &t[1..t.len() - 1])
}

fn field(text: &str, t: &str) -> Result<Field, MlflowError> {
    let (entity, key) = match t.split_once('.') {
        Some((e, k)) => {
            let entity = match e.to_ascii_lowercase().as_str() {
                "metrics" | "metric" => Entity::Metric,
                "params" | "param" | "parameters" | "parameter" => Entity::Param,
                "tags" | "tag" => Entity::Tag,
                "attributes" | "attribute" | "attr" | "run" => Entity::Attribute,
                other => {
                    return Err(bad(
                        text,
                        &format!("`{other}` is not metrics, params, tags or attributes"),
                    ));
                }
            };
            (entity, k)
        }
        None => (Entity::Attribute, t),
    };
    let key = unquote(key).unwrap_or(key);
    if key.is_empty() {
        return Err(bad(text, "a key is empty"));
    }
    Ok(Field {
        entity,
        key: key.to_string(),
    })
}

fn value(text: &str, t: &str) -> Result<Val, MlflowError> {
    if let Some(s) = unquote(t) {
        return Ok(Val::Text(s.to_string()));
    }
    t.parse::<f64>().map(Val::Num).map_err(|_| {
        bad(
            text,
            &format!("`{t}` is neither a number nor a quoted string"),
        )
    })
}

impl Filter {
    /// Parses a filter; an empty one matches everything.
    pub fn parse(text: &str) -> Result<Filter, MlflowError> {
        let toks = tokens(text)?;
        let mut clauses = Vec::new();
        let mut i = 0;
        while i < toks.len() {
            let f = field(text, &toks[i])?;
            let (op, next) = match toks.get(i + 1).map(|t| t.to_ascii_uppercase()).as_deref() {
                Some("=") | Some("==") => (Op::Eq, i + 2),
                Some("!=") => (Op::Ne, i + 2),
                Some("<") => (Op::Lt, i + 2),
                Some("<=") => (Op::Le, i + 2),
                Some(">") => (Op::Gt, i + 2),
                Some(">=") => (Op::Ge, i + 2),
                Some("LIKE") => (Op::Like, i + 2),
                Some("ILIKE") => (Op::ILike, i + 2),
                Some("IN") => (Op::In, i + 2),
                Some("NOT")
                    if toks
                        .get(i + 2)
                        .is_some_and(|t| t.eq_ignore_ascii_case("IN")) =>
                {
                    (Op::NotIn, i + 3)
                }
                _ => {
                    return Err(bad(
                        text,
                        &format!("`{}` needs a comparison after it", toks[i]),
                    ));
                }
            };
            let (values, after) = if matches!(op, Op::In | Op::NotIn) {
                if toks.get(next).map(String::as_str) != Some("(") {
                    return Err(bad(text, "IN needs a list in parentheses"));
                }
                let close = toks[next..]
                    .iter()
                    .position(|t| t == ")")
                    .ok_or_else(|| bad(text, "a parenthesis is not closed"))?
                    + next;
                let vals = toks[next + 1..close]
                    .iter()
                    .filter(|t| *t != ",")
                    .map(|t| value(text, t))
                    .collect::<Result<Vec<_>, _>>()?;
                (vals, close + 1)
            } else {
                let t = toks
                    .get(next)
                    .ok_or_else(|| bad(text, "a comparison has no value"))?;
                (vec![value(text, t)?], next + 1)
            };
            clauses.push(Clause {
                field: f,
                op,
                values,
            });
            i = after;
            match toks.get(i) {
                None => {}
                Some(t) if t.eq_ignore_ascii_case("and") => i += 1,
                Some(t) => {
                    return Err(bad(
                        text,
                        &format!("expected AND, found `{t}` (OR is not supported)"),
                    ));
                }
            }
        }
        Ok(Filter(clauses))
    }

    /// Whether every clause holds for `s`.
    pub fn matches(&self, s: &Subject<'_>) -> bool {
        self.0.iter().all(|c| match lookup(s, &c.field) {
            None => false,
            Some(v) => holds(c.op, &v, &c.values),
        })
    }
}

fn lookup(s: &Subject<'_>, f: &Field) -> Option<Val> {
    match (s, f.entity) {
        (Subject::Experiment(e), Entity::Tag) => e.tags.get(&f.key).cloned().map(Val::Text),
        (Subject::Experiment(e), Entity::Attribute) => match f.key.as_str() {
            "name" => Some(Val::Text(e.name.clone())),
            "creation_time" => Some(Val::Num(e.creation_time as f64)),
            "last_update_time" => Some(Val::Num(e.last_update_time as f64)),
            _ => None,
        },
        (Subject::Experiment(_), _) => None,
        (Subject::Run(r), Entity::Metric) => r
            .metrics
            .iter()
            .find(|m| m.key == f.key)
            .map(|m| Val::Num(m.value)),
        (Subject::Run(r), Entity::Param) => r.params.get(&f.key).cloned().map(Val::Text),
        (Subject::Run(r), Entity::Tag) => r.tags.get(&f.key).cloned().map(Val::Text),
        (Subject::Run(r), Entity::Attribute) => {
            let i = &r.info;
            match f.key.as_str() {
                "status" => Some(Val::Text(super::wire::status(i).to_string())),
                "run_name" | "name" => Some(Val::Text(i.run_name.clone())),
                "run_id" | "run_uuid" => Some(Val::Text(i.run_id.clone())),
                "user_id" => Some(Val::Text(i.user_id.clone())),
                "artifact_uri" => Some(Val::Text(i.artifact_uri.clone())),
                "lifecycle_stage" => Some(Val::Text(i.lifecycle_stage.clone())),
                "start_time" | "created" => Some(Val::Num(i.start_time as f64)),
                "end_time" => i.end_time.map(|t| Val::Num(t as f64)),
                _ => None,
            }
        }
    }
}

/// SQL's LIKE: `%` any run of characters, `_` one.
fn like(text: &str, pattern: &str) -> bool {
    fn go(t: &[char], p: &[char]) -> bool {
        match p.first() {
            None => t.is_empty(),
            Some('%') => (0..=t.len()).any(|k| go(&t[k..], &p[1..])),
            Some('_') => !t.is_empty() && go(&t[1..], &p[1..]),
            Some(c) => t.first() == Some(c) && go(&t[1..], &p[1..]),
        }
    }
    go(
        &text.chars().collect::<Vec<_>>(),
        &pattern.chars().collect::<Vec<_>>(),
    )
}

fn holds(op: Op, v: &Val, values: &[Val]) -> bool {
    let Some(w) = values.first() else {
        return false;
    };
    let ord = match (v, w) {
        (Val::Num(a), Val::Num(b)) => a.partial_cmp(b),
        (Val::Text(a), Val::Text(b)) => Some(a.cmp(b)),
        (Val::Num(a), Val::Text(b)) => b.parse::<f64>().ok().and_then(|b| a.partial_cmp(&b)),
        (Val::Text(a), Val::Num(b)) => a.parse::<f64>().ok().and_then(|a| a.partial_cmp(b)),
    };
    match op {
        Op::Eq => ord == Some(Ordering::Equal),
        Op::Ne => ord != Some(Ordering::Equal),
        Op::Lt => ord == Some(Ordering::Less),
        Op::Le => matches!(ord, Some(Ordering::Less | Ordering::Equal)),
        Op::Gt => ord == Some(Ordering::Greater),
        Op::Ge => matches!(ord, Some(Ordering::Greater | Ordering::Equal)),
        Op::Like | Op::ILike => match (v, w) {
            (Val::Text(a), Val::Text(p)) if op == Op::Like => like(a, p),
            (Val::Text(a), Val::Text(p)) => like(&a.to_lowercase(), &p.to_lowercase()),
            _ => false,
        },
        Op::In => values
            .iter()
            .any(|w| holds(Op::Eq, v, std::slice::from_ref(w))),
        Op::NotIn => !values
            .iter()
            .any(|w| holds(Op::Eq, v, std::slice::from_ref(w))),
    }
}

/// One `order_by` term.
#[derive(Clone, Debug, PartialEq)]
pub struct OrderBy {
    field: Field,
    ascending: bool,
}

impl OrderBy {
    /// Parses `metrics.rmse DESC`, `attributes.start_time`, `params.alpha ASC`.
    pub fn parse(text: &str) -> Result<OrderBy, MlflowError> {
        let toks = tokens(text)?;
        let (key, dir) = match toks.as_slice() {
            [k] => (k, None),
            [k, d] => (k, Some(d.to_ascii_uppercase())),
            _ => {
                return Err(MlflowError::Invalid(format!(
                    "order_by `{text}` is not `<field> [ASC|DESC]`"
                )));
            }
        };
        let ascending = match dir.as_deref() {
            None | Some("ASC") => true,
            Some("DESC") => false,
            Some(d) => {
                return Err(MlflowError::Invalid(format!(
                    "order_by `{text}`: `{d}` is not ASC or DESC"
                )));
            }
        };
        Ok(OrderBy {
            field: field(text, key)?,
            ascending,
        })
    }

    /// How two runs compare under this term; a run without the value comes last.
    pub fn compare(&self, a: &Run, b: &Run) -> Ordering {
        let (x, y) = (
            lookup(&Subject::Run(a), &self.field),
            lookup(&Subject::Run(b), &self.field),
        );
        let o = match (&x, &y) {
            (None, None) => Ordering::Equal,
            (None, Some(_)) => return Ordering::Greater,
            (Some(_), None) => return Ordering::Less,
            (Some(Val::Num(p)), Some(Val::Num(q))) => p.partial_cmp(q).unwrap_or(Ordering::Equal),
            (Some(Val::Text(p)), Some(Val::Text(q))) => p.cmp(q),
            _ => Ordering::Equal,
        };
        if self.ascending { o } else { o.reverse() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_store::tracking::{Metric, RunInfo};

    fn run(rmse: f64, alpha: &str, status: &str) -> Run {
        Run {
            info: RunInfo {
                run_id: "r".into(),
                experiment_id: 0,
                run_name: "bold_owl".into(),
                user_id: "me".into(),
                job_name: None,
                job_status: None,
                status: status.into(),
                start_time: 10,
                end_time: None,
                lifecycle_stage: "active".into(),
                artifact_uri: String::new(),
            },
            metrics: vec![Metric {
                key: "rmse".into(),
                value: rmse,
                timestamp: 0,
                step: 0,
            }],
            params: [("alpha".to_string(), alpha.to_string())].into(),
            tags: [("mlflow.runName".to_string(), "bold_owl".to_string())].into(),
        }
    }

    fn hit(filter: &str, r: &Run) -> bool {
        Filter::parse(filter)
            .expect("parses")
            .matches(&Subject::Run(r))
    }

    #[test]
    fn clauses_on_metrics_params_tags_and_attributes() {
        let r = run(0.5, "0.1", "FINISHED");
        assert!(hit("metrics.rmse < 1 and params.alpha = '0.1'", &r));
        assert!(!hit("metrics.rmse >= 1", &r));
        assert!(hit("tags.`mlflow.runName` LIKE 'bold%'", &r));
        assert!(hit("attributes.status IN ('FINISHED', 'FAILED')", &r));
        assert!(hit("status != 'RUNNING' AND run_name ILIKE 'BOLD_%'", &r));
        assert!(
            !hit("metrics.accuracy > 0", &r),
            "a missing metric matches nothing"
        );
        assert!(hit("", &r));
    }

    #[test]
    fn a_bad_filter_says_what_is_wrong() {
        for f in [
            "metrics.rmse",
            "rmse < 'a",
            "foo.bar = 1",
            "metrics.rmse < 1 or metrics.rmse > 2",
            "metrics.a < zz",
        ] {
            let e = Filter::parse(f).expect_err(f);
            assert!(e.to_string().contains("not valid"), "{f}: {e}");
        }
    }

    #[test]
    fn order_by_puts_missing_values_last() {
        let (a, b) = (run(0.2, "x", "FINISHED"), run(0.9, "y", "FINISHED"));
        let desc = OrderBy::parse("metrics.rmse DESC").expect("parses");
        assert_eq!(desc.compare(&a, &b), Ordering::Greater);
        let by_missing = OrderBy::parse("metrics.other").expect("parses");
        assert_eq!(by_missing.compare(&a, &b), Ordering::Equal);
        assert!(OrderBy::parse("metrics.rmse SIDEWAYS").is_err());
    }
}
