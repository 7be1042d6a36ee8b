// Log in: name + token in, a session cookie out; then on to the labelling page (admins to /admin).
"use strict";

document.getElementById("login-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const error = document.getElementById("login-error");
  error.textContent = "";
  const name = document.getElementById("name").value.trim();
  const token = document.getElementById("token").value.trim();
  if (!name || !token) {
    error.textContent = "Enter your name and your token.";
    return;
  }
  const reply = await window.annotateApi.call("POST", "/api/login", { name, token });
  if (reply.ok) window.location.assign("/");
  else error.textContent = reply.status === 401 ? "Unknown name or wrong token." : window.annotateApi.detail(reply.data);
});
