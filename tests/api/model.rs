//! A durability model test: random operations against the real binary (under
//! `fsync = "always"`, so every answer is a durable promise) and against a plain
//! reference model, with random SIGKILLs (some in the middle of requests), graceful
//! stops, and random single-byte damage to the newest log segment or snapshot.
//!
//! After every restart the server must either refuse to start, naming the damaged file
//! and a byte offset (the test then repairs the byte and the next start must hold
//! everything), or hold every acknowledged job: never a silently shorter history.
//!
//! The model, per queue: the ready jobs in order and the jobs on lease (by id). Every
//! job body is unique (`{"n":K}`), so jobs are told apart by body. A request whose
//! answer never arrived (cut by the kill) may or may not have happened: what it touched
//! is marked "maybe" and settled by what the restarted server holds, within what that
//! request could have done. Everything else is certain:
//!
//! - a job whose POST got its 201 is ready (in order among the others) until a fetch
//!   that got its 200 took it; a leased job stays leased (leases here last an hour)
//!   until its ack got a 204 or its failure report a 200 (back to the tail), except
//!   that a lease grant is answered before its fsync: until a later change got its
//!   answer (the log is written in order), a kill may lose the grant, and the job is
//!   then ready again;
//! - a job taken by a plain GET that got its 200, or acked with a 204, never comes back;
//! - nothing the model does not know of ever appears.
//!
//! `PRESQUE_MODEL_SEED` replays a run (the seed is printed first, and in every failure);
//! `PRESQUE_MODEL_CYCLES` changes its length. A replay makes the same operations, kills
//! and damage choices, but the snapshot timer and the kill run on the real clock: which
//! requests a kill cuts short, and where exactly the log rotated, can differ, so a
//! replay may hit a neighbouring byte. Failures print the file, offset and what the
//! byte belonged to.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use reqwest::{Client, StatusCode};
use serde_json::Value;

use crate::harness::*;

const QUEUES: [&str; 3] = ["m0", "m1", "m2"];
const WORKER: &str = "model-worker";
/// Long enough never to run out during a run: leases change only by the model's hand.
const LEASE_SECS: &str = "3600";
/// Snapshots (and so log rotation and pruning) every second while anything changes;
/// failure reports never send a job to the dead letters.
const CONFIG: &str = "[server]\ndefault_max_attempts = 1000\n\
                      [storage]\nfsync = \"always\"\nsnapshot_interval_secs = 1\n";
const DEFAULT_CYCLES: u64 = 20;

/// xorshift64*, seeded through splitmix64: deterministic, no dependency.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        let mut z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        Rng(z | 1)
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform enough in `0..n`.
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    fn percent(&mut self, p: u64) -> bool {
        self.below(100) < p
    }
}

/// What the model knows of a ready job.
#[derive(Debug, Clone, PartialEq)]
enum Fate {
    /// Acknowledged: it must be there.
    Certain,
    /// Its POST's answer was lost: there or not.
    MaybePosted,
    /// A plain GET whose answer was lost may have taken it: there or gone.
    MaybeTaken,
    /// A lease whose answer was lost may have taken it: there, or leased under an id
    /// the model has not seen.
    MaybeLeased,
    /// The failure report of lease `id` was lost: the job is either back here or still
    /// leased under `id`.
    MaybeReturned(u64),
}

#[derive(Debug, Clone)]
struct Entry {
    body: String,
    fate: Fate,
}

/// What the model knows of a leased job.
#[derive(Debug, Clone, PartialEq)]
enum LeaseFate {
    Certain,
    /// The ack's answer was lost.
    MaybeAcked,
    /// The failure report's answer was lost (see [`Fate::MaybeReturned`]).
    MaybeReturned,
}

#[derive(Debug, Clone)]
struct Lease {
    body: String,
    fate: LeaseFate,
    /// The delivery token the lease came with; unknown for a lease whose answer was
    /// lost (such a job is never acked or failed: it stays leased, as for a worker
    /// that never heard of it, since leases here outlast the run).
    token: Option<String>,
    /// Whether the grant is known to be on disk. A grant is answered before its
    /// fsync (README, *Durability*), so a kill may lose it (the job is then ready
    /// again) until a later change is acknowledged: the log is written in order.
    confirmed: bool,
}

#[derive(Debug, Default, Clone)]
struct QueueModel {
    ready: Vec<Entry>,
    leased: BTreeMap<u64, Lease>,
}

#[derive(Default)]
struct Model {
    queues: BTreeMap<String, QueueModel>,
    /// Bodies that must never come back, with how they went.
    consumed: HashMap<String, String>,
    next_n: u64,
    /// Replies being applied come from a burst of concurrent requests: none of them
    /// is known to have been logged after another's answer.
    in_burst: bool,
}

