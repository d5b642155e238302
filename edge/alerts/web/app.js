// Staff page: polls the alert API, renders one card per open alert, posts Acknowledge / Resolve.
// Every text goes through textContent (rule titles, names and notes are never parsed as HTML).
"use strict";

const API = document.body.dataset.api || "/api/alerts";
const POLL_MS = 2000;
const OPS = { ">": ">", ">=": "≥", "<": "<", "<=": "≤" };
const $ = (id) => document.getElementById(id);
const cards = new Map(); // alert_id -> card element (kept across polls so a note being typed survives)
const SHELF_API = document.body.dataset.shelfApi || "/api/shelf/reference";
const SHELF_METRICS = new Set(["facing_empty", "camera_moved"]); // alerts a new shelf reference answers
let actions = new Set(); // what this device offers besides ack / resolve (from GET /api/alerts)

function el(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined && text !== null) e.textContent = String(text);
  return e;
}

function duration(s) {
  s = Math.max(0, Math.round(s));
  if (s < 60) return `${s} s`;
  const m = Math.floor(s / 60);
  if (m < 60) return s % 60 && m < 10 ? `${m} min ${s % 60} s` : `${m} min`;
  return `${Math.floor(m / 60)} h ${m % 60} min`;
}

function fmtValue(v, unit) {
  if (v === null || v === undefined) return "–";
  if (typeof v === "boolean") return v ? "yes" : "no";
  if (typeof v === "string") return v;
  if (unit === "s") return duration(v);
  const n = Number.isInteger(v) ? v : Math.round(v * 10) / 10;
  return unit ? `${n} ${unit}` : String(n);
}

// Times are shown in the store's zone (the one the rules' hours use, from GET /api/alerts), not the browser's: its
// IANA name when the device knows one the browser accepts, else its current UTC offset.
let zone = { name: null, offset: 0 };
const formats = new Map(); // zone name -> Intl.DateTimeFormat

function setZone(name, offsetS) {
  zone = { name: null, offset: Number.isFinite(offsetS) ? offsetS : 0 };
  if (!name) return;
  if (!formats.has(name)) {
    try {
      formats.set(name, new Intl.DateTimeFormat([], { hour: "2-digit", minute: "2-digit", timeZone: name }));
    } catch (e) { // RangeError: a zone this browser does not know
      formats.set(name, null);
    }
  }
  if (formats.get(name)) zone.name = name;
}

function clock(ts) {
  if (!ts) return "";
  if (zone.name) return formats.get(zone.name).format(new Date(ts * 1000));
  if (!formats.has("UTC")) {
    formats.set("UTC", new Intl.DateTimeFormat([], { hour: "2-digit", minute: "2-digit", timeZone: "UTC" }));
  }
  return formats.get("UTC").format(new Date((ts + zone.offset) * 1000)); // the store's wall clock, shown as UTC
}

// fetch with a deadline: a device that hangs (a stopped process, a dead Wi-Fi link) keeps the connection open and
// never answers, and without one the page would go on saying "Updated" (or keep its buttons disabled) for good.
// {ok, status, body}: body is the parsed JSON, or null when the answer is not JSON.
async function request(url, opts = {}, ms = 5000) {
  const ctl = new AbortController();
  const timer = setTimeout(() => ctl.abort(), ms);
  try {
    const r = await fetch(url, { ...opts, signal: ctl.signal });
    const text = await r.text(); // inside the deadline too: a hang after the headers is still a hang
    let body = null;
    try { body = JSON.parse(text); } catch (e) { /* an error page, not JSON */ }
    return { ok: r.ok, status: r.status, body };
  } finally {
    clearTimeout(timer);
  }
}

function staffName() {
  return $("staff-name").value.trim();
}

function toast(msg) {
  const t = $("toast");
  t.textContent = msg;
  t.hidden = false;
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => { t.hidden = true; }, 3500);
}

async function act(alertId, action, card) {
  const buttons = card.querySelectorAll("button");
  buttons.forEach((b) => { b.disabled = true; });
  try {
    const r = await request(`${API}/${encodeURIComponent(alertId)}/${action}`, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ by: staffName(), note: card.querySelector("input.note").value }),
    }, 10000);
    if (!r.ok) {
      toast((r.body && r.body.error) || `Could not ${action} (HTTP ${r.status})`);
    } else {
      card.querySelector("input.note").value = "";
      toast(action === "ack" ? "Acknowledged" : "Resolved");
    }
  } catch (e) {
    toast("No connection to the device");
  } finally {
    buttons.forEach((b) => { b.disabled = false; });
    refresh();
  }
}

