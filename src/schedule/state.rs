//! The schedules and the only code that changes them, built like
//! [`crate::registry::state`]: every change is a [`ScheduleChange`] passed to
//! [`ScheduleState::apply`], which the log records and recovery replays.
//!
//! Exactly once per slot: a run is logged as [`ScheduleChange::Fired`] (its slot and
//! the id of the job it makes) *before* the job is sent to its queue, so the queue's
//! `Enqueued` record always comes after it in the log. A slot at or before a
//! schedule's `last_run` never fires again; a fired job whose `Enqueued` record never
//! made it (a crash between the two) stays *pending* after replay and is sent again,
//! with the same id, at the next start. Both or neither, never twice.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use chrono::TimeZone;
use chrono_tz::Tz;
use croner::parser::{CronParser, Seconds};
use croner::Cron;
use serde::{Deserialize, Serialize};

/// Due slots counted one by one after downtime, at most; past it the run still
/// fires once for the latest slot, and the count says this many.
pub const MAX_COUNTED_MISSED: u64 = 10_000;

/// What a schedule does, as posted and logged. The job is kept as the JSON text it
/// arrived as.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScheduleSpec {
    pub cron: String,
    pub timezone: String,
    pub queue: String,
    pub job: String,
    #[serde(default)]
    pub priority: Option<u8>,
    #[serde(default)]
    pub ttl_secs: Option<u64>,
}

/// A cron expression and time zone, checked and parsed.
#[derive(Debug, Clone)]
pub struct Timing {
    cron: Cron,
    tz: Tz,
}

impl Timing {
    /// Parses `cron` (5 fields, or 6 with seconds first; `@daily` and friends) in
    /// time zone `timezone` (an IANA name such as `Europe/Paris`). A pattern that
    /// never matches is refused too.
    pub fn parse(cron: &str, timezone: &str) -> Result<Timing, String> {
        let timing = Timing::parse_unchecked(cron, timezone)?;
        if timing.next_after(crate::clock::now_ms()).is_none() {
            return Err(format!("cron expression {cron:?} never matches"));
        }
        Ok(timing)
    }

    /// [`Timing::parse`] without asking whether the pattern ever matches (replay: the
    /// answer depends on the clock, and a logged schedule was checked when it was set).
    fn parse_unchecked(cron: &str, timezone: &str) -> Result<Timing, String> {
        let tz: Tz = timezone.parse().map_err(|_| {
            format!("unknown time zone {timezone:?} (an IANA name such as \"Europe/Paris\", or \"UTC\")")
        })?;
        let cron = CronParser::builder()
            .seconds(Seconds::Optional)
            .build()
            .parse(cron)
            .map_err(|e| format!("invalid cron expression {cron:?}: {e}"))?;
        Ok(Timing { cron, tz })
    }

    /// The first slot strictly after `ms` (epoch milliseconds), if there is one.
    pub fn next_after(&self, ms: u64) -> Option<u64> {
        let at = self
            .tz
            .timestamp_millis_opt(i64::try_from(ms).ok()?)
            .single()?;
        let next = self.cron.find_next_occurrence(&at, false).ok()?;
        u64::try_from(next.timestamp_millis()).ok()
    }

    /// The last slot at or before `ms`, if there is one.
    fn latest_until(&self, ms: u64) -> Option<u64> {
        let at = self
            .tz
            .timestamp_millis_opt(i64::try_from(ms).ok()?)
            .single()?;
        let previous = self.cron.find_previous_occurrence(&at, true).ok()?;
        u64::try_from(previous.timestamp_millis()).ok()
    }
}

/// Slots that passed without a run of their own: one run stood in for them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Missed {
    /// How many (counted up to [`MAX_COUNTED_MISSED`]).
    pub count: u64,
    /// The first of them (epoch ms).
    pub since_ms: u64,
}

/// A change to the schedules. Names are plain strings so the log can carry them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ScheduleChange {
    /// Created or replaced at `now_ms`: only slots after it (and after the last run,
    /// kept on a replace) fire.
    Set {
        name: String,
        spec: ScheduleSpec,
        now_ms: u64,
    },
    Removed {
        name: String,
    },
    /// Slot `slot_ms` fired, making job `job_id`; `missed` when it stands in for
    /// earlier slots too.
    Fired {
        name: String,
        slot_ms: u64,
        job_id: u64,
        missed: Option<Missed>,
    },
    /// The queue refused the job of a run: it was never enqueued.
    Failed {
        name: String,
        job_id: u64,
        error: String,
    },
}

