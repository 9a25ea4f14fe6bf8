// attune's web UI: live updates over the API's event streams (EventSource), nothing else.
// Pages work without this script; it patches them in place while they are open.
"use strict";

const TERMINAL = new Set(["succeeded", "failed", "timeout", "canceled", "abandoned"]);
const KEPT_CHARS = 256 * 1024; // the end of each output pane kept in the page

function badge(status) {
  const span = document.createElement("span");
  span.className = "badge s-" + status;
  span.dataset.status = status;
  span.textContent = status;
  return span;
}

function cell(text, className) {
  const td = document.createElement("td");
  if (className) td.className = className;
  td.textContent = text == null ? "" : String(text);
  return td;
}

function moment(iso) {
  return iso ? iso.replace("T", " ").slice(0, 19) : "";
}

function duration(ms) {
  if (ms == null) return "";
  if (ms < 1000) return ms + " ms";
  const s = ms / 1000;
  return s < 120 ? s.toFixed(1) + " s" : (s / 60).toFixed(1) + " min";
}

function link(href, text) {
  const a = document.createElement("a");
  a.href = href;
  a.textContent = text;
  return a;
}

// Coalesce calls: the first one runs ``action`` after ``intervalMs``, the calls until then with it.
function throttled(action, intervalMs) {
  let timer = null;
  return () => {
    if (timer === null) timer = setTimeout(() => { timer = null; action(); }, intervalMs);
  };
}

function patchRow(tr, row) {
  tr.querySelector(".c-status").replaceChildren(badge(row.status));
  tr.querySelector(".c-worker").textContent = row.worker || "";
  tr.querySelector(".c-started").textContent = moment(row.started_at);
  tr.querySelector(".c-duration").textContent = duration(row.duration_ms);
  tr.querySelector(".c-exit").textContent = row.exit_code == null ? "" : row.exit_code;
}

function newRow(row) {
  const tr = document.createElement("tr");
  tr.dataset.id = row.id;
  const id = document.createElement("td");
  id.append(link("/executions/" + row.id, String(row.id)));
  const action = document.createElement("td");
  action.append(link("/actions/" + encodeURIComponent(row.action_ref), row.action_ref));
  const requested = cell(moment(row.requested_at));
  tr.append(id, action, cell("", "c-status"), cell("", "c-worker"), cell(row.requested_by),
    requested, cell("", "c-started"), cell("", "c-duration"), cell("", "c-exit"),
    cell("", "c-attempt"));
  patchRow(tr, row);
  return tr;
}

function followList(table) {
  const statuses = table.dataset.statuses ? table.dataset.statuses.split(",") : [];
  const query = new URLSearchParams({ events: "execution" });
  if (table.dataset.action) query.set("action", table.dataset.action);
  const source = new EventSource("/api/v1/stream?" + query);
  // Events carry no attempt: the page as rendered now fills it in for the rows added.
  const fill = throttled(() => refetch(table.tBodies[0], "tbody"), 1000);
  source.addEventListener("execution", (event) => {
    const row = JSON.parse(event.data);
    const tr = table.querySelector(`tr[data-id="${row.id}"]`);
    if (tr) return patchRow(tr, row);
    const matches = (!statuses.length || statuses.includes(row.status)) &&
      (!table.dataset.worker || table.dataset.worker === row.worker) &&
      (!table.dataset.action || table.dataset.action === row.action_ref);
    if (table.dataset.live === "first" && matches) {
      table.querySelector("tr.empty")?.remove();
      table.tBodies[0].prepend(newRow(row));
      fill();
    }
  });
  source.addEventListener("reset", () => location.reload());
  // Subscribed: now catch up with what changed between the render and the subscription.
  source.addEventListener("open", () => refetch(table.tBodies[0], "tbody"), { once: true });
}

async function refetch(box, selector) {
  const answer = await fetch(location.href, { credentials: "same-origin" });
  if (!answer.ok) return;
  const page = new DOMParser().parseFromString(await answer.text(), "text/html");
  const fresh = page.querySelector(selector);
  if (fresh) box.replaceChildren(...fresh.childNodes);
}

