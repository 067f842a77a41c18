"""The observer's web page (served at ``/observer``): one HTML document, no outside assets.

It polls ``/observer.json`` every second and draws the tree across processes,
a sparkline of messages/s per metrics group, bridges with their dead letters,
task queues with dead tasks and sagas with parked ones. Action buttons appear
when the server allows actions; they send the token typed into the page
(kept in the tab's sessionStorage) as ``Authorization: Bearer``.
"""

from __future__ import annotations

PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>troupe observer</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
body{font:13px/1.4 system-ui,sans-serif;margin:1em;color:#222}
h1{font-size:1.2em;margin:0 0 .5em}h2{font-size:1.05em;margin:1.2em 0 .3em}
table{border-collapse:collapse;width:100%}td,th{padding:2px 6px;text-align:left;
border-bottom:1px solid #eee;white-space:nowrap}th{background:#f6f6f6}
.num{text-align:right}.bad{color:#b00}.ok{color:#070}.proc{font-weight:bold;background:#fafafa}
svg{vertical-align:middle}button{font-size:11px;margin-left:2px}#msg{color:#05a}
small{color:#666}
</style></head><body>
<h1>troupe observer <small id="stamp"></small></h1>
<div id="auth">actions token: <input id="token" type="password" size="30">
<span id="msg"></span></div>
<h2>Supervision tree</h2>
<table id="tree"><thead><tr><th>actor</th><th>kind</th><th>state</th>
<th class="num">restarts</th><th class="num">mailbox</th><th class="num">msg/s</th>
<th class="num">p99</th><th>group</th><th></th></tr></thead><tbody></tbody></table>
<h2>Rates per group</h2><table id="groups"><tbody></tbody></table>
<h2>Bridges</h2><table id="bridges"><tbody></tbody></table>
<h2>Task queues</h2><table id="tasks"><tbody></tbody></table>
<h2>Sagas</h2><table id="sagas"><tbody></tbody></table>
<script>
"use strict";
const tokenBox = document.getElementById("token");
tokenBox.value = sessionStorage.getItem("troupe-token") || "";
tokenBox.addEventListener("change", () => sessionStorage.setItem("troupe-token", tokenBox.value));
let allowed = false;
function esc(v) {
  return String(v === null || v === undefined ? "-" : v).replace(/[&<>"']/g,
    c => ({"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;"}[c]));
}
function ms(s) { return s === null || s === undefined ? "-" : (s * 1000).toFixed(2) + " ms"; }
function num(v, d) { return v === null || v === undefined ? "-" :
  (typeof v === "number" && d !== undefined ? v.toFixed(d) : v); }
function spark(values) {
  if (!values || values.length < 2) return "";
  const max = Math.max(...values, 1e-9), w = 120, h = 20;
  const pts = values.map((v, i) =>
    (i * w / (values.length - 1)).toFixed(1) + "," + (h - v / max * h).toFixed(1)).join(" ");
  return '<svg width="' + w + '" height="' + h + '"><polyline fill="none" stroke="#36c" ' +
    'points="' + pts + '"/></svg>';
}
function button(label, process, action, params) {
  if (!allowed) return "";
  return '<button data-process="' + esc(process) + '" data-action="' + esc(action) +
    '" data-params="' + esc(JSON.stringify(params)) + '">' + esc(label) + "</button>";
}
async function act(process, action, params) {
  const msg = document.getElementById("msg");
  const reply = await fetch("/observer/actions", {method: "POST",
    headers: {"Content-Type": "application/json", "Authorization": "Bearer " + tokenBox.value},
    body: JSON.stringify({process: process, action: action, params: params})});
  const data = await reply.json();
  msg.textContent = reply.status + ": " + (data.result || data.error);
  msg.className = reply.ok ? "ok" : "bad";
  refresh();
}
document.body.addEventListener("click", e => {
  const b = e.target.closest("button[data-action]");
  if (b) act(b.dataset.process, b.dataset.action, JSON.parse(b.dataset.params));
});
function treeRows(node, depth, process, out) {
  const pad = "&nbsp;".repeat(depth * 3);
  if (node.kind === "process") {
    out.push('<tr class="proc" data-name="' + esc(node.name) + '"><td>' + esc(node.name) +
      " <small>pid " + esc(node.pid) + "</small></td><td>process</td><td>" + esc(node.state) +
      '</td><td class="num">' + esc(node.restarts) + '</td><td class="num">' +
      esc(node.mailbox_depth) + "</td><td></td><td></td><td></td><td></td></tr>");
  } else {
    out.push('<tr data-name="' + esc(node.name) + '"><td>' + pad + esc(node.name) + "</td><td>" +
      esc(node.kind) + "</td><td>" + esc(node.state) + '</td><td class="num">' +
      esc(node.restarts) + '</td><td class="num">' + esc(node.mailbox_depth) +
      '</td><td class="num">' + num(node.rate, 1) + '</td><td class="num">' + ms(node.p99) +
      "</td><td>" + esc(node.group) + "</td><td>" +
      button("restart", process, "restart", {actor: node.name}) +
      button("stop", process, "stop", {actor: node.name}) + "</td></tr>");
  }
  for (const kid of node.children || []) treeRows(kid, depth + 1, process, out);
  if (node.hidden) out.push('<tr class="more"><td colspan="9">' + "&nbsp;".repeat(depth * 3 + 3) +
    "... " + esc(node.hidden) + " more</td></tr>");
}
function fill(id, html) { document.querySelector("#" + id + " tbody").innerHTML = html; }
function render(view) {
  allowed = view.actions;
  document.getElementById("auth").style.display = allowed ? "" : "none";
  document.getElementById("stamp").textContent = new Date(view.time * 1000).toLocaleTimeString();
  const rows = [];
  for (const p of view.tree) treeRows(p, 0, p.name, rows);
  fill("tree", rows.join(""));
  fill("groups", (view.groups || []).map(g => "<tr><td>" + esc(g.group) + '</td><td class="num">' +
    num(g.rate, 1) + " msg/s</td><td>" + spark(g.history) + '</td><td class="num">p99 ' +
    ms(g.p99) + '</td><td class="num">failed ' + esc(g.failed) + "</td></tr>").join(""));
  const b = [];
  for (const r of view.bridges || []) {
    b.push("<tr><td><b>" + esc(r.name) + "</b> " + esc(r.kind) + " " + esc(r.broker) + "</td><td>" +
      esc(r.stream) + '</td><td class="' + (r.connected ? "ok" : "bad") + '">' +
      (r.connected ? "connected" : "disconnected") + '</td><td class="num">lag ' + num(r.lag) +
      '</td><td class="num">in flight ' + num(r.in_flight) + '</td><td class="num">redelivered ' +
      num(r.redelivered) + '</td><td class="num">DLQ ' + num(r.dlq_size) + "</td></tr>");
    for (const d of r.dead_letters || []) {
      b.push('<tr class="dead" data-id="' + esc(d.id) + '"><td>&nbsp;&nbsp;dead ' + esc(d.id) +
        '</td><td colspan="4" class="bad">' + esc(d.reason) + "</td><td>" + esc(d.body) +
        "</td><td>" + button("requeue", r.process, "requeue_dead", {bridge: r.name, id: d.id}) +
        button("delete", r.process, "delete_dead", {bridge: r.name, id: d.id}) + "</td></tr>");
    }
  }
  fill("bridges", b.join(""));
  const t = [];
  for (const q of view.tasks || []) {
    t.push("<tr><td><b>" + esc(q.queue) + '</b></td><td class="num">size ' + num(q.size) +
      '</td><td class="num">scheduled ' + num(q.scheduled) + '</td><td class="num">retrying ' +
      num(q.retrying) + '</td><td class="num">dead ' + num(q.dead) + "</td><td></td></tr>");
    for (const d of q.dead_tasks || []) {
      t.push("<tr><td>&nbsp;&nbsp;" + esc(d.task) + " " + esc(d.id) + '</td><td colspan="4" ' +
        'class="bad">' + esc(d.error) + "</td><td>" +
        button("requeue", q.process, "requeue_task", {queue: q.queue, id: d.id}) +
        button("delete", q.process, "delete_task", {queue: q.queue, id: d.id}) + "</td></tr>");
    }
  }
  fill("tasks", t.join(""));
  const s = [];
  for (const g of view.sagas || []) {
    s.push("<tr><td><b>" + esc(g.name) + '</b></td><td class="num">running ' + num(g.running) +
      '</td><td class="num">compensating ' + num(g.compensating) +
      '</td><td class="num">needs attention ' + num(g.needs_attention) + "</td><td></td></tr>");
    for (const p of g.parked || []) {
      s.push("<tr><td>&nbsp;&nbsp;" + esc(p.id) + "</td><td>" + esc(p.failed_step) +
        '</td><td colspan="2" class="bad">' + esc(p.error) + "</td><td>" +
        button("retry", g.process, "retry_saga", {saga: g.name, id: p.id}) + "</td></tr>");
    }
  }
  fill("sagas", s.join(""));
}
async function refresh() {
  try {
    const reply = await fetch("/observer.json", {cache: "no-store"});
    render(await reply.json());
  } catch (e) {
    document.getElementById("stamp").textContent = "unreachable: " + e;
  }
}
refresh();
setInterval(refresh, 1000);
</script></body></html>
"""