#[derive(Debug, Clone)]
enum Op {
    Post {
        queue: String,
        body: String,
    },
    PostBatch {
        queue: String,
        bodies: Vec<String>,
    },
    Get {
        queue: String,
    },
    GetBatch {
        queue: String,
        size: usize,
    },
    Lease {
        queue: String,
    },
    LeaseBatch {
        queue: String,
        size: usize,
    },
    Ack {
        queue: String,
        id: u64,
        token: String,
    },
    Fail {
        queue: String,
        id: u64,
        token: String,
    },
}

/// An answer that arrived in full.
#[derive(Debug)]
struct Reply {
    status: StatusCode,
    job_ids: Option<String>,
    tokens: Option<String>,
    body: String,
}

fn parse_ids(reply: &Reply) -> Result<Vec<u64>, String> {
    let raw = reply
        .job_ids
        .as_deref()
        .ok_or_else(|| format!("a lease answered without X-presque-jobid: {reply:?}"))?;
    raw.split(',')
        .map(|id| id.trim().parse::<u64>())
        .collect::<Result<_, _>>()
        .map_err(|e| format!("bad X-presque-jobid {raw:?}: {e}"))
}

fn parse_tokens(reply: &Reply, n: usize) -> Result<Vec<String>, String> {
    let raw = reply
        .tokens
        .as_deref()
        .ok_or_else(|| format!("a lease answered without X-presque-lease: {reply:?}"))?;
    let tokens: Vec<String> = raw.split(',').map(|t| t.trim().to_owned()).collect();
    if tokens.len() != n {
        return Err(format!("{n} jobs leased with tokens {raw:?}"));
    }
    Ok(tokens)
}

fn parse_texts(reply: &Reply) -> Result<Vec<String>, String> {
    serde_json::from_str(&reply.body)
        .map_err(|e| format!("batch answer is not an array of strings ({e}): {reply:?}"))
}

impl Model {
    fn queue(&mut self, name: &str) -> &mut QueueModel {
        self.queues.entry(name.to_owned()).or_default()
    }

    fn new_body(&mut self) -> String {
        self.next_n += 1;
        format!("{{\"n\":{}}}", self.next_n)
    }

    /// A random operation; `burst` ops are the ones a kill may cut short, so they stay
    /// within what the model can settle after the restart (one job per lease). It
    /// draws the same numbers whatever the model holds, so that a replay that sees
    /// other requests cut short still makes the same later choices.
    fn choose(&mut self, rng: &mut Rng, queue: &str, burst: bool) -> Op {
        let queue = queue.to_owned();
        let leased: Vec<(u64, String)> = self
            .queue(&queue)
            .leased
            .iter()
            .filter_map(|(id, l)| Some((*id, l.token.clone()?)))
            .collect();
        let roll = rng.below(100);
        let (count, size, lease_size, pick) = (
            2 + rng.below(4),
            1 + rng.below(4) as usize,
            1 + rng.below(3) as usize,
            rng.next(),
        );
        let lease_id = || leased[(pick % leased.len().max(1) as u64) as usize].clone();
        match roll {
            0..=29 => Op::Post {
                body: self.new_body(),
                queue,
            },
            30..=39 => {
                let bodies = (0..count).map(|_| self.new_body()).collect();
                Op::PostBatch { queue, bodies }
            }
            40..=54 => Op::Get { queue },
            55..=59 => Op::GetBatch { queue, size },
            60..=64 if !burst => Op::LeaseBatch {
                queue,
                size: lease_size,
            },
            75..=89 if !leased.is_empty() => {
                let (id, token) = lease_id();
                Op::Ack { id, token, queue }
            }
            90..=99 if !leased.is_empty() => {
                let (id, token) = lease_id();
                Op::Fail { id, token, queue }
            }
            _ => Op::Lease { queue },
        }
    }

    /// Applies an operation's outcome: `None` when its answer never arrived.
    fn apply(&mut self, op: &Op, reply: Option<&Reply>) -> Result<(), String> {
        self.apply_reply(op, reply)?;
        if !self.in_burst && reply.is_some_and(|r| acknowledged_change(op, r)) {
            for q in self.queues.values_mut() {
                for lease in q.leased.values_mut() {
                    lease.confirmed = true;
                }
            }
        }
        Ok(())
    }