function followExecution(box) {
  const id = box.dataset.id;
  const state = document.getElementById("output-state");
  const follow = document.getElementById("follow");
  let reloading = false;
  const settle = () => {
    if (!reloading) { reloading = true; setTimeout(() => location.reload(), 300); }
  };
  const setStatus = (status) => {
    document.querySelector("h1 .badge").replaceWith(badge(status));
    if (TERMINAL.has(status)) settle();
  };
  const append = (pane, chunk) => {
    const have = Number(pane.dataset.length || 0);
    const fresh = chunk.text.slice(Math.max(0, have - chunk.offset)); // replayed bytes dropped
    if (chunk.offset + chunk.text.length <= have || !fresh) return;
    pane.dataset.length = String(chunk.offset + chunk.text.length);
    let text = pane.textContent + fresh;
    if (text.length > KEPT_CHARS) text = text.slice(-KEPT_CHARS);
    pane.textContent = text;
    state.textContent = "";
    if (follow.checked) pane.scrollTop = pane.scrollHeight;
  };
  const output = new EventSource(`/api/v1/executions/${id}/output/stream`);
  for (const name of ["stdout", "stderr"]) {
    const pane = document.getElementById(name);
    output.addEventListener(name, (event) => append(pane, JSON.parse(event.data)));
  }
  output.addEventListener("truncated", () => { state.textContent = "output truncated at the limit"; });
  output.addEventListener("live output unavailable", () => { state.textContent = "live output unavailable"; });
  output.addEventListener("end", (event) => { output.close(); setStatus(JSON.parse(event.data).status); settle(); });
  output.onerror = () => {
    if (output.readyState === EventSource.CLOSED && !reloading) {
      state.textContent = "live output unavailable";
      setTimeout(() => location.reload(), 3000); // without streams, the page polls
    }
  };
  const events = new EventSource(`/api/v1/stream?events=execution&execution_id=${id}`);
  events.addEventListener("execution", (event) => setStatus(JSON.parse(event.data).status));
  events.addEventListener("reset", () => location.reload());
  events.addEventListener("open", async () => { // subscribed: catch up with the record
    const answer = await fetch(`/api/v1/executions/${id}`, { credentials: "same-origin" });
    if (answer.ok) setStatus((await answer.json()).status);
  }, { once: true });
}

// A workflow run's task table: its children's events carry no parent, so any event of a child
// shown, or of an execution newer than them all (a child just started), refetches the table.
function followTasks(table) {
  const run = Number(table.dataset.run);
  const refresh = throttled(() => refetch(table.tBodies[0], "#tasks tbody"), 250);
  const events = new EventSource("/api/v1/stream?events=execution");
  events.addEventListener("execution", (event) => {
    const id = JSON.parse(event.data).id;
    const shown = [...table.querySelectorAll("tr[data-id]")].map((tr) => Number(tr.dataset.id));
    if (shown.includes(id) || id > Math.max(run, ...shown)) refresh();
  });
  events.addEventListener("reset", refresh);
  events.addEventListener("open", refresh, { once: true }); // changes since the render
}

function refreshWorkers(box) {
  const refresh = () => refetch(box, "#workers");
  setInterval(refresh, Number(box.dataset.refreshS) * 1000);
  const events = new EventSource("/api/v1/stream?events=worker");
  events.addEventListener("worker", refresh);
  events.addEventListener("reset", refresh);
}

document.addEventListener("DOMContentLoaded", () => {
  const list = document.getElementById("executions");
  if (list) followList(list);
  const execution = document.getElementById("execution");
  if (execution && execution.dataset.terminal === "no") {
    followExecution(execution);
    const tasks = document.getElementById("tasks");
    if (tasks) followTasks(tasks);
  }
  const workers = document.getElementById("workers");
  if (workers) refreshWorkers(workers);
});
