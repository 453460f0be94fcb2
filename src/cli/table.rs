//! Plain-text tables for people (scripts use `--json`).

use std::collections::HashMap;
use std::fmt::Write as _;

use presque_client::{DeadJob, QueueOverview};

/// Columns padded to their widest cell; numbers right-aligned.
fn render(header: &[&str], rows: &[Vec<String>], numeric: &[bool]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut text = String::new();
    let header: Vec<String> = header.iter().map(|h| (*h).to_owned()).collect();
    for row in std::iter::once(&header).chain(rows) {
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate() {
            let width = widths.get(i).copied().unwrap_or(0);
            if i > 0 {
                line.push_str("  ");
            }
            if numeric.get(i).copied().unwrap_or(false) {
                let _ = write!(line, "{cell:>width$}");
            } else {
                let _ = write!(line, "{cell:<width$}");
            }
        }
        text.push_str(line.trim_end());
        text.push('\n');
    }
    text
}

/// One row per queue; with `rates` (processed per second, by queue name), a RATE
/// column.
pub(super) fn queues(queues: &[QueueOverview], rates: Option<&HashMap<String, f64>>) -> String {
    let mut header = vec![
        "QUEUE",
        "STATE",
        "READY",
        "DELAYED",
        "LEASED",
        "DEAD",
        "WAITING",
        "PROCESSED",
        "FAILED",
    ];
    let mut numeric = vec![false, false, true, true, true, true, true, true, true];
    if rates.is_some() {
        header.push("JOBS/S");
        numeric.push(true);
    }
    let rows: Vec<Vec<String>> = queues
        .iter()
        .map(|q| {
            let mut row = vec![
                q.name.clone(),
                if q.open { "open" } else { "closed" }.to_owned(),
                q.ready.to_string(),
                q.delayed.to_string(),
                q.leased.to_string(),
                q.dead.to_string(),
                q.waiting.to_string(),
                q.processed.to_string(),
                q.failed.to_string(),
            ];
            if let Some(rates) = rates {
                row.push(match rates.get(&q.name) {
                    Some(rate) => format!("{rate:.1}"),
                    None => "-".to_owned(),
                });
            }
            row
        })
        .collect();
    if rows.is_empty() {
        return "no queues\n".to_owned();
    }
    render(&header, &rows, &numeric)
}

/// One row per dead letter: its last error, and the job cut to 60 characters.
pub(super) fn dead(jobs: &[DeadJob]) -> String {
    if jobs.is_empty() {
        return "no dead jobs\n".to_owned();
    }
    let rows: Vec<Vec<String>> = jobs
        .iter()
        .map(|job| {
            let last_error = job
                .errors
                .last()
                .and_then(|e| e.error.as_deref())
                .unwrap_or("-");
            vec![
                job.id.to_string(),
                job.attempts.to_string(),
                job.reason.clone().unwrap_or_else(|| "-".to_owned()),
                one_line(last_error, 50),
                one_line(job.job.get(), 60),
            ]
        })
        .collect();
    render(
        &["ID", "ATTEMPTS", "REASON", "LAST ERROR", "JOB"],
        &rows,
        &[true, true, false, false, false],
    )
}

/// `text` on one line (its last line if several: the end of a stderr tail says most),
/// cut to `max` characters.
fn one_line(text: &str, max: usize) -> String {
    let line = text
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("")
        .trim();
    if line.chars().count() <= max {
        line.to_owned()
    } else {
        let cut: String = line.chars().take(max.saturating_sub(1)).collect();
        format!("{cut}…")
    }
}