    fn apply_reply(&mut self, op: &Op, reply: Option<&Reply>) -> Result<(), String> {
        let unexpected = |reply: &Reply| Err(format!("unexpected answer to {op:?}: {reply:?}"));
        match (op, reply) {
            (Op::Post { queue, body }, reply) => {
                let fate = match reply {
                    None => Fate::MaybePosted,
                    Some(r) if r.status == StatusCode::CREATED => Fate::Certain,
                    Some(r) => return unexpected(r),
                };
                self.queue(queue).ready.push(Entry {
                    body: body.clone(),
                    fate,
                });
            }
            (Op::PostBatch { queue, bodies }, reply) => {
                let fate = match reply {
                    None => Fate::MaybePosted,
                    Some(r) if r.status == StatusCode::CREATED => Fate::Certain,
                    Some(r) => return unexpected(r),
                };
                let q = self.queue(queue);
                for body in bodies {
                    q.ready.push(Entry {
                        body: body.clone(),
                        fate: fate.clone(),
                    });
                }
            }
            (Op::Get { queue } | Op::Lease { queue }, None) => {
                let fate = if matches!(op, Op::Get { .. }) {
                    Fate::MaybeTaken
                } else {
                    Fate::MaybeLeased
                };
                if let Some(head) = self.queue(queue).ready.first_mut() {
                    head.fate = fate;
                }
            }
            (Op::GetBatch { queue, size }, None) => {
                for entry in self.queue(queue).ready.iter_mut().take(*size) {
                    entry.fate = Fate::MaybeTaken;
                }
            }
            (Op::LeaseBatch { .. }, None) => {
                return Err(format!("{op:?} lost its answer outside a kill"));
            }
            (Op::Get { queue }, Some(r)) => {
                if r.status == StatusCode::NOT_FOUND {
                    return self.expect_empty(queue, r);
                }
                if r.status != StatusCode::OK {
                    return unexpected(r);
                }
                self.take(
                    queue,
                    std::slice::from_ref(&r.body),
                    "fetched by a plain GET",
                )?;
            }
            (Op::GetBatch { queue, .. } | Op::LeaseBatch { queue, .. }, Some(r))
                if r.status == StatusCode::NOT_FOUND =>
            {
                return self.expect_empty(queue, r);
            }
            (Op::GetBatch { queue, .. }, Some(r)) => {
                if r.status != StatusCode::OK {
                    return unexpected(r);
                }
                let texts = parse_texts(r)?;
                if texts.is_empty() {
                    return self.expect_empty(queue, r);
                }
                self.take(queue, &texts, "fetched by a plain batch GET")?;
            }
            (Op::Lease { queue }, Some(r)) => {
                if r.status == StatusCode::NOT_FOUND {
                    return self.expect_empty(queue, r);
                }
                if r.status != StatusCode::OK {
                    return unexpected(r);
                }
                let ids = parse_ids(r)?;
                let tokens = parse_tokens(r, ids.len())?;
                self.lease(queue, &ids, &tokens, std::slice::from_ref(&r.body))?;
            }
            (Op::LeaseBatch { queue, .. }, Some(r)) => {
                if r.status != StatusCode::OK {
                    return unexpected(r);
                }
                let texts = parse_texts(r)?;
                if texts.is_empty() {
                    return self.expect_empty(queue, r);
                }
                let ids = parse_ids(r)?;
                let tokens = parse_tokens(r, ids.len())?;
                self.lease(queue, &ids, &tokens, &texts)?;
            }
            (Op::Ack { queue, id, .. }, None) => {
                if let Some(lease) = self.queue(queue).leased.get_mut(id) {
                    lease.fate = LeaseFate::MaybeAcked;
                }
            }
            (Op::Ack { queue, id, .. }, Some(r)) => {
                if r.status != StatusCode::NO_CONTENT {
                    return unexpected(r);
                }
                let lease = self.queue(queue).leased.remove(id);
                let lease = lease.ok_or_else(|| format!("acked job {id} was not leased"))?;
                self.consumed
                    .insert(lease.body, format!("acked as {queue}/{id}"));
            }
            (Op::Fail { queue, id, .. }, None) => {
                let q = self.queue(queue);
                if let Some(lease) = q.leased.get_mut(id) {
                    lease.fate = LeaseFate::MaybeReturned;
                    let body = lease.body.clone();
                    q.ready.push(Entry {
                        body,
                        fate: Fate::MaybeReturned(*id),
                    });
                }
            }
            (Op::Fail { queue, id, .. }, Some(r)) => {
                if r.status != StatusCode::OK {
                    return unexpected(r);
                }
                let q = self.queue(queue);
                let lease = q.leased.remove(id);
                let lease = lease.ok_or_else(|| format!("failed job {id} was not leased"))?;
                q.ready.push(Entry {
                    body: lease.body,
                    fate: Fate::Certain,
                });
            }
        }
        Ok(())
    }

    fn expect_empty(&mut self, queue: &str, reply: &Reply) -> Result<(), String> {
        let q = self.queue(queue);
        if q.ready.is_empty() {
            Ok(())
        } else {
            Err(format!(
                "{queue}: the server says there is no job ({reply:?}) but the model holds {} ready, first {}",
                q.ready.len(),
                q.ready[0].body
            ))
        }
    }

    /// Removes the jobs a fetch handed out, which must be the model's head, in order.
    fn take(&mut self, queue: &str, bodies: &[String], how: &str) -> Result<(), String> {
        let q = self.queue(queue);
        let head: Vec<&str> = q
            .ready
            .iter()
            .take(bodies.len())
            .map(|e| e.body.as_str())
            .collect();
        if head != bodies {
            return Err(format!(
                "{queue}: the server handed out {bodies:?}, the model's head is {head:?}"
            ));
        }
        q.ready.drain(..bodies.len());
        for body in bodies {
            self.consumed
                .insert(body.clone(), format!("{how} from {queue}"));
        }
        Ok(())
    }

