// The page's one door to the server: JSON in and out, the session's CSRF token on every POST, and
// a 401 sends the person to the log-in page.
"use strict";

window.annotateApi = (function () {
  let csrf = "";

  async function call(method, path, body) {
    const headers = { "X-CSRF-Token": csrf };
    const init = { method, headers, credentials: "same-origin" };
    if (body !== undefined) {
      headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    const reply = await fetch(path, init);
    let data = {};
    try {
      data = await reply.json();
    } catch (_) {
      data = {};
    }
    if (reply.status === 401 && path !== "/api/login") {
      window.location.assign("/login");
    }
    return { ok: reply.ok, status: reply.status, data };
  }

  function detail(data) {
    const d = data && data.detail;
    if (typeof d === "string") return d;
    if (Array.isArray(d) && d.length) return d.map((e) => e.msg || String(e)).join("; ");
    return "the server refused the request";
  }

  return { call, detail, setCsrf: (token) => { csrf = token; } };
})();
