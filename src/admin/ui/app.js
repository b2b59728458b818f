// Goinfer's admin app: every page is a view over the JSON API under /api/ (admin key), kept
// current by one feed, GET /api/events (model states and the log), instead of polling.
// The only secret in the browser is the key the user types; it stays in this tab's storage.
"use strict";

const $ = (id) => document.getElementById(id);
const S = { models: new Map(), rows: new Map(), logs: [], sources: new Set(), config: null };
const LOG_KEEP = 5000;

// ---- the key, the API and the status line ----

const key = () => sessionStorage.getItem("goinfer-key") || "";
const auth = () => (key() ? { Authorization: "Bearer " + key() } : {});

function say(msg) {
  $("status").textContent = msg || "";
  $("status").hidden = !msg;
}

async function api(path, opts = {}) {
  const headers = { ...auth(), ...(opts.json !== undefined ? { "Content-Type": "application/json" } : {}) };
  const r = await fetch(path, { method: opts.method || "GET", headers, body: opts.json !== undefined ? JSON.stringify(opts.json) : opts.body });
  const text = await r.text();
  let body = null;
  try { body = text ? JSON.parse(text) : null; } catch { body = text; }
  if (!r.ok) {
    const e = new Error((body && body.error && body.error.message) || r.status + " " + r.statusText);
    e.status = r.status;
    e.body = body;
    throw e;
  }
  return body;
}

function el(tag, attrs = {}, ...kids) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "on") for (const [ev, f] of Object.entries(v)) e.addEventListener(ev, f);
    else if (k === "text") e.textContent = v;
    else if (v !== undefined && v !== null && v !== false) e.setAttribute(k, v === true ? "" : v);
  }
  for (const k of kids) if (k !== null && k !== undefined) e.append(k);
  return e;
}

const fmtBytes = (n) => (n >= 1 << 30 ? (n / (1 << 30)).toFixed(2) + " GiB" : n >= 1 << 20 ? (n / (1 << 20)).toFixed(1) + " MiB" : n + " B");
const fmtS = (s) => (s === undefined || s === null ? "" : s < 1 ? Math.round(s * 1000) + " ms" : s.toFixed(1) + " s");
const fmtNum = (x, d = 1) => (x === undefined || x === null ? "" : Number(x).toFixed(d));

// ---- the feed ----

let feedAbort = null;

async function follow() {
  if (feedAbort) feedAbort.abort();
  const ctl = (feedAbort = new AbortController());
  S.logs = []; // the feed sends the history again: never a line twice
  renderLogs();
  try {
    const r = await fetch("/api/events", { headers: auth(), signal: ctl.signal });
    if (!r.ok) throw new Error("live feed: " + (r.status === 401 || r.status === 403 ? "enter the admin key" : r.status));
    $("feed").classList.add("live");
    const reader = r.body.getReader();
    const dec = new TextDecoder();
    let buf = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buf += dec.decode(value, { stream: true });
      let i;
      while ((i = buf.indexOf("\n\n")) >= 0) {
        const rec = buf.slice(0, i);
        buf = buf.slice(i + 2);
        if (rec.startsWith("data: ")) onEvent(JSON.parse(rec.slice(6)));
      }
    }
  } catch (e) {
    if (ctl.signal.aborted) return;
    say(e.message);
  }
  $("feed").classList.remove("live");
  if (!ctl.signal.aborted) setTimeout(follow, 3000); // Goinfer restarted, or the network blinked
}

function onEvent(ev) {
  if (ev.event === "log") return addLog(ev.data.line);
  if (!ev.model) return;
  const m = S.models.get(ev.model);
  if (!m) return;
  m.status = { value: ev.data.status === "loaded" ? "loaded" : ev.data.status, progress: ev.data.progress };
  if (ev.data.status === "unloaded" && ev.data.exit_code) m.status = { value: "unloaded", failed: true, exit_code: ev.data.exit_code };
  renderModelRow(m);
  if (ev.data.status === "loaded" || ev.data.status === "unloaded") scheduleModels(); // new load time, args
}

// ---- Models ----

let modelsTimer = null;
function scheduleModels() {
  clearTimeout(modelsTimer);
  modelsTimer = setTimeout(loadModels, 300);
}