// Retake the shelf reference after restocking: the facing of a facing_empty alert, every facing for camera_moved.
async function retakeReference(a, card) {
  const buttons = card.querySelectorAll("button");
  buttons.forEach((b) => { b.disabled = true; });
  try {
    const r = await request(SHELF_API, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ facing: a.metric === "facing_empty" ? a.key : "", by: staffName() }),
    }, 10000);
    const body = r.body || {};
    if (!r.ok) toast(body.error || `Could not retake the reference (HTTP ${r.status})`);
    else toast(`New reference for ${(body.pending || []).join(", ") || "the shelf"}: taken when nobody is in front`);
  } catch (e) {
    toast("No connection to the device");
  } finally {
    buttons.forEach((b) => { b.disabled = false; });
  }
}

function evidenceItems(a) {
  const items = [];
  const ev = a.evidence || {};
  if (a.key_kind && ev[a.key_kind]) items.push(`${label(a.key_kind)}: ${ev[a.key_kind]}`);
  if (ev.track_ids && ev.track_ids.length) items.push(`people #${ev.track_ids.join(", #")}`);
  if (ev.durations_s) {
    for (const [id, s] of Object.entries(ev.durations_s)) items.push(`#${id} for ${duration(s)}`);
  }
  if (ev.models) for (const [name, ver] of Object.entries(ev.models)) items.push(`model ${name} ${ver}`);
  if (ev.detail) for (const [k, v] of Object.entries(ev.detail)) items.push(`${k}: ${typeof v === "object" ? JSON.stringify(v) : v}`);
  if (a.duplicates && a.duplicates.length) items.push(`also: ${a.duplicates.join(", ")}`);
  return items;
}

function makeCard(a) {
  const li = el("li", "card");
  li.dataset.alertId = a.alert_id;
  const top = el("div", "top");
  top.append(el("span", "badge sev"), el("span", "badge escalated", "escalated"), el("span", "badge state"),
    el("span", "age"));
  const actions = el("div", "actions");
  const note = el("input", "note");
  note.type = "text";
  note.maxLength = 512;
  note.placeholder = "Note (optional)";
  note.setAttribute("aria-label", "Note");
  const ack = el("button", "ack", "Acknowledge");
  const resolve = el("button", "resolve", "Resolve");
  ack.type = resolve.type = "button";
  ack.addEventListener("click", () => act(a.alert_id, "ack", li));
  resolve.addEventListener("click", () => act(a.alert_id, "resolve", li));
  const retake = el("button", "retake", "Retake reference");
  retake.type = "button";
  retake.title = "After restocking: the shelf as it looks now becomes the reference";
  retake.hidden = true;
  retake.addEventListener("click", () => retakeReference(a, li));
  actions.append(note, ack, retake, resolve);
  li.append(top, el("div", "title"), el("div", "facts"), el("div", "rule"), el("ul", "evidence"), el("p", "ackline"),
    actions);
  return li;
}

function fillCard(li, a, now) {
  li.className = `card sev-${a.severity}${a.state === "acked" ? " acked" : ""}`;
  const sev = li.querySelector(".badge.sev");
  sev.className = `badge sev sev-${a.severity}`;
  sev.textContent = a.severity;
  li.querySelector(".badge.escalated").hidden = !a.escalated;
  const state = li.querySelector(".badge.state");
  state.className = `badge state ${a.state}`;
  state.textContent = a.state === "acked" ? "acknowledged" : "open";
  li.querySelector(".age").textContent = `open ${duration(now - a.opened_at)} · since ${clock(a.opened_at)}`;
  li.querySelector(".title").textContent = a.title;
  let facts;
  if (a.op) {
    facts = `Now ${fmtValue(a.current_value, a.unit)} · peak ${fmtValue(a.peak_value, a.unit)}`
      + ` · alert at ${OPS[a.op] || a.op} ${fmtValue(a.threshold, a.unit)}`;
  } else {
    facts = a.current_value ? "Still happening" : "No longer detected – confirming";
  }
  li.querySelector(".facts").textContent = facts;
  li.querySelector(".rule").textContent = a.title !== a.condition ? `Rule: ${a.condition}` : "";
  const ul = li.querySelector(".evidence");
  ul.replaceChildren(...evidenceItems(a).map((t) => el("li", null, t)));
  const ackline = li.querySelector(".ackline");
  ackline.hidden = a.state !== "acked";
  ackline.textContent = a.state === "acked"
    ? `Acknowledged by ${a.acked_by || "staff"} at ${clock(a.acked_at)}${a.ack_note ? ` – “${a.ack_note}”` : ""}` : "";
  li.querySelector("button.ack").hidden = a.state !== "open";
  li.querySelector("button.retake").hidden = !(actions.has("shelf_reference") && SHELF_METRICS.has(a.metric));
}

