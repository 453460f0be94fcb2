//! `/`: a small HTML dashboard listing every queue with its counters (refreshes itself
//! every 5 seconds). The one route that answers HTML rather than JSON.

use std::fmt::Write;

use actix_web::{web, HttpRequest, HttpResponse};

use super::input::{query, NoQuery, DEFAULT_PAGE};
use super::AppState;
use crate::http::error::ApiError;
use crate::queue::GetCounters;

fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// `GET /`
pub async fn page(req: HttpRequest, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let NoQuery {} = query(&req)?;
    let mut rows = String::new();
    let names = state.queues.names();
    // Bounded whatever the number of queues; /status/ pages through all of them.
    for name in names.iter().take(DEFAULT_PAGE) {
        // A queue deleted while the page is built is simply left out.
        let Some(c) = state.queues.ask(name, false, || GetCounters).await? else {
            continue;
        };
        let _ = write!(
            rows,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            escape(name.as_str()),
            if c.open { "open" } else { "closed" },
            c.ready,
            c.delayed,
            c.processed,
            c.failed
        );
    }
    if rows.is_empty() {
        rows.push_str("<tr><td colspan=\"6\">no queues yet</td></tr>");
    }
    if names.len() > DEFAULT_PAGE {
        let _ = write!(
            rows,
            "<tr><td colspan=\"6\">the first {DEFAULT_PAGE} of {} queues (all of them: /status/)</td></tr>",
            names.len()
        );
    }
    let html = format!(
        "<!doctype html><html><head><meta charset=\"utf-8\">\
         <meta http-equiv=\"refresh\" content=\"5\"><title>presque</title>\
         <style>body{{font-family:sans-serif;margin:2em}}table{{border-collapse:collapse}}\
         td,th{{border:1px solid #ccc;padding:.3em .8em;text-align:right}}\
         td:first-child,th:first-child{{text-align:left}}</style></head><body>\
         <h1>presque</h1><table><thead><tr><th>queue</th><th>state</th><th>ready</th>\
         <th>delayed</th><th>processed</th><th>failed</th></tr></thead><tbody>{rows}\
         </tbody></table></body></html>"
    );
    Ok(HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .body(html))
}
