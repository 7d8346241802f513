// The inspector page: polls /inspector/api/state and draws it; every action is a JSON POST.
// Everything the servers sent (tool names, descriptions, bodies) is shown with textContent only.
"use strict";

const $ = (id) => document.getElementById(id);
let seenFlow = 0;
let seenRpc = 0;
let toolsKey = "";
let selected = null;
let lastUrl = null;
// The refusal of the last action the page sent (kept until the next one).
let postError = null;

function el(tag, props, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(props || {})) {
    if (k === "class") e.className = v;
    else if (k === "text") e.textContent = v;
    else e.setAttribute(k, v);
  }
  for (const c of children) if (c != null) e.append(c);
  return e;
}

const time = (secs) => new Date(secs * 1000).toLocaleTimeString([], { hour12: false });
const pretty = (v) => (typeof v === "string" ? v : JSON.stringify(v, null, 2));

async function post(action, body) {
  postError = null;
  const r = await fetch(`/inspector/api/${action}`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify(body || {}),
  });
  if (!r.ok) {
    const e = await r.json().catch(() => ({ message: `HTTP ${r.status}` }));
    postError = e.message || e.error;
    showError(postError);
  }
  poll();
}

function showError(message) {
  $("error").hidden = !message;
  $("error").textContent = message || "";
}

function drawExchange(x) {
  const lines = [`${x.method} ${x.url}`];
  for (const [k, v] of x.request_headers) lines.push(`${k}: ${v}`);
  if (x.request_body) lines.push("", x.request_body);
  lines.push("", "──────── response ────────");
  if (x.status != null) lines.push(`HTTP ${x.status}`);
  if (x.error) lines.push(`no answer: ${x.error}`);
  for (const [k, v] of x.response_headers) lines.push(`${k}: ${v}`);
  if (x.response_body) lines.push("", x.response_body);
  return el("pre", { text: lines.join("\n") });
}

function drawFlow(v) {
  for (const f of v.flow) {
    if (f.seq <= seenFlow) continue;
    seenFlow = f.seq;
    const head = [el("span", { class: "at", text: time(f.at) })];
    if (f.exchange) {
      const s = f.exchange.status;
      const cls = s != null && s < 400 ? "status-ok" : "status-bad";
      const details = el("details", {}, el("summary", {}, ...head, el("span", { class: cls, text: f.title })));
      details.append(drawExchange(f.exchange));
      $("flow").append(el("li", { class: "exchange", "data-title": f.title }, details));
    } else {
      $("flow").append(el("li", { "data-title": f.title }, ...head, el("span", { class: "step", text: f.title }), f.detail ? el("span", { text: ` — ${f.detail}` }) : null));
    }
  }
  $("flow-dropped").hidden = !v.flow_dropped;
  $("flow-dropped").textContent = `${v.flow_dropped} older entries dropped`;
}

function drawRpc(v) {
  for (const m of v.rpc) {
    if (m.seq <= seenRpc) continue;
    seenRpc = m.seq;
    const arrow = m.direction === "sent" ? "→ " : "← ";
    const details = el("details", {}, el("summary", {}, el("span", { class: "at", text: time(m.at) }), el("span", { class: m.direction, text: arrow + m.summary })));
    details.append(el("pre", { text: pretty(m.message) }));
    $("rpc").append(el("li", {}, details));
  }
  $("rpc-dropped").hidden = !v.rpc_dropped;
  $("rpc-dropped").textContent = `${v.rpc_dropped} older messages dropped`;
}

function drawToken(v) {
  const t = v.token;
  $("token-card").hidden = !t;
  if (!t) return;
  $("token-masked").textContent = t.masked;
  $("token-format").textContent = t.format;
  $("granted").textContent = t.granted.length ? t.granted.join(" ") : "(none)";
  $("claims").textContent = JSON.stringify({ header: t.header, claims: t.claims }, null, 2);
  const exp = t.claims && t.claims.exp;
  $("expiry").textContent = exp ? `Expires at ${time(exp)} (in ${Math.max(0, Math.round(exp - Date.now() / 1000))} s); audience ${pretty(t.claims.aud)}; issuer ${t.claims.iss}` : "";
}

function fieldFor(name, schema, required) {
  const id = `arg-${name}`;
  const label = el("label", { for: id, text: name + (required ? " (required)" : "") });
  const hint = schema.description ? el("span", { class: "hint", text: ` — ${schema.description}` }) : null;
  if (hint) label.append(hint);
  let input;
  if (Array.isArray(schema.enum)) {
    input = el("select", { id, "data-kind": "enum" });
    if (!required) input.append(el("option", { value: "", text: "" }));
    for (const o of schema.enum) input.append(el("option", { value: JSON.stringify(o), text: String(o) }));
  } else if (schema.type === "boolean") {
    input = el("input", { id, type: "checkbox", "data-kind": "boolean" });
  } else if (schema.type === "integer" || schema.type === "number") {
    input = el("input", { id, type: "number", step: schema.type === "integer" ? "1" : "any", "data-kind": schema.type });
  } else if (schema.type === "string") {
    input = el("input", { id, type: "text", "data-kind": "string" });
  } else {
    input = el("textarea", { id, rows: "3", "data-kind": "json", placeholder: "JSON" });
  }
  input.dataset.name = name;
  if (required) input.dataset.required = "1";
  return el("div", { class: "field" }, label, input);
}

