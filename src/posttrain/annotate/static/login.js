// Log in: name + token in, a session cookie out; then on to the labelling page (or back to the
// page that sent the person here, e.g. /admin).
"use strict";

(function () {
  const $ = (id) => document.getElementById(id);

  // Only a path on this site (never "//host" or a full URL), so a link cannot bounce a login elsewhere.
  function nextPage() {
    const next = new URLSearchParams(window.location.search).get("next") || "/";
    return /^\/(?![/\\])/.test(next) ? next : "/";
  }

  async function logIn(event) {
    event.preventDefault();
    const error = $("login-error");
    const name = $("name").value.trim();
    const token = $("token").value.trim();
    error.textContent = "";
    if (!name || !token) {
      error.textContent = "Enter your name and your token.";
      return;
    }
    $("login").disabled = true;
    try {
      const reply = await window.annotateApi.request("POST", "/api/login", { name, token });
      if (reply.ok) {
        window.location.assign(nextPage());
        return;
      }
      error.textContent = reply.status === 401 ? "Unknown name or wrong token." : "The server refused the log-in (" + reply.status + ").";
    } catch (_) {
      error.textContent = "Could not reach the server; try again.";
    } finally {
      $("login").disabled = false;
    }
  }

  $("login-form").addEventListener("submit", logIn);
})();
