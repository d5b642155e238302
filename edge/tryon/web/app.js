// Mirror page: polls api/state; touch actions go to api/action (the same seam gestures use, so a gesture's
// last_action shows the same feedback); idle attract screen; saved-look QR; keeps the shopper centred.
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

async function api(path, body) {
  const r = await fetch(path, body ? {method: "POST", headers: {"Content-Type": "application/json"},
                                      body: JSON.stringify(body)} : {cache: "no-store"});
  return r.json();
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

// object-fit: cover crops a landscape camera on a portrait screen: pan the crop so the person stays centred
function frameShopper() {
  const v = $("video");
  if (!v.naturalWidth) return;
  const s = Math.max(v.clientWidth / v.naturalWidth, v.clientHeight / v.naturalHeight);
  const iw = v.naturalWidth * s, spare = iw - v.clientWidth;
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
  const a = s.last_action;
  if (a && a.seq !== lastSeq && (lastSeq !== null || a.age_s < 2)) toast(a.label, a.source);
  if (a) lastSeq = a.seq; else if (lastSeq === null) lastSeq = 0;
  if (!s.look) { hideLook(); lookSeq = lookSeq ?? 0; }
  else if (s.look.seq !== lookSeq) { if (lookSeq !== null) showLook(s.look); lookSeq = s.look.seq; }
}

async function poll() {
  try { update(await api("api/state")); } catch (e) { /* server restarting */ }
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
  addEventListener("resize", frameShopper);
}

(async () => {
  wire();
  for (;;) {
    try { const c = await api("api/catalog"); catalog = c.garments; selected = c.selected; break; }
    catch (e) { await new Promise(r => setTimeout(r, 1000)); }
  }
  render(); poll();
})();