    fn lease(
        &mut self,
        queue: &str,
        ids: &[u64],
        tokens: &[String],
        bodies: &[String],
    ) -> Result<(), String> {
        if ids.len() != bodies.len() {
            return Err(format!("{queue}: lease ids {ids:?} for bodies {bodies:?}"));
        }
        let q = self.queue(queue);
        let head: Vec<&str> = q
            .ready
            .iter()
            .take(bodies.len())
            .map(|e| e.body.as_str())
            .collect();
        if head != bodies {
            return Err(format!(
                "{queue}: the server leased {bodies:?}, the model's head is {head:?}"
            ));
        }
        q.ready.drain(..bodies.len());
        for ((id, body), token) in ids.iter().zip(bodies).zip(tokens) {
            let lease = Lease {
                body: body.clone(),
                fate: LeaseFate::Certain,
                token: Some(token.clone()),
                confirmed: false,
            };
            if q.leased.insert(*id, lease).is_some() {
                return Err(format!("{queue}: job id {id} leased twice"));
            }
        }
        Ok(())
    }

    /// Checks what the server holds against what the model allows, then takes it as
    /// the new certain state. Returns every problem found.
    fn reconcile(&mut self, seen: &BTreeMap<String, SeenQueue>) -> Result<(), Vec<String>> {
        let mut problems = Vec::new();
        let mut settled = BTreeMap::new();
        for name in QUEUES {
            let model = self.queues.get(name).cloned().unwrap_or_default();
            let empty = SeenQueue::default();
            let server = seen.get(name).unwrap_or(&empty);
            match self.reconcile_queue(name, &model, server) {
                Ok(q) => {
                    settled.insert(name.to_owned(), q);
                }
                Err(mut found) => problems.append(&mut found),
            }
        }
        if problems.is_empty() {
            // Jobs a request cut short by the kill did take (or ack) are gone for
            // good: from now on they must never come back either.
            let kept: HashSet<&str> = settled
                .values()
                .flat_map(|q: &QueueModel| {
                    q.ready
                        .iter()
                        .map(|e| e.body.as_str())
                        .chain(q.leased.values().map(|l| l.body.as_str()))
                })
                .collect();
            let mut gone = Vec::new();
            for (name, q) in &self.queues {
                let bodies = q
                    .ready
                    .iter()
                    .filter(|e| e.fate == Fate::MaybeTaken)
                    .map(|e| &e.body)
                    .chain(q.leased.values().map(|l| &l.body));
                for body in bodies {
                    if !kept.contains(body.as_str()) {
                        gone.push((
                            body.clone(),
                            format!("taken or acked from {name} by a request the kill cut short"),
                        ));
                    }
                }
            }
            self.consumed.extend(gone);
            self.queues = settled;
            Ok(())
        } else {
            Err(problems)
        }
    }

