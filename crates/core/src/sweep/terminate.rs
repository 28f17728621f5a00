//! Early termination, as Azure ML's sweep policies decide it, on the primary metric's reports
//! of every trial: `bandit` (outside a slack of the best at the same interval), `median_stopping`
//! (best so far worse than the median of the running averages) and `truncation_selection`
//! (among the worst percentage at the interval). A running trial is judged when its report
//! count reaches a multiple of `evaluation_interval`, once past `delay_evaluation` reports.

use serde_json::Value;

use super::sample::Goal;
use super::space::SpaceError;

/// When a policy looks at a trial.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Schedule {
    /// Every this many reports.
    pub evaluation_interval: usize,
    /// Not before this many reports.
    pub delay_evaluation: usize,
}

/// An `early_termination` policy.
#[derive(Clone, Debug, PartialEq)]
pub enum Policy {
    /// Stop what falls outside the slack of the best at the same interval.
    Bandit {
        /// Allowed ratio to the best.
        slack_factor: Option<f64>,
        /// Allowed distance to the best.
        slack_amount: Option<f64>,
        /// When.
        schedule: Schedule,
    },
    /// Stop what is worse than the median of the running averages.
    MedianStopping {
        /// When.
        schedule: Schedule,
    },
    /// Stop what is among the worst `percentage` at the interval.
    TruncationSelection {
        /// 1 to 99.
        percentage: f64,
        /// Leave finished trials out of the ranking.
        exclude_finished: bool,
        /// When.
        schedule: Schedule,
    },
}

/// One trial's reports of the primary metric, in order.
#[derive(Clone, Debug, PartialEq)]
pub struct TrialReports {
    /// The trial.
    pub trial: String,
    /// Its reports.
    pub values: Vec<f64>,
    /// Still running (only running trials are stopped).
    pub running: bool,
}

fn bad(m: impl Into<String>) -> SpaceError {
    SpaceError(format!("early_termination: {}", m.into()))
}

/// Parses Azure's `early_termination` mapping.
pub fn parse(v: &Value) -> Result<Policy, SpaceError> {
    let int = |k: &str, default: usize| {
        v.get(k)
            .and_then(Value::as_u64)
            .map_or(default, |n| n as usize)
    };
    let schedule = Schedule {
        evaluation_interval: int("evaluation_interval", 1).max(1),
        delay_evaluation: int("delay_evaluation", 0),
    };
    let positive = |k: &str| -> Result<Option<f64>, SpaceError> {
        match v.get(k) {
            None => Ok(None),
            Some(x) => x
                .as_f64()
                .filter(|f| *f >= 0.0)
                .map(Some)
                .ok_or_else(|| bad(format!("{k} must be a number of at least 0, not {x}"))),
        }
    };
    match v.get("type").and_then(Value::as_str).unwrap_or_default() {
        "bandit" => {
            let (slack_factor, slack_amount) =
                (positive("slack_factor")?, positive("slack_amount")?);
            if slack_factor.is_some() == slack_amount.is_some() {
                return Err(bad("bandit takes one of slack_factor or slack_amount"));
            }
            Ok(Policy::Bandit {
                slack_factor,
                slack_amount,
                schedule,
            })
        }
        "median_stopping" => Ok(Policy::MedianStopping { schedule }),
        "truncation_selection" => {
            let p = v
                .get("truncation_percentage")
                .and_then(Value::as_f64)
                .filter(|p| *p > 0.0 && *p < 100.0);
            let percentage = p.ok_or_else(|| {
                bad("truncation_selection needs truncation_percentage between 1 and 99")
            })?;
            let exclude_finished = v
                .get("exclude_finished_jobs")
                .and_then(Value::as_bool)
                .unwrap_or(false);
            Ok(Policy::TruncationSelection {
                percentage,
                exclude_finished,
                schedule,
            })
        }
        other => Err(bad(format!(
            "type `{other}` is not bandit, median_stopping or truncation_selection"
        ))),
    }
}

impl Policy {
    fn schedule(&self) -> Schedule {
        match self {
            Policy::Bandit { schedule, .. }
            | Policy::MedianStopping { schedule }
            | Policy::TruncationSelection { schedule, .. } => *schedule,
        }
    }

    /// The running trials to stop now.
    pub fn to_stop(&self, goal: Goal, trials: &[TrialReports]) -> Vec<String> {
        let s = self.schedule();
        trials
            .iter()
            .filter(|t| t.running)
            .filter(|t| {
                let n = t.values.len();
                n > 0
                    && n >= s.delay_evaluation.max(1)
                    && n % s.evaluation_interval == 0
                    && self.stops(goal, t, trials)
            })
            .map(|t| t.trial.clone())
            .collect()
    }

