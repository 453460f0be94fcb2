//! What `GET /metrics` exposes, in the OpenMetrics text format written by the
//! `prometheus-client` crate (never formatted by hand).
//!
//! Two kinds of figures:
//! - **recorded as they happen** into the long-lived [`Metrics`] registry: request
//!   latency by route group and status (the `observe` middleware), log fsyncs (the log
//!   writer), snapshots (the snapshot actor), recovery time (start-up);
//! - **read at scrape time** into a [`Scrape`], written by its [`Collector`]: per-queue
//!   figures asked of the first `[metrics] max_queues` queues' actors, and sums over
//!   every queue from [`QueueTotals`](crate::queue::totals::QueueTotals), which the
//!   actors keep up to date with a few atomic adds. The enqueue path pays nothing for a
//!   series per queue, and a scrape of 100k queues asks at most `max_queues` actors.

use std::sync::atomic::AtomicU64;
use std::sync::OnceLock;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{
    text, DescriptorEncoder, EncodeLabelSet, EncodeMetric, MetricEncoder,
};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::metrics::info::Info;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

use crate::names::QueueName;
use crate::queue::totals::TotalsNow;
use crate::queue::QueueFigures;

/// What `/metrics` answers with: the format `prometheus-client`'s text encoder writes.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The route groups request series are labelled with (see `http::auth::route_pattern`);
/// a path no route knows is `other`. Each has a row of cached histogram handles.
const GROUPS: &[&str] = &[
    "/q",
    "/qb",
    "/j",
    "/status",
    "/control",
    "/w",
    "/workers",
    "/dead",
    "/settings",
    "/health",
    "/",
    "/metrics",
    "/openapi.json",
    "/overview",
    "/info",
    "/jobs",
    "/dashboard",
    "/schedules",
    "other",
];

/// Statuses whose histogram handle is cached per group; any other status is found in
/// the family by its labels (a hash and a lock, still bounded: statuses are a few).
const STATUSES: &[u16] = &[
    200, 201, 204, 400, 401, 403, 404, 405, 409, 413, 415, 429, 500, 503, 507,
];

/// Request latency buckets, in seconds: sub-millisecond answers up to long-polls
/// (`GET /q/NAME?wait=S`, whose wait counts).
const REQUEST_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0, 30.0, 60.0,
];

const FSYNC_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
];

const SNAPSHOT_BUCKETS: &[f64] = &[
    0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0,
];

/// The labels of a request series: bounded (a fixed route group, a status code).
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    group: &'static str,
    status: u16,
}

fn request_histogram() -> Histogram {
    Histogram::new(REQUEST_BUCKETS.iter().copied())
}

type Cache = [[OnceLock<Histogram>; STATUSES.len()]; GROUPS.len()];

/// The long-lived series, and what a scrape adds to them. One per server, shared by
/// every HTTP worker (in `AppState`); the log and the snapshot actor hold clones of
/// their own histograms.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Histogram, fn() -> Histogram>,
    /// A request's histogram found by two indexes, not by hashing its labels: filled
    /// on first use, so only series that happened are exposed.
    cached: Box<Cache>,
    fsync_seconds: Histogram,
    snapshot_seconds: Histogram,
    snapshot_bytes: Gauge,
    recovery_seconds: Gauge<f64, AtomicU64>,
    schedules: ScheduleMetrics,
    /// Per-queue series are written for this many queues at most (name order).
    max_queues: usize,
}