    fn reconcile_queue(
        &self,
        name: &str,
        model: &QueueModel,
        server: &SeenQueue,
    ) -> Result<QueueModel, Vec<String>> {
        let mut problems = Vec::new();
        let index: HashMap<&str, usize> = model
            .ready
            .iter()
            .enumerate()
            .map(|(i, e)| (e.body.as_str(), i))
            .collect();
        let leased_bodies: HashMap<&str, u64> = model
            .leased
            .iter()
            .map(|(id, l)| (l.body.as_str(), *id))
            .collect();
        if server.job_count != server.ready.len() {
            problems.push(format!(
                "{name}: /j says job_count {} but /status lists {} ready jobs",
                server.job_count,
                server.ready.len()
            ));
        }
        let mut present = HashSet::new();
        let mut lost_grants = HashSet::new();
        let mut last: Option<(usize, &str)> = None;
        for body in &server.ready {
            let Some(&i) = index.get(body.as_str()) else {
                // A grant the kill caught before it was on disk: ready again.
                if let Some(id) = leased_bodies.get(body.as_str()) {
                    if model.leased.get(id).is_some_and(|l| !l.confirmed) {
                        lost_grants.insert(*id);
                        continue;
                    }
                }
                let why = if let Some(how) = self.consumed.get(body) {
                    format!("was {how}")
                } else if let Some(id) = leased_bodies.get(body.as_str()) {
                    format!("is on lease as id {id}")
                } else {
                    "is unknown to the model".to_owned()
                };
                problems.push(format!("{name}: ready job {body} came back, yet it {why}"));
                continue;
            };
            if !present.insert(i) {
                problems.push(format!("{name}: job {body} is ready twice"));
                continue;
            }
            if let Some((before, before_body)) = last {
                if before > i {
                    problems.push(format!(
                        "{name}: order broken: {body} is ready after {before_body}, but it came first"
                    ));
                }
            }
            last = Some((i, body));
        }
        let mut unseen_leases = Vec::new();
        for (i, entry) in model.ready.iter().enumerate() {
            let here = present.contains(&i);
            match &entry.fate {
                Fate::Certain if !here => problems.push(format!(
                    "{name}: acknowledged job {} is missing (model position {i} of {})",
                    entry.body,
                    model.ready.len()
                )),
                Fate::MaybeLeased if !here => unseen_leases.push(entry.body.clone()),
                Fate::MaybeReturned(id) => {
                    let still_leased = server.leases.contains(id);
                    if here == still_leased {
                        problems.push(format!(
                            "{name}: job {} (lease {id}, failure report cut short) is {}",
                            entry.body,
                            if here {
                                "both ready and leased"
                            } else {
                                "neither ready nor leased"
                            }
                        ));
                    }
                }
                _ => {}
            }
        }
        for (id, lease) in &model.leased {
            let still = server.leases.contains(id);
            if lease.fate == LeaseFate::Certain && !still && !lost_grants.contains(id) {
                problems.push(format!(
                    "{name}: leased job {id} ({}) is no longer leased",
                    lease.body
                ));
            }
        }
        let extra: Vec<u64> = server
            .leases
            .iter()
            .filter(|id| !model.leased.contains_key(id))
            .copied()
            .collect();
        if extra.len() != unseen_leases.len() {
            problems.push(format!(
                "{name}: leases the model does not know: {extra:?}; jobs whose lease was cut short and are not ready: {unseen_leases:?}"
            ));
        }
        if !problems.is_empty() {
            return Err(problems);
        }
        let mut settled = QueueModel {
            ready: server
                .ready
                .iter()
                .map(|body| Entry {
                    body: body.clone(),
                    fate: Fate::Certain,
                })
                .collect(),
            leased: BTreeMap::new(),
        };
        for id in &server.leases {
            let (body, token) = match model.leased.get(id) {
                Some(lease) => (lease.body.clone(), lease.token.clone()),
                // At most one per queue: a burst leases one job per queue.
                None => (unseen_leases[0].clone(), None),
            };
            settled.leased.insert(
                *id,
                Lease {
                    body,
                    fate: LeaseFate::Certain,
                    token,
                    confirmed: true,
                },
            );
        }
        Ok(settled)
    }
}

/// Whether `reply` acknowledges a change that waited for the disk (under `always`):
/// every record logged before it, lease grants included, is then on disk too.
fn acknowledged_change(op: &Op, reply: &Reply) -> bool {
    match op {
        Op::Post { .. } | Op::PostBatch { .. } => reply.status == StatusCode::CREATED,
        Op::Get { .. } => reply.status == StatusCode::OK,
        Op::GetBatch { .. } => {
            reply.status == StatusCode::OK && parse_texts(reply).is_ok_and(|t| !t.is_empty())
        }
        Op::Ack { .. } => reply.status == StatusCode::NO_CONTENT,
        Op::Fail { .. } => reply.status == StatusCode::OK,
        Op::Lease { .. } | Op::LeaseBatch { .. } => false,
    }
}

/// One queue as the server shows it.
#[derive(Debug, Default)]
struct SeenQueue {
    ready: Vec<String>,
    job_count: usize,
    leases: BTreeSet<u64>,
}

fn client() -> Client {
    Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .expect("client")
}

async fn send(client: &Client, server: &str, op: &Op) -> Result<Reply, reqwest::Error> {
    let url = |path: String| format!("{server}{path}");
    let request = match op {
        Op::Post { queue, body } => client
            .post(url(format!("/q/{queue}")))
            .header("Content-Type", "application/json")
            .body(body.clone()),
        Op::PostBatch { queue, bodies } => client
            .post(url(format!("/qb/{queue}")))
            .header("Content-Type", "application/json")
            .body(format!("{{\"jobs\":[{}]}}", bodies.join(","))),
        Op::Get { queue } => client.get(url(format!("/q/{queue}"))),
        Op::GetBatch { queue, size } => client.get(url(format!("/qb/{queue}?batch_size={size}"))),
        Op::Lease { queue } => client.get(url(format!("/q/{queue}?lease={LEASE_SECS}"))),
        Op::LeaseBatch { queue, size } => client.get(url(format!(
            "/qb/{queue}?batch_size={size}&lease={LEASE_SECS}"
        ))),
        Op::Ack { queue, id, token } => client
            .delete(url(format!("/q/{queue}/{id}")))
            .header("X-presque-lease", token),
        Op::Fail { queue, id, token } => client
            .put(url(format!("/q/{queue}/{id}")))
            .header("X-presque-lease", token),
    };
    let response = request.header("X-presque-workerid", WORKER).send().await?;
    let status = response.status();
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let (job_ids, tokens) = (header("X-presque-jobid"), header("X-presque-lease"));
    let body = response.text().await?;
    Ok(Reply {
        status,
        job_ids,
        tokens,
        body,
    })
}

