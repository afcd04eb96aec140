// The guard's status page: polls status.json (the report `guardctl status --json` prints) every
// 2 s and renders it. Every value goes in as text nodes, never parsed as HTML: names arrive
// by sync from other machines and are untrusted. No framework, no build step, no CDN.
"use strict";

const REFRESH_MS = 2000;
const MARKS = { "healthy": "OK", "degraded": "DEGRADED", "not running": "NOT RUNNING",
                "not guarded": "NOT GUARDED" };
const TITLES = { server: "server", rewrite: "path rewriting", conflicts: "conflict copies",
                 vault: "vault", peers: "heartbeats", gc: "gc watch", watch: "watcher" };

// A value for a person, on one line: absent in words, booleans as yes/no, control characters
// (a newline in a synced name) and invisible format characters escaped, as `guardctl status`.
function said(value, absent) {
  if (value === null || value === undefined || value === "") return absent || "unknown";
  if (value === true) return "yes";
  if (value === false) return "no";
  return String(value).replace(/[\u0000-\u001f\u007f-\u009f\u00ad\u200b-\u200f\u2028-\u202e\u2060-\u2064\ufeff]/g, (ch) => {
    const named = { "\n": "\\n", "\r": "\\r", "\t": "\\t" }[ch];
    if (named) return named;
    const code = ch.charCodeAt(0);
    return code < 0x100 ? "\\x" + code.toString(16).padStart(2, "0")
                        : "\\u" + code.toString(16).padStart(4, "0");
  });
}

function plural(n, noun, many) {
  return n + " " + (n === 1 ? noun : (many || noun + "s"));
}

function duration(seconds) {
  if (seconds === null || seconds === undefined) return "unknown";
  const s = Math.max(0, Math.round(seconds));
  if (s < 60) return s + "s";
  if (s < 3600) return Math.floor(s / 60) + "m " + String(s % 60).padStart(2, "0") + "s";
  if (s < 86400) return Math.floor(s / 3600) + "h " + String(Math.floor(s % 3600 / 60)).padStart(2, "0") + "m";
  return Math.floor(s / 86400) + "d " + Math.floor(s % 86400 / 3600) + "h";
}

function when(epoch) {
  if (!epoch) return "unknown";
  const d = new Date(epoch * 1000);
  const pad = (n) => String(n).padStart(2, "0");
  return d.getFullYear() + "-" + pad(d.getMonth() + 1) + "-" + pad(d.getDate()) + " " +
         pad(d.getHours()) + ":" + pad(d.getMinutes()) + ":" + pad(d.getSeconds());
}

function ago(epoch) {
  return epoch ? duration(Date.now() / 1000 - epoch) + " ago" : "never";
}

// An element with text children only (strings become text nodes).
function el(tag, cls, ...children) {
  const node = document.createElement(tag);
  if (cls) node.className = cls;
  for (const child of children) {
    node.appendChild(typeof child === "string" ? document.createTextNode(child) : child);
  }
  return node;
}

function byId(id) { return document.getElementById(id); }

function fill(container, nodes) {
  container.replaceChildren(...nodes);
}

function rows(tableId, items, cells, empty) {
  const table = byId(tableId);
  const body = table.tBodies[0];
  const out = items.map((item) => {
    const tr = el("tr", null);
    for (const cell of cells(item)) {
      const [text, cls] = Array.isArray(cell) ? cell : [cell, null];
      tr.appendChild(el("td", cls, text));
    }
    return tr;
  });
  if (!out.length && empty) {
    const td = el("td", "muted", empty);
    td.colSpan = table.tHead ? table.tHead.rows[0].cells.length : 2;
    out.push(el("tr", null, td));
  }
  fill(body, out);
}

function pairs(tableId, list) {
  const body = byId(tableId).tBodies[0];
  fill(body, list.filter((p) => p !== null).map(([key, value, cls]) =>
    el("tr", null, el("th", null, key), el("td", cls || null, value))));
}

function items(listId, lines, cls, empty) {
  const nodes = lines.map((line) => el("li", cls, line));
  if (!nodes.length && empty) nodes.push(el("li", "muted", empty));
  fill(byId(listId), nodes);
}

function renderHeader(r) {
  const state = r.state || "unknown";
  byId("top").className = "state-" + state.replace(/ /g, "-");
  byId("verdict").textContent = MARKS[state] || said(state).toUpperCase();
  byId("reason").textContent = said(r.reason, "");
  const age = r.status_age_s === null || r.status_age_s === undefined ? "" :
    "; the daemon wrote its status " + duration(r.status_age_s) + " before";
  byId("updated").textContent = "Checked " + when(Date.now() / 1000) + age + ".";
}