/// One schedule as stored in a snapshot (a pending job never is: see
/// [`ScheduleState::image`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScheduleImage {
    pub name: String,
    pub spec: ScheduleSpec,
    pub since_ms: u64,
    pub last_run_ms: Option<u64>,
    pub last_job: Option<u64>,
    pub runs: u64,
    pub last_missed: Option<Missed>,
    pub missed_total: u64,
    pub last_error: Option<String>,
}

/// One schedule.
#[derive(Debug, Clone)]
pub struct Schedule {
    pub spec: ScheduleSpec,
    timing: Timing,
    /// When it was created or last replaced (epoch ms).
    pub since_ms: u64,
    /// The newest slot fired.
    pub last_run_ms: Option<u64>,
    pub last_job: Option<u64>,
    pub runs: u64,
    /// The last run that stood in for missed slots.
    pub last_missed: Option<Missed>,
    pub missed_total: u64,
    pub last_error: Option<String>,
    /// A fired job not yet known to be in its queue.
    pub pending: Option<u64>,
    /// The next slot to fire, if any.
    pub next_run_ms: Option<u64>,
}

impl Schedule {
    fn compute_next(&self) -> Option<u64> {
        let from = self
            .last_run_ms
            .map_or(self.since_ms, |last| last.max(self.since_ms));
        self.timing.next_after(from)
    }
}

/// What firing a schedule now would do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Due {
    pub slot_ms: u64,
    pub missed: Option<Missed>,
}

/// Every schedule, and which is due first.
#[derive(Debug, Default)]
pub struct ScheduleState {
    schedules: BTreeMap<String, Schedule>,
    /// (next run, name) of every schedule that has one: the earliest is first.
    by_next: BTreeSet<(u64, String)>,
    /// Fired jobs not yet seen in their queue, with their schedule.
    pending: HashMap<u64, String>,
}

impl ScheduleState {
    /// Applies one change. A spec that no longer parses (only in a damaged file)
    /// is skipped.
    pub fn apply(&mut self, change: &ScheduleChange) {
        match change {
            ScheduleChange::Set { name, spec, now_ms } => {
                let Ok(timing) = Timing::parse_unchecked(&spec.cron, &spec.timezone) else {
                    return;
                };
                let previous = self.take(name);
                let schedule = Schedule {
                    spec: spec.clone(),
                    timing,
                    since_ms: *now_ms,
                    last_run_ms: previous.as_ref().and_then(|p| p.last_run_ms),
                    last_job: previous.as_ref().and_then(|p| p.last_job),
                    runs: previous.as_ref().map_or(0, |p| p.runs),
                    last_missed: previous.as_ref().and_then(|p| p.last_missed),
                    missed_total: previous.as_ref().map_or(0, |p| p.missed_total),
                    last_error: None,
                    pending: previous.as_ref().and_then(|p| p.pending),
                    next_run_ms: None,
                };
                if let Some(job) = schedule.pending {
                    self.pending.insert(job, name.clone());
                }
                self.put(name.clone(), schedule);
            }
            ScheduleChange::Removed { name } => {
                if let Some(s) = self.take(name) {
                    if let Some(job) = s.pending {
                        self.pending.remove(&job);
                    }
                }
            }
            ScheduleChange::Fired {
                name,
                slot_ms,
                job_id,
                missed,
            } => {
                let Some(mut s) = self.take(name) else { return };
                s.last_run_ms = Some(s.last_run_ms.map_or(*slot_ms, |l| l.max(*slot_ms)));
                s.last_job = Some(*job_id);
                s.runs += 1;
                if let Some(m) = missed {
                    s.last_missed = Some(*m);
                    s.missed_total += m.count;
                }
                s.last_error = None;
                s.pending = Some(*job_id);
                self.pending.insert(*job_id, name.clone());
                self.put(name.clone(), s);
            }
            ScheduleChange::Failed {
                name,
                job_id,
                error,
            } => {
                self.job_settled(*job_id);
                if let Some(s) = self.schedules.get_mut(name) {
                    s.last_error = Some(error.clone());
                }
            }
        }
    }

    /// Job `id` is in its queue (or, live, its queue answered): no longer pending.
    /// Replay calls this for every job an `Enqueued` record holds.
    pub fn job_settled(&mut self, id: u64) {
        if self.pending.is_empty() {
            return;
        }
        if let Some(name) = self.pending.remove(&id) {
            if let Some(s) = self.schedules.get_mut(&name) {
                if s.pending == Some(id) {
                    s.pending = None;
                }
            }
        }
    }