async fn get_json(client: &Client, server: &ServerProcess, path: &str) -> Value {
    let r = client
        .get(server.url(path))
        .send()
        .await
        .unwrap_or_else(|e| panic!("GET {path}: {e}"));
    let status = r.status();
    let text = r.text().await.expect("body");
    assert_eq!(status, StatusCode::OK, "GET {path}: {text}");
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("GET {path}: not JSON ({e}): {text}"))
}

/// Registers the model's worker, so `/workers` lists the jobs it holds on lease.
async fn register(client: &Client, server: &ServerProcess) {
    let r = client
        .post(server.url(&format!("/w/{}", QUEUES[0])))
        .header("X-presque-workerid", WORKER)
        .send()
        .await
        .expect("register");
    assert_eq!(r.status(), StatusCode::CREATED);
}

/// Everything the server holds for the model's queues.
async fn observe(client: &Client, server: &ServerProcess) -> BTreeMap<String, SeenQueue> {
    let mut seen: BTreeMap<String, SeenQueue> = BTreeMap::new();
    for name in QUEUES {
        let status = get_json(client, server, &format!("/status/{name}?with_desc=1")).await;
        let ready = status["jobs"]
            .as_array()
            .unwrap_or_else(|| panic!("/status/{name}: {status}"))
            .iter()
            .map(|j| j.as_str().expect("job text").to_owned())
            .collect();
        let counters = get_json(client, server, &format!("/j/{name}")).await;
        let job_count = counters["job_count"].as_u64().expect("job_count") as usize;
        seen.insert(
            name.to_owned(),
            SeenQueue {
                ready,
                job_count,
                leases: BTreeSet::new(),
            },
        );
    }
    let workers = get_json(client, server, "/workers").await;
    let listed = workers["workers"].as_array().expect("workers");
    let ours = listed
        .iter()
        .find(|w| w["worker_id"] == WORKER)
        .unwrap_or_else(|| panic!("/workers does not list {WORKER}: {workers}"));
    for job in ours["jobs"].as_array().expect("jobs") {
        let queue = job["queue"].as_str().expect("queue");
        let id = job["id"].as_u64().expect("id");
        if let Some(q) = seen.get_mut(queue) {
            q.leases.insert(id);
        }
    }
    seen
}

/// Starts the binary on the node's data directory: the server, or its exit code and
/// everything it printed when it refused.
fn try_start(dir: &Path) -> Result<ServerProcess, (Option<i32>, String)> {
    let args = [&NODE_ARGS[..], &["--fsync", "always"]].concat();
    try_start_binary(dir, &args, &[], |_| {})
}

/// The server between starts and stops (killed on drop, like any [`ServerProcess`], if
/// the test fails while it runs).
struct Running(Option<ServerProcess>);

impl Running {
    fn get(&self) -> &ServerProcess {
        self.0.as_ref().expect("the server is running")
    }

    fn take(&mut self) -> ServerProcess {
        self.0.take().expect("the server is running")
    }
}

/// One flipped byte, and what it hit.
#[derive(Debug)]
struct Damage {
    path: PathBuf,
    offset: usize,
    original: u8,
    damaged: u8,
    len: usize,
    hit: String,
}

impl std::fmt::Display for Damage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "byte {} of {} ({} bytes) changed {:#04x} -> {:#04x}: {}",
            self.offset,
            self.path.file_name().unwrap_or_default().to_string_lossy(),
            self.len,
            self.original,
            self.damaged,
            self.hit
        )
    }
}

/// The newest file whose name starts with `prefix`, if any.
fn newest(data: &Path, prefix: &str) -> Option<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(data)
        .ok()?
        .map(|e| e.expect("dir entry").path())
        .filter(|p| {
            let name = p.file_name().unwrap_or_default().to_string_lossy();
            name.starts_with(prefix) && name.ends_with(".presque")
        })
        .collect();
    files.sort();
    files.pop()
}

/// Where `offset` falls in a log segment: header, or which record and field.
fn log_spot(data: &[u8], offset: usize) -> String {
    if offset < 20 {
        let field = match offset {
            0..=7 => "magic",
            8..=11 => "format version",
            _ => "segment number",
        };
        return format!("log segment header ({field})");
    }
    let mut frames = Vec::new();
    let mut at = 20;
    while at < data.len() {
        // Frames: length, payload checksum, header checksum (12 bytes), payload.
        let end = if at + 12 <= data.len() {
            let len = u32::from_le_bytes(data[at..at + 4].try_into().expect("4 bytes")) as usize;
            at + 12 + len
        } else {
            data.len()
        };
        frames.push((at, end));
        at = end;
    }
    let count = frames.len();
    for (i, (start, end)) in frames.into_iter().enumerate() {
        if offset < end {
            let field = match offset - start {
                0..=3 => "length field",
                4..=7 => "payload checksum field",
                8..=11 => "header checksum field",
                _ => "payload",
            };
            let which = if i + 1 == count {
                "the last record"
            } else {
                "not the last record"
            };
            return format!(
                "record {} of {count} (bytes {start}..{end}, {which}), {field}",
                i + 1
            );
        }
    }
    "past the last record".to_owned()
}

