// Mirror page: polls api/state (POSTing the part of the picture on screen, where the gesture swatches go);
// touch actions go to api/action (the same seam gestures use, so a gesture's last_action shows the same feedback);
// gesture swatches and hold progress; idle attract screen; saved-look QR; keeps the shopper centred.
"use strict";
const $ = id => document.getElementById(id);
const POLL_MS = 400, TOAST_MS = 2800, LOOK_SHOW_MS = 20000, SWIPE_PX = 80;
// source icons as inline SVG (a mirror box may have no emoji font)
const SVG = d => `<svg viewBox="0 0 24 24" width="1em" height="1em" aria-hidden="true" fill="none" ` +
                 `stroke="currentColor" stroke-width="2" stroke-linecap="round" stroke-linejoin="round">${d}</svg>`;
const ICONS = {
  touch: SVG('<circle cx="12" cy="12" r="3" fill="currentColor"/><circle cx="12" cy="12" r="8"/>'),
  swipe: SVG('<path d="M3 12h18M7 8l-4 4 4 4M17 8l4 4-4 4"/>'),
  point: SVG('<circle cx="12" cy="12" r="7"/><path d="M12 2v5M12 17v5M2 12h5M17 12h5"/>'),
  palm: SVG('<path d="M7 12V6M10 11V4M14 11V4M17 12V7M6 12c0 5 2.5 9 6 9s6-3 6-9"/>'),
};
ICONS.gesture = ICONS.swipe;
let catalog = [], selected = {sku: "", colour: ""}, lastSeq = null, lookSeq = null, personX = null;
let toastTimer = 0, lookTimer = 0;

// every call has a deadline: a device that hangs (a stopped process, a dead link) keeps the connection open and
// never answers, and the page would wait for good instead of saying it is offline
async function api(path, body, ms = 3000) {
  const ctl = new AbortController(), timer = setTimeout(() => ctl.abort(), ms);
  try {
    const opts = body ? {method: "POST", headers: {"Content-Type": "application/json"}, body: JSON.stringify(body)}
                      : {cache: "no-store"};
    const r = await fetch(path, {...opts, signal: ctl.signal});
    return await r.json();
  } finally { clearTimeout(timer); }
}

function garmentName(sku) { const g = catalog.find(x => x.sku === sku); return g ? g.name : sku; }

function render() {
  const c = $("colours"), cur = catalog.find(x => x.sku === selected.sku);
  c.replaceChildren();
  for (const col of (cur ? cur.colours : [])) {
    const b = document.createElement("button");
    b.type = "button"; b.className = "swatch" + (col.name === selected.colour ? " on" : "");
    b.style.background = col.hex; b.title = col.name; b.dataset.colour = col.name;
    b.setAttribute("aria-label", `Colour ${col.name}`);
    b.onclick = () => act("colour", col.name);
    c.append(b);
  }
  $("garment-name").textContent = cur ? cur.name : "";
  const i = catalog.findIndex(x => x.sku === selected.sku);
  $("garment-pos").textContent = i >= 0 ? `${i + 1} / ${catalog.length}` : "";
}

async function act(action, value) {
  try {
    const s = await api("api/action", value === undefined ? {action} : {action, value});
    if (s.error) toast(s.error, ""); else update(s);
  } catch (e) { toast("Not available right now", ""); }
}

function toast(text, source) {
  const t = $("toast");
  t.replaceChildren(document.createTextNode(text));
  if (source) {
    const s = document.createElement("span");
    s.className = "src"; s.innerHTML = ICONS[source] || ""; s.append(` ${source}`); t.append(s);
  }
  t.hidden = true; void t.offsetWidth; t.hidden = false;  // restart the animation
  clearTimeout(toastTimer); toastTimer = setTimeout(() => { t.hidden = true; }, TOAST_MS);
}

function showLook(look) {
  $("look-qr").src = look.qr_svg;
  $("look-items").textContent = look.items.map(i => `${garmentName(i.sku)} (${i.colour})`).join(" \u00b7 ")
                                + (look.size ? ` \u00b7 size ${look.size}` : "");
  $("look").hidden = false;
  clearTimeout(lookTimer); lookTimer = setTimeout(hideLook, LOOK_SHOW_MS);
}