impl Metrics {
    /// `max_queues`: `[metrics] max_queues`.
    pub fn new(max_queues: usize) -> Self {
        let mut registry = Registry::default();
        let requests: Family<RequestLabels, Histogram, fn() -> Histogram> =
            Family::new_with_constructor(request_histogram);
        registry.register(
            "presque_http_request_duration_seconds",
            "HTTP requests by route group and status: time from the request head to the \
             response (long-poll waits included); _count counts requests",
            requests.clone(),
        );
        let fsync_seconds = Histogram::new(FSYNC_BUCKETS.iter().copied());
        registry.register(
            "presque_log_fsync_seconds",
            "Time each fsync of the log took",
            fsync_seconds.clone(),
        );
        let snapshot_seconds = Histogram::new(SNAPSHOT_BUCKETS.iter().copied());
        registry.register(
            "presque_snapshot_duration_seconds",
            "Time each snapshot took, from log rotation to the file written",
            snapshot_seconds.clone(),
        );
        let snapshot_bytes = Gauge::default();
        registry.register(
            "presque_snapshot_bytes",
            "Size of the last snapshot written (0: none since start)",
            snapshot_bytes.clone(),
        );
        let recovery_seconds = Gauge::<f64, AtomicU64>::default();
        registry.register(
            "presque_recovery_seconds",
            "Time the last start took to recover the data directory",
            recovery_seconds.clone(),
        );
        let schedules = ScheduleMetrics {
            count: Gauge::default(),
            runs: Counter::default(),
        };
        registry.register(
            "presque_schedules",
            "Schedules (recurring jobs) defined",
            schedules.count.clone(),
        );
        registry.register(
            "presque_schedule_runs",
            "Runs of schedules since start (one per job posted; a run standing in for missed slots counts once)",
            schedules.runs.clone(),
        );
        registry.register(
            "presque_build",
            "The server's version",
            Info::new(vec![("version", env!("CARGO_PKG_VERSION"))]),
        );
        Metrics {
            registry,
            requests,
            cached: Box::new(std::array::from_fn(|_| {
                std::array::from_fn(|_| OnceLock::new())
            })),
            fsync_seconds,
            snapshot_seconds,
            snapshot_bytes,
            recovery_seconds,
            schedules,
            max_queues,
        }
    }

    /// The schedule actor's series.
    pub fn schedules(&self) -> ScheduleMetrics {
        self.schedules.clone()
    }

    /// Counts one answered request of route `group` (a group of `GROUPS`, else any
    /// static name) with `status`, which took `seconds`.
    pub fn observe_request(&self, group: &'static str, status: u16, seconds: f64) {
        let g = GROUPS.iter().position(|g| *g == group);
        let s = STATUSES.iter().position(|s| *s == status);
        match (g, s) {
            (Some(g), Some(s)) => self.cached[g][s]
                .get_or_init(|| {
                    self.requests
                        .get_or_create_owned(&RequestLabels { group, status })
                })
                .observe(seconds),
            _ => self
                .requests
                .get_or_create(&RequestLabels { group, status })
                .observe(seconds),
        }
    }

    /// The histogram the log writer times its fsyncs into.
    pub fn fsync_seconds(&self) -> Histogram {
        self.fsync_seconds.clone()
    }

    /// The series the snapshot actor records into.
    pub fn snapshots(&self) -> SnapshotMetrics {
        SnapshotMetrics {
            seconds: self.snapshot_seconds.clone(),
            bytes: self.snapshot_bytes.clone(),
        }
    }

    /// Recovery took `seconds`.
    pub fn recovered_in(&self, seconds: f64) {
        self.recovery_seconds.set(seconds);
    }

    /// How many queues get per-queue series.
    pub fn max_queues(&self) -> usize {
        self.max_queues
    }

    /// The whole exposition: the long-lived series, then `scrape`'s, then `# EOF`.
    pub fn render(&self, scrape: Scrape) -> Result<String, std::fmt::Error> {
        let mut now = Registry::default();
        now.register_collector(Box::new(scrape));
        let mut out = String::with_capacity(16 * 1024);
        text::encode_registry(&mut out, &self.registry)?;
        text::encode_registry(&mut out, &now)?;
        text::encode_eof(&mut out)?;
        Ok(out)
    }
}

/// The schedule actor's series.
#[derive(Debug, Clone)]
pub struct ScheduleMetrics {
    count: Gauge,
    runs: Counter,
}

impl ScheduleMetrics {
    /// `n` schedules are defined now.
    pub fn defined(&self, n: usize) {
        self.count.set(i64::try_from(n).unwrap_or(i64::MAX));
    }

    /// A schedule ran.
    pub fn ran(&self) {
        self.runs.inc();
    }
}

/// The snapshot actor's series.
#[derive(Debug, Clone)]
pub struct SnapshotMetrics {
    seconds: Histogram,
    bytes: Gauge,
}