fn snapshot_spot(offset: usize) -> String {
    let field = match offset {
        0..=7 => "header (magic)",
        8..=11 => "header (format version)",
        12..=19 => "header (payload length)",
        20..=23 => "header (payload checksum)",
        _ => "CBOR payload",
    };
    format!("snapshot {field}")
}

/// `draw` scaled to `0..n`: the same draw lands at the same relative place in files
/// of different sizes (the snapshot timer runs on the wall clock, so a replay's files
/// may differ a little).
fn scaled(draw: u64, n: usize) -> usize {
    ((u128::from(draw) * n as u128) >> 64) as usize
}

/// Flips one byte past byte 0 of the newest log segment or the newest snapshot
/// (`draws`: which kind, where, and the XOR mask).
fn damage_newest(draws: [u64; 3], data: &Path) -> Option<Damage> {
    let mut kinds = ["log-", "snapshot-"];
    if draws[0] % 2 == 1 {
        kinds.reverse();
    }
    let (path, mut bytes) = kinds.iter().find_map(|kind| {
        let path = newest(data, kind)?;
        let bytes = std::fs::read(&path).expect("read file to damage");
        (bytes.len() > 1).then_some((path, bytes))
    })?;
    let offset = 1 + scaled(draws[1], bytes.len() - 1);
    let flip = 1 + (draws[2] % 255) as u8;
    let original = bytes[offset];
    let hit = if path
        .file_name()
        .unwrap_or_default()
        .to_string_lossy()
        .starts_with("log-")
    {
        log_spot(&bytes, offset)
    } else {
        snapshot_spot(offset)
    };
    bytes[offset] ^= flip;
    std::fs::write(&path, &bytes).expect("write damaged file");
    Some(Damage {
        damaged: bytes[offset],
        len: bytes.len(),
        path,
        offset,
        original,
        hit,
    })
}

/// Puts the original byte back if the file still holds the damaged one there.
fn repair(damage: &Damage) -> bool {
    let Ok(mut bytes) = std::fs::read(&damage.path) else {
        return false;
    };
    if bytes.get(damage.offset) != Some(&damage.damaged) {
        return false;
    }
    bytes[damage.offset] = damage.original;
    std::fs::write(&damage.path, &bytes).expect("repair damaged file");
    true
}

/// Whether `text` gives a byte offset: "byte N" or "bytes N..M".
fn names_an_offset(text: &str) -> bool {
    ["byte ", "bytes "].iter().any(|word| {
        text.match_indices(word).any(|(at, _)| {
            text[at + word.len()..]
                .chars()
                .next()
                .is_some_and(|c| c.is_ascii_digit())
        })
    })
}

/// The problems found, one a line, at most 40 of them.
fn listing(problems: &[String]) -> String {
    let mut lines: Vec<&str> = problems.iter().take(40).map(String::as_str).collect();
    let more = format!("... and {} more", problems.len().saturating_sub(40));
    if problems.len() > 40 {
        lines.push(&more);
    }
    lines.join("\n  ")
}

fn summary(model: &Model) -> String {
    model
        .queues
        .iter()
        .map(|(name, q)| format!("{name}: {} ready, {} leased", q.ready.len(), q.leased.len()))
        .collect::<Vec<_>>()
        .join("; ")
}

