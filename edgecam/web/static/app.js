"use strict";
// edgecam's page: four tabs over a small JSON API. No framework, no build step, nothing
// loaded from elsewhere. Frames are fetched one at a time (long-poll, at most the configured
// rate) and only while the Live or Zones tab is visible: nobody watching means no encoding.

const $ = (id) => document.getElementById(id);
const state = {
  info: null, tab: "live", lastSeq: -1, frameUrl: null, zonesFlag: "1",
  draft: [], editing: "", drag: -1, moved: false, objects: [], draftTimer: null,
};
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function cookie(name) {
  const hit = document.cookie.split("; ").find((c) => c.startsWith(name + "="));
  return hit ? decodeURIComponent(hit.slice(name.length + 1)) : "";
}

async function getJson(url) {
  const r = await fetch(url, { cache: "no-store", credentials: "same-origin" });
  if (r.status === 401) { location.replace("/login"); throw new Error("login needed"); }
  if (!r.ok) throw new Error(`${url}: HTTP ${r.status}`);
  return r.json();
}

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") node.className = v; else node.setAttribute(k, v);
  }
  for (const c of children) node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return node;
}

function svgEl(tag, attrs = {}) {
  const node = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  return node;
}

const fmt = (v, d = 1) => (v === null || v === undefined || Number.isNaN(v) ? "–" : Number(v).toFixed(d));
const time = (epoch) => new Date(epoch * 1000).toLocaleTimeString();

// -- tabs --------------------------------------------------------------------------------

function showTab() {
  const tab = (location.hash || "#live").slice(1);
  state.tab = ["live", "zones", "events", "health"].includes(tab) ? tab : "live";
  for (const section of document.querySelectorAll("section.tab")) {
    section.hidden = section.id !== `tab-${state.tab}`;
  }
  for (const link of document.querySelectorAll("nav a")) {
    link.classList.toggle("active", link.dataset.tab === state.tab);
  }
  const flag = state.tab === "zones" ? "0" : "1";
  if (flag !== state.zonesFlag) { state.zonesFlag = flag; state.lastSeq = -1; }
  if (state.tab === "events") refreshEvents();
  if (state.tab === "health") refreshHealth();
}

// -- live frames -------------------------------------------------------------------------

async function frameLoop() {
  for (;;) {
    if (document.hidden || !["live", "zones"].includes(state.tab) || !state.info) {
      await sleep(300);
      continue;
    }
    const started = performance.now();
    try {
      const flag = state.zonesFlag;
      const r = await fetch(`/api/frame.jpg?after=${state.lastSeq}&zones=${flag}&wait=5`,
        { cache: "no-store", credentials: "same-origin" });
      if (r.status === 401) { location.replace("/login"); return; }
      if (r.status === 200 && flag === state.zonesFlag) {
        const blob = await r.blob();
        const url = URL.createObjectURL(blob);
        const img = state.tab === "zones" ? $("zone-img") : $("live-img");
        img.src = url;
        if (state.frameUrl) URL.revokeObjectURL(state.frameUrl);
        state.frameUrl = url;
        state.lastSeq = Number(r.headers.get("X-Frame-Seq"));
        const at = Number(r.headers.get("X-Frame-Time"));
        $("live-caption").textContent = `frame #${state.lastSeq} · captured ${time(at)}`;
        img.dataset.seq = String(state.lastSeq);
      }
    } catch (e) {
      await sleep(1000);
    }
    const wait = 1000 / state.info.live_fps - (performance.now() - started);
    if (wait > 0) await sleep(wait);
  }
}

async function liveLoop() {
  for (;;) {
    if (!document.hidden && state.tab === "live") {
      try { renderLive(await getJson("/api/live")); } catch (e) { /* shown by the badge */ }
    }
    await sleep(500);
  }
}