impl SnapshotMetrics {
    /// A snapshot of `bytes` took `seconds`.
    pub fn taken(&self, seconds: f64, bytes: usize) {
        self.seconds.observe(seconds);
        self.bytes.set(i64::try_from(bytes).unwrap_or(i64::MAX));
    }
}

/// What a scrape read just now, written in name order by its [`Collector`] (help
/// texts end with a period, as the registry's get one).
#[derive(Debug, Default)]
pub struct Scrape {
    /// The first `max_queues` queues by name that still existed when asked.
    pub queues: Vec<(QueueName, QueueFigures)>,
    /// Every queue.
    pub queue_count: usize,
    pub totals: TotalsNow,
    /// Long-polls waiting for a queue that does not exist yet.
    pub pending_waiters: usize,
    pub memory_used: u64,
    /// `None`: no budget.
    pub memory_limit: Option<u64>,
    /// Registered workers.
    pub workers: usize,
}

fn gauge(
    encoder: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    value: u64,
) -> Result<(), std::fmt::Error> {
    let metric = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
    ConstGauge::new(value).encode(metric)
}

fn counter(
    encoder: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    value: u64,
) -> Result<(), std::fmt::Error> {
    let metric = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
    ConstCounter::new(value).encode(metric)
}

/// One series per listed queue, the value `pick` reads from its figures.
fn per_queue(
    mut family: MetricEncoder<'_>,
    queues: &[(QueueName, QueueFigures)],
    counter: bool,
    pick: impl Fn(&QueueFigures) -> u64,
) -> Result<(), std::fmt::Error> {
    for (name, figures) in queues {
        let labels = [("queue", name.as_str())];
        let metric = family.encode_family(&labels)?;
        if counter {
            ConstCounter::new(pick(figures)).encode(metric)?;
        } else {
            ConstGauge::new(pick(figures)).encode(metric)?;
        }
    }
    Ok(())
}

impl Collector for Scrape {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let t = &self.totals;
        gauge(&mut encoder, "presque_up", "1 while the server answers.", 1)?;
        gauge(
            &mut encoder,
            "presque_queues",
            "Queues that exist.",
            self.queue_count as u64,
        )?;
        let mut jobs = encoder.encode_descriptor(
            "presque_jobs",
            "Jobs by state, summed over every queue.",
            None,
            MetricType::Gauge,
        )?;
        for (state, value) in [
            ("ready", t.ready),
            ("delayed", t.delayed),
            ("leased", t.leased),
            ("dead", t.dead),
        ] {
            ConstGauge::new(value).encode(jobs.encode_family(&[("state", state)])?)?;
        }
        let sums = [
            (
                "presque_enqueued",
                "Jobs enqueued since the server started, every queue.",
                t.enqueued,
            ),
            (
                "presque_processed",
                "Jobs handed out since the server started, every queue.",
                t.processed,
            ),
            (
                "presque_failed",
                "Failures reported since the server started, every queue.",
                t.failed,
            ),
            (
                "presque_expired",
                "Leases that ran out since the server started, every queue.",
                t.expired,
            ),
            (
                "presque_ttl_expired",
                "Jobs whose ttl ran out before they were handed out, since the server started, every queue.",
                t.ttl_expired,
            ),
        ];
        for (name, help, value) in sums {
            counter(&mut encoder, name, help, value)?;
        }
        gauge(
            &mut encoder,
            "presque_waiters",
            "Long-polls parked, on every queue and on queues not created yet.",
            t.waiters + self.pending_waiters as u64,
        )?;
        gauge(
            &mut encoder,
            "presque_memory_budget_used_bytes",
            "What every queue's jobs cost against the memory budget.",
            self.memory_used,
        )?;
        if let Some(limit) = self.memory_limit {
            gauge(
                &mut encoder,
                "presque_memory_budget_limit_bytes",
                "The memory budget (absent: unlimited).",
                limit,
            )?;
        }
        gauge(
            &mut encoder,
            "presque_workers",
            "Registered workers.",
            self.workers as u64,
        )?;
        self.encode_queues(encoder)
    }
}