#[actix_web::test]
async fn random_operations_kills_and_damage_never_silently_lose_acknowledged_jobs() {
    let seed = std::env::var("PRESQUE_MODEL_SEED")
        .ok()
        .map(|s| {
            s.trim()
                .parse::<u64>()
                .expect("PRESQUE_MODEL_SEED is a u64")
        })
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .expect("clock")
                .as_nanos() as u64
        });
    let cycles = std::env::var("PRESQUE_MODEL_CYCLES")
        .ok()
        .map(|s| {
            s.trim()
                .parse::<u64>()
                .expect("PRESQUE_MODEL_CYCLES is a u64")
        })
        .unwrap_or(DEFAULT_CYCLES);
    eprintln!(
        "durability model: seed {seed} (replay with PRESQUE_MODEL_SEED={seed}), {cycles} cycles"
    );
    let started = Instant::now();
    let mut rng = Rng::new(seed);
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(dir.path().join("presque.toml"), CONFIG).expect("config");
    let data = dir.path().join("data");

    let mut model = Model::default();
    let mut server = Running(Some(try_start(dir.path()).unwrap_or_else(
        |(code, stderr)| panic!("first start failed ({code:?}):\n{stderr}"),
    )));
    let mut http = client();
    register(&http, server.get()).await;

    for cycle in 1..=cycles {
        let fail = |what: String| -> ! {
            panic!(
                "durability model, seed {seed} (PRESQUE_MODEL_SEED={seed}), cycle {cycle}: {what}"
            )
        };
        let ops = 50 + rng.below(151);
        for _ in 0..ops {
            if rng.percent(2) {
                // Let the snapshot timer run: snapshots, rotation and pruning happen
                // between operations.
                tokio::time::sleep(Duration::from_millis(150 + rng.below(450))).await;
            }
            if rng.percent(3) {
                let seen = observe(&http, server.get()).await;
                if let Err(problems) = model.reconcile(&seen) {
                    fail(format!(
                        "the running server disagrees with the model:\n  {}",
                        listing(&problems)
                    ));
                }
            }
            let queue = QUEUES[rng.below(QUEUES.len() as u64) as usize];
            let op = model.choose(&mut rng, queue, false);
            let reply = send(&http, &server.get().address, &op)
                .await
                .unwrap_or_else(|e| fail(format!("{op:?} failed with no kill: {e}")));
            if let Err(e) = model.apply(&op, Some(&reply)) {
                fail(e);
            }
        }

        let killed = rng.percent(70);
        if killed {
            // A burst of requests (one per queue at most, so their order does not
            // matter) with a SIGKILL somewhere among them.
            let mut burst = Vec::new();
            for queue in QUEUES {
                if rng.percent(60) {
                    burst.push(model.choose(&mut rng, queue, true));
                }
            }
            let pid = server.get().child.id() as libc::pid_t;
            let delay = Duration::from_micros(rng.below(2500));
            let requests = futures_util::future::join_all(
                burst
                    .iter()
                    .map(|op| send(&http, &server.get().address, op)),
            );
            let kill = async move {
                tokio::time::sleep(delay).await;
                // SAFETY: a plain signal to our own child process.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            };
            let (replies, ()) = tokio::join!(requests, kill);
            server.take().kill9();
            let mut lost = 0;
            model.in_burst = true;
            for (op, reply) in burst.iter().zip(&replies) {
                let reply = reply.as_ref().ok();
                lost += usize::from(reply.is_none());
                if let Err(e) = model.apply(op, reply) {
                    fail(e);
                }
            }
            model.in_burst = false;
            eprintln!(
                "cycle {cycle}: {ops} ops, SIGKILL after {delay:?} with {} requests in flight ({lost} cut short)",
                burst.len()
            );
        } else {
            server.take().stop();
            eprintln!("cycle {cycle}: {ops} ops, graceful stop");
        }

        let damage_roll = rng.below(3);
        let draws = [rng.next(), rng.next(), rng.next()];
        let damage = if damage_roll == 0 {
            damage_newest(draws, &data)
        } else {
            None
        };
        if let Some(d) = &damage {
            eprintln!("cycle {cycle}: damaged {d}");
        }
        let described = damage
            .as_ref()
            .map_or_else(|| "no damage".to_owned(), |d| format!("damage: {d}"));

        let up = match try_start(dir.path()) {
            Ok(server) => server,
            Err((code, stderr)) => {
                let Some(d) = &damage else {
                    fail(format!(
                        "the server refused to start with no damage done (exit {code:?}):\n{stderr}"
                    ));
                };
                let name = d.path.file_name().unwrap_or_default().to_string_lossy();
                if code != Some(1) || stderr.contains("panicked") {
                    fail(format!(
                        "{described}\nbad refusal (exit {code:?}):\n{stderr}"
                    ));
                }
                let about: Vec<&str> = stderr.lines().filter(|l| l.contains(&*name)).collect();
                if about.is_empty() {
                    fail(format!(
                        "{described}\nthe refusal does not name {name}:\n{stderr}"
                    ));
                }
                if !about.iter().any(|l| names_an_offset(l)) {
                    fail(format!(
                        "{described}\nthe refusal names {name} but no byte offset:\n{stderr}"
                    ));
                }
                eprintln!("cycle {cycle}: refused to start, naming the file and offset; repairing");
                assert!(repair(d), "the refused start changed the damaged byte: {d}");
                try_start(dir.path()).unwrap_or_else(|(code, stderr)| {
                    fail(format!(
                        "{described}\nrepaired, yet the server refuses to start (exit {code:?}):\n{stderr}"
                    ))
                })
            }
        };
        let startup_lines = up.startup_lines.join("\n");
        server = Running(Some(up));
        http = client();
        register(&http, server.get()).await;
        let seen = observe(&http, server.get()).await;
        let before = summary(&model);
        if let Err(problems) = model.reconcile(&seen) {
            fail(format!(
                "{}, {described}\nafter the restart the server holds less or other than acknowledged (a silently shorter history):\n  {}\nmodel before: {before}\nserver start-up said:\n{}",
                if killed { "SIGKILL" } else { "graceful stop" },
                listing(&problems),
                startup_lines
            ));
        }
        if let Some(d) = &damage {
            // A damage recovery survived without loss (an older snapshot stood in,
            // or a torn tail held nothing acknowledged): put the byte back so the
            // next cycle's damage is the only one.
            repair(d);
        }
        eprintln!("cycle {cycle}: restarted and verified: {}", summary(&model));
    }
    server.take().stop();
    eprintln!(
        "durability model: seed {seed}: {cycles} cycles passed in {:?}",
        started.elapsed()
    );
}
