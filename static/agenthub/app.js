/* AgentHub in the browser: live job list and header counter (/ws/dashboard/), a job's live log
 * (/ws/jobs/<id>/), and the tap on the shoulder. No inline scripts anywhere (strict CSP); every
 * untrusted string reaches the page through textContent, never innerHTML — except the job cards,
 * which are HTML the server rendered with autoescaping. */
"use strict";

const SETTLED = new Set(["needs_review", "approved", "merged", "no_changes", "findings",
  "failed", "cancelled", "rejected", "changes_requested", "conflict"]);
// Endings that always alert (a check's findings too: it reported problems).
const FAILED = new Set(["failed", "conflict", "findings"]);
const UNSETTLED = new Set(["queued", "running"]);
// A person's decision: timed from the submit, the wait it ends, not the run that came before.
const DECIDED = new Set(["approved", "merged", "rejected", "changes_requested", "conflict"]);
const MAX_LOG_LINES = 5000;
const MAX_DELAY = 10000;

/* A websocket that reconnects by itself; `url()` is asked again each time, so a job log can
 * resume after its last sequence number. */
function liveSocket(url, onMessage, onState) {
  let delay = 500;
  let socket = null;
  let closed = false;
  function open() {
    const scheme = location.protocol === "https:" ? "wss://" : "ws://";
    socket = new WebSocket(scheme + location.host + url());
    socket.onopen = () => { delay = 500; onState && onState("live"); };
    socket.onmessage = (event) => onMessage(JSON.parse(event.data));
    socket.onclose = (event) => {
      if (closed || event.code === 4403 || event.code === 4401) {
        onState && onState(event.code === 4403 ? "forbidden" : "closed");
        return;
      }
      onState && onState("reconnecting");
      setTimeout(open, delay);
      delay = Math.min(delay * 2, MAX_DELAY);
    };
  }
  open();
  return {
    close() { closed = true; socket && socket.close(); },
    drop() { socket && socket.close(); },  // used by the tests: reconnects like a lost network
  };
}

/* The same words the server renders: "needs_review" -> "Needs Review". */
function statusLabel(status) {
  return status.split("_").map((w) => w[0].toUpperCase() + w.slice(1)).join(" ");
}

/* --- durations -------------------------------------------------------------------------- */

function formatDuration(seconds) {
  seconds = Math.max(0, Math.round(seconds));
  if (seconds < 60) return seconds + " s";
  const m = Math.floor(seconds / 60), s = seconds % 60;
  if (m < 60) return m + " min " + s + " s";
  return Math.floor(m / 60) + " h " + (m % 60) + " min";
}

function jobSeconds(created, finished) {
  const end = finished ? Date.parse(finished) : Date.now();
  return (end - Date.parse(created)) / 1000;
}

function refreshDurations() {
  document.querySelectorAll("[data-role=duration]").forEach((el) => {
    const holder = el.hasAttribute("data-created") ? el : el.closest("[data-created]");
    if (!holder) return;
    // A span that has not begun (an attempt still queued has not run) says so.
    el.textContent = holder.dataset.created
      ? formatDuration(jobSeconds(holder.dataset.created, holder.dataset.finished)) : "—";
  });
}

/* --- times ----------------------------------------------------------------------------------- */

/* The server writes moments in UTC, labelled (jobs/templatetags/when.py); the browser says them
 * in its own time zone, in the same YYYY-MM-DD HH:MM form, named. */
function localTimes(root) {
  const pad = (n) => String(n).padStart(2, "0");
  (root || document).querySelectorAll("time[data-local]").forEach((el) => {
    const at = new Date(el.dateTime);
    if (Number.isNaN(at.getTime())) return;
    const zone = new Intl.DateTimeFormat(undefined, { timeZoneName: "short" })
      .formatToParts(at).find((part) => part.type === "timeZoneName");
    const seconds = el.dataset.local === "seconds" ? `:${pad(at.getSeconds())}` : "";
    el.textContent = `${at.getFullYear()}-${pad(at.getMonth() + 1)}-${pad(at.getDate())} `
      + `${pad(at.getHours())}:${pad(at.getMinutes())}${seconds}` + (zone ? ` ${zone.value}` : "");
  });
}

