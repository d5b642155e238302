// Mirror page: garment/colour picker + size and stats polling. The video is the MJPEG <img>.
"use strict";
let catalog = [], selected = {sku: "", colour: ""};

async function api(path, body) {
  const r = await fetch(path, body ? {method: "POST", headers: {"Content-Type": "application/json"},
                                      body: JSON.stringify(body)} : {});
  return r.json();
}

function button(label, on, onclick, cls) {
  const b = document.createElement("button");
  b.textContent = label; b.className = (cls || "") + (on ? " on" : ""); b.onclick = onclick;
  return b;
}

function render() {
  const g = document.getElementById("garments"), c = document.getElementById("colours");
  g.replaceChildren(); c.replaceChildren();
  for (const item of catalog) {
    const b = button(item.name, item.sku === selected.sku, () => choose(item.sku, ""));
    b.dataset.sku = item.sku; g.append(b);
  }
  const cur = catalog.find(x => x.sku === selected.sku);
  for (const col of (cur ? cur.colours : [])) {
    const b = button("", col.name === selected.colour, () => choose(selected.sku, col.name), "swatch");
    b.style.background = col.hex; b.title = col.name; b.dataset.colour = col.name; c.append(b);
  }
}

async function choose(sku, colour) {
  const s = await api("api/select", {sku, colour});
  if (!s.error) { selected = {sku: s.sku, colour: s.colour}; render(); update(s); }
}

function update(s) {
  document.getElementById("size").textContent = s.size_suggestion ? `Suggested size: ${s.size_suggestion}`
                                                                   : "Stand facing the mirror\u2026";
  const st = document.getElementById("stats");
  st.hidden = !window.MIRROR_SHOW_STATS;
  st.textContent = `${s.fps} fps · m2p p50 ${s.m2p_p50_ms ?? "–"} ms / p95 ${s.m2p_p95_ms ?? "–"} ms`;
  const n = document.getElementById("notice");
  n.hidden = s.renderer !== "unavailable";
  n.textContent = "Try-on unavailable: showing the camera view";
  if (s.sku !== selected.sku || s.colour !== selected.colour) { selected = {sku: s.sku, colour: s.colour}; render(); }
}

async function poll() {
  try { update(await api("api/state")); } catch (e) { /* server restarting */ }
  setTimeout(poll, 1000);
}

(async () => {
  const c = await api("api/catalog");
  catalog = c.garments; selected = c.selected; render(); poll();
})();