function renderOverview(r) {
  const d = r.daemon || {}, s = r.server || {}, health = s.health || {};
  const tree = (s.tree || []).map((t) => t.pid + (t.alive ? "" : " (gone)")).join(", ");
  pairs("overview", [
    ["store", said(r.store, "not configured")],
    ["this machine", said(r.host_id)],
    ["daemon", d.alive ? "pid " + d.pid + ", up " + duration(d.uptime_s) : "not running",
     d.alive ? "ok" : "bad"],
    d.alive ? ["server", said(r.phase) + (s.pid ? "; pid " + s.pid + (tree ? " (tree: " + tree + ")" : "")
                                                : "; no server process"),
               r.phase === "running" ? "ok" : "bad"] : null,
    d.alive ? ["url", said(s.url, "none yet") + " — " + (health.ok ? "answering" : said(health.detail, "not checked")),
               health.ok ? "ok" : "bad"] : null,
    ["restarts", r.restarts + (r.last_reason ? "; last reason: " + said(r.last_reason) : "")],
    ["mlflow", said(r.mlflow_version)],
    ["guard", said(r.guard_version)],
    ["config", said(r.config_file, "defaults and flags only")],
    ["logs", said(r.log_file, "unknown") + "  ·  " + said(r.server_log_file, "unknown")],
    ["strays", (r.strays || []).length ? (r.strays || []).map((p) =>
      "pid " + p.pid + " (" + said(p.user) + "), port " + said(p.port) + ", store " + said(p.store)).join("; ")
      : "none", (r.strays || []).length ? "bad" : null],
  ]);
}

function renderParts(r) {
  const parts = Object.entries(r.parts || {});
  rows("parts", parts, ([name, p]) => {
    const state = p.state || "running";
    const bad = state !== "running" || p.error;
    return [TITLES[name] || said(name), [said(state) + (p.held ? ": " + said(p.held) : ""), bad ? "bad" : "ok"],
            String(p.restarts || 0), said(p.last_error || p.error, "none")];
  }, r.daemon && r.daemon.alive ? "no parts reported" : "the daemon is not running");
}

function renderPeers(r) {
  const peers = r.peers;
  const notes = [];
  if (!peers) notes.push("Known while the daemon runs.");
  else {
    if (!(peers.list || []).length) notes.push("None seen: no other guard's heartbeat has synced in.");
    for (const t of [peers.clash, peers.warning, peers.error]) if (t) notes.push(said(t));
  }
  byId("peers-note").textContent = notes.join(" ");
  rows("peers", (peers && peers.list) || [], (h) => [
    said(h.host_id), duration(h.age_s) + " ago", said(h.mlflow_version), said(h.guard_version),
    said(h.platform), h.stale ? ["STALE (" + said(h.state) + ")", "bad"] : [said(h.state), "ok"],
  ]);
}

function renderLocks(r) {
  const locks = r.locks || [];
  byId("locks-note").textContent = locks.length ? "" : "No cross-machine lock is held.";
  rows("locks", locks, (l) => [said(l.resource), said(l.holder), said(l.state), duration(l.age_s)]);
}

function renderRefusals(r) {
  const refused = r.refusals || [];
  byId("refusals-note").textContent = refused.length ? "" : "No request was refused in the last 24 hours.";
  rows("refusals", refused, (f) => [
    [when(f.at), "when"], said(f.method) + " " + said(f.path) + (f.status && f.status !== 403 ? " (" + f.status + ")" : ""),
    said(f.what), said(f.reason),
  ]);
}

function renderConflicts(r) {
  const c = r.conflicts;
  if (!c) { pairs("conflicts", [["state", "known while the daemon runs"]]); items("conflict-items", []); return; }
  if (c.enabled === false) { pairs("conflicts", [["state", "not resolved (conflicts.enabled: false)", "bad"]]); items("conflict-items", []); return; }
  pairs("conflicts", [
    ["need a person", c.needs_attention ? plural(c.needs_attention, "copy", "copies") + " — `guardctl conflicts` lists them" : "none",
     c.needs_attention ? "bad" : "ok"],
    ["resolved", plural(c.resolved || 0, "copy", "copies") + " since the daemon started"],
    ["waiting", plural(c.waiting || 0, "copy", "copies")],
    ["left alone", c.left_alone ? plural(c.left_alone, "copy", "copies") + " (not regular files or too large)" : "none"],
    ["last scan", ago(c.last_scan) + (c.paused ? "; paused: store lost" : "")],
  ]);
  const lines = [];
  for (const m of c.renumbered || []) {
    lines.push("renumbered model " + said(m.model) + ": " + (m.was === null || m.was === undefined ? "renumbered" : "was version " + m.was) +
               " on " + said(m.host, "an unknown machine") + ", now " + m.now);
  }
  for (const same of c.same_names || []) {
    lines.push("experiment name " + said(same.name) + " is held by " + plural((same.ids || []).length, "experiment") + " (ids " + (same.ids || []).map((i) => said(i)).join(", ") + ")");
  }
  if (c.error) lines.push(said(c.error));
  items("conflict-items", lines, "bad");
}