/* --- the tap on the shoulder -------------------------------------------------------------- */

const notifier = {
  unseen: 0,
  originalTitle: document.title,
  prefs() {
    const b = document.body.dataset;
    return { toastAfter: Number(b.toastAfter || 10), alertAfter: Number(b.alertAfter || 60),
      sound: b.sound === "true", dnd: b.dnd === "true", me: b.user };
  },
  announce(job) {
    const prefs = this.prefs();
    const seconds = jobSeconds(job.created_at, DECIDED.has(job.status) ? "" : job.finished_at);
    const failed = FAILED.has(job.status);
    if (!failed && seconds < prefs.toastAfter) return;  // quick jobs: the list just updates
    const loud = failed || seconds >= prefs.alertAfter;
    this.badge(1);
    if (prefs.dnd) return;  // do-not-disturb keeps only the badge
    toast(job, loud);
    if (loud) {
      if (prefs.sound) beep();
      if (window.Notification && Notification.permission === "granted") {
        const note = new Notification(`Job ${job.id}: ${statusLabel(job.status).toLowerCase()}`,
          { body: job.title, tag: job.id });
        note.onclick = () => { window.focus(); location.href = jobUrl(job); };
      }
    }
  },
  badge(more) {
    this.unseen += more;
    document.title = this.unseen ? `(${this.unseen}) ${this.originalTitle}` : this.originalTitle;
    const icon = document.getElementById("favicon");
    if (icon) icon.href = this.unseen ? badgeIcon(this.unseen) : icon.dataset.plain || icon.href;
  },
};

function jobUrl(job) {
  return job.status === "needs_review" || job.status === "approved" || job.status === "conflict"
    ? `/jobs/${job.id}/review/` : `/jobs/${job.id}/`;
}

function toast(job, loud) {
  const box = document.getElementById("toasts");
  if (!box) return;
  const el = document.createElement("div");
  el.className = "toast" + (loud ? " alert" : "") + (FAILED.has(job.status) ? " failed" : "");
  el.dataset.job = job.id;
  el.setAttribute("role", loud ? "alert" : "status");
  const link = document.createElement("a");
  link.href = jobUrl(job);
  link.textContent = `${job.title} — ${statusLabel(job.status).toLowerCase()}`;
  const close = document.createElement("button");
  close.type = "button";
  close.className = "close";
  close.textContent = "×";
  close.setAttribute("aria-label", "Dismiss");
  close.addEventListener("click", () => el.remove());
  el.append(link, close);
  box.prepend(el);
  if (!loud) setTimeout(() => el.remove(), 8000);
}

function beep() {
  try {
    const ctx = new (window.AudioContext || window.webkitAudioContext)();
    const osc = ctx.createOscillator();
    osc.frequency.value = 880;
    osc.connect(ctx.destination);
    osc.start();
    osc.stop(ctx.currentTime + 0.15);
  } catch (e) { /* no audio: the toast is enough */ }
}

function badgeIcon(count) {
  const canvas = document.createElement("canvas");
  canvas.width = canvas.height = 32;
  const g = canvas.getContext("2d");
  g.fillStyle = "#1d2330"; g.fillRect(0, 0, 32, 32);
  g.fillStyle = "#e5484d"; g.beginPath(); g.arc(22, 10, 10, 0, 2 * Math.PI); g.fill();
  g.fillStyle = "#fff"; g.font = "bold 14px sans-serif"; g.textAlign = "center";
  g.fillText(String(Math.min(count, 9)), 22, 15);
  return canvas.toDataURL("image/png");
}