    fn take(&mut self, name: &str) -> Option<Schedule> {
        let s = self.schedules.remove(name)?;
        if let Some(next) = s.next_run_ms {
            self.by_next.remove(&(next, name.to_owned()));
        }
        Some(s)
    }

    fn put(&mut self, name: String, mut s: Schedule) {
        s.next_run_ms = s.compute_next();
        if let Some(next) = s.next_run_ms {
            self.by_next.insert((next, name.clone()));
        }
        self.schedules.insert(name, s);
    }

    pub fn get(&self, name: &str) -> Option<&Schedule> {
        self.schedules.get(name)
    }

    pub fn len(&self) -> usize {
        self.schedules.len()
    }

    /// Up to `limit` schedules named after `after`, in name order.
    pub fn page(&self, after: Option<&str>, limit: usize) -> Vec<(&String, &Schedule)> {
        use std::ops::Bound;
        let from = after.map_or(Bound::Unbounded, Bound::Excluded);
        self.schedules
            .range::<str, _>((from, Bound::Unbounded))
            .take(limit)
            .collect()
    }

    /// The schedule due first, and when.
    pub fn earliest(&self) -> Option<(u64, &str)> {
        self.by_next.first().map(|(at, name)| (*at, name.as_str()))
    }

    /// Jobs fired but not known to be in their queue, with their schedule.
    pub fn pending(&self) -> Vec<(u64, String)> {
        let mut out: Vec<(u64, String)> =
            self.pending.iter().map(|(j, n)| (*j, n.clone())).collect();
        out.sort();
        out
    }

    /// What firing schedule `name` at `now_ms` would do: the latest slot due, and the
    /// slots before it it stands in for. `None` when nothing is due.
    pub fn due(&self, name: &str, now_ms: u64) -> Option<Due> {
        let s = self.schedules.get(name)?;
        let first = s.next_run_ms.filter(|next| *next <= now_ms)?;
        let (mut slot, mut count) = (first, 1u64);
        while let Some(next) = s
            .timing
            .next_after(slot)
            .filter(|n| *n <= now_ms && *n > slot)
        {
            slot = next;
            count += 1;
            if count > MAX_COUNTED_MISSED {
                slot = s.timing.latest_until(now_ms).unwrap_or(slot).max(slot);
                break;
            }
        }
        let missed = (count > 1).then_some(Missed {
            count: count - 1,
            since_ms: first,
        });
        Some(Due {
            slot_ms: slot,
            missed,
        })
    }

    /// The schedules for a snapshot. A pending job is left out: images are taken
    /// only between runs (the actor waits for each run's queue to answer), so any
    /// fired job is in its queue or refused by then.
    pub fn image(&self) -> Vec<ScheduleImage> {
        self.schedules
            .iter()
            .map(|(name, s)| ScheduleImage {
                name: name.clone(),
                spec: s.spec.clone(),
                since_ms: s.since_ms,
                last_run_ms: s.last_run_ms,
                last_job: s.last_job,
                runs: s.runs,
                last_missed: s.last_missed,
                missed_total: s.missed_total,
                last_error: s.last_error.clone(),
            })
            .collect()
    }