function renderLive(doc) {
  const rows = doc.objects.map((o) => el("tr", {},
    el("td", {}, o.label), el("td", {}, fmt(o.score, 2)), el("td", {}, o.track ? `#${o.track}` : "–"),
    el("td", {}, o.zones.join(", ") || "–")));
  for (const c of doc.classification) {
    rows.push(el("tr", {}, el("td", {}, c.label), el("td", {}, fmt(c.score, 2)), el("td", {}, "–"), el("td", {}, "–")));
  }
  if (!rows.length) rows.push(el("tr", {}, el("td", { colspan: "4", class: "muted" }, "nothing detected")));
  $("live-objects").replaceChildren(...rows);
}

// -- zone editor -------------------------------------------------------------------------

function imageSize() {
  const img = $("zone-img");
  return [img.naturalWidth || 1, img.naturalHeight || 1];
}

function pointFromEvent(ev) {
  const box = $("zone-svg").getBoundingClientRect();
  const x = Math.min(Math.max((ev.clientX - box.left) / box.width, 0), 1);
  const y = Math.min(Math.max((ev.clientY - box.top) / box.height, 0), 1);
  return [Math.round(x * 10000) / 10000, Math.round(y * 10000) / 10000];
}

function drawZones() {
  const svg = $("zone-svg");
  const [w, h] = imageSize();
  svg.setAttribute("viewBox", `0 0 ${w} ${h}`);
  const r = Math.max(w, h) / 120;
  const nodes = [];
  for (const zone of state.info ? state.info.zones : []) {
    if (zone.name === state.editing) continue;
    nodes.push(svgEl("polygon", { class: "zone-existing", points: zone.points.map(([x, y]) => `${x * w},${y * h}`).join(" ") }));
    const [x0, y0] = zone.points[0];
    const label = svgEl("text", { x: x0 * w + r, y: y0 * h - r, class: "zone-name", "font-size": r * 2.4 });
    label.textContent = zone.name;
    nodes.push(label);
  }
  const pts = state.draft.map(([x, y]) => `${x * w},${y * h}`).join(" ");
  nodes.push(svgEl(state.draft.length > 2 ? "polygon" : "polyline", { class: "zone-draft", points: pts }));
  for (const o of state.objects) {
    const [x, y] = o.point;
    nodes.push(svgEl("circle", { cx: x * w, cy: y * h, r: r * 0.8, class: o.inside ? "obj-in" : "obj-out" }));
  }
  state.draft.forEach(([x, y], i) => {
    nodes.push(svgEl("circle", { cx: x * w, cy: y * h, r, class: "vertex", "data-index": i }));
  });
  svg.replaceChildren(...nodes);
}

function draftQuery() {
  const labels = [...$("zone-labels").selectedOptions].map((o) => o.value);
  const params = new URLSearchParams({
    name: $("zone-name").value.trim(),
    points: state.draft.map(([x, y]) => `${x},${y}`).join(";"),
    labels: labels.join(","),
    inertia: $("zone-inertia").value,
  });
  if ($("zone-all").checked) { params.set("scope", "all"); params.set("replace", state.editing); }
  return params.toString();
}

async function refreshDraft() {
  const query = draftQuery();
  $("zone-download").href = `/api/zones/draft.toml?${query}`;
  if (state.draft.length < 3) {
    $("zone-toml").textContent = "";
    $("zone-problems").replaceChildren(el("li", { class: "muted" }, `${state.draft.length} point(s): click at least 3`));
    state.objects = [];
    $("zone-inside").replaceChildren(el("li", { class: "muted" }, "draw a zone"));
    drawZones();
    return;
  }
  try {
    const doc = await getJson(`/api/zones/draft?${query}`);
    if (query !== draftQuery()) return; // the draft changed meanwhile
    $("zone-toml").textContent = doc.toml;
    $("zone-problems").replaceChildren(...doc.problems.map((p) => el("li", {}, p)));
    state.objects = doc.objects;
    const inside = doc.objects.filter((o) => o.inside);
    $("zone-inside").replaceChildren(...(inside.length
      ? inside.map((o) => el("li", { class: "inside" }, `${o.label}${o.track ? " #" + o.track : ""} ${fmt(o.score, 2)}`))
      : [el("li", { class: "muted" }, `nobody inside (${doc.objects.length} object(s) in view)`)]));
  } catch (e) { /* retried on the next tick */ }
  drawZones();
}

