//! What a waiting visitor is told: JSON in the gateway's error shape for
//! API clients, a small HTML page for browsers (no external assets, and it
//! reloads itself); both give the place in line, the estimate, and when to
//! ask again.

use http::header::{CACHE_CONTROL, HeaderName, HeaderValue, SET_COOKIE};

use crate::fields::Fields;

/// The `Refresh` field: browsers reload the page after this many seconds.
const REFRESH: HeaderName = HeaderName::from_static("refresh");

/// A visitor told to wait, and how to tell them.
#[derive(Debug, Clone)]
pub(crate) struct Waiting {
    /// The visitor's place in line; 1 is next.
    pub(crate) place: u64,
    /// Seconds until the visitor is let in, from the measured let-in rate;
    /// unknown before anyone has been let in.
    pub(crate) estimate: Option<u64>,
    /// Seconds until the visitor should ask again (`Retry-After`).
    pub(crate) poll: u64,
    /// The ticket's `Set-Cookie`.
    pub(crate) ticket: HeaderValue,
    /// The client prefers HTML to JSON (see [`prefers_html`]).
    pub(crate) html: bool,
}

impl Waiting {
    /// The answer's fields besides `Retry-After`: the ticket, no caching
    /// (the answer is one visitor's), and for the page `Refresh`.
    pub(crate) fn fields(&self) -> impl Iterator<Item = (HeaderName, HeaderValue)> + '_ {
        let refresh = self.html.then(|| (REFRESH, HeaderValue::from(self.poll)));
        [
            (SET_COOKIE, self.ticket.clone()),
            (CACHE_CONTROL, HeaderValue::from_static("no-store")),
        ]
        .into_iter()
        .chain(refresh)
    }

    /// The content type and body: `error`, the gateway's error object,
    /// with the place and estimate added; or the page.
    pub(crate) fn body(&self, mut error: serde_json::Value) -> (&'static str, String) {
        if self.html {
            return ("text/html; charset=utf-8", self.page());
        }
        error["place"] = self.place.into();
        error["estimated_wait_seconds"] = self.estimate.into();
        ("application/json", format!("{error}\n"))
    }

    fn page(&self) -> String {
        let (poll, place) = (self.poll, self.place);
        let wait = match self.estimate {
            None => "being measured".to_owned(),
            Some(seconds) if seconds < 60 => "less than a minute".to_owned(),
            Some(seconds) => format!("about {} minutes", seconds.div_ceil(60)),
        };
        format!(
            r#"<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta http-equiv="refresh" content="{poll}">
<title>You are in line</title>
<style>body{{font:1.1rem/1.5 system-ui,sans-serif;max-width:30rem;margin:12vh auto;padding:0 1rem;text-align:center;color:#222}}strong{{display:block;font-size:3.5rem}}</style>
</head>
<body>
<h1>You are in line</h1>
<p>The shop is busy right now. Keep this page open: it lets you in by itself when your turn comes.</p>
<p>Your place in line <strong>{place}</strong></p>
<p>Estimated wait: {wait}</p>
</body>
</html>
"#
        )
    }
}

/// Whether the client's `Accept` prefers an HTML page to JSON: a browser
/// loading a page (`text/html,...`) does; an API client (`application/json`,
/// `*/*`, or no `Accept`) does not.
pub(crate) fn prefers_html(fields: &(impl Fields + ?Sized)) -> bool {
    let (mut html, mut json) = (0.0f32, 0.0f32);
    for range in fields.tokens("accept") {
        let mut params = range.split(|&b| b == b';').map(<[u8]>::trim_ascii);
        let media = params.next().unwrap_or_default();
        let quality = params
            .find_map(|p| p.strip_prefix(b"q="))
            .and_then(|q| std::str::from_utf8(q).ok()?.parse().ok())
            .unwrap_or(1.0);
        if media.eq_ignore_ascii_case(b"text/html") {
            html = html.max(quality);
        } else if media.eq_ignore_ascii_case(b"application/json") {
            json = json.max(quality);
        }
    }
    html > json
}

#[cfg(test)]
mod tests {
    use http::HeaderMap;

    use super::*;

    fn accepts_html(accept: Option<&str>) -> bool {
        let mut headers = HeaderMap::new();
        if let Some(accept) = accept {
            headers.insert("accept", HeaderValue::from_str(accept).unwrap());
        }
        prefers_html(&headers)
    }

    #[test]
    fn browsers_get_the_page_and_api_clients_json() {
        let browser = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8";
        assert!(accepts_html(Some(browser)));
        assert!(accepts_html(Some("application/json;q=0.5, text/html")));
        for api in [
            None,
            Some("*/*"),
            Some("application/json"),
            Some("text/html;q=0.4, application/json"),
            Some("text/html, application/json"),
        ] {
            assert!(!accepts_html(api), "{api:?}");
        }
    }

    fn waiting(html: bool, estimate: Option<u64>) -> Waiting {
        Waiting {
            place: 3,
            estimate,
            poll: 5,
            ticket: HeaderValue::from_static("room=t; Path=/"),
            html,
        }
    }

    #[test]
    fn json_adds_the_place_and_estimate_to_the_error_object() {
        let error = serde_json::json!({ "error": "waiting_room", "message": "m" });
        let (content_type, body) = waiting(false, None).body(error.clone());
        assert_eq!(content_type, "application/json");
        assert_eq!(
            body,
            "{\"error\":\"waiting_room\",\"message\":\"m\",\"place\":3,\"estimated_wait_seconds\":null}\n"
        );
        let (_, body) = waiting(false, Some(40)).body(error);
        assert!(body.contains("\"estimated_wait_seconds\":40"), "{body}");
    }

    #[test]
    fn the_page_shows_the_place_and_refreshes_itself() {
        let page = waiting(true, Some(130));
        let (content_type, body) = page.body(serde_json::Value::Null);
        assert!(content_type.starts_with("text/html"));
        assert!(body.contains("<strong>3</strong>") && body.contains("about 3 minutes"));
        assert!(body.contains(r#"http-equiv="refresh" content="5""#));
        let fields: Vec<_> = page.fields().map(|(name, _)| name).collect();
        assert_eq!(fields, [SET_COOKIE, CACHE_CONTROL, REFRESH]);
        assert_eq!(
            waiting(false, None).fields().count(),
            2,
            "no Refresh for JSON"
        );
    }
}
