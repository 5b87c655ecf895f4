// The live page of one recall node: polls /ui/state and draws it. Everything from the node is
// written as text (textContent), never as markup.
"use strict";

const POLL_MS = 500;
const SVG = "http://www.w3.org/2000/svg";

function text(id, value) {
  document.getElementById(id).textContent = value;
}

function ago(ms) {
  const s = Math.max(0, (Date.now() - ms) / 1000);
  return s < 1 ? "just now" : s < 120 ? `${s.toFixed(0)} s ago` : `${(s / 60).toFixed(0)} min ago`;
}

function landing(state) {
  const subs = state.subscribers;
  const bar = document.getElementById("landing-bar");
  if (subs.length === 0) {
    bar.style.width = "0";
    text("landing-text", "no subscriber yet");
    return;
  }
  const holding = subs.filter((s) => s.lag === 0).length;
  bar.style.width = `${(100 * holding) / subs.length}%`;
  bar.dataset.holding = String(holding);
  text(
    "landing-text",
    `${holding} of ${subs.length} subscribers hold version ${state.last_change_version}` +
      (state.waves_pending > 0 ? ` (${state.waves_pending} change(s) still landing)` : ""),
  );
}

function waves(state) {
  const svg = document.getElementById("waves");
  svg.replaceChildren();
  const ws = state.waves;
  if (ws.length === 0) {
    text("waves-text", "no wave has landed yet");
    return;
  }
  const width = 640, height = 200, top = 14, bottom = 16;
  const max = Math.max(1, ...ws.map((w) => w.landed_ms));
  // At least 32 slots, newest on the right, so a single wave is a bar, not a wall.
  const slots = Math.max(ws.length, 32);
  const step = width / slots;
  const offset = slots - ws.length;
  ws.forEach((w, j) => {
    const i = j + offset;
    const h = ((height - top - bottom) * w.landed_ms) / max;
    const r = document.createElementNS(SVG, "rect");
    r.setAttribute("x", String(i * step + 1));
    r.setAttribute("width", String(Math.max(1, step - 2)));
    r.setAttribute("y", String(height - bottom - h));
    r.setAttribute("height", String(Math.max(1, h)));
    r.dataset.version = String(w.version);
    const title = document.createElementNS(SVG, "title");
    title.textContent = `version ${w.version}: ${w.landed_ms.toFixed(1)} ms to ${w.subscribers} subscriber(s)`;
    r.appendChild(title);
    svg.appendChild(r);
  });
  const label = document.createElementNS(SVG, "text");
  label.setAttribute("x", "4");
  label.setAttribute("y", "11");
  label.textContent = `max ${max.toFixed(1)} ms`;
  svg.appendChild(label);
  const last = ws[ws.length - 1];
  text(
    "waves-text",
    `last wave: version ${last.version} reached ${last.subscribers} subscriber(s) in ${last.landed_ms.toFixed(1)} ms`,
  );
}

function subscribers(state) {
  const body = document.getElementById("subscribers");
  body.replaceChildren();
  for (const s of state.subscribers) {
    const row = document.createElement("tr");
    row.dataset.subscriber = s.id;
    const cells = [s.id, s.mode, String(s.applied), String(s.lag), ago(s.last_ack_ms)];
    cells.forEach((value, i) => {
      const td = document.createElement("td");
      td.textContent = value;
      if (i === 3) td.className = s.lag === 0 ? "lag-0" : "lagging";
      row.appendChild(td);
    });
    body.appendChild(row);
  }
}

function draw(state) {
  text("node", String(state.node));
  text("leader", state.leader == null ? "none" : String(state.leader));
  text("term", String(state.term));
  text("applied", String(state.applied_version));
  text("committed", String(state.committed_version));
  text("last-change", String(state.last_change_version));
  text("revocations", String(state.revocations));
  const alarm = document.getElementById("alarm");
  alarm.hidden = state.history_alarm == null;
  alarm.textContent = state.history_alarm == null ? "" : `history alarm: ${state.history_alarm}`;
  landing(state);
  waves(state);
  subscribers(state);
}

async function poll() {
  try {
    const r = await fetch("/ui/state", { cache: "no-store" });
    if (!r.ok) throw new Error(`${r.status} ${r.statusText}`);
    draw(await r.json());
    text("connection", `updated ${new Date().toLocaleTimeString()}`);
    document.body.dataset.ready = "true";
  } catch (e) {
    text("connection", `cannot reach the node: ${e.message}; retrying`);
  }
  setTimeout(poll, POLL_MS);
}

poll();