function scheduleDraft() {
  clearTimeout(state.draftTimer);
  state.draftTimer = setTimeout(refreshDraft, 80);
}

function pickZone() {
  const name = $("zone-pick").value;
  state.editing = name;
  const zone = state.info.zones.find((z) => z.name === name);
  state.draft = zone ? zone.points.map((p) => [...p]) : [];
  $("zone-name").value = zone ? zone.name : "zone1";
  $("zone-inertia").value = zone ? zone.inertia : 3;
  for (const option of $("zone-labels").options) option.selected = zone ? zone.labels.includes(option.value) : false;
  scheduleDraft();
}

function setupZoneEditor() {
  const svg = $("zone-svg");
  svg.addEventListener("pointerdown", (ev) => {
    const index = ev.target.dataset ? ev.target.dataset.index : undefined;
    if (index !== undefined) {
      state.drag = Number(index);
      state.moved = false;
      svg.setPointerCapture(ev.pointerId);
      ev.preventDefault();
    }
  });
  svg.addEventListener("pointermove", (ev) => {
    if (state.drag < 0) return;
    state.draft[state.drag] = pointFromEvent(ev);
    state.moved = true;
    drawZones();
  });
  svg.addEventListener("pointerup", (ev) => {
    if (state.drag >= 0) {
      state.drag = -1;
      scheduleDraft();
      return;
    }
    if (ev.button !== 0) return;
    state.draft.push(pointFromEvent(ev));
    scheduleDraft();
  });
  $("zone-undo").addEventListener("click", () => { state.draft.pop(); scheduleDraft(); });
  $("zone-clear").addEventListener("click", () => { state.draft = []; scheduleDraft(); });
  $("zone-copy").addEventListener("click", () => navigator.clipboard && navigator.clipboard.writeText($("zone-toml").textContent));
  for (const id of ["zone-name", "zone-labels", "zone-inertia", "zone-all"]) {
    $(id).addEventListener("input", scheduleDraft);
    $(id).addEventListener("change", scheduleDraft);
  }
  $("zone-pick").addEventListener("change", pickZone);
  $("zone-img").addEventListener("load", drawZones, { once: true });
  setInterval(() => { if (state.tab === "zones" && !document.hidden && state.draft.length > 2) refreshDraft(); }, 1000);
}

// -- events ------------------------------------------------------------------------------

async function refreshEvents() {
  const label = $("event-label").value;
  let doc;
  try { doc = await getJson(`/api/events?limit=100${label ? "&label=" + encodeURIComponent(label) : ""}`); } catch (e) { return; }
  const select = $("event-label");
  const known = new Set([...select.options].map((o) => o.value));
  for (const l of doc.labels) if (!known.has(l)) select.append(el("option", { value: l }, l));
  const counts = Object.entries(doc.counts).map(([l, n]) => `${l}: ${n}`).join(", ");
  $("event-counts").textContent = counts ? `tracked now: ${counts}` : "";
  $("events-note").textContent = state.info.events ? "" : "Events are off: enable [events] (or run with --events) to track objects.";
  const shots = new Set(doc.snapshots);
  const rows = doc.events.map((e) => el("tr", { class: `ev-${e.event}` },
    el("td", {}, shots.has(e.track_id) ? el("img", { src: `/api/snapshots/${encodeURIComponent(e.track_id)}.jpg`, alt: e.label, loading: "lazy", class: "thumb" }) : "–"),
    el("td", {}, time(e.last_seen)), el("td", {}, e.event), el("td", {}, e.label), el("td", {}, fmt(e.best_score, 2)),
    el("td", {}, e.zones.join(", ") || "–"), el("td", {}, `${fmt(e.duration_s, 1)} s`), el("td", {}, `#${e.track_id.split("-").pop()}`)));
  if (!rows.length) rows.push(el("tr", {}, el("td", { colspan: "8", class: "muted" }, "no events yet")));
  $("event-rows").replaceChildren(...rows);
}

// -- health ------------------------------------------------------------------------------

