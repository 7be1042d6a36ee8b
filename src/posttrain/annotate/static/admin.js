// The admin view: items complete, labels, agreement, and each person's progress (refreshed every 10 s).
"use strict";

(function () {
  const api = window.annotateApi;
  const $ = (id) => document.getElementById(id);

  function cell(row, text) {
    const td = document.createElement("td");
    td.textContent = text;
    row.appendChild(td);
  }

  async function refresh() {
    const reply = await api.call("GET", "/api/admin/status");
    if (reply.status === 403) {
      $("status").textContent = "Not allowed: only an admin sees the project's progress.";
      $("status").className = "status error";
      return false;
    }
    if (!reply.ok) return true;
    const s = reply.data;
    $("project-name").textContent = `${s.project.name} · ${s.project.mode}, ${s.project.overlap} label(s) per item`;
    $("complete").textContent = `${s.complete} / ${s.items}`;
    $("labels").textContent = String(s.labels);
    $("ties").textContent = String(s.ties);
    $("agreement").textContent = s.agreement === null ? "n/a" : s.agreement.toFixed(3);
    const body = $("annotators").tBodies[0];
    body.replaceChildren();
    for (const a of s.annotators) {
      const row = document.createElement("tr");
      [a.name, a.role, String(a.labels), String(a.skips), a.last_label_at || "–"].forEach((t) => cell(row, t));
      body.appendChild(row);
    }
    $("summary").hidden = false;
    return true;
  }

  async function start() {
    const me = await api.call("GET", "/api/me");
    if (!me.ok) return;
    api.setCsrf(me.data.csrf);
    $("logout").addEventListener("click", async () => {
      await api.call("POST", "/api/logout", {});
      window.location.assign("/login");
    });
    if (await refresh()) setInterval(refresh, 10000);
  }

  start();
})();