async function loadModels() {
  let list;
  try {
    list = (await api("/api/models")).data;
  } catch (e) {
    if (e.status !== 404) return say(e.message);
    list = (await api("/models")).data; // a Goinfer without the admin store: what it lists
  }
  S.models = new Map(list.filter((m) => !m.unlisted).map((m) => [m.id, m])); // GI_ variants follow theirs
  renderModels();
  const run = await api("/running").catch(() => ({}));
  const w = run.warnings || [];
  $("warnings").hidden = w.length === 0;
  $("warnings").querySelector("ul").replaceChildren(...w.map((x) => el("li", { text: x })));
  renderFleet(run.tunnels || []);
}

function stateCell(m) {
  const st = m.status || { value: "unloaded" };
  const td = el("td", { class: "state-" + (st.failed ? "failed" : st.value) },
    st.failed ? "failed (exit " + st.exit_code + ")" : st.value);
  const v = st.progress && st.progress.value;
  if (st.value === "loading" && v !== undefined) {
    const meter = el("span", { class: "meter", role: "progressbar", "aria-valuenow": Math.round(v * 100) }, el("i"));
    meter.firstChild.style.width = Math.round(v * 100) + "%";
    td.append(meter, " " + Math.round(v * 100) + "%");
  }
  return td;
}

function modelRow(m) {
  const enabled = m.enabled !== false;
  const act = async (path, body, what) => {
    try { await api(path, { method: "POST", json: body }); } catch (e) { say(what + " " + m.id + ": " + e.message); }
    scheduleModels();
  };
  const running = m.status && (m.status.value === "loaded" || m.status.value === "loading");
  const g = m.gguf || {};
  const args = Array.isArray(m.argv) ? m.argv.join(" ") : "";
  return el("tr", { "data-id": m.id, class: enabled ? null : "disabled" },
    el("td", {}, el("b", { text: m.id }), m.description ? el("div", { text: m.description }) : null),
    stateCell(m),
    el("td", {}, m.enabled === undefined ? "" : el("input", { type: "checkbox", checked: enabled, title: "listed and startable",
      on: { change: (e) => act("/api/models/" + encodeURIComponent(m.id) + (e.target.checked ? "/enable" : "/disable"), {}, "enable") } })),
    el("td", {}, running
      ? el("button", { text: "Unload", on: { click: () => act("/models/unload", { model: m.id }, "unload") } })
      : el("button", { text: "Load", disabled: !enabled, on: { click: () => act("/models/load", { model: m.id }, "load") } })),
    el("td", {}, [g.architecture, g.quantization, m.size ? fmtBytes(m.size) : "", m.vision ? "vision" : ""].filter(Boolean).join(" · "),
      g.error ? el("div", { class: "err", text: g.error }) : null),
    el("td", { class: "num", text: m.context_length || "" }),
    el("td", { class: "num", text: m.last_load_ms == null ? "" : fmtS(m.last_load_ms / 1000) }),
    el("td", { class: "num", text: fmtNum(m.tokens_per_s), title: m.requests_last_hour ? m.requests_last_hour + " requests in the last hour" : null }),
    el("td", {}, el("code", { class: "args", text: args }), " ",
      m.enabled === undefined ? null : el("button", { text: "Edit", on: { click: () => editArgs(m) } })));
}

async function editArgs(m) {
  const path = "/api/models/" + encodeURIComponent(m.id) + "/args";
  const cur = await api(path).catch((e) => ({ error: e.message }));
  if (cur.error) return say("arguments of " + m.id + ": " + cur.error);
  const next = prompt("llama-server arguments of " + m.id + " (written to " + cur.path + "; " +
    "the program, -m, --host and --port stay Goinfer's):", cur.args || "");
  if (next === null) return;
  try {
    const r = await api(path, { method: "PUT", json: { args: next } });
    say(r && r.reload && r.reload.taken === false ? "saved, but the reload was refused: " + r.reload.error : "");
  } catch (e) {
    say("arguments of " + m.id + ": " + e.message);
  }
  scheduleModels();
}

function renderModelRow(m) {
  const old = S.rows.get(m.id);
  if (!old) return;
  const row = modelRow(m);
  row.hidden = old.hidden;
  old.replaceWith(row);
  S.rows.set(m.id, row);
}

function renderModels() {
  const body = $("models").tBodies[0];
  const frag = document.createDocumentFragment();
  S.rows = new Map();
  for (const m of S.models.values()) {
    const row = modelRow(m);
    S.rows.set(m.id, row);
    frag.append(row);
  }
  body.replaceChildren(frag);
  filterModels();
}

function filterModels() {
  const q = $("model-filter").value.toLowerCase();
  let shown = 0;
  for (const [id, row] of S.rows) {
    row.hidden = q !== "" && !id.toLowerCase().includes(q);
    shown += !row.hidden;
  }
  $("model-count").textContent = shown + " of " + S.rows.size + " models";
}