document.addEventListener("visibilitychange", () => {
  if (document.visibilityState === "visible") notifier.badge(-notifier.unseen);
});

/* --- dashboard socket: cards, counter, notifications ------------------------------------------- */

const known = new Map();  // job id -> last status seen, so each change is announced once

function onDashboard(message) {
  if (message.type === "counter") {
    const counter = document.getElementById("jobs-counter");
    if (!counter) return;
    counter.dataset.running = message.running;
    counter.dataset.queued = message.queued;
    counter.querySelector(".counter-running").textContent = message.running;
    counter.querySelector(".counter-queued").textContent = message.queued;
    counter.querySelector(".counter-noun").textContent = message.running === 1 ? "job" : "jobs";
    return;
  }
  if (message.type !== "job") return;
  const job = message.job;
  const before = known.get(job.id);
  known.set(job.id, job.status);
  placeCard(job, message.html);
  // The header's "waiting for your review" is counted again when a job enters or leaves review.
  if (before !== job.status && (before === "needs_review" || job.status === "needs_review")) {
    document.body.dispatchEvent(new Event("review-queue-changed"));
  }
  // The server says whether this user is concerned (their job, or one for them to review).
  if (message.notify && before !== job.status && SETTLED.has(job.status)) notifier.announce(job);
  if (isCurrentJob(job.id)) showCurrentJob(job);
}

/* The top of the job page says how the attempt ended as it ends: a check's result in one line
 * (a `summary` event) and why it did not succeed (a status event's reason). Text only. */
function showOutcome(page, event) {
  const box = page.querySelector("[data-role=outcome]");
  if (!box) return;
  const failed = event.kind === "status" && event.data.status !== "succeeded";
  const line = box.querySelector(event.kind === "summary" ? "[data-role=outcome-summary]" : "[data-role=outcome-why]");
  if (!line || (event.kind === "status" && !failed)) return;
  line.textContent = event.kind === "summary" ? event.text : `Why: ${event.data.reason}`;
  line.hidden = false;
  box.hidden = false;
}

/* The job or review page of this job: status chips, progress, duration, the review panel. */
function showCurrentJob(job) {
  const page = document.querySelector("[data-job-ws]");
  page.querySelectorAll("[data-role=status]").forEach((chip) => {
    chip.textContent = statusLabel(job.status);
    chip.className = "chip chip-" + job.status;
  });
  // A job that has ended shows its outcome, not the last progress its attempt reported.
  const progress = page.querySelector("[data-role=progress-row]");
  if (progress && !UNSETTLED.has(job.status)) progress.hidden = true;
  page.dataset.status = job.status;
  document.body.dispatchEvent(new Event("job-changed"));
}

function placeCard(job, html) {
  const list = document.getElementById("job-list");
  if (!list || !html) return;
  const existing = document.getElementById("job-" + job.id);
  const template = document.createElement("template");
  template.innerHTML = html.trim();  // server-rendered, autoescaped
  const card = template.content.firstElementChild;
  if (existing) existing.replaceWith(card);
  else if (list.dataset.page === "1" && matchesFilters(job)) {
    list.querySelector(".empty")?.remove();
    list.prepend(card);
  }
  refreshDurations();
}

function matchesFilters(job) {
  const form = document.getElementById("job-filters");
  if (!form) return true;
  const f = new FormData(form);
  return (!f.get("status") || f.get("status") === job.status)
    && (!f.get("repo") || f.get("repo").split("/").pop() === job.repo)
    && (!f.get("agent") || f.get("agent") === job.agent)
    && (!f.get("mine") || job.submitter === document.body.dataset.user)
    && (!f.get("review") || (job.status === "needs_review" && job.submitter !== document.body.dataset.user));
}

/* After Back or Forward, htmx puts back the list it had, but the filters' fields keep what was
 * chosen last: set them from the address, which is what the list shows. */