impl Scrape {
    /// The per-queue series, in queue-name order.
    fn encode_queues(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let queues = &self.queues;
        let mut jobs = encoder.encode_descriptor(
            "presque_queue_jobs",
            "A queue's jobs by state (the first [metrics] max_queues queues by name).",
            None,
            MetricType::Gauge,
        )?;
        for (name, f) in queues {
            let c = &f.counters;
            for (state, value) in [
                ("ready", c.ready),
                ("delayed", c.delayed),
                ("leased", c.leased),
                ("dead", c.dead),
            ] {
                let labels = [("queue", name.as_str()), ("state", state)];
                ConstGauge::new(value as u64).encode(jobs.encode_family(&labels)?)?;
            }
        }
        type Pick = fn(&QueueFigures) -> u64;
        let series: [(&str, &str, MetricType, Pick); 6] = [
            (
                "presque_queue_enqueued",
                "Jobs enqueued on a queue since the server started.",
                MetricType::Counter,
                |f| f.tally.enqueued,
            ),
            (
                "presque_queue_processed",
                "Jobs a queue handed out, as /j/NAME counts them (kept across restarts; reset when the queue is deleted).",
                MetricType::Counter,
                |f| f.counters.processed,
            ),
            (
                "presque_queue_failed",
                "Failures reported on a queue (kept across restarts; reset when the queue is deleted).",
                MetricType::Counter,
                |f| f.counters.failed,
            ),
            (
                "presque_queue_expired",
                "Leases on a queue that ran out since the server started.",
                MetricType::Counter,
                |f| f.tally.expired,
            ),
            (
                "presque_queue_ttl_expired",
                "Jobs on a queue whose ttl ran out before they were handed out, since the server started.",
                MetricType::Counter,
                |f| f.tally.ttl_expired,
            ),
            (
                "presque_queue_waiters",
                "Long-polls parked on a queue.",
                MetricType::Gauge,
                |f| f.waiters as u64,
            ),
        ];
        for (name, help, kind, pick) in series {
            let counter = matches!(kind, MetricType::Counter);
            let family = encoder.encode_descriptor(name, help, None, kind)?;
            per_queue(family, queues, counter, pick)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn render(metrics: &Metrics) -> String {
        metrics.render(Scrape::default()).expect("render")
    }

    #[test]
    fn requests_are_counted_by_group_and_status_cached_or_not() {
        let metrics = Metrics::new(10);
        metrics.observe_request("/q", 200, 0.001);
        metrics.observe_request("/q", 200, 0.002);
        metrics.observe_request("/status", 418, 0.5);
        let text = render(&metrics);
        assert!(text.contains(
            "presque_http_request_duration_seconds_count{group=\"/q\",status=\"200\"} 2\n"
        ));
        assert!(text.contains(
            "presque_http_request_duration_seconds_count{group=\"/status\",status=\"418\"} 1\n"
        ));
        assert!(!text.contains("group=\"/j\""), "no series before a request");
        assert!(text.ends_with("# EOF\n"));
    }

    #[test]
    fn queue_series_come_in_name_order_with_totals_always() {
        let metrics = Metrics::new(10);
        let figures = |ready| QueueFigures {
            counters: crate::queue::state::Counters {
                ready,
                ..Default::default()
            },
            ..Default::default()
        };
        let name = |n: &str| QueueName::parse(n).expect("name");
        let scrape = Scrape {
            queues: vec![(name("a"), figures(1)), (name("b"), figures(2))],
            queue_count: 3,
            memory_limit: None,
            ..Scrape::default()
        };
        let text = metrics.render(scrape).expect("render");
        let a = text
            .find("presque_queue_jobs{queue=\"a\",state=\"ready\"} 1\n")
            .expect("a");
        let b = text
            .find("presque_queue_jobs{queue=\"b\",state=\"ready\"} 2\n")
            .expect("b");
        assert!(a < b);
        assert!(text.contains("presque_queues 3\n"));
        assert!(text.contains("presque_queue_enqueued_total{queue=\"a\"} 0\n"));
        assert!(!text.contains("presque_memory_budget_limit_bytes"));
        assert!(text.contains("presque_build_info{version=\""));
    }
}
