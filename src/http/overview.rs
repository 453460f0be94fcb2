//! `/overview`: a page of queues with every counter the dashboard shows, in natural
//! order (`tenant-2` before `tenant-10`), optionally only the names containing a text.
//! The dashboard never asks for all the queues at once: with 100k of them a page costs
//! one pass over the names (no full sort) and one message to each queue on the page.

use std::cmp::Ordering;

use actix_web::{web, HttpRequest, HttpResponse};
use futures_util::future::join_all;
use serde::Deserialize;
use serde_json::{json, Value};

use super::input::{page_limit, query, DEFAULT_PAGE};
use super::AppState;
use crate::http::error::ApiError;
use crate::names::QueueName;
use crate::queue::{GetSummary, Summary};

/// Longest `filter` accepted, in bytes (a queue name is never longer).
const MAX_FILTER_BYTES: usize = 1024;

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct OverviewQuery {
    /// Queues per page, 1 to 10000 (default 1000).
    #[param(value_type = Option<u32>, minimum = 1, maximum = 10000, example = 50)]
    limit: Option<String>,
    /// The `next` of the page before: names sort (naturally) after it.
    #[param(value_type = Option<String>, example = "emails")]
    after: Option<String>,
    /// Only names containing this text, compared without ASCII case.
    #[param(value_type = Option<String>, example = "mail")]
    filter: Option<String>,
    /// Only this queue (a queue page's counters); not with the others.
    #[param(value_type = Option<String>)]
    name: Option<String>,
}

/// Natural order: runs of ASCII digits compare as numbers, the rest byte by byte;
/// names equal that way (`a01`, `a1`) fall back to byte order, so the order is total.
pub fn natural_cmp(a: &str, b: &str) -> Ordering {
    let (mut x, mut y) = (a.as_bytes(), b.as_bytes());
    loop {
        match (x.first(), y.first()) {
            (None, None) => return a.cmp(b),
            (None, Some(_)) => return Ordering::Less,
            (Some(_), None) => return Ordering::Greater,
            (Some(c), Some(d)) if c.is_ascii_digit() && d.is_ascii_digit() => {
                let (n, rest_x) = split_digits(x);
                let (m, rest_y) = split_digits(y);
                let (n, m) = (trim_zeros(n), trim_zeros(m));
                let by_value = n.len().cmp(&m.len()).then_with(|| n.cmp(m));
                if by_value != Ordering::Equal {
                    return by_value;
                }
                (x, y) = (rest_x, rest_y);
            }
            (Some(c), Some(d)) => {
                if c != d {
                    return c.cmp(d);
                }
                (x, y) = (&x[1..], &y[1..]);
            }
        }
    }
}

fn split_digits(s: &[u8]) -> (&[u8], &[u8]) {
    let end = s
        .iter()
        .position(|c| !c.is_ascii_digit())
        .unwrap_or(s.len());
    s.split_at(end)
}

fn trim_zeros(s: &[u8]) -> &[u8] {
    let start = s.iter().position(|c| *c != b'0').unwrap_or(s.len());
    &s[start..]
}

/// Whether `name` contains `needle` (already lower-case), ignoring ASCII case.
fn contains_folded(name: &str, needle: &str) -> bool {
    needle.is_empty() || name.to_ascii_lowercase().contains(needle)
}

/// The first `limit` of `names` in natural order that sort after `after` and contain
/// `needle`, and whether more follow. Selects, then sorts only the page.
fn natural_page(
    names: Vec<QueueName>,
    after: Option<&str>,
    needle: &str,
    limit: usize,
) -> (Vec<QueueName>, usize, bool) {
    let mut matched: Vec<QueueName> = names
        .into_iter()
        .filter(|name| contains_folded(name.as_str(), needle))
        .collect();
    let total = matched.len();
    if let Some(after) = after {
        matched.retain(|name| natural_cmp(name.as_str(), after) == Ordering::Greater);
    }
    let more = matched.len() > limit;
    let by_name = |a: &QueueName, b: &QueueName| natural_cmp(a.as_str(), b.as_str());
    if more {
        matched.select_nth_unstable_by(limit, by_name);
        matched.truncate(limit);
    }
    matched.sort_unstable_by(by_name);
    (matched, total, more)
}

fn summary_json(name: &QueueName, s: &Summary) -> Value {
    let c = &s.counters;
    json!({
        "name": name.as_str(),
        "open": c.open,
        "ready": c.ready,
        "delayed": c.delayed,
        "leased": c.leased,
        "dead": c.dead,
        "waiting": s.waiting,
        "processed": c.processed,
        "failed": c.failed,
    })
}