// ---- Activity ----

const COLORS = ["#3367d6", "#e0a020", "#0a7a2f", "#b00020", "#7b3fb8", "#0097a7", "#795548", "#555"];

// One line per model over the steps of t (arrays aligned on t; null: no request then).
function chart(svg, t, series, field) {
  const W = 600, H = 160, P = 4;
  const max = Math.max(1e-9, ...series.flatMap((s) => s[field].map((v) => v || 0)));
  const x = (i) => P + (i / Math.max(1, t.length - 1)) * (W - 2 * P);
  const y = (v) => H - P - (v / max) * (H - 2 * P);
  svg.replaceChildren();
  series.forEach((s, k) => {
    const pl = document.createElementNS("http://www.w3.org/2000/svg", "polyline");
    pl.setAttribute("points", s[field].map((v, i) => x(i) + "," + y(v || 0)).join(" "));
    pl.setAttribute("fill", "none");
    pl.setAttribute("stroke", COLORS[k % COLORS.length]);
    pl.setAttribute("stroke-width", "2");
    svg.append(pl);
  });
  const label = document.createElementNS("http://www.w3.org/2000/svg", "text");
  label.setAttribute("x", W - P);
  label.setAttribute("y", 14);
  label.setAttribute("text-anchor", "end");
  label.setAttribute("font-size", "11");
  label.textContent = "max " + fmtNum(max);
  svg.append(label);
}

async function loadActivity() {
  try {
    const minutes = $("act-minutes").value;
    const [rows, series] = await Promise.all([api("/api/activity?limit=200"),
      api("/api/activity/series?minutes=" + minutes + "&step=" + Math.max(60, minutes))]);
    const body = $("activity").tBodies[0];
    body.replaceChildren(...rows.data.map((a) => el("tr", {},
      el("td", { text: new Date(a.t_ms).toLocaleTimeString() }), el("td", { text: a.model || "" }),
      el("td", { text: a.backend || "" }), el("td", { text: a.key || "" }), el("td", { text: a.status }),
      el("td", { class: "num", text: a.prompt_tokens ?? "" }), el("td", { class: "num", text: a.completion_tokens ?? "" }),
      el("td", { class: "num", text: a.ttft_ms == null ? "" : fmtS(a.ttft_ms / 1000) }), el("td", { class: "num", text: fmtNum(a.tokens_per_s) }),
      el("td", { class: "num", text: a.duration_ms == null ? "" : fmtS(a.duration_ms / 1000) }))));
    const s = series.models || [];
    chart($("chart-tps"), series.t, s, "tokens_per_s");
    chart($("chart-req"), series.t, s, "requests");
    $("legend").replaceChildren(...s.map((x, i) => {
      const sw = el("i");
      sw.style.background = COLORS[i % COLORS.length];
      return el("span", {}, sw, x.model || "(none)");
    }));
    say("");
  } catch (e) {
    say("activity: " + e.message);
  }
}

// ---- Logs ----

function sourceOf(line) {
  const m = /^\[model ([^\]]+)\]/.exec(line) || /\bmodel ([^\s:]+):/.exec(line);
  return m ? m[1] : "goinfer";
}

function addLog(line) {
  const src = sourceOf(line);
  S.logs.push({ line, src });
  if (S.logs.length > LOG_KEEP) S.logs.splice(0, S.logs.length - LOG_KEEP);
  if (!S.sources.has(src)) {
    S.sources.add(src);
    if (src !== "goinfer") $("log-source").append(el("option", { value: src, text: "model " + src }));
  }
  if (!$("page-logs").hidden && logMatches(S.logs[S.logs.length - 1])) {
    const pre = $("logs");
    pre.append(line + "\n");
    if ($("log-follow").checked) pre.scrollTop = pre.scrollHeight;
  }
}

function logMatches(l) {
  const src = $("log-source").value, q = $("log-filter").value.toLowerCase();
  return (!src || l.src === src) && (!q || l.line.toLowerCase().includes(q));
}

function renderLogs() {
  const shown = S.logs.filter(logMatches);
  $("logs").textContent = shown.map((l) => l.line).join("\n") + (shown.length ? "\n" : "");
  $("log-count").textContent = shown.length + " lines";
  if ($("log-follow").checked) $("logs").scrollTop = $("logs").scrollHeight;
}

// ---- Files ----