function hideLook() { $("look").hidden = true; clearTimeout(lookTimer); }

// picture px -> screen px under object-fit: cover and the current object-position (pan)
function coverMap(v) {
  const s = Math.max(v.clientWidth / v.naturalWidth, v.clientHeight / v.naturalHeight);
  const pos = getComputedStyle(v).objectPosition.split(" ").map(parseFloat);
  return {s, ox: (v.clientWidth - v.naturalWidth * s) * pos[0] / 100,
          oy: (v.clientHeight - v.naturalHeight * s) * pos[1] / 100};
}

// the part of the picture the shopper sees between the top bar and the controls, as picture fractions
// "x0,y0,x1,y1": sent with each poll, the mirror lays the gesture swatches out inside it
function pictureView() {
  const v = $("video");
  if (!v.naturalWidth || !v.clientWidth) return "";
  const m = coverMap(v), pw = v.naturalWidth * m.s, ph = v.naturalHeight * m.s;
  const top = $("top").getBoundingClientRect().bottom, bottom = $("colours").getBoundingClientRect().top;
  const c = x => Math.min(1, Math.max(0, x));
  const f = [c(-m.ox / pw), c((top - m.oy) / ph), c((v.clientWidth - m.ox) / pw), c((bottom - m.oy) / ph)];
  return f[2] - f[0] >= 0.05 && f[3] - f[1] >= 0.05 ? f.map(x => x.toFixed(3)).join(",") : "";
}

// the gesture swatches (point at one and hold to pick its colour) over the picture, the hold in progress, and the
// open-palm hold on the Save button; nothing when gestures are off or nobody is there
function drawGestures(g) {
  const el = $("gestures"), v = $("video");
  $("save").style.setProperty("--hold", `${Math.round(100 * (g && g.holds.palm ? g.holds.palm.progress : 0))}%`);
  if (!g || !g.swatches.length || !v.naturalWidth) { el.hidden = true; return; }
  const m = coverMap(v), pw = v.naturalWidth * m.s, ph = v.naturalHeight * m.s;
  const cur = catalog.find(x => x.sku === selected.sku), cols = cur ? cur.colours : [];
  const hold = g.holds.point;
  const out = [];
  let top = Infinity, right = 0;
  g.swatches.forEach((sw, i) => {
    const col = typeof sw.colour === "number" ? cols[sw.colour] : cols.find(c => c.name === sw.colour);
    if (!col) return;
    const [x0, y0, x1, y1] = [m.ox + sw.rect[0] * pw, m.oy + sw.rect[1] * ph, m.ox + sw.rect[2] * pw,
                              m.oy + sw.rect[3] * ph];
    const d = Math.min(x1 - x0, y1 - y0), e = document.createElement("div");
    e.className = "gswatch" + (col.name === selected.colour ? " on" : "") + (hold && hold.swatch === i ? " holding" : "");
    e.style.cssText = `left:${(x0 + x1 - d) / 2}px;top:${(y0 + y1 - d) / 2}px;width:${d}px;height:${d}px;` +
                      `background:${col.hex}`;
    if (hold && hold.swatch === i) e.style.setProperty("--p", `${Math.round(hold.progress * 100)}%`);
    e.dataset.colour = col.name; e.title = col.name;
    out.push(e); top = Math.min(top, (y0 + y1 - d) / 2); right = Math.max(right, (x0 + x1 + d) / 2);
  });
  if (!out.length) { el.hidden = true; return; }
  const lab = document.createElement("div");
  lab.className = "glabel" + (g.running ? "" : " idle");
  lab.innerHTML = `${ICONS.point} Point to pick`;
  lab.style.cssText = `right:${v.clientWidth - right}px;top:${top}px`;
  el.replaceChildren(...out, lab);
  el.hidden = false;
}

