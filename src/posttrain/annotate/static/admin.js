// The admin view: items complete, labels, mean agreement, and each person's labels, skips and last
// label (refreshed every 15 s). A person without the admin role sees a "not allowed" line instead.
"use strict";

(function () {
  const $ = (id) => document.getElementById(id);
  const REFRESH_MS = 15000;
  const { say } = window.annotateApi;

  async function getJson(path) {
    const reply = await window.annotateApi.request("GET", path, undefined, "/admin");
    return reply.status === 401 ? null : { status: reply.status, data: reply.ok ? reply.data : null };
  }

  function cell(row, text, className) {
    const td = document.createElement("td");
    td.textContent = text;
    if (className) td.className = className;
    row.appendChild(td);
  }

  function when(iso) {
    if (!iso) return "–";
    const date = new Date(iso);
    return Number.isNaN(date.getTime()) ? iso : date.toLocaleString();
  }

  function agreementText(status) {
    if (status.agreement !== null && status.agreement !== undefined) return status.agreement.toFixed(3);
    return status.project.overlap < 2 ? "n/a (overlap 1)" : "n/a (no item has 2 labels yet)";
  }

  function show(status) {
    const p = status.project;
    $("project-name").textContent = `${p.name} · ${p.mode}, K=${p.k}, ${p.overlap} label(s) per item`;
    $("complete").textContent = `${status.complete} / ${status.items}`;
    $("labels").textContent = String(status.labels);
    $("agreement").textContent = agreementText(status);
    const rows = status.annotators.map((a) => {
      const row = document.createElement("tr");
      cell(row, a.name);
      cell(row, a.role);
      cell(row, String(a.labels), "num");
      cell(row, String(a.skips), "num");
      cell(row, when(a.last_label_at));
      return row;
    });
    $("annotators").tBodies[0].replaceChildren(...rows);
    $("updated").textContent = "Updated " + new Date().toLocaleTimeString() + ".";
    $("summary").hidden = false;
  }

  async function refresh() {
    let reply;
    try {
      reply = await getJson("/api/admin/status");
    } catch (_) {
      say("Could not reach the server; showing the last figures.", "error");
      return true;
    }
    if (reply === null) return false;
    if (reply.status === 403) {
      $("summary").hidden = true;
      say("Not allowed: only an admin may see the project's progress.", "error");
      return false;
    }
    if (!reply.data) {
      say(`The server answered ${reply.status}.`, "error");
      return true;
    }
    say("");
    show(reply.data);
    return true;
  }

  async function logout(event) {
    event.preventDefault();
    try {
      await window.annotateApi.request("POST", "/api/logout", {});
    } finally {
      window.location.assign("/login");
    }
  }

  async function start() {
    const me = await getJson("/api/me");
    if (me === null || !me.data) return;
    window.annotateApi.setCsrf(me.data.csrf);
    $("whoami").textContent = me.data.name;
    $("logout").addEventListener("click", logout);
    $("refresh").addEventListener("click", refresh);
    if (await refresh()) setInterval(refresh, REFRESH_MS);
  }

  start();
})();
