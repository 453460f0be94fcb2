// The presque dashboard: polls the server's JSON routes and draws them. Every value
// from the server goes into the page through textContent, never as HTML: queue
// names and job bodies are whatever clients posted.
"use strict";

(function () {
  const POLL_MS = 1500;
  const QUEUES_PAGE = 50;
  const JOBS_PAGE = 20;
  const WORKERS_PAGE = 50;
  const SCHEDULES_PAGE = 100;
  const CHART_POINTS = 60;
  const TOKEN_KEY = "presque-token";

  const $ = (id) => document.getElementById(id);

  // ---- talking to the server ----

  class AuthNeeded extends Error {}
  class Unreachable extends Error {}
  class HttpError extends Error {
    constructor(status, message) {
      super(message);
      this.status = status;
    }
  }

  function token() {
    try {
      return sessionStorage.getItem(TOKEN_KEY) || "";
    } catch (_) {
      return "";
    }
  }

  async function call(method, path, body) {
    const headers = {};
    const t = token();
    if (t) headers["Authorization"] = "Bearer " + t;
    const init = { method, headers, cache: "no-store" };
    if (body !== undefined) {
      headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    let r;
    try {
      r = await fetch(path, init);
    } catch (e) {
      throw new Unreachable(String(e));
    }
    if (r.status === 401) throw new AuthNeeded();
    if (!r.ok) {
      let text = r.status + " " + r.statusText;
      try {
        const j = await r.json();
        if (j && typeof j.error === "string") text = j.error;
      } catch (_) { /* not JSON */ }
      throw new HttpError(r.status, text);
    }
    if (r.status === 204) return null;
    const type = r.headers.get("content-type") || "";
    return type.includes("json") ? r.json() : r.text();
  }

  const enc = encodeURIComponent;

  // ---- small DOM helpers ----

  function el(tag, text, cls) {
    const e = document.createElement(tag);
    if (text !== undefined && text !== null) e.textContent = String(text);
    if (cls) e.className = cls;
    return e;
  }

  function setRows(tbody, rows, columns, emptyText) {
    const frag = document.createDocumentFragment();
    if (rows.length === 0) {
      const tr = el("tr");
      const td = el("td", emptyText, "muted");
      td.colSpan = columns;
      tr.appendChild(td);
      frag.appendChild(tr);
    }
    rows.forEach((r) => frag.appendChild(r));
    tbody.replaceChildren(frag);
  }

  function defList(dl, pairs) {
    const frag = document.createDocumentFragment();
    pairs.forEach(([k, v, testid]) => {
      const dt = el("dt", k);
      const dd = el("dd", v);
      if (testid) dd.dataset.testid = testid;
      frag.appendChild(dt);
      frag.appendChild(dd);
    });
    dl.replaceChildren(frag);
  }

  function when(epochSecs) {
    if (epochSecs === null || epochSecs === undefined) return "";
    const d = new Date(epochSecs * 1000);
    const ago = (Date.now() - d.getTime()) / 1000;
    const rel = ago >= 0 ? duration(ago) + " ago" : "in " + duration(-ago);
    return d.toLocaleTimeString() + " (" + rel + ")";
  }

  function duration(secs) {
    secs = Math.round(secs);
    if (secs < 60) return secs + "s";
    if (secs < 3600) return Math.floor(secs / 60) + "m" + (secs % 60) + "s";
    if (secs < 86400) return Math.floor(secs / 3600) + "h" + Math.floor((secs % 3600) / 60) + "m";
    return Math.floor(secs / 86400) + "d" + Math.floor((secs % 86400) / 3600) + "h";
  }

  function bytes(n) {
    if (n === null || n === undefined) return "";
    const units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let i = 0;
    while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
    return (i === 0 ? n : n.toFixed(1)) + " " + units[i];
  }

  function preview(value) {
    let s;
    try { s = JSON.stringify(value); } catch (_) { s = String(value); }
    return s.length > 120 ? s.slice(0, 120) + "…" : s;
  }

  let messageTimer = null;
  function say(text, isError) {
    const m = $("message");
    m.textContent = text;
    m.className = isError ? "error" : "";
    m.hidden = false;
    clearTimeout(messageTimer);
    messageTimer = setTimeout(() => { m.hidden = true; }, 6000);
  }

  // ---- charts: a few lines on a canvas ----

  class Chart {
    constructor(canvas, colors) {
      this.canvas = canvas;
      this.colors = colors;
      this.series = colors.map(() => []);
      this.height = Number(canvas.getAttribute("height")) || 120;
    }
    push(values) {
      values.forEach((v, i) => {
        const s = this.series[i];
        s.push(v);
        if (s.length > CHART_POINTS) s.shift();
      });
    }
    reset() { this.series = this.colors.map(() => []); }
    draw() {
      const c = this.canvas;
      const w = c.clientWidth;
      if (!w) return;
      const ratio = window.devicePixelRatio || 1;
      const h = this.height;
      c.style.height = h + "px";
      if (c.width !== Math.round(w * ratio)) c.width = Math.round(w * ratio);
      c.height = Math.round(h * ratio);
      const g = c.getContext("2d");
      if (!g) return;
      g.setTransform(ratio, 0, 0, ratio, 0, 0);
      c.dataset.samples = String(this.series[0].length);
      g.clearRect(0, 0, w, h);
      const all = this.series.flat().filter((v) => v !== null && isFinite(v));
      const max = Math.max(1, ...all);
      const top = niceCeil(max);
      const left = 44, bottom = h - 16, right = w - 6, topY = 8;
      g.strokeStyle = "#e3e6ea";
      g.fillStyle = "#6b7480";
      g.font = "11px system-ui, sans-serif";
      g.lineWidth = 1;
      for (let k = 0; k <= 2; k++) {
        const y = bottom - ((bottom - topY) * k) / 2;
        g.beginPath(); g.moveTo(left, y); g.lineTo(right, y); g.stroke();
        g.fillText(fmtNum((top * k) / 2), 2, y + 4);
      }
      const step = (right - left) / (CHART_POINTS - 1);
      this.series.forEach((s, i) => {
        g.strokeStyle = this.colors[i];
        g.lineWidth = 2;
        g.beginPath();
        let started = false;
        const offset = CHART_POINTS - s.length;
        s.forEach((v, j) => {
          if (v === null || !isFinite(v)) { started = false; return; }
          const x = left + (offset + j) * step;
          const y = bottom - ((bottom - topY) * v) / top;
          if (started) g.lineTo(x, y); else { g.moveTo(x, y); started = true; }
        });
        g.stroke();
      });
    }
  }

  function niceCeil(v) {
    const p = Math.pow(10, Math.floor(Math.log10(v)));
    for (const m of [1, 2, 5, 10]) if (m * p >= v) return m * p;
    return 10 * p;
  }

  function fmtNum(v) {
    if (v >= 1e6) return (v / 1e6).toFixed(1) + "M";
    if (v >= 1e3) return (v / 1e3).toFixed(1) + "k";
    if (v >= 10 || v === 0) return String(Math.round(v));
    return v.toPrecision(2);
  }

  // ---- state ----

  const state = {
    view: null,          // "overview" | "queue"
    queue: null,         // the queue page's name
    cursors: [null],     // overview: the `after` of each page seen, the current last
    filter: "",
    jobsState: "ready",
    jobCursors: [null],
    jobsNext: null,
    queuesNext: null,
    selectedJob: null,
    openNow: true,
    metrics: "unknown",  // "unknown" | "yes" | "no"
    last: null,          // previous overview sample, for rates
    lastQueue: null,     // previous queue-page sample
    lastMetrics: null,
    authNeeded: false,
    busy: false,
  };

  const throughput = new Chart($("chart-throughput"), ["#2f6fdb", "#1f9d55"]);
  const latency = new Chart($("chart-latency"), ["#7048e8"]);
  const queueChart = new Chart($("chart-queue"), ["#1f9d55", "#d9480f"]);

  // ---- routing: #/ and #/queue/NAME ----

  function route() {
    const hash = location.hash || "#/";
    const m = hash.match(/^#\/queue\/(.+)$/);
    let name = null;
    if (m) {
      try { name = decodeURIComponent(m[1]); } catch (_) { name = null; }
    }
    if (name !== null) {
      if (state.view !== "queue" || state.queue !== name) {
        state.view = "queue";
        state.queue = name;
        state.jobsState = "ready";
        state.jobCursors = [null];
        state.selectedJob = null;
        state.lastQueue = null;
        queueChart.reset();
        $("job-detail").hidden = true;
      }
    } else {
      state.view = "overview";
      state.queue = null;
    }
    $("view-overview").hidden = state.view !== "overview";
    $("view-queue").hidden = state.view !== "queue";
    document.title = state.view === "queue" ? state.queue + " · presque" : "presque";
    refresh();
  }

  // ---- the overview ----

  async function loadOverview() {
    // Read here as well as on input: a value set without an input event (a form
    // reset, an automation's clear) still applies.
    const filter = $("filter").value.trim();
    if (filter !== state.filter) {
      state.filter = filter;
      state.cursors = [null];
      state.last = null;
    }
    const params = new URLSearchParams({ limit: String(QUEUES_PAGE) });
    const after = state.cursors[state.cursors.length - 1];
    if (after !== null) params.set("after", after);
    if (state.filter) params.set("filter", state.filter);
    const [ov, info] = await Promise.all([
      call("GET", "/overview?" + params),
      call("GET", "/info"),
    ]);
    renderQueues(ov);
    renderInfo(info);
    sampleThroughput(ov, info);
    await Promise.all([loadWorkers(), loadMetrics(), loadSchedules()]);
  }

  function renderQueues(ov) {
    // In the server's (natural) order: a page continues where the last one ended.
    const queues = ov.queues;
    state.queuesNext = ov.next;
    const rows = queues.map((q) => {
      const tr = el("tr", null, "clickable");
      tr.dataset.testid = "queue-row";
      tr.dataset.queue = q.name;
      const nameTd = el("td", null, "name");
      const a = el("a", q.name);
      a.href = "#/queue/" + enc(q.name);
      a.title = q.name;
      nameTd.appendChild(a);
      tr.appendChild(nameTd);
      const st = el("td", q.open ? "open" : "closed", q.open ? "" : "closed");
      st.dataset.field = "state";
      tr.appendChild(st);
      for (const k of ["ready", "delayed", "leased", "dead", "waiting", "processed", "failed"]) {
        const td = el("td", q[k]);
        td.dataset.field = k;
        tr.appendChild(td);
      }
      tr.addEventListener("click", (e) => {
        if (e.target.tagName !== "A") location.hash = "#/queue/" + enc(q.name);
      });
      return tr;
    });
    setRows($("queues-body"), rows, 9, state.filter ? "no queue matches" : "no queues yet");
    const page = state.cursors.length;
    const shown = ov.matched === ov.size ? ov.size + " queues" : ov.matched + " of " + ov.size + " queues match";
    $("queues-count").textContent = "(" + shown + (ov.matched > QUEUES_PAGE ? ", page " + page : "") + ")";
    $("queues-prev").disabled = state.cursors.length <= 1;
    $("queues-next").disabled = !ov.next;
  }

  function sampleThroughput(ov, info) {
    const now = performance.now();
    const processed = new Map(ov.queues.map((q) => [q.name, q.processed]));
    const prev = state.last;
    state.last = { at: now, created: info.next_job_id, processed };
    if (!prev) return;
    const dt = (now - prev.at) / 1000;
    if (dt <= 0) return;
    let done = 0;
    processed.forEach((v, k) => {
      const before = prev.processed.get(k);
      if (before !== undefined && v >= before) done += v - before;
    });
    const created = Math.max(0, info.next_job_id - prev.created);
    throughput.push([created / dt, done / dt]);
    throughput.draw();
  }

  function renderInfo(info) {
    const mem = info.memory || {};
    const snap = info.snapshot;
    defList($("server-info"), [
      ["version", info.version, "info-version"],
      ["uptime", duration(info.uptime_secs), "info-uptime"],
      ["started", when(info.started_at)],
      ["fsync", info.fsync, "info-fsync"],
      ["data dir", info.data_dir, "info-data-dir"],
      ["memory", bytes(mem.used_bytes) + " of " + (mem.limit_bytes === null ? "unlimited" : bytes(mem.limit_bytes)), "info-memory"],
      ["last snapshot", snap ? bytes(snap.bytes) + ", " + when(snap.written_at) : "none yet", "info-snapshot"],
      ["queues", info.queues],
      ["next job id", info.next_job_id],
    ]);
  }

  async function loadWorkers() {
    const w = await call("GET", "/workers?limit=" + WORKERS_PAGE);
    const rows = w.workers.map((x) => {
      const tr = el("tr");
      tr.dataset.testid = "worker-row";
      tr.appendChild(el("td", x.worker_id, "name"));
      tr.appendChild(el("td", x.state, x.state === "gone" ? "closed" : ""));
      tr.appendChild(el("td", x.queues.join(", ")));
      tr.appendChild(el("td", x.processed));
      tr.appendChild(el("td", x.failed));
      tr.appendChild(el("td", when(x.last_seen)));
      tr.appendChild(el("td", x.jobs.map((j) => j.queue + "#" + j.id).join(", ")));
      return tr;
    });
    setRows($("workers-body"), rows, 7, "no workers seen");
  }

  async function loadSchedules() {
    const s = await call("GET", "/schedules/?limit=" + SCHEDULES_PAGE);
    $("schedules-count").textContent = s.size > s.schedules.length
      ? "(" + s.schedules.length + " of " + s.size + ")" : "(" + s.size + ")";
    const rows = s.schedules.map((x) => {
      const tr = el("tr");
      tr.dataset.testid = "schedule-row";
      tr.appendChild(el("td", x.name, "name"));
      tr.appendChild(el("td", x.cron + (x.timezone === "UTC" ? "" : " (" + x.timezone + ")")));
      tr.appendChild(el("td", x.queue));
      tr.appendChild(el("td", x.next_run === null ? "never" : when(x.next_run)));
      tr.appendChild(el("td", when(x.last_run)));
      tr.appendChild(el("td", x.runs));
      const missed = x.missed
        ? x.missed.count + " since " + new Date(x.missed.since * 1000).toLocaleString() + ", run once for them"
        : "";
      tr.appendChild(el("td", missed + (x.last_error ? " · last error: " + x.last_error : ""),
        x.last_error ? "closed" : ""));
      const td = el("td");
      const del = el("button", "Delete…", "danger");
      del.type = "button";
      del.dataset.testid = "schedule-delete";
      del.addEventListener("click", () => {
        confirmThen("Delete schedule " + x.name + "? Jobs it already posted stay in their queue.",
          () => call("DELETE", "/schedules/" + enc(x.name)), "schedule deleted");
      });
      td.appendChild(del);
      tr.appendChild(td);
      return tr;
    });
    setRows($("schedules-body"), rows, 8, "no schedules");
  }

  // Mean latency from the Prometheus histogram's _sum and _count (all labels).
  async function loadMetrics() {
    if (state.metrics === "no") return;
    let text;
    try {
      text = await call("GET", "/metrics");
    } catch (e) {
      if (e instanceof HttpError && e.status === 404) {
        state.metrics = "no";
        $("latency-panel").hidden = true;
        return;
      }
      throw e;
    }
    if (typeof text !== "string") return;
    state.metrics = "yes";
    $("latency-panel").hidden = false;
    let sum = 0, count = 0;
    for (const line of text.split("\n")) {
      const m = line.match(/^presque_http_request_duration_seconds_(sum|count)(\{[^}]*\})?\s+(\S+)/);
      if (!m) continue;
      const v = Number(m[3]);
      if (!isFinite(v)) continue;
      if (m[1] === "sum") sum += v; else count += v;
    }
    const prev = state.lastMetrics;
    state.lastMetrics = { sum, count };
    if (!prev) return;
    const dc = count - prev.count;
    latency.push([dc > 0 ? ((sum - prev.sum) / dc) * 1000 : null]);
    latency.draw();
  }

  // ---- a queue's page ----

  async function loadQueue() {
    const name = state.queue;
    const [ov, jobs] = await Promise.all([
      call("GET", "/overview?name=" + enc(name)),
      loadJobs(name),
    ]);
    if (state.queue !== name) return;
    const q = ov.queues[0] || { name, open: true, ready: 0, delayed: 0, leased: 0, dead: 0, waiting: 0, processed: 0, failed: 0 };
    renderQueueHead(q, ov.queues.length === 0);
    sampleQueue(q);
    renderJobs(jobs);
  }

  function renderQueueHead(q, missing) {
    $("queue-name").textContent = q.name;
    const badge = $("queue-state");
    badge.textContent = missing ? "no such queue" : q.open ? "open" : "closed";
    badge.className = "badge" + (q.open && !missing ? "" : " closed");
    state.openNow = q.open;
    const pairs = ["ready", "delayed", "leased", "dead", "waiting", "processed", "failed"];
    const frag = document.createDocumentFragment();
    for (const k of pairs) {
      const div = el("div");
      div.appendChild(el("dt", k));
      const dd = el("dd", q[k]);
      dd.dataset.testid = "count-" + k;
      div.appendChild(dd);
      frag.appendChild(div);
    }
    $("queue-counters").replaceChildren(frag);
    const oc = $("btn-open-close");
    oc.textContent = q.open ? "Close queue" : "Open queue";
    oc.dataset.action = q.open ? "close" : "open";
    $("btn-retry-all").disabled = q.dead === 0;
    $("btn-purge-dead-all").disabled = q.dead === 0;
  }

  function sampleQueue(q) {
    const now = performance.now();
    const prev = state.lastQueue;
    state.lastQueue = { at: now, processed: q.processed, failed: q.failed };
    if (!prev) return;
    const dt = (now - prev.at) / 1000;
    if (dt <= 0) return;
    queueChart.push([
      Math.max(0, q.processed - prev.processed) / dt,
      Math.max(0, q.failed - prev.failed) / dt,
    ]);
    queueChart.draw();
  }

  async function loadJobs(name) {
    const params = new URLSearchParams({ state: state.jobsState, limit: String(JOBS_PAGE) });
    const after = state.jobCursors[state.jobCursors.length - 1];
    if (after !== null) params.set("after", String(after));
    try {
      return await call("GET", "/jobs/" + enc(name) + "?" + params);
    } catch (e) {
      if (e instanceof HttpError && e.status === 403) return { forbidden: e.message };
      throw e;
    }
  }

  function renderJobs(page) {
    document.querySelectorAll("#state-tabs button").forEach((b) => {
      b.setAttribute("aria-selected", String(b.dataset.state === state.jobsState));
    });
    const note = $("jobs-note");
    if (page.forbidden) {
      note.textContent = "Listing jobs needs an admin token: " + page.forbidden;
      setRows($("jobs-body"), [], 8, "");
      return;
    }
    note.textContent = page.size + " " + state.jobsState + " job" + (page.size === 1 ? "" : "s");
    $("jobs-when").textContent = { ready: "", delayed: "due", leased: "lease ends", dead: "died" }[state.jobsState];
    state.jobsNext = page.next;
    const dead = state.jobsState === "dead";
    const rows = page.jobs.map((j) => {
      const tr = el("tr", null, "clickable");
      tr.dataset.testid = "job-row";
      tr.dataset.id = String(j.id);
      tr.appendChild(el("td", j.id));
      tr.appendChild(el("td", j.priority, "priority"));
      tr.appendChild(el("td", j.attempts));
      const at = j.due_at ?? j.lease_deadline ?? j.died_at;
      tr.appendChild(el("td", when(at)));
      tr.appendChild(el("td", j.worker_id || ""));
      const lastErr = j.errors.length ? j.errors[j.errors.length - 1].error : j.reason;
      tr.appendChild(el("td", lastErr || "", "err"));
      tr.appendChild(el("td", preview(j.job), "body"));
      const actions = el("td");
      if (dead) {
        const retry = el("button", "retry");
        retry.type = "button";
        retry.dataset.testid = "retry-dead";
        retry.addEventListener("click", (e) => { e.stopPropagation(); act(() => call("POST", "/dead/" + enc(state.queue) + "?id=" + j.id), "job " + j.id + " retried"); });
        const drop = el("button", "purge", "danger");
        drop.type = "button";
        drop.dataset.testid = "purge-dead";
        drop.addEventListener("click", (e) => {
          e.stopPropagation();
          confirmThen("Drop dead job " + j.id + " for good?", () => call("DELETE", "/dead/" + enc(state.queue) + "?id=" + j.id), "job " + j.id + " purged");
        });
        actions.appendChild(retry);
        actions.appendChild(drop);
      }
      tr.appendChild(actions);
      tr.addEventListener("click", () => showJob(j));
      if (state.selectedJob === j.id) showJob(j);
      return tr;
    });
    setRows($("jobs-body"), rows, 8, "no " + state.jobsState + " jobs");
    $("jobs-prev").disabled = state.jobCursors.length <= 1;
    $("jobs-next").disabled = page.next === null || page.next === undefined;
  }

  function showJob(j) {
    state.selectedJob = j.id;
    $("job-detail").hidden = false;
    $("job-id").textContent = String(j.id);
    defList($("job-meta"), [
      ["state", state.jobsState],
      ["priority", j.priority],
      ["attempts", j.attempts],
      ["due", when(j.due_at)],
      ["lease holder", j.worker_id || ""],
      ["lease ends", when(j.lease_deadline)],
      ["died", when(j.died_at)],
      ["reason", j.reason || ""],
    ]);
    const ol = document.createDocumentFragment();
    j.errors.forEach((f) => {
      ol.appendChild(el("li", when(f.at) + (f.worker_id ? " · " + f.worker_id : "") + ": " + (f.error || "(no reason given)")));
    });
    $("job-errors").replaceChildren(ol);
    let body;
    try { body = JSON.stringify(j.job, null, 2); } catch (_) { body = String(j.job); }
    $("job-body").textContent = body;
  }

  // ---- actions ----

  async function act(fn, done) {
    try {
      await fn();
      say(done, false);
    } catch (e) {
      report(e);
    }
    refresh();
  }

  let pendingConfirm = null;
  function confirmThen(text, fn, done) {
    pendingConfirm = { fn, done };
    $("confirm-text").textContent = text;
    $("confirm").hidden = false;
    $("confirm-no").focus();
  }

  $("confirm-yes").addEventListener("click", () => {
    const p = pendingConfirm;
    pendingConfirm = null;
    $("confirm").hidden = true;
    if (p) act(p.fn, p.done);
  });
  $("confirm-no").addEventListener("click", () => {
    pendingConfirm = null;
    $("confirm").hidden = true;
  });
  document.addEventListener("keydown", (e) => {
    if (e.key === "Escape" && !$("confirm").hidden) $("confirm-no").click();
  });

  $("btn-open-close").addEventListener("click", () => {
    const closing = state.openNow;
    act(() => call("POST", "/control/" + enc(state.queue), { status: closing ? "stop" : "start" }),
      "queue " + (closing ? "closed" : "opened"));
  });
  $("btn-retry-all").addEventListener("click", () => {
    act(() => call("POST", "/dead/" + enc(state.queue)), "dead jobs retried");
  });
  $("btn-purge-dead-all").addEventListener("click", () => {
    confirmThen("Drop every dead job of " + state.queue + " for good?",
      () => call("DELETE", "/dead/" + enc(state.queue)), "dead jobs purged");
  });
  $("btn-purge").addEventListener("click", () => {
    confirmThen("Purge queue " + state.queue + "? Every job, its counters and its settings are dropped.",
      () => call("DELETE", "/q/" + enc(state.queue)), "queue purged");
  });

  document.querySelectorAll("#state-tabs button").forEach((b) => {
    b.addEventListener("click", () => {
      state.jobsState = b.dataset.state;
      state.jobCursors = [null];
      state.selectedJob = null;
      $("job-detail").hidden = true;
      refresh();
    });
  });
  $("jobs-next").addEventListener("click", () => {
    if (state.jobsNext !== null && state.jobsNext !== undefined) {
      state.jobCursors.push(state.jobsNext);
      refresh();
    }
  });
  $("jobs-prev").addEventListener("click", () => {
    if (state.jobCursors.length > 1) { state.jobCursors.pop(); refresh(); }
  });
  $("queues-next").addEventListener("click", () => {
    if (state.queuesNext) { state.cursors.push(state.queuesNext); state.last = null; refresh(); }
  });
  $("queues-prev").addEventListener("click", () => {
    if (state.cursors.length > 1) { state.cursors.pop(); state.last = null; refresh(); }
  });
  let filterTimer = null;
  const onFilter = () => {
    clearTimeout(filterTimer);
    filterTimer = setTimeout(refresh, 200);
  };
  $("filter").addEventListener("input", onFilter);
  $("filter").addEventListener("change", onFilter);

  $("token-form").addEventListener("submit", (e) => {
    e.preventDefault();
    try { sessionStorage.setItem(TOKEN_KEY, $("token-input").value.trim()); } catch (_) { /* private mode */ }
    $("token-input").value = "";
    state.authNeeded = false;
    $("auth").hidden = true;
    refresh();
  });

  // ---- polling ----

  function report(e) {
    if (e instanceof AuthNeeded) {
      state.authNeeded = true;
      $("auth").hidden = false;
      $("conn-status").textContent = token() ? "token refused" : "token needed";
      return;
    }
    if (e instanceof HttpError) {
      say(e.message, true);
      return;
    }
    if (e instanceof Unreachable) {
      $("conn-status").textContent = "server unreachable";
      return;
    }
    // A bug in this page: said where the browser's console (and the tests) see it.
    $("conn-status").textContent = "page error";
    console.error(e);
  }

  async function refresh() {
    if (state.busy) { state.again = true; return; }
    state.busy = true;
    try {
      if (state.view === "queue") await loadQueue();
      else await loadOverview();
      $("conn-status").textContent = "live · " + new Date().toLocaleTimeString();
    } catch (e) {
      report(e);
    } finally {
      state.busy = false;
    }
    if (state.again) { state.again = false; refresh(); }
  }

  function tick() {
    if (!state.authNeeded && !document.hidden) refresh();
  }

  window.addEventListener("hashchange", route);
  window.addEventListener("resize", () => { throughput.draw(); latency.draw(); queueChart.draw(); });
  setInterval(tick, POLL_MS);
  route();
})();