/// `GET /overview[?limit=N][&after=NAME][&filter=TEXT]`: `{"queues": [{"name", "open",
/// "ready", "delayed", "leased", "dead", "waiting", "processed", "failed"}], "size":
/// all queues, "matched": queues the filter keeps, "next": NAME or null}`; with
/// `?name=NAME` only that queue (none if it does not exist).
#[utoipa::path(
    get,
    path = "/overview",
    operation_id = "overview",
    summary = "Queues with every counter, in natural order, a page at a time",
    description = "What the dashboard's overview shows: per queue open, ready, delayed, leased, dead, waiting consumers, processed and failed. Names sort naturally (tenant-2 before tenant-10).",
    tag = "dashboard",
    params(OverviewQuery),
    responses(
        (status = 200, description = "A page of queues", body = crate::http::openapi::bodies::Overview),
        (status = 400, description = "A bad limit, after, filter or name, or name with the others", body = crate::http::openapi::ErrorBody),
    ),
)]
pub async fn list(req: HttpRequest, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let params: OverviewQuery = query(&req)?;
    if let Some(raw) = params.name.as_deref() {
        if params.limit.is_some() || params.after.is_some() || params.filter.is_some() {
            return Err(ApiError::BadQuery(
                "name picks one queue: not with limit, after or filter".into(),
            ));
        }
        let name = QueueName::parse(raw).map_err(ApiError::BadQueueName)?;
        let size = state.queues.count();
        let queues: Vec<Value> = state
            .queues
            .ask(&name, false, || GetSummary)
            .await?
            .map(|s| summary_json(&name, &s))
            .into_iter()
            .collect();
        let matched = queues.len();
        return Ok(HttpResponse::Ok().json(json!({
            "queues": queues, "size": size, "matched": matched, "next": null,
        })));
    }
    let limit = page_limit(params.limit.as_deref())?.unwrap_or(DEFAULT_PAGE);
    let after = match params.after.as_deref() {
        None => None,
        Some(raw) => Some(QueueName::parse(raw).map_err(ApiError::BadQueueName)?),
    };
    let needle = params.filter.unwrap_or_default();
    if needle.len() > MAX_FILTER_BYTES {
        return Err(ApiError::BadQuery(format!(
            "filter is longer than {MAX_FILTER_BYTES} bytes"
        )));
    }
    let needle = needle.to_ascii_lowercase();
    let names = state.queues.unsorted_names();
    let size = names.len();
    let (page, matched, more) =
        natural_page(names, after.as_ref().map(QueueName::as_str), &needle, limit);
    let answers = join_all(
        page.iter()
            .map(|name| state.queues.ask(name, false, || GetSummary)),
    )
    .await;
    let mut queues: Vec<Value> = Vec::with_capacity(page.len());
    for (name, answer) in page.iter().zip(answers) {
        // A queue deleted since the names were read is left out.
        let Some(s) = answer? else { continue };
        queues.push(summary_json(name, &s));
    }
    let next = page.last().filter(|_| more).map(QueueName::as_str);
    Ok(HttpResponse::Ok().json(json!({
        "queues": queues,
        "size": size,
        "matched": matched,
        "next": next,
    })))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(list: &[&str]) -> Vec<QueueName> {
        list.iter()
            .filter_map(|n| QueueName::parse(n).ok())
            .collect()
    }

    fn strs(list: &[QueueName]) -> Vec<&str> {
        list.iter().map(QueueName::as_str).collect()
    }

    #[test]
    fn numbers_sort_by_value() {
        let mut list = vec![
            "tenant-10",
            "tenant-2",
            "tenant-1",
            "b",
            "a10b2",
            "a10b10",
            "a9",
            "tenant-02",
            "x99999999999999999999999",
            "x100000000000000000000000",
        ];
        list.sort_by(|a, b| natural_cmp(a, b));
        assert_eq!(
            list,
            [
                "a9",
                "a10b2",
                "a10b10",
                "b",
                "tenant-1",
                "tenant-02",
                "tenant-2",
                "tenant-10",
                "x99999999999999999999999",
                "x100000000000000000000000",
            ]
        );
        assert_eq!(natural_cmp("a", "a"), Ordering::Equal);
        assert_eq!(natural_cmp("a", "a1"), Ordering::Less);
    }

    #[test]
    fn pages_follow_each_other_without_gaps() {
        let all: Vec<String> = (1..=25).map(|i| format!("q-{i}")).collect();
        let mut after: Option<String> = None;
        let mut seen = Vec::new();
        loop {
            let list = names(&all.iter().map(String::as_str).collect::<Vec<_>>());
            let (page, total, more) = natural_page(list, after.as_deref(), "", 10);
            assert_eq!(total, 25);
            seen.extend(strs(&page).into_iter().map(str::to_owned));
            if !more {
                break;
            }
            after = page.last().map(|n| n.as_str().to_owned());
        }
        assert_eq!(seen, all);
    }

    proptest::proptest! {
        // The standard library's sorts may panic on a comparison that is not a total
        // order: this one must be one (digits and the characters around them mixed).
        #[test]
        fn natural_order_is_a_total_order(
            mut list in proptest::collection::vec("[a0-9/:-]{0,6}", 3..12)
        ) {
            for a in &list {
                for b in &list {
                    let ab = natural_cmp(a, b);
                    proptest::prop_assert_eq!(ab, natural_cmp(b, a).reverse());
                    proptest::prop_assert_eq!(ab == Ordering::Equal, a == b);
                    for c in &list {
                        if ab != Ordering::Greater && natural_cmp(b, c) != Ordering::Greater {
                            proptest::prop_assert_ne!(natural_cmp(a, c), Ordering::Greater);
                        }
                    }
                }
            }
            list.sort_by(|a, b| natural_cmp(a, b));
        }
    }

    #[test]
    fn the_filter_ignores_ascii_case() {
        let list = names(&["Emails", "sms", "bulk-EMAILS", "other"]);
        let (page, total, more) = natural_page(list, None, "email", 10);
        assert_eq!(strs(&page), ["Emails", "bulk-EMAILS"]);
        assert_eq!((total, more), (2, false));
    }
}