function renderVault(r) {
  const v = r.vault;
  if (!v) { pairs("vault", [["state", "known while the daemon runs"]]); items("vault-unprotected", []); rows("vault-recent", [], () => []); return; }
  if (v.enabled === false) {
    pairs("vault", [["state", "off (vault.enabled: false): deletions are not put back", "bad"]]);
    items("vault-unprotected", []); rows("vault-recent", [], () => []); return;
  }
  const state = v.unmounted || v.paused ? "PAUSED: the store looks unmounted, nothing is restored" : v.ready ? "ok" : `building (${v.pass_folders || 0} store folders so far)`;
  pairs("vault", [
    ["state", state, state === "ok" ? "ok" : "bad"],
    ["mode", said(v.mode) + ", policy " + said(v.policy)],
    ["where", said(v.path)],
    ["restored", plural(v.restored || 0, "unit") + "; " + plural(v.alerts || 0, "alert") + "; " + (v.followed || 0) + " sanctioned or moved since start"],
    ["last pass", ago(v.last_pass)],
  ]);
  const lines = [];
  if (v.too_large) lines.push(plural(v.too_large, "artifact") + " above vault.copy_max_bytes not kept (copy mode)");
  for (const u of v.unprotected || []) {
    const shown = (u.examples || []).map((e) => said(e));
    const more = (u.count || 0) - shown.length;
    lines.push(plural(u.count || 0, "store file") + " not kept (" + said(u.reason) + "): " + shown.join(", ") +
               (more > 0 ? " and " + more + " more" : "") + "; deleting " + (u.count === 1 ? "it" : "them") +
               " cannot be undone: " + said(u.fix, "see the log"));
  }
  if (v.unprotected_more) lines.push("and more store files the vault could not keep than it lists (see the log)");
  if (v.not_regular) lines.push(plural(v.not_regular, "symlink, FIFO or device", "symlinks, FIFOs or devices") + " in the store left alone: not kept, never followed");
  for (const e of v.incomplete || []) lines.push("restore incomplete: " + said(e.path) + " (" + said(e.kind) + "): " + said(e.reason));
  for (const e of v.recent || []) if (e.action === "refused") lines.push("refused: " + said(e.path) + " (" + said(e.kind) + "): " + said(e.reason));
  if (v.error) lines.push(said(v.error));
  items("vault-unprotected", lines, "bad", "nothing: every deletion so far could be undone");
  rows("vault-recent", v.recent || [], (e) => [[ago(e.at), "when"], said(e.action), said(e.path), said(e.kind), said(e.reason)],
       "no restores or alerts since the daemon started");
}

function renderPaths(r) {
  const p = r.portability;
  const rw = p || {};
  if (!p) { pairs("paths", [["state", "known while the daemon runs"]]); return; }
  if (rw.enabled === false) { pairs("paths", [["state", "rewriting disabled (rewrite.enabled: false)"]]); return; }
  const quiet = Math.min(rw.deferred_quiet || 0, rw.deferred_in_flight || 0);
  const busy = (rw.deferred_in_flight || 0) - quiet;
  pairs("paths", [
    ["watching", said(rw.watch_mode, "not yet") + (rw.paused ? " (paused: store lost)" : "")],
    ["rewrites", plural(rw.rewrites_total || 0, "rewrite") + ", " + (rw.rewrites_last_hour || 0) + " in the last hour"],
    rw.last_rewrite ? ["last rewrite", ago(rw.last_rewrite.time) + ": " + said(rw.last_rewrite.file)] : null,
    ["waiting", plural(busy, "location") + " of runs or models in progress; " + plural(quiet, "experiment") + " waiting out a quiet spell; " + plural(rw.pending_foreign || 0, "foreign path") + " left to their machine"],
    ["unportable", rw.unportable_count ? plural(rw.unportable_count, "path") + " — `guardctl fix --dry-run` lists them" : "none",
     rw.unportable_count ? "bad" : null],
  ]);
}

function renderJournal(r) {
  rows("journal", r.journal || [], (j) => [[when(j.at), "when"], said(j.journal), said(j.text)],
       "nothing journaled yet");
}

function render(r) {
  renderHeader(r);
  const guarded = r.state !== "not guarded";
  byId("content").hidden = !guarded;
  if (!guarded) return;
  const todo = (r.problems || []).map((p) => said(p));
  byId("todo-section").className = todo.length ? "" : "none";
  items("todo", todo, "bad", "Nothing: every part works.");
  renderOverview(r);
  renderParts(r);
  renderPeers(r);
  renderLocks(r);
  renderRefusals(r);
  renderConflicts(r);
  renderVault(r);
  renderPaths(r);
  renderJournal(r);
}

async function refresh() {
  const error = byId("fetch-error");
  try {
    const answer = await fetch("status.json", { cache: "no-store", credentials: "same-origin" });
    if (!answer.ok) throw new Error("the server answered HTTP " + answer.status);
    render(await answer.json());
    error.hidden = true;
    document.body.dataset.loaded = "yes";
  } catch (exc) {
    byId("top").className = "state-unreachable";
    byId("verdict").textContent = "NOT ANSWERING";
    error.textContent = "The guard's server is not answering (" + said(exc && exc.message) +
      "); the page tries again every 2 seconds. If it stays so, run `guardctl status` on the machine.";
    error.hidden = false;
  } finally {
    setTimeout(refresh, REFRESH_MS);
  }
}

document.addEventListener("DOMContentLoaded", refresh);