    fn stops(&self, goal: Goal, t: &TrialReports, all: &[TrialReports]) -> bool {
        let n = t.values.len();
        let mine = t.values[n - 1];
        let at_n = |exclude_finished: bool| -> Vec<f64> {
            all.iter()
                .filter(|o| (o.running || !exclude_finished) && o.values.len() >= n)
                .map(|o| o.values[n - 1])
                .collect()
        };
        match self {
            Policy::Bandit {
                slack_factor,
                slack_amount,
                ..
            } => {
                let best = at_n(false)
                    .into_iter()
                    .reduce(|a, b| if goal.better(a, b) { a } else { b })
                    .unwrap_or(mine);
                let limit = match (goal, slack_factor, slack_amount) {
                    (Goal::Maximize, Some(f), _) => best / (1.0 + f),
                    (Goal::Maximize, None, Some(a)) => best - a,
                    (Goal::Minimize, Some(f), _) => best * (1.0 + f),
                    (Goal::Minimize, None, Some(a)) => best + a,
                    (_, None, None) => return false,
                };
                goal.better(limit, mine)
            }
            Policy::MedianStopping { .. } => {
                let mut averages: Vec<f64> = all
                    .iter()
                    .filter(|o| o.values.len() >= n)
                    .map(|o| o.values[..n].iter().sum::<f64>() / n as f64)
                    .collect();
                if averages.len() < 2 {
                    return false;
                }
                averages.sort_by(f64::total_cmp);
                let median = averages[averages.len() / 2];
                let best_so_far = t
                    .values
                    .iter()
                    .copied()
                    .reduce(|a, b| if goal.better(a, b) { a } else { b })
                    .unwrap_or(mine);
                goal.better(median, best_so_far)
            }
            Policy::TruncationSelection {
                percentage,
                exclude_finished,
                ..
            } => {
                let mut ranked = at_n(*exclude_finished);
                // Worst first.
                ranked.sort_by(|a, b| {
                    if goal.better(*a, *b) {
                        std::cmp::Ordering::Greater
                    } else if goal.better(*b, *a) {
                        std::cmp::Ordering::Less
                    } else {
                        std::cmp::Ordering::Equal
                    }
                });
                let cut = (ranked.len() as f64 * percentage / 100.0).floor() as usize;
                cut > 0 && !goal.better(mine, ranked[cut - 1])
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn t(name: &str, values: &[f64], running: bool) -> TrialReports {
        TrialReports {
            trial: name.into(),
            values: values.to_vec(),
            running,
        }
    }

    #[test]
    fn bandit_stops_what_falls_outside_the_slack_of_the_best() {
        let p = parse(&json!({"type": "bandit", "slack_factor": 0.1, "evaluation_interval": 1}))
            .unwrap();
        let trials = [
            t("best", &[0.5, 0.9], true),
            t("close", &[0.5, 0.85], true),
            t("far", &[0.5, 0.6], true),
        ];
        assert_eq!(p.to_stop(Goal::Maximize, &trials), ["far"]);
        // Minimising loss, by amount.
        let p = parse(&json!({"type": "bandit", "slack_amount": 0.2})).unwrap();
        let trials = [
            t("a", &[1.0], true),
            t("b", &[1.1], true),
            t("c", &[1.5], true),
        ];
        assert_eq!(p.to_stop(Goal::Minimize, &trials), ["c"]);
    }

    #[test]
    fn nothing_is_judged_before_the_delay_or_between_intervals() {
        let p = parse(&json!({"type": "bandit", "slack_factor": 0.1, "evaluation_interval": 2, "delay_evaluation": 4})).unwrap();
        let trials = [
            t("best", &[0.9, 0.9, 0.9], false),
            t("bad", &[0.1, 0.1, 0.1], true),
        ];
        assert!(
            p.to_stop(Goal::Maximize, &trials).is_empty(),
            "3 reports: before the delay"
        );
        let trials = [t("best", &[0.9; 4], false), t("bad", &[0.1; 4], true)];
        assert_eq!(p.to_stop(Goal::Maximize, &trials), ["bad"]);
        let trials = [t("best", &[0.9; 5], false), t("bad", &[0.1; 5], true)];
        assert!(
            p.to_stop(Goal::Maximize, &trials).is_empty(),
            "5 is not a multiple of 2"
        );
    }

    #[test]
    fn median_stopping_stops_a_trial_worse_than_the_median_average() {
        let p = parse(&json!({"type": "median_stopping"})).unwrap();
        let trials = [
            t("a", &[0.8, 0.9], false),
            t("b", &[0.7, 0.8], false),
            t("c", &[0.2, 0.3], true),
        ];
        assert_eq!(p.to_stop(Goal::Maximize, &trials), ["c"]);
        assert!(
            p.to_stop(Goal::Maximize, &[t("alone", &[0.1], true)])
                .is_empty()
        );
    }

    #[test]
    fn truncation_selection_stops_the_worst_percentage() {
        let p =
            parse(&json!({"type": "truncation_selection", "truncation_percentage": 25})).unwrap();
        let trials = [
            t("a", &[4.0], true),
            t("b", &[3.0], true),
            t("c", &[2.0], true),
            t("d", &[1.0], true),
        ];
        assert_eq!(p.to_stop(Goal::Maximize, &trials), ["d"]);
        assert_eq!(p.to_stop(Goal::Minimize, &trials), ["a"]);
    }

    #[test]
    fn bad_policies_say_what_is_wrong() {
        for (v, says) in [
            (json!({"type": "bandit"}), "one of slack_factor"),
            (
                json!({"type": "bandit", "slack_factor": 0.1, "slack_amount": 1}),
                "one of slack_factor",
            ),
            (
                json!({"type": "truncation_selection", "truncation_percentage": 0}),
                "between 1 and 99",
            ),
            (json!({"type": "coinflip"}), "not bandit"),
        ] {
            let e = parse(&v).expect_err(&v.to_string());
            assert!(e.to_string().contains(says), "{v}: {e}");
        }
    }
}