function selectTool(tool) {
  selected = tool;
  $("call").hidden = false;
  $("call-title").textContent = tool.name;
  $("call-description").textContent = tool.description || "";
  const fields = $("fields");
  fields.replaceChildren();
  const schema = tool.input_schema || {};
  const required = new Set(schema.required || []);
  for (const [name, prop] of Object.entries(schema.properties || {})) fields.append(fieldFor(name, prop || {}, required.has(name)));
  $("call-button").textContent = `Call ${tool.name}`;
}

function readArguments() {
  const args = {};
  for (const input of $("fields").querySelectorAll("[data-name]")) {
    const name = input.dataset.name;
    const kind = input.dataset.kind;
    if (kind === "boolean") { args[name] = input.checked; continue; }
    if (input.value === "") {
      if (input.dataset.required) throw new Error(`${name} is required`);
      continue;
    }
    if (kind === "integer" || kind === "number") args[name] = Number(input.value);
    else if (kind === "enum") args[name] = JSON.parse(input.value);
    else if (kind === "json") {
      try { args[name] = JSON.parse(input.value); } catch { throw new Error(`${name} is not valid JSON`); }
    } else args[name] = input.value;
  }
  return args;
}

function drawTools(v) {
  $("tools-card").hidden = !v.tools.length;
  const key = JSON.stringify(v.tools);
  if (key === toolsKey) return;
  toolsKey = key;
  const list = $("tools");
  list.replaceChildren();
  for (const t of v.tools) {
    const badges = t.scopes.map((s) => el("span", { class: `badge ${t.granted ? "granted" : "missing"}`, text: s }));
    const pick = el("button", { type: "button", class: "secondary", "data-tool": t.name, text: "Use" });
    pick.addEventListener("click", () => selectTool(t));
    list.append(el("li", {}, el("span", { class: "name", text: t.name }), ...badges, pick));
    if (selected && selected.name === t.name) selected = t;
  }
}

function drawCall(v) {
  const c = v.last_call;
  $("result").hidden = !c;
  if (!c) return;
  $("result-tool").textContent = c.tool;
  $("result-outcome").textContent = c.outcome;
  $("result-outcome").className = `badge ${c.outcome}`;
  $("result-message").textContent = c.message || "";
  $("result-body").textContent = c.result ? JSON.stringify(c.result, null, 2) : "";
  $("stepup-box").hidden = c.outcome !== "refused";
  $("stepup-scopes").textContent = c.needs || "";
}

function drawDoctor(v) {
  const d = v.doctor;
  $("doctor-card").hidden = !d;
  if (!d) return;
  const rows = d.checks.map((c) => el("tr", {}, el("td", { text: c.title }), el("td", { class: c.status, text: c.status }), el("td", { text: c.saw }), el("td", { text: c.fix || "" })));
  $("doctor").replaceChildren(...rows);
}

function draw(state) {
  $("operator").textContent = `signed in as ${state.operator}`;
  const list = $("suggestions");
  if (!list.childElementCount) for (const s of state.suggestions) list.append(el("option", { value: s }));
  if (!$("url").value && state.suggestions.length) $("url").value = state.suggestions[0];
  const v = state.inspection;
  if (!v) return;
  if (lastUrl !== v.url) {
    // A new inspection: start the logs afresh.
    lastUrl = v.url;
    seenFlow = 0; seenRpc = 0; toolsKey = ""; selected = null;
    $("flow").replaceChildren(); $("rpc").replaceChildren(); $("call").hidden = true;
    $("url").value = v.url;
  }
  const busy = v.busy ? ` — ${v.busy}…` : "";
  $("status").textContent = `${v.url}: ${v.phase}${busy}`;
  $("status").dataset.phase = v.phase;
  $("status").dataset.busy = v.busy ? "1" : "";
  showError(v.error || postError);
  $("authorize-box").hidden = !v.authorize_url;
  if (v.authorize_url) $("authorize").href = v.authorize_url;
  for (const b of ["connect-button", "doctor-button", "refresh-button", "revoke-button", "call-button", "stepup-button"]) $(b).disabled = !!v.busy;
  drawFlow(v); drawRpc(v); drawToken(v); drawTools(v); drawCall(v); drawDoctor(v);
}

let timer = null;
// The last state drawn: polls ask only for what changed since its revision.
let shown = null;
async function poll() {
  clearTimeout(timer);
  let busy = false;
  try {
    const since = shown && shown.inspection ? `?since=${shown.inspection.revision}` : "";
    const r = await fetch(`/inspector/api/state${since}`, { cache: "no-store" });
    if (r.status === 401) { location.href = "/login?return=/inspector"; return; }
    let state = await r.json();
    if (!r.ok) { showError(state.message); return; }
    if (state.inspection && state.inspection.unchanged) state = shown;
    else { shown = state; draw(state); }
    busy = !!(state.inspection && state.inspection.busy);
  } catch (e) {
    showError(`the inspector did not answer: ${e.message}`);
  }
  timer = setTimeout(poll, busy ? 400 : 1500);
}

document.addEventListener("DOMContentLoaded", () => {
  $("connect").addEventListener("submit", (e) => {
    e.preventDefault();
    post("connect", { url: $("url").value, scope: $("scope").value });
  });
  $("doctor-button").addEventListener("click", () => post("doctor", { url: $("url").value }));
  $("refresh-button").addEventListener("click", () => post("refresh"));
  $("revoke-button").addEventListener("click", () => post("revoke"));
  $("stepup-button").addEventListener("click", () => post("step-up", { scopes: $("stepup-scopes").textContent }));
  $("call").addEventListener("submit", (e) => {
    e.preventDefault();
    if (!selected) return;
    let args;
    try { args = readArguments(); } catch (err) { showError(err.message); return; }
    post("call", { tool: selected.name, arguments: args });
  });
  poll();
});