function filtersFromAddress() {
  const form = document.getElementById("job-filters");
  if (!form) return;
  const query = new URLSearchParams(location.search);
  for (const field of form.elements) {
    if (!field.name) continue;
    if (field.type === "checkbox") field.checked = query.get(field.name) === field.value;
    else field.value = query.get(field.name) || "";
  }
}

function isCurrentJob(id) {
  const page = document.querySelector("[data-job-ws]");
  return page && page.dataset.job === id;
}

/* Seed `known` with the cards on the page, so only changes from now on are announced. */
function seedKnown() {
  document.querySelectorAll(".job-card").forEach((card) => known.set(card.dataset.job, card.dataset.status));
  const page = document.querySelector("[data-job-ws]");
  const chip = page && page.querySelector("[data-role=status]");
  if (page && chip && !known.has(page.dataset.job)) known.set(page.dataset.job, chip.className.replace(/.*chip-/, ""));
}

/* --- job page: live log --------------------------------------------------------------------- */

const ANSI = /\x1b\[([0-9;]*)m/g;

/* Split a line on SGR escape codes into [text, classes] runs; everything else stays text. */
function ansiRuns(text) {
  const runs = [];
  let classes = [];
  let last = 0;
  for (const match of text.matchAll(ANSI)) {
    if (match.index > last) runs.push([text.slice(last, match.index), classes]);
    classes = sgr(classes, match[1]);
    last = match.index + match[0].length;
  }
  if (last < text.length) runs.push([text.slice(last), classes]);
  return runs;
}

function sgr(classes, codes) {
  let next = classes.slice();
  for (const code of (codes || "0").split(";").map(Number)) {
    if (code === 0) next = [];
    else if (code === 1) next.push("ansi-bold");
    else if ((code >= 30 && code <= 37) || (code >= 90 && code <= 97)) {
      next = next.filter((c) => !c.startsWith("ansi-fg")); next.push("ansi-fg-" + code);
    } else if ((code >= 40 && code <= 47) || (code >= 100 && code <= 107)) {
      next = next.filter((c) => !c.startsWith("ansi-bg")); next.push("ansi-bg-" + code);
    }
  }
  return next;
}

/* An AI agent's activity: what it said, the tools it called (each folded, with its result inside),
   and what it used. Text only, never markup: an agent's output is untrusted. */
const ACTIVITY_KINDS = new Set(["message", "tool_call", "tool_result", "usage", "model_call"]);

function activityFeed(feed) {
  let lastCall = null;
  const reviewUrl = feed.dataset.reviewUrl;
  const usageLine = document.querySelector("[data-role=usage-line]");
  function el(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined) node.textContent = text;
    return node;
  }
  return function add(event) {
    const empty = feed.querySelector("[data-role=activity-empty]");
    if (empty) empty.remove();
    if (event.kind === "message") {
      feed.append(el("p", "act act-message", event.text));
      lastCall = null;
    } else if (event.kind === "tool_call") {
      const call = el("details", "act act-tool");
      const summary = el("summary");
      summary.append(el("span", "act-tool-name", event.data?.tool || "tool"), " ");
      if (event.data?.path) {
        const link = el("a", "act-path", event.data.path);
        link.href = `${reviewUrl}#path=${encodeURIComponent(event.data.path)}`;
        summary.append(link);
      } else {
        summary.append(el("code", "act-input", event.data?.input || ""));
      }
      call.append(summary);
      feed.append(call);
      lastCall = call;
    } else if (event.kind === "tool_result") {
      const ok = event.data?.ok !== false;
      const result = el("pre", `act-result ${ok ? "ok" : "error"}`, event.text || (ok ? "ok" : "error"));
      if (lastCall) {
        lastCall.classList.add(ok ? "ok" : "error");
        lastCall.append(result);
      } else {
        feed.append(result);
      }
    } else if (event.kind === "usage") {
      feed.append(el("p", "act act-usage", event.text)); // what the CLI counted
    } else if (event.kind === "model_call") {
      // What the gateway forwarded; the line above shows its totals so far.
      feed.append(el("p", "act act-model", event.text));
      const total = event.data?.total;
      if (usageLine && total) {
        const plural = total.requests === 1 ? "" : "s";
        usageLine.textContent = `${total.requests} model request${plural} · ${total.input_tokens} tokens in, ${total.output_tokens} out · $${Number(total.cost_usd).toFixed(4)}`;
      }
    }
  };
}