async function loadFiles() {
  try {
    const f = await api("/api/files");
    $("files").tBodies[0].replaceChildren(...f.files.map((x) => el("tr", {},
      el("td", { text: x.name }), el("td", { text: x.folder }), el("td", { class: "num", text: fmtBytes(x.size) }),
      el("td", { text: (x.models || []).join(", ") + (x.running ? " (running)" : "") }),
      el("td", {}, el("button", { text: "Delete", on: { click: () => deleteFile(x) } })))));
    $("free-space").textContent = (f.folders || []).map((d) => d.path + ": " + (d.free_bytes === undefined ? "?" : fmtBytes(d.free_bytes)) + " free").join(" · ");
    await loadDownloads();
  } catch (e) {
    say("files: " + e.message);
  }
}

const filePath = (x) => x.name.split("/").map(encodeURIComponent).join("/");

async function deleteFile(x) {
  if (!confirm("Delete " + x.name + "?")) return;
  try {
    await api("/api/files/" + filePath(x), { method: "DELETE" });
  } catch (e) {
    if (e.status !== 409 || !confirm(e.message + "\n\nStop it and delete anyway?")) return say(e.message);
    await api("/api/files/" + filePath(x) + "?force=1", { method: "DELETE" }).catch((e2) => say(e2.message));
  }
  loadFiles();
}

// A resumable upload: the file goes in chunks, each at the offset Goinfer says it has, so a
// dropped connection continues where it stopped.
const CHUNK = 16 << 20;

async function upload() {
  const file = $("upload-file").files[0];
  if (!file) return say("choose a .gguf file first");
  const bar = $("upload-progress");
  bar.hidden = false;
  try {
    const up = await api("/api/uploads", { method: "POST", json: { name: file.name, size: file.size } });
    let offset = up.offset || 0, last = {};
    const t0 = performance.now();
    while (offset < file.size) {
      const chunk = file.slice(offset, Math.min(file.size, offset + CHUNK));
      let r;
      try {
        r = await fetch("/api/uploads/" + up.id, { method: "PATCH", headers: { ...auth(), "Upload-Offset": String(offset), "Content-Type": "application/offset+octet-stream" }, body: chunk });
      } catch {
        await new Promise((res) => setTimeout(res, 1000)); // the network dropped: ask where it is
        r = await fetch("/api/uploads/" + up.id, { method: "HEAD", headers: auth() });
      }
      const body = r.headers.get("Content-Type")?.includes("json") ? await r.json() : {};
      if (!r.ok && r.status !== 409) throw new Error("upload: " + ((body.error && body.error.message) || r.status));
      offset = Number(r.headers.get("Upload-Offset") ?? body.offset ?? offset);
      last = body;
      bar.value = offset / file.size;
      $("upload-note").textContent = fmtBytes(offset) + " of " + fmtBytes(file.size) + ", " + fmtNum(offset / (1 << 20) / ((performance.now() - t0) / 1000)) + " MiB/s";
    }
    $("upload-note").textContent = "done: " + file.name + (last.sha256 ? " sha256 " + last.sha256 : "");
  } catch (e) {
    say(e.message);
  }
  loadFiles();
}

let downloadsTimer = null;
const ACTIVE = ["resolving", "downloading", "verifying"];
async function loadDownloads() {
  const d = await api("/api/downloads").catch(() => ({ data: [] }));
  const list = d.downloads || [];
  $("downloads").tBodies[0].replaceChildren(...list.map((x) => el("tr", {},
    el("td", { text: x.source || "" }), el("td", { text: x.state + (x.error ? ": " + x.error : "") }),
    el("td", {}, el("progress", { max: x.total || 1, value: x.bytes || 0 }), " " + fmtBytes(x.bytes || 0) + (x.total ? " of " + fmtBytes(x.total) : "")),
    el("td", {}, ACTIVE.includes(x.state) ? el("button", { text: "Cancel", on: { click: () => api("/api/downloads/" + x.id, { method: "DELETE" }).then(loadDownloads, (e) => say(e.message)) } }) : ""))));
  clearTimeout(downloadsTimer);
  if (list.some((x) => ACTIVE.includes(x.state)) && !$("page-files").hidden) downloadsTimer = setTimeout(loadDownloads, 1000); // only while one runs
}

async function download(ev) {
  ev.preventDefault();
  const src = $("download-src").value.trim();
  if (!src) return;
  const body = /^https?:\/\//.test(src) ? { url: src } : { hf: src };
  try { await api("/api/downloads", { method: "POST", json: body }); $("download-src").value = ""; } catch (e) { say(e.message); }
  loadDownloads();
}