// object-fit: cover crops a landscape camera on a portrait screen: pan the crop so the person stays centred
function frameShopper() {
  const v = $("video");
  if (!v.naturalWidth) return;
  const iw = v.naturalWidth * coverMap(v).s, spare = iw - v.clientWidth;
  let p = 0.5;
  if (personX !== null && spare > 1) p = Math.min(1, Math.max(0, (personX * iw - v.clientWidth / 2) / spare));
  const cur = parseFloat(v.dataset.panX || "50"), want = p * 100;
  if (Math.abs(want - cur) > 3 || (personX === null && cur !== 50)) {
    v.dataset.panX = want.toFixed(1); v.style.objectPosition = `${want.toFixed(1)}% 50%`;
  }
}

function update(s) {
  $("size").textContent = s.size_suggestion ? `Suggested size: ${s.size_suggestion}` : "Stand facing the mirror\u2026";
  const st = $("stats");
  st.hidden = !window.MIRROR_SHOW_STATS || !s.present;  // staff diagnostics, never over the attract screen
  st.textContent = `${s.fps} fps \u00b7 m2p p50 ${s.m2p_p50_ms ?? "\u2013"} ms / p95 ${s.m2p_p95_ms ?? "\u2013"} ms`;
  const n = $("notice");
  n.hidden = s.renderer !== "unavailable" && !s.hint;  // the hint drawn in the frame may sit under the controls
  n.textContent = s.renderer === "unavailable" ? "Try-on unavailable: showing the camera view" : (s.hint || "");
  if (s.sku !== selected.sku || s.colour !== selected.colour) { selected = {sku: s.sku, colour: s.colour}; render(); }
  $("attract").hidden = !!s.present;
  $("size").hidden = !s.present;
  personX = s.person_x ?? null; frameShopper();
  drawGestures(s.present ? s.gestures : null);
  const a = s.last_action;
  if (a && a.seq !== lastSeq && (lastSeq !== null || a.age_s < 2)) toast(a.label, a.source);
  if (a) lastSeq = a.seq; else if (lastSeq === null) lastSeq = 0;
  if (!s.look) { hideLook(); lookSeq = lookSeq ?? 0; }
  else if (s.look.seq !== lookSeq) { if (lookSeq !== null) showLook(s.look); lookSeq = s.look.seq; }
}

// the picture is one long MJPEG response: when it ends (the device restarted) the <img> keeps its last frame, a
// frozen mirror, and fires nothing. Open a new stream when the state comes back after failing, and after an error.
let serverDown = false;
function reopenStream() { $("video").src = `stream.mjpg?open=${Date.now()}`; }
function offline(down) { serverDown = down; $("offline").hidden = !down; }

async function poll() {
  const view = pictureView();
  try {
    update(await api("api/state", view ? {view} : undefined));
    if (serverDown) reopenStream();
    offline(false);
  } catch (e) { offline(true); /* killed, restarting or hung: the picture is frozen, the buttons do nothing */ }
  setTimeout(poll, POLL_MS);
}

function wire() {
  $("prev").onclick = () => act("prev_garment");
  $("next").onclick = () => act("next_garment");
  $("save").onclick = () => act("save_look");
  $("look-close").onclick = hideLook;
  $("look").onclick = e => { if (e.target === $("look")) hideLook(); };
  addEventListener("keydown", e => {
    if (e.key === "ArrowRight") act("next_garment");
    else if (e.key === "ArrowLeft") act("prev_garment");
    else if (e.key === "Escape") hideLook();
  });
  let x0 = null;  // a finger swiped across the picture: previous / next garment
  $("video").addEventListener("pointerdown", e => { x0 = e.clientX; });
  $("video").addEventListener("pointerup", e => {
    if (x0 !== null && Math.abs(e.clientX - x0) > SWIPE_PX) act(e.clientX < x0 ? "next_garment" : "prev_garment");
    x0 = null;
  });
  $("video").addEventListener("load", frameShopper);
  $("video").addEventListener("error", () => setTimeout(reopenStream, 1000));
  addEventListener("resize", frameShopper);
}

(async () => {
  wire();
  for (;;) {
    try { const c = await api("api/catalog"); catalog = c.garments; selected = c.selected; break; }
    catch (e) { offline(true); await new Promise(r => setTimeout(r, 1000)); }
  }
  render(); poll();
})();