function logView(page) {
  const log = document.getElementById("log");
  const feed = document.getElementById("activity");
  const addActivity = feed ? activityFeed(feed) : null;
  const follow = document.getElementById("follow-tail");
  const state = page.querySelector("[data-role=connection]");
  const progress = page.querySelector("[data-role=progress]");
  const progressText = page.querySelector("[data-role=progress-text]");
  let attempt = Number(page.dataset.attempt) || 0;
  let lastSeq = 0;
  let container = log;
  let lines = 0;

  /* The attempt's wait and run follow its status events: queued starts the wait, preparing
   * (a worker took it) ends it and starts the run, an ending ends whichever is open. */
  const wait = page.querySelector("[data-span=wait]");
  const run = page.querySelector("[data-span=run]");
  function spans(event) {
    if (!wait || !run) return;
    const status = event.data && event.data.status;
    if (status === "queued") {
      wait.dataset.created = event.ts;
      wait.dataset.finished = run.dataset.created = run.dataset.finished = "";
    } else if (status === "preparing") {
      wait.dataset.finished = run.dataset.created = event.ts;
    } else if (status && status !== "running") {
      if (!wait.dataset.finished) wait.dataset.finished = event.ts;
      if (run.dataset.created) run.dataset.finished = event.ts;
    }
    refreshDurations();
  }

  function line(event) {
    if (ACTIVITY_KINDS.has(event.kind)) {
      if (addActivity) addActivity(event);
      return;
    }
    if (event.kind === "group") {
      const details = document.createElement("details");
      details.open = true;
      details.className = "group";
      const summary = document.createElement("summary");
      summary.textContent = event.text;
      details.append(summary);
      container.append(details);
      container = details;
      return;
    }
    if (event.kind === "endgroup") {
      if (container !== log) container = container.parentElement.closest("details.group") || log;
      return;
    }
    if (event.kind === "status") spans(event);
    if (event.kind === "progress") {
      if (progress) {
        progress.value = event.data.percent;
        // Replayed progress of a job that has ended stays hidden (showCurrentJob).
        progress.parentElement.hidden = !UNSETTLED.has(page.dataset.status);
      }
      if (progressText) progressText.textContent = `${event.data.percent}% ${event.text}`;
    }
    if (event.kind === "summary" || (event.kind === "status" && event.data?.reason)) showOutcome(page, event);
    const row = document.createElement("div");
    row.className = `line kind-${event.kind}` + (event.stream ? ` stream-${event.stream}` : "");
    row.dataset.seq = event.seq;
    const ts = document.createElement("span");
    ts.className = "ts";
    ts.textContent = event.ts.slice(11, 19);
    const body = document.createElement("span");
    body.className = "text";
    const label = { progress: `${event.data?.percent ?? ""}% `, warning: "warning: ", error: "error: ",
      notice: "notice: ", status: "● " }[event.kind] || "";
    const where = event.data?.file ? `${event.data.file}${event.data.line ? ":" + event.data.line : ""}: ` : "";
    if (label || where) body.append(document.createTextNode(label + where));
    for (const [text, classes] of ansiRuns(event.text)) {
      const span = document.createElement("span");
      if (classes.length) span.className = classes.join(" ");
      span.textContent = text;
      body.append(span);
    }
    row.append(ts, body);
    container.append(row);
    lines += 1;
  }

  /* Keep the page light with huge logs: only the latest MAX_LOG_LINES stay in the DOM. */
  function trim() {
    while (lines > MAX_LOG_LINES) {
      const first = log.querySelector(".line");
      if (!first) break;
      first.remove();
      lines -= 1;
      noteHidden(1);
    }
  }

  let hidden = 0;
  function noteHidden(count) {
    hidden += count;
    let note = log.querySelector(".hidden-lines");
    if (!note) {
      note = document.createElement("div");
      note.className = "hidden-lines";
      log.prepend(note);
    }
    note.textContent = `${hidden} earlier lines not shown — see the full log.`;
  }

  function onMessage(message) {
    if (message.type === "skipped" && message.attempt === attempt) { noteHidden(message.count); return; }
    if (message.type !== "events") return;
    if (!attempt) attempt = message.attempt;
    if (message.attempt > attempt && !page.dataset.pinned) {
      attempt = message.attempt; lastSeq = 0; container = log;
      const sep = document.createElement("div");
      sep.className = "line kind-status attempt-start";
      sep.textContent = `— attempt ${attempt} —`;
      log.append(sep);
      if (feed) feed.append(sep.cloneNode(true));
    }
    if (message.attempt !== attempt) return;
    for (const event of message.events) {
      if (event.seq <= lastSeq) continue;  // never twice
      lastSeq = event.seq;
      line(event);
    }
    trim();
    if (follow && follow.checked) log.scrollTop = log.scrollHeight;
  }

  const socket = liveSocket(
    () => `${page.dataset.jobWs}?after=${lastSeq}` + (attempt ? `&attempt=${attempt}` : ""),
    onMessage,
    (s) => { if (state) state.textContent = s === "live" ? "" : s; page.dataset.connection = s; },
  );
  return socket;
}