    /// The schedules a snapshot describes; specs that do not parse are skipped.
    pub fn from_image(image: &[ScheduleImage]) -> Self {
        let mut state = ScheduleState::default();
        for i in image {
            let Ok(timing) = Timing::parse_unchecked(&i.spec.cron, &i.spec.timezone) else {
                tracing::warn!(schedule = %i.name, "skipping a schedule whose cron or time zone no longer parses");
                continue;
            };
            let schedule = Schedule {
                spec: i.spec.clone(),
                timing,
                since_ms: i.since_ms,
                last_run_ms: i.last_run_ms,
                last_job: i.last_job,
                runs: i.runs,
                last_missed: i.last_missed,
                missed_total: i.missed_total,
                last_error: i.last_error.clone(),
                pending: None,
                next_run_ms: None,
            };
            state.put(i.name.clone(), schedule);
        }
        state
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(cron: &str, tz: &str) -> ScheduleSpec {
        ScheduleSpec {
            cron: cron.into(),
            timezone: tz.into(),
            queue: "q".into(),
            job: "{\"n\":1}".into(),
            priority: None,
            ttl_secs: None,
        }
    }

    fn set(state: &mut ScheduleState, cron: &str, now_ms: u64) {
        state.apply(&ScheduleChange::Set {
            name: "s".into(),
            spec: spec(cron, "UTC"),
            now_ms,
        });
    }

    /// Epoch ms of a UTC wall-clock time.
    fn utc(y: i32, mo: u32, d: u32, h: u32, mi: u32, s: u32) -> u64 {
        chrono::Utc
            .with_ymd_and_hms(y, mo, d, h, mi, s)
            .single()
            .map_or(0, |t| t.timestamp_millis() as u64)
    }

    #[test]
    fn next_run_honours_seconds_and_time_zones() {
        let every_5_min = Timing::parse("0 */5 * * * *", "UTC").ok();
        let t = utc(2026, 3, 1, 10, 2, 30);
        assert_eq!(
            every_5_min.and_then(|c| c.next_after(t)),
            Some(utc(2026, 3, 1, 10, 5, 0))
        );
        // 09:00 in Paris is 08:00 UTC in winter, 07:00 UTC in summer.
        let nine_paris = Timing::parse("0 0 9 * * *", "Europe/Paris").ok();
        assert_eq!(
            nine_paris
                .as_ref()
                .and_then(|c| c.next_after(utc(2026, 1, 10, 12, 0, 0))),
            Some(utc(2026, 1, 11, 8, 0, 0))
        );
        assert_eq!(
            nine_paris.and_then(|c| c.next_after(utc(2026, 7, 10, 12, 0, 0))),
            Some(utc(2026, 7, 11, 7, 0, 0))
        );
        // Five fields: minutes, second 0.
        let hourly = Timing::parse("30 * * * *", "UTC").ok();
        assert_eq!(
            hourly.and_then(|c| c.next_after(utc(2026, 3, 1, 10, 2, 30))),
            Some(utc(2026, 3, 1, 10, 30, 0))
        );
    }

    #[test]
    fn daylight_saving_changes_neither_skip_nor_double_a_daily_run() {
        // Paris springs forward on 2026-03-29 (02:00 -> 03:00) and falls back on
        // 2026-10-25 (03:00 -> 02:00): a 02:30 run happens once each of those days.
        let Ok(t) = Timing::parse("0 30 2 * * *", "Europe/Paris") else {
            panic!("parses")
        };
        let mut at = utc(2026, 3, 27, 12, 0, 0);
        let mut spring = Vec::new();
        for _ in 0..4 {
            at = t.next_after(at).unwrap_or(u64::MAX);
            spring.push(at);
        }
        let days: Vec<u64> = spring.iter().map(|ms| ms / 86_400_000).collect();
        assert_eq!(
            days,
            vec![days[0], days[0] + 1, days[0] + 2, days[0] + 3],
            "one run a day across the gap: {spring:?}"
        );
        // In the gap, the run comes at the first instant after it: 03:00 CEST.
        assert_eq!(spring[1], utc(2026, 3, 29, 1, 0, 0));
        let mut at = utc(2026, 10, 24, 12, 0, 0);
        let mut autumn = Vec::new();
        for _ in 0..3 {
            at = t.next_after(at).unwrap_or(u64::MAX);
            autumn.push(at);
        }
        let days: Vec<u64> = autumn.iter().map(|ms| ms / 86_400_000).collect();
        assert_eq!(days, vec![days[0], days[0] + 1, days[0] + 2], "{autumn:?}");
    }

    #[test]
    fn bad_cron_and_time_zones_are_refused_with_the_reason() {
        let e = Timing::parse("61 * * * * *", "UTC")
            .err()
            .unwrap_or_default();
        assert!(e.contains("invalid cron expression"), "{e}");
        let e = Timing::parse("* * * * * *", "Mars/Olympus")
            .err()
            .unwrap_or_default();
        assert!(e.contains("unknown time zone"), "{e}");
        let e = Timing::parse("0 0 0 30 2 *", "UTC")
            .err()
            .unwrap_or_default();
        assert!(e.contains("never matches"), "{e}");
    }

    #[test]
    fn catching_up_fires_once_for_every_missed_slot() {
        let mut s = ScheduleState::default();
        let t0 = utc(2026, 3, 1, 10, 0, 0);
        set(&mut s, "* * * * * *", t0);
        assert_eq!(s.earliest(), Some((t0 + 1000, "s")));
        assert_eq!(s.due("s", t0 + 500), None);
        // On time: one slot, nothing missed.
        assert_eq!(
            s.due("s", t0 + 1200),
            Some(Due {
                slot_ms: t0 + 1000,
                missed: None
            })
        );
        // Ten seconds late: the latest slot fires, standing in for nine.
        let due = s.due("s", t0 + 10_400);
        assert_eq!(
            due,
            Some(Due {
                slot_ms: t0 + 10_000,
                missed: Some(Missed {
                    count: 9,
                    since_ms: t0 + 1000
                })
            })
        );
        let due = due.unwrap_or(Due {
            slot_ms: 0,
            missed: None,
        });
        s.apply(&ScheduleChange::Fired {
            name: "s".into(),
            slot_ms: due.slot_ms,
            job_id: 7,
            missed: due.missed,
        });
        let sched = s.get("s").cloned();
        assert_eq!(sched.as_ref().map(|x| x.runs), Some(1));
        assert_eq!(
            sched.as_ref().and_then(|x| x.next_run_ms),
            Some(t0 + 11_000)
        );
        // Never twice for one slot: at the same instant nothing more is due.
        assert_eq!(s.due("s", t0 + 10_400), None);
        assert_eq!(s.due("s", t0 + 10_999), None);
    }

    #[test]
    fn a_long_outage_is_counted_up_to_the_cap_and_still_fires_the_latest_slot() {
        let mut s = ScheduleState::default();
        let t0 = utc(2026, 3, 1, 0, 0, 0);
        set(&mut s, "* * * * * *", t0);
        let now = t0 + 86_400_000 + 300;
        let due = s.due("s", now);
        assert_eq!(due.map(|d| d.slot_ms), Some(t0 + 86_400_000));
        assert_eq!(
            due.and_then(|d| d.missed).map(|m| m.count),
            Some(MAX_COUNTED_MISSED)
        );
    }

    #[test]
    fn replacing_keeps_the_last_run_so_no_slot_fires_twice() {
        let mut s = ScheduleState::default();
        let t0 = utc(2026, 3, 1, 10, 0, 0);
        set(&mut s, "* * * * * *", t0);
        s.apply(&ScheduleChange::Fired {
            name: "s".into(),
            slot_ms: t0 + 5000,
            job_id: 1,
            missed: None,
        });
        // Replaced with a time before that run (a clock set back): still after it.
        set(&mut s, "* * * * * *", t0 + 2000);
        assert_eq!(s.get("s").and_then(|x| x.next_run_ms), Some(t0 + 6000));
        assert_eq!(s.get("s").map(|x| x.runs), Some(1));
    }

    #[test]
    fn replay_leaves_pending_only_a_job_its_queue_never_got() {
        let mut s = ScheduleState::default();
        let t0 = utc(2026, 3, 1, 10, 0, 0);
        set(&mut s, "* * * * * *", t0);
        let fire = |slot: u64, job: u64| ScheduleChange::Fired {
            name: "s".into(),
            slot_ms: slot,
            job_id: job,
            missed: None,
        };
        s.apply(&fire(t0 + 1000, 10));
        s.job_settled(10);
        s.apply(&fire(t0 + 2000, 11));
        s.job_settled(99);
        assert_eq!(s.pending(), vec![(11, "s".to_owned())]);
        assert_eq!(s.get("s").and_then(|x| x.pending), Some(11));
        // A refusal settles it too.
        s.apply(&ScheduleChange::Failed {
            name: "s".into(),
            job_id: 11,
            error: "queue is full".into(),
        });
        assert!(s.pending().is_empty());
        assert_eq!(
            s.get("s").and_then(|x| x.last_error.clone()).as_deref(),
            Some("queue is full")
        );
    }

    #[test]
    fn image_round_trip_and_removal() {
        let mut s = ScheduleState::default();
        let t0 = utc(2026, 3, 1, 10, 0, 0);
        set(&mut s, "*/2 * * * * *", t0);
        s.apply(&ScheduleChange::Fired {
            name: "s".into(),
            slot_ms: t0 + 2000,
            job_id: 3,
            missed: Some(Missed {
                count: 2,
                since_ms: t0,
            }),
        });
        let back = ScheduleState::from_image(&s.image());
        assert_eq!(back.image(), s.image());
        assert_eq!(back.earliest(), Some((t0 + 4000, "s")));
        s.apply(&ScheduleChange::Removed { name: "s".into() });
        assert_eq!(s.len(), 0);
        assert_eq!(s.earliest(), None);
    }
}