function renderAlerts(alerts, now) {
  const list = $("alerts");
  const seen = new Set();
  alerts.forEach((a, i) => {
    seen.add(a.alert_id);
    let li = cards.get(a.alert_id);
    if (!li) {
      li = makeCard(a);
      cards.set(a.alert_id, li);
    }
    fillCard(li, a, now);
    if (list.children[i] !== li) list.insertBefore(li, list.children[i] || null);
  });
  for (const [id, li] of cards) {
    if (!seen.has(id)) {
      li.remove();
      cards.delete(id);
    }
  }
  const open = alerts.filter((a) => a.state === "open").length;
  const count = $("alert-count");
  count.textContent = String(alerts.length);
  count.className = `count${open ? " hot" : ""}`;
  $("empty").hidden = alerts.length > 0;
  document.title = open ? `(${open}) ${document.title.replace(/^\(\d+\) /, "")}` : document.title.replace(/^\(\d+\) /, "");
}

function label(k) {
  return String(k).replace(/_/g, " ");
}

const isObj = (v) => v !== null && typeof v === "object" && !Array.isArray(v);

// A tile's text: a number, or an object of numbers as "148 in · 131 out" (null shows as "–", never "null").
function liveText(v) {
  if (Array.isArray(v)) return v.length ? v.map((x) => liveText(x)).join(", ") : "–";
  if (isObj(v)) {
    const parts = Object.entries(v).map(([k, x]) => `${liveText(x)} ${label(k)}`);
    return parts.length ? parts.join(" · ") : "–";
  }
  return fmtValue(v, "");
}

// Top-level numbers are loose tiles, each top-level object a titled group of tiles; an object holding objects
// (another camera's counts under `cameras`) becomes its own group, titled with its path ("cameras › cam-2").
function liveGroups(obj, path, nodes) {
  const at = nodes.length; // a group goes before the groups of the objects it holds
  const tiles = el("div", "tiles");
  for (const [k, v] of Object.entries(obj)) {
    if (isObj(v) && (!path.length || Object.values(v).some(isObj))) {
      liveGroups(v, [...path, label(k)], nodes);
    } else {
      const wide = isObj(v) || Array.isArray(v);
      const t = el("div", wide ? "tile wide" : "tile");
      t.append(el("div", wide ? "v small" : "v", liveText(v)), el("div", "k", label(k)));
      tiles.append(t);
    }
  }
  if (!tiles.children.length) return;
  let node = tiles;
  if (path.length) {
    node = el("div", "group");
    node.append(el("h3", null, path.join(" › ")), tiles);
  }
  nodes.splice(at, 0, node);
}

function renderLive(live) {
  const box = $("live");
  const nodes = [];
  liveGroups(isObj(live) ? live : {}, [], nodes);
  box.replaceChildren(...(nodes.length ? nodes : [el("p", "muted", "No live counts.")]));
}

function renderResolved(resolved) {
  const ol = $("resolved");
  if (!resolved.length) {
    ol.replaceChildren(el("li", "muted", "Nothing resolved yet."));
    return;
  }
  ol.replaceChildren(...resolved.map((a) => {
    const li = el("li");
    const how = a.resolution === "cleared" ? "cleared by itself" : `resolved by ${a.resolved_by || "staff"}`;
    li.append(el("span", null, a.title),
      el("span", "how", `${how} at ${clock(a.resolved_at)}${a.resolve_note ? ` – “${a.resolve_note}”` : ""}`));
    return li;
  }));
}

// Polls overlap when a click refreshes during a poll: an answer older than the one shown is dropped (it would bring
// back an alert as it was before the click).
async function refresh() {
  clearTimeout(refresh.timer);
  const seq = (refresh.seq = (refresh.seq || 0) + 1);
  try {
    const r = await request(API, { cache: "no-store" });
    if (!r.ok || !r.body) throw new Error(`HTTP ${r.status}`);
    const data = r.body;
    if (seq < (refresh.shown || 0)) return;
    refresh.shown = seq;
    actions = new Set(data.actions || []);
    setZone(data.timezone, data.utc_offset_s);
    renderAlerts(data.alerts, data.now);
    renderLive(data.live);
    renderResolved(data.resolved);
    const s = $("status");
    s.className = "status ok";
    s.textContent = `Updated ${clock(data.now)}`;
  } catch (e) {
    if (seq < (refresh.shown || 0)) return;
    const s = $("status");
    s.className = "status down";
    s.textContent = "Connection lost – retrying";
  } finally {
    refresh.timer = setTimeout(refresh, POLL_MS);
  }
}

const nameInput = $("staff-name");
nameInput.value = localStorage.getItem("staffName") || "";
nameInput.addEventListener("change", () => localStorage.setItem("staffName", staffName()));
refresh();