/* A button with data-confirm asks before its form is sent (Cancel, Revoke, Remove): in the
 * capture phase, so neither the browser nor htmx sends a form the person did not confirm. */
function confirmDestructive(event) {
  const question = event.submitter && event.submitter.dataset.confirm;
  if (question && !window.confirm(question)) {
    event.preventDefault();
    event.stopImmediatePropagation();
  }
}

/* --- start ---------------------------------------------------------------------------------- */

document.addEventListener("submit", confirmDestructive, true);

document.addEventListener("DOMContentLoaded", () => {
  const icon = document.getElementById("favicon");
  if (icon) icon.dataset.plain = icon.href;
  seedKnown();
  localTimes();
  refreshDurations();
  setInterval(refreshDurations, 1000);
  const body = document.body;
  let opened = false;
  if (body.dataset.dashboardWs) {
    window.agenthubDashboard = liveSocket(() => body.dataset.dashboardWs, onDashboard, (state) => {
      body.dataset.connection = state;
      // Updates sent while the socket was down are not replayed: reload the list instead.
      if (state === "live" && opened && document.getElementById("job-list") && window.htmx) {
        htmx.ajax("GET", location.pathname + location.search, { target: "#job-list", swap: "outerHTML" })
          .then(seedKnown);
      }
      if (state === "live") opened = true;
    });
  }
  const page = document.querySelector("[data-job-ws]");
  if (page && document.getElementById("log")) window.agenthubJob = logView(page);
  document.body.addEventListener("htmx:afterSwap", () => {
    localTimes();
    document.querySelectorAll("template.new-card").forEach((template) => {
      const card = template.content.firstElementChild;
      template.remove();
      if (card && !known.has(card.dataset.job)) {
        known.set(card.dataset.job, card.dataset.status);
        placeCard({ id: card.dataset.job, status: card.dataset.status, submitter: card.dataset.submitter,
          repo: card.dataset.repo, agent: card.dataset.agent }, card.outerHTML);
      }
    });
  });
  document.body.addEventListener("htmx:historyRestore", filtersFromAddress);
  window.addEventListener("popstate", filtersFromAddress);
  document.body.addEventListener("job-submitted", () => {
    const prompt = document.getElementById("id_prompt");
    if (prompt) prompt.focus();
  });
});
