// What every page shares: JSON requests to the app (the session's CSRF token on each POST; a 401
// goes to the log-in page), the server's reason as a sentence, and the status line.
"use strict";

window.annotateApi = (function () {
  let csrf = "";

  // `afterLogin`: the page to come back to once logged in (a 401 sends the person to /login first).
  async function request(method, path, body, afterLogin) {
    const init = { method, credentials: "same-origin", headers: {} };
    if (method !== "GET") {
      init.headers["Content-Type"] = "application/json";
      init.headers["X-CSRF-Token"] = csrf;
      init.body = JSON.stringify(body || {});
    }
    const reply = await fetch(path, init); // throws on a network error
    let data = null;
    try {
      data = await reply.json();
    } catch (_) {
      data = null;
    }
    if (reply.status === 401 && path !== "/api/login") {
      window.location.assign(afterLogin ? "/login?next=" + encodeURIComponent(afterLogin) : "/login");
    }
    return { status: reply.status, ok: reply.ok, data };
  }

  function detail(data, fallback) {
    const d = data && data.detail;
    let text = fallback;
    if (typeof d === "string") text = d;
    else if (Array.isArray(d) && d.length) text = d.map((e) => (e && e.msg) || String(e)).join("; ");
    text = text.charAt(0).toUpperCase() + text.slice(1);
    return /[.!?]$/.test(text) ? text : text + ".";
  }

  function say(text, kind) {
    const status = document.getElementById("status");
    status.textContent = text || "";
    status.className = "status" + (kind ? " " + kind : "");
  }

  return { request, detail, say, setCsrf: (token) => { csrf = token; } };
})();