// ---- Settings ----

async function loadConfig() {
  try {
    S.config = await api("/api/config");
    const sel = $("cfg-file");
    const files = S.config.files || [];
    const cur = sel.value;
    sel.replaceChildren(...files.map((f) => el("option", { value: f.name, text: f.name + " (" + f.path + ")" })));
    if (files.some((f) => f.name === cur)) sel.value = cur;
    showConfig();
  } catch (e) {
    say("settings: " + e.message);
  }
}

function currentFile() {
  return (S.config.files || []).find((f) => f.name === $("cfg-file").value);
}

function showConfig() {
  const f = currentFile();
  $("cfg-text").value = f ? f.text : "";
  numberLines([]);
  $("cfg-errors").replaceChildren();
  $("cfg-diff").hidden = true;
}

function numberLines(errors) {
  const n = $("cfg-text").value.split("\n").length;
  const bad = new Set(errors.filter((e) => !e.file || e.file === $("cfg-file").value).map((e) => e.line));
  $("cfg-lines").replaceChildren(...Array.from({ length: n }, (_, i) => {
    const t = String(i + 1) + "\n";
    return bad.has(i + 1) ? el("b", { text: t }) : document.createTextNode(t);
  }));
}

function showErrors(errors, warnings) {
  numberLines(errors);
  $("cfg-errors").replaceChildren(...errors.map((e) => el("li", { text: (e.file ? e.file + ":" : "") + (e.line ? e.line + ": " : "") + e.message })),
    ...(warnings || []).map((w) => el("li", { class: "warn", text: typeof w === "string" ? w : w.message })));
}

async function validateConfig() {
  const r = await api("/api/config/validate", { method: "POST", json: { file: $("cfg-file").value, text: $("cfg-text").value } }).catch((e) => e.body || { ok: false, errors: [{ message: e.message }] });
  showErrors(r.errors || [], r.warnings);
  $("cfg-note").textContent = r.ok ? "valid" : "";
  return r.ok;
}

async function saveConfig() {
  const f = currentFile();
  try {
    const r = await api("/api/config/" + encodeURIComponent(f.name), { method: "PUT", json: { text: $("cfg-text").value, base_hash: f.hash } });
    $("cfg-note").textContent = r.reload && r.reload.taken === false ? "saved; the reload was refused: " + r.reload.error : "saved and reloaded";
    $("cfg-diff").textContent = r.diff || "";
    $("cfg-diff").hidden = !r.diff;
    const diff = r.diff;
    await loadConfig();
    $("cfg-diff").textContent = diff || "";
    $("cfg-diff").hidden = !diff;
  } catch (e) {
    const b = e.body || {};
    showErrors(b.errors || [{ message: e.message }], b.warnings);
    $("cfg-note").textContent = e.status === 409 ? "changed on disk since you opened it: reload the page" : "not saved";
  }
}

async function restart() {
  if (!confirm("Restart Goinfer? Connections are kept and running answers finish.")) return;
  try { await api("/api/restart", { method: "POST" }); $("cfg-note").textContent = "restarting..."; } catch (e) { say(e.message); }
}

// ---- Engine ----

let engineTimer = null;
async function loadEngine() {
  try {
    const e = await api("/api/engine");
    const c = e.current || {};
    $("engine-current").tBodies[0].replaceChildren(...[["program", c.path], ["llama.cpp", c.tag], ["backend", c.backend],
      ["TLS", c.tls ? "on" : "off"], ["version", c.version], ["build folder", c.build_dir]].map(([k, v]) =>
      el("tr", {}, el("th", { text: k }), el("td", { text: v === undefined || v === null ? "" : String(v) }))));
    $("engines").tBodies[0].replaceChildren(...(e.engines || []).map((x) => el("tr", {},
      el("td", { text: x.name + (x.current ? " (in use)" : "") }), el("td", { text: x.tag || "" }),
      el("td", { text: (x.backend || "") + (x.tls ? " + TLS" : "") }), el("td", { text: typeof x.built === "number" ? new Date(x.built * 1000).toLocaleString() : x.built || "" }),
      el("td", {}, x.current ? "" : el("button", { text: "Use", on: { click: () => api("/api/engine/use", { method: "POST", json: { engine: x.name } }).then(loadEngine, (er) => say(er.message)) } })))));
    const j = e.job;
    $("engine-progress").value = j ? j.progress || 0 : 0;
    $("engine-step").textContent = j ? j.state + (j.step ? ": " + j.step : "") + (j.error ? " - " + j.error : "") : "no build yet";
    $("engine-log").textContent = j && j.log_tail ? j.log_tail : "";
    clearTimeout(engineTimer);
    if (j && !j.ended && !$("page-engine").hidden) engineTimer = setTimeout(loadEngine, 1000); // only while a build runs
  } catch (e) {
    say("engine: " + e.message);
  }
}

