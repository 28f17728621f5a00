//! The page shell: navigation, the sign-out form, the stylesheet and script.

use maud::{DOCTYPE, Markup, html};

/// A page without navigation (the login page).
pub fn bare(title: &str, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · Berth" }
                link rel="stylesheet" href="/studio/assets/studio.css";
                link rel="stylesheet" href="/studio/assets/uPlot.min.css";
            }
            body { (body) }
        }
    }
}

/// The sections, for the navigation.
const SECTIONS: [(&str, &str); 4] = [
    ("Jobs", "/studio/jobs"),
    ("Endpoints", "/studio/endpoints"),
    ("Compute", "/studio/computes"),
    ("Models and environments", "/studio/assets-list"),
];

/// A signed-in page: `current` is its section's link.
pub fn shell(title: &str, current: &str, csrf: &str, body: Markup) -> Markup {
    bare(
        title,
        html! {
            a class="skip" href="#main" { "Skip to content" }
            header {
                nav aria-label="Sections" {
                    span class="brand" { "Berth" }
                    ul {
                        @for (name, href) in SECTIONS {
                            li {
                                @if href == current {
                                    a href=(href) aria-current="page" { (name) }
                                } @else {
                                    a href=(href) { (name) }
                                }
                            }
                        }
                    }
                    form method="post" action="/studio/logout" class="logout" {
                        input type="hidden" name="csrf" value=(csrf);
                        button type="submit" { "Sign out" }
                    }
                }
            }
            main id="main" {
                h1 { (title) }
                (body)
            }
            script src="/studio/assets/uPlot.iife.min.js" {}
            script src="/studio/assets/studio.js" {}
        },
    )
}

/// A status as a labelled badge (colour is never the only cue: the word is there).
pub fn status(s: &str) -> Markup {
    let class = match s {
        "Completed" | "Succeeded" | "FINISHED" => "ok",
        "Failed" | "Canceled" | "FAILED" | "KILLED" => "bad",
        "Running" | "Preparing" | "Finalizing" | "Updating" | "Creating" => "busy",
        _ => "idle",
    };
    html! { span class={"badge " (class)} { (s) } }
}

/// `1h 02m`, `3m 05s`, `12s`.
pub fn duration(secs: i64) -> String {
    let secs = secs.max(0);
    match (secs / 3600, (secs % 3600) / 60, secs % 60) {
        (0, 0, s) => format!("{s}s"),
        (0, m, s) => format!("{m}m {s:02}s"),
        (h, m, _) => format!("{h}h {m:02}m"),
    }
}

#[cfg(test)]
mod tests {
    use super::duration;

    #[test]
    fn durations_read_as_a_person_says_them() {
        assert_eq!(duration(12), "12s");
        assert_eq!(duration(185), "3m 05s");
        assert_eq!(duration(3720), "1h 02m");
    }
}