function card(title, value, detail = "") {
  return el("div", { class: "card" }, el("div", { class: "muted" }, title), el("div", { class: "value" }, value), el("div", { class: "muted" }, detail));
}

async function refreshHealth() {
  let stats, health;
  try { [stats, health] = await Promise.all([getJson("/api/stats"), getJson("/api/health")]); } catch (e) { return; }
  const p = stats.pipeline || {};
  const m = stats.mqtt;
  const rt = health.runtime;
  const src = health.source;
  const cards = [
    card("status", health.healthy ? "healthy" : "unhealthy", health.reason),
    card("fps", `${fmt(p.fps_out)} out`, `${fmt(p.fps_in)} in`),
    card("frames", `${p.processed ?? "–"}`, `${p.dropped ?? 0} dropped · ${p.motion_skipped ?? 0} motion-skipped`),
    card("latency", `${fmt(p.latency_ms && p.latency_ms.p50)} ms p50`, `p95 ${fmt(p.latency_ms && p.latency_ms.p95)} ms`),
    card("runtime", `${rt.name} ${rt.version}`, `${rt.threads} thread(s) · ${health.model}`),
    card("source", src.state, `${src.reconnects} reconnect(s) · ${src.name}`),
    card("MQTT", m ? m.state : "off", m ? `outbox ${m.outbox_depth} · published ${m.published} · acked ${m.acked} · dropped ${m.messages_dropped}` : "not configured"),
    card("uptime", `${fmt(stats.uptime_s / 3600, 2)} h`, `since ${new Date(Date.now() - stats.uptime_s * 1000).toLocaleString()}`),
    card("CPU", `${fmt(stats.cpu_percent)} %`, `${fmt(stats.rss_mb)} MB RSS`),
    card("CPU temperature", health.cpu_temperature_c === null ? "n/a" : `${fmt(health.cpu_temperature_c)} °C`, health.cpu_temperature_c === null ? "the board reports none" : ""),
    card("web", `${health.web.clients} client(s)`, `${health.web.encoded} frames encoded · ${health.web.live_fps} fps max`),
  ];
  $("health-cards").replaceChildren(...cards);
  const stages = Object.entries(p.stages_ms || {}).map(([s, v]) => el("tr", {}, el("td", {}, s), el("td", {}, fmt(v.mean, 2)), el("td", {}, fmt(v.p50, 2)), el("td", {}, fmt(v.p95, 2))));
  $("health-stages").replaceChildren(...stages);
}

async function badgeLoop() {
  for (;;) {
    try {
      const h = await getJson("/api/health");
      const badge = $("health-badge");
      badge.textContent = h.healthy ? "healthy" : h.reason;
      badge.className = `badge ${h.healthy ? "ok" : "bad"}`;
    } catch (e) { $("health-badge").textContent = "offline"; $("health-badge").className = "badge bad"; }
    if (!document.hidden && state.tab === "health") refreshHealth();
    if (!document.hidden && state.tab === "events") refreshEvents();
    await sleep(2000);
  }
}

// -- start -------------------------------------------------------------------------------

async function start() {
  state.info = await getJson("/api/info");
  $("device").textContent = `${state.info.device_id} · ${state.info.model}`;
  document.title = `edgecam ${state.info.device_id}`;
  $("live-note").textContent = state.info.events ? "" : "Track ids and zone occupancy need [events] enabled (or --events).";
  $("zone-labels").replaceChildren(...state.info.labels.map((l) => el("option", { value: l }, l)));
  for (const zone of state.info.zones) $("zone-pick").append(el("option", { value: zone.name }, zone.name));
  $("logout").hidden = !state.info.auth_required;
  $("logout").addEventListener("click", async () => {
    await fetch("/api/logout", { method: "POST", credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-CSRF-Token": cookie("edgecam_csrf") }, body: "{}" });
    location.replace("/login");
  });
  $("event-label").addEventListener("change", refreshEvents);
  setupZoneEditor();
  window.addEventListener("hashchange", showTab);
  showTab();
  refreshDraft();
  frameLoop();
  liveLoop();
  badgeLoop();
}

start();
