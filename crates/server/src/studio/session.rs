//! Signing in to the studio: the server's API token, typed once into the login page, becomes
//! a signed session cookie (HttpOnly, SameSite=Strict, twelve hours); the token itself is
//! never stored in the browser. Each form that changes something carries a token derived
//! from the session (and a request from another site is refused on its `Origin` as well).

use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use berth_core::secret::constant_time_eq;
use maud::html;
use serde::Deserialize;

use crate::AppState;

/// The cookie's name.
pub const COOKIE: &str = "berth_studio";
/// How long a session lasts.
const LIFETIME_S: i64 = 12 * 3600;

fn now_s() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

fn mac(state: &AppState, what: &str) -> String {
    crate::auth::derive(&state.token_secret, &format!("studio|{what}"))
}

/// A new session value: `<expiry>.<nonce>.<mac>`.
fn new_session(state: &AppState) -> String {
    let nonce: String = rand::random::<[u8; 12]>()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let body = format!("{}.{nonce}", now_s() + LIFETIME_S);
    format!("{body}.{}", mac(state, &body))
}

fn valid(state: &AppState, value: &str) -> bool {
    let Some((body, m)) = value.rsplit_once('.') else {
        return false;
    };
    let fresh = body
        .split_once('.')
        .and_then(|(exp, _)| exp.parse::<i64>().ok())
        .is_some_and(|exp| exp > now_s());
    fresh && constant_time_eq(m.as_bytes(), mac(state, body).as_bytes())
}

fn cookie_of(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|c| c.trim().strip_prefix(COOKIE)?.strip_prefix('='))
}

/// A signed-in browser.
#[derive(Clone, Debug)]
pub struct Session {
    value: String,
}

impl Session {
    /// The token the session's forms carry.
    pub fn csrf(&self, state: &AppState) -> String {
        mac(state, &format!("csrf|{}", self.value))
    }

    /// Whether a form carries this session's token and came from this site.
    pub fn form_ok(&self, state: &AppState, headers: &HeaderMap, token: &str) -> bool {
        let cross_site = headers
            .get("sec-fetch-site")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v == "cross-site");
        !cross_site && constant_time_eq(token.as_bytes(), self.csrf(state).as_bytes())
    }
}

/// The answer to a form that [`Session::form_ok`] refuses.
pub fn stale_form() -> Response {
    (
        StatusCode::FORBIDDEN,
        "this form is stale or came from another site; reload the page and try again",
    )
        .into_response()
}

impl FromRequestParts<AppState> for Session {
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        match cookie_of(&parts.headers) {
            Some(v) if valid(state, v) => Ok(Session {
                value: v.to_string(),
            }),
            _ => {
                let next = parts
                    .uri
                    .path_and_query()
                    .map(|p| p.as_str())
                    .unwrap_or("/studio/jobs");
                let to = format!("/studio/login?next={}", urlencode(next));
                Err(Redirect::to(&to).into_response())
            }
        }
    }
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b'/' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Where to go after signing in: a studio page, never another site.
fn safe_next(next: Option<&str>) -> &str {
    next.filter(|n| n.starts_with("/studio/") && !n.starts_with("//") && !n.contains('\\'))
        .unwrap_or("/studio/jobs")
}

#[derive(Deserialize)]
pub struct LoginQuery {
    next: Option<String>,
}

fn login_page(next: &str, error: Option<&str>) -> maud::Markup {
    super::layout::bare(
        "Sign in",
        html! {
            main class="login" {
                h1 { "Berth studio" }
                form method="post" action="/studio/login" {
                    input type="hidden" name="next" value=(next);
                    label for="token" { "API token" }
                    p class="help" id="token-help" { "The server's token: " code { "cat $BERTH_HOME/token" } }
                    input id="token" name="token" type="password" autocomplete="current-password" required aria-describedby="token-help";
                    @if let Some(e) = error { p class="error" role="alert" { (e) } }
                    button type="submit" { "Sign in" }
                }
            }
        },
    )
}

/// `GET /studio/login`.
pub async fn login_form(axum::extract::Query(q): axum::extract::Query<LoginQuery>) -> Response {
    super::page(login_page(safe_next(q.next.as_deref()), None))
}

#[derive(Deserialize)]
pub struct LoginForm {
    token: String,
    next: Option<String>,
}

/// `POST /studio/login`: the token checked, a session cookie set.
pub async fn login(
    State(state): State<AppState>,
    axum::Form(f): axum::Form<LoginForm>,
) -> Response {
    let next = safe_next(f.next.as_deref()).to_string();
    if !constant_time_eq(f.token.trim().as_bytes(), state.token.as_bytes()) {
        let body = login_page(&next, Some("That is not this server's API token."));
        return (StatusCode::UNAUTHORIZED, super::page(body)).into_response();
    }
    let secure = if state.api_url.starts_with("https") {
        "; Secure"
    } else {
        ""
    };
    let cookie = format!(
        "{COOKIE}={}; Path=/studio; HttpOnly; SameSite=Strict; Max-Age={LIFETIME_S}{secure}",
        new_session(&state)
    );
    let mut resp = Redirect::to(&next).into_response();
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        resp.headers_mut().insert(header::SET_COOKIE, v);
    }
    resp
}

/// `POST /studio/logout`: the cookie cleared.
pub async fn logout() -> Response {
    let mut resp = Redirect::to("/studio/login").into_response();
    let clear = format!("{COOKIE}=; Path=/studio; HttpOnly; SameSite=Strict; Max-Age=0");
    if let Ok(v) = HeaderValue::from_str(&clear) {
        resp.headers_mut().insert(header::SET_COOKIE, v);
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn after_sign_in_only_studio_pages_are_followed() {
        assert_eq!(safe_next(Some("/studio/jobs/x")), "/studio/jobs/x");
        for bad in [
            "https://evil.example/",
            "//evil.example/studio/",
            "/api/jobs",
            "/studio\\..\\x",
        ] {
            assert_eq!(safe_next(Some(bad)), "/studio/jobs", "{bad}");
        }
    }

    #[test]
    fn the_cookie_is_found_among_others() {
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            HeaderValue::from_static("a=1; berth_studio=abc.def.ghi; b=2"),
        );
        assert_eq!(cookie_of(&h), Some("abc.def.ghi"));
    }
}