async function buildEngine(ev) {
  ev.preventDefault();
  const body = { source: $("engine-source").value, backend: $("engine-backend").value, tls: $("engine-tls").checked };
  if (body.source === "local") body.path = $("engine-path").value;
  try { await api("/api/engine/build", { method: "POST", json: body }); } catch (e) { say(e.message); }
  loadEngine();
}

// ---- Fleet ----

function renderFleet(tunnels) {
  const control = (t, m) => {
    if (!t.admin) return null;
    const verb = m.hot || m.loading ? "unload" : "load";
    return el("button", { text: verb === "load" ? "Load" : "Unload", on: { click: () =>
      api("/api/fleet/" + verb, { method: "POST", json: { machine: t.pin, model: m.id } }).then(loadModels, (e) => say(e.message)) } });
  };
  $("fleet").tBodies[0].replaceChildren(...tunnels.map((t) => el("tr", {},
    el("td", { text: t.peer }), el("td", { text: t.pin.slice(0, 19) + "..." }), el("td", { text: t.version }),
    el("td", {}, ...t.models.map((m) => el("div", {}, m.id + (m.loading ? " (loading" + (m.progress ? " " + Math.round(m.progress.value * 100) + "%" : "") + ")" : m.hot ? " (loaded)" : "") + " ", control(t, m)))),
    el("td", { text: Math.max(t.busy, t.in_flight) + " / " + t.slots }),
    el("td", { text: (t.draining ? "draining" : t.registered ? "serving" : "registering") + (t.admin ? "" : " · no remote control") }))));
  $("fleet-note").textContent = tunnels.length ? "Load and unload need client.allow_admin: true on that machine." : "No GPU machine is connected (server mode: see the README's server/client set-up).";
}

// ---- pages ----

const loaders = { models: loadModels, activity: loadActivity, logs: renderLogs, files: loadFiles, settings: loadConfig, engine: loadEngine, fleet: loadModels };

function show() {
  const page = (location.hash || "#models").slice(1);
  const known = loaders[page] ? page : "models";
  for (const s of document.querySelectorAll(".page")) s.hidden = s.id !== "page-" + known;
  for (const a of $("nav").children) a.classList.toggle("on", a.getAttribute("href") === "#" + known);
  Promise.resolve(loaders[known]()).catch((e) => say(e.message));
}

function start() {
  say("");
  show(); // loads the page's data (the Models page: the models)
  follow();
}

$("keyform").addEventListener("submit", (e) => {
  e.preventDefault();
  sessionStorage.setItem("goinfer-key", $("key").value);
  start();
});
$("model-filter").addEventListener("input", filterModels);
$("unload-all").addEventListener("click", () => api("/unload", { method: "POST" }).then(scheduleModels, (e) => say(e.message)));
$("act-refresh").addEventListener("click", loadActivity);
$("act-minutes").addEventListener("change", loadActivity);
$("log-source").addEventListener("change", renderLogs);
$("log-filter").addEventListener("input", renderLogs);
$("log-clear").addEventListener("click", () => { S.logs = []; renderLogs(); });
$("upload-start").addEventListener("click", upload);
$("download-form").addEventListener("submit", download);
$("cfg-file").addEventListener("change", showConfig);
$("cfg-text").addEventListener("input", () => numberLines([]));
$("cfg-text").addEventListener("scroll", () => { $("cfg-lines").scrollTop = $("cfg-text").scrollTop; });
$("cfg-validate").addEventListener("click", validateConfig);
$("cfg-save").addEventListener("click", async () => { if (await validateConfig()) saveConfig(); });
$("restart").addEventListener("click", restart);
$("engine-form").addEventListener("submit", buildEngine);
$("engine-cancel").addEventListener("click", () => api("/api/engine/build", { method: "DELETE" }).then(loadEngine, (e) => say(e.message)));
window.addEventListener("hashchange", show);
$("key").value = key();
if (key()) start();
else say("Enter the admin API key (admin_api_key, else api_key, in goinfer.yml) to manage this machine.");
