// The labelling page: one item at a time, A / tie / B or a ranking of K, skip, undo, comment,
// keyboard shortcuts. Server text only ever reaches the DOM through textContent (markdown.js).
"use strict";

(function () {
  const api = window.annotateApi;
  const $ = (id) => document.getElementById(id);
  const LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ";
  const state = { project: null, item: null, pending: null, busy: false, order: [], selected: 0 };

  function say(text, kind) {
    const status = $("status");
    status.textContent = text || "";
    status.className = "status" + (kind ? " " + kind : "");
  }

  function newId() {
    if (window.crypto && crypto.randomUUID) return crypto.randomUUID();
    const bytes = crypto.getRandomValues(new Uint8Array(16));
    return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
  }

  function setBusy(busy) {
    state.busy = busy;
    document.querySelectorAll("button.choice, #skip, #undo").forEach((b) => { b.disabled = busy; });
    if (!busy) $("undo").disabled = !state.canUndo;
  }

  function showProgress(p) {
    $("progress").textContent = `${p.done} done · ${p.left} left`;
    const share = p.total ? Math.round((100 * p.done) / p.total) : 100;
    const bar = $("progress-bar");
    bar.setAttribute("aria-valuenow", String(share));
    bar.firstElementChild.style.width = share + "%";
  }

  function card(index, text) {
    const box = document.createElement("article");
    box.className = "completion";
    const head = document.createElement("h3");
    head.textContent = LETTERS[index];
    const body = document.createElement("div");
    body.className = "body md";
    window.renderMarkdown(body, text);
    box.append(head, body);
    return box;
  }

  function drawRanking() {
    const list = $("ranking");
    list.replaceChildren();
    state.order.forEach((index, position) => {
      const li = document.createElement("li");
      li.draggable = true;
      li.tabIndex = 0;
      li.dataset.index = String(index);
      li.className = position === state.selected ? "selected" : "";
      const letter = document.createElement("strong");
      letter.textContent = LETTERS[index];
      const preview = document.createElement("span");
      preview.textContent = state.item.completions[index].slice(0, 120);
      li.append(letter, preview);
      li.addEventListener("click", () => { state.selected = position; drawRanking(); });
      li.addEventListener("dragstart", (e) => { e.dataTransfer.setData("text/plain", String(position)); li.classList.add("dragging"); });
      li.addEventListener("dragend", () => li.classList.remove("dragging"));
      li.addEventListener("dragover", (e) => e.preventDefault());
      li.addEventListener("drop", (e) => {
        e.preventDefault();
        const from = Number(e.dataTransfer.getData("text/plain"));
        moveTo(from, position);
      });
      list.appendChild(li);
    });
  }

  function moveTo(from, to) {
    if (Number.isNaN(from) || from === to || to < 0 || to >= state.order.length) return;
    const [moved] = state.order.splice(from, 1);
    state.order.splice(to, 0, moved);
    state.selected = to;
    drawRanking();
  }

  function show(reply) {
    state.item = reply.item;
    state.canUndo = reply.can_undo;
    state.pending = null;
    showProgress(reply.progress);
    $("undo").disabled = !reply.can_undo;
    $("empty").hidden = !!reply.item;
    $("task").hidden = !reply.item;
    if (!reply.item) return;
    window.renderMarkdown($("prompt"), reply.item.prompt);
    const cards = reply.item.completions.map((text, i) => card(i, text));
    $("completions").replaceChildren(...cards);
    $("completions").className = "completions k" + cards.length;
    const ranking = state.project.mode === "ranking";
    $("ranking").hidden = !ranking;
    $("ranking-actions").hidden = !ranking;
    $("pairwise-actions").hidden = ranking;
    if (ranking) {
      state.order = reply.item.completions.map((_, i) => i);
      state.selected = 0;
      drawRanking();
    }
  }

  async function loadNext() {
    const reply = await api.call("GET", "/api/next");
    if (reply.ok) show(reply.data);
    else say(api.detail(reply.data), "error");
  }

  async function submit(ranking) {
    if (state.busy || !state.item) return;
    setBusy(true);
    // one id per submission: a retry after a lost reply sends the same id and the server writes once
    state.pending = state.pending || { item_id: state.item.item_id, version: state.item.version, submit_id: newId() };
    const body = { ...state.pending, ranking, comment: $("comment").value };
    try {
      for (let attempt = 0; ; attempt++) {
        let reply;
        try {
          reply = await api.call("POST", "/api/label", body);
        } catch (networkError) {
          if (attempt < 3) continue;
          say("Could not reach the server; your label is not saved yet. Try again.", "error");
          return;
        }
        if (reply.ok) {
          $("comment").value = "";
          say("Saved.", "ok");
          await loadNext();
        } else if (reply.status === 409) {
          say(api.detail(reply.data), "error");
          await loadNext();
        } else {
          say(api.detail(reply.data), "error");
        }
        return;
      }
    } finally {
      setBusy(false);
    }
  }

  async function post(path, body, done) {
    if (state.busy) return;
    setBusy(true);
    try {
      const reply = await api.call("POST", path, body);
      if (reply.ok) {
        say(done, "ok");
        await loadNext();
      } else {
        say(api.detail(reply.data), "error");
      }
    } finally {
      setBusy(false);
    }
  }

  const skip = () => state.item && post("/api/skip", { item_id: state.item.item_id }, "Skipped.");
  const undo = () => post("/api/undo", {}, "Your last label was taken back.");
  const rankingLabel = () => {
    const ranks = new Array(state.order.length);
    state.order.forEach((index, position) => { ranks[index] = position; });
    return ranks;
  };

  function toggleGuidelines() {
    const panel = $("guidelines");
    panel.hidden = !panel.hidden;
    $("guidelines-toggle").setAttribute("aria-expanded", String(!panel.hidden));
  }

  function onKey(e) {
    const typing = e.target && (e.target.tagName === "TEXTAREA" || e.target.tagName === "INPUT");
    if (typing || e.altKey || e.metaKey) return;
    const key = e.key;
    if ((e.ctrlKey && key.toLowerCase() === "z") || (!e.ctrlKey && key === "u")) {
      e.preventDefault();
      undo();
      return;
    }
    if (e.ctrlKey) return;
    if (key === "g") return toggleGuidelines();
    if (key === "s") return skip();
    if (!state.item) return;
    if (state.project.mode === "ranking") {
      const digit = Number(key);
      if (digit >= 1 && digit <= state.order.length) {
        state.selected = digit - 1;
        drawRanking();
      } else if (key === "ArrowUp" || key === "ArrowDown") {
        e.preventDefault();
        moveTo(state.selected, state.selected + (key === "ArrowUp" ? -1 : 1));
      } else if (key === "Enter") {
        e.preventDefault();
        submit(rankingLabel());
      }
      return;
    }
    const choices = { 1: [0, 1], a: [0, 1], ArrowLeft: [0, 1], 2: [0, 0], t: [0, 0], ArrowDown: [0, 0], 3: [1, 0], b: [1, 0], ArrowRight: [1, 0] };
    if (choices[key]) {
      e.preventDefault();
      submit(choices[key]);
    }
  }

  async function start() {
    const me = await api.call("GET", "/api/me");
    if (!me.ok) return;
    api.setCsrf(me.data.csrf);
    state.project = me.data.project;
    $("whoami").textContent = `${me.data.name} (${me.data.role})`;
    $("project-name").textContent = state.project.name;
    window.renderMarkdown($("guidelines"), state.project.guidelines);
    $("choose-a").addEventListener("click", () => submit([0, 1]));
    $("choose-tie").addEventListener("click", () => submit([0, 0]));
    $("choose-b").addEventListener("click", () => submit([1, 0]));
    $("submit-ranking").addEventListener("click", () => submit(rankingLabel()));
    $("skip").addEventListener("click", skip);
    $("undo").addEventListener("click", undo);
    $("guidelines-toggle").addEventListener("click", toggleGuidelines);
    $("logout").addEventListener("click", async () => {
      await api.call("POST", "/api/logout", {});
      window.location.assign("/login");
    });
    document.addEventListener("keydown", onKey);
    await loadNext();
  }

  start();
})();
