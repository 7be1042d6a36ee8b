// The labelling page: one item at a time; pairwise A / tie / B or a ranking of K completions;
// skip, undo, comment, guidelines, keyboard shortcuts. Server text reaches the DOM only through
// textContent (here and in markdown.js), never as HTML.
"use strict";

(function () {
  const $ = (id) => document.getElementById(id);
  const LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ";
  const RETRY_DELAYS_MS = [400, 1200, 3000]; // a lost reply or a busy server: resend the same submission
  const PAIRWISE_KEYS = {
    1: [0, 1], a: [0, 1], ArrowLeft: [0, 1],
    2: [0, 0], t: [0, 0], ArrowDown: [0, 0],
    3: [1, 0], b: [1, 0], ArrowRight: [1, 0],
  };

  const state = {
    project: null,
    item: null,
    canUndo: false,
    busy: false,
    pending: null, // the submission awaiting its reply: a retry resends it with the same submit_id
    unanswered: null, // the item whose submission never got a reply (it may have been saved)
    order: [], // ranking mode: display indices, best first
    selected: null, // ranking mode: the display index the arrow keys move
    dragging: null,
  };

  const { request, detail, say } = window.annotateApi;
  const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

  // 128 random bits as hex; getRandomValues works on plain http too (randomUUID needs https).
  function newSubmitId() {
    const bytes = crypto.getRandomValues(new Uint8Array(16));
    return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
  }

  // ---- showing things ------------------------------------------------------------------------

  function setBusy(busy) {
    state.busy = busy;
    $("item").setAttribute("aria-busy", String(busy));
    document.querySelectorAll(".choice").forEach((button) => { button.disabled = busy || !state.item; });
    $("skip").disabled = busy || !state.item;
    $("undo").disabled = busy || !state.canUndo;
  }

  function showProgress(progress) {
    $("progress").textContent = `${progress.done} done · ${progress.left} left`;
    const bar = $("progress-bar");
    bar.max = Math.max(progress.total, 1);
    bar.value = progress.done;
    bar.setAttribute("aria-valuetext", `${progress.done} of ${progress.total}`);
  }

  function completionCard(index, text) {
    const card = document.createElement("article");
    card.className = "completion";
    card.dataset.index = String(index);
    const head = document.createElement("header");
    head.className = "completion-head";
    const title = document.createElement("h3");
    title.textContent = LETTERS[index];
    const rank = document.createElement("span");
    rank.className = "rank-tag";
    head.append(title, rank);
    const body = document.createElement("div");
    body.className = "body md";
    window.Markdown.renderInto(body, text);
    card.append(head, body);
    return card;
  }

  function showItem(reply) {
    // A comment belongs to the item it was typed on: a skipped, reassigned or other item starts empty.
    const previous = state.item && state.item.item_id;
    if (!reply.item || reply.item.item_id !== previous) $("comment").value = "";
    state.item = reply.item;
    state.canUndo = Boolean(reply.can_undo);
    showProgress(reply.progress);
    const item = reply.item;
    const ranking = state.project.mode === "ranking";
    $("item").hidden = !item;
    $("empty").hidden = Boolean(item);
    $("pairwise-actions").hidden = !item || ranking;
    $("ranking-actions").hidden = !item || !ranking;
    $("ranking-box").hidden = !item || !ranking;
    if (item) {
      window.Markdown.renderInto($("prompt"), item.prompt);
      const cards = item.completions.map((text, i) => completionCard(i, text));
      $("completions").replaceChildren(...cards);
      $("completions").className = "completions k-" + Math.min(cards.length, 4);
      if (ranking) {
        state.order = item.completions.map((_, i) => i);
        state.selected = null;
        drawRanking();
      }
      window.scrollTo(0, 0);
    }
  }

  // ---- ranking mode ----------------------------------------------------------------------------

  function preview(text) {
    const flat = text.replace(/[`*#>]/g, "").replace(/\s+/g, " ").trim();
    return flat.length > 90 ? flat.slice(0, 89) + "…" : flat;
  }

  function moveButton(label, symbol, index, delta) {
    const button = document.createElement("button");
    button.type = "button";
    button.className = "move";
    button.textContent = symbol;
    button.setAttribute("aria-label", `Move ${LETTERS[index]} ${label}`);
    button.addEventListener("click", (event) => {
      event.stopPropagation();
      state.selected = index;
      move(delta);
    });
    return button;
  }

  function drawRanking() {
    const list = $("ranking");
    list.replaceChildren();
    state.order.forEach((index, position) => {
      const li = document.createElement("li");
      li.draggable = true;
      li.tabIndex = 0;
      li.dataset.index = String(index);
      li.dataset.letter = LETTERS[index];
      li.setAttribute("aria-selected", String(index === state.selected));
      if (index === state.selected) li.classList.add("selected");
      const letter = document.createElement("span");
      letter.className = "letter";
      letter.textContent = LETTERS[index];
      const text = document.createElement("span");
      text.className = "preview";
      text.textContent = preview(state.item.completions[index]);
      const key = document.createElement("kbd");
      key.textContent = String(index + 1);
      const moves = document.createElement("span");
      moves.className = "moves";
      moves.append(moveButton("up", "↑", index, -1), moveButton("down", "↓", index, 1));
      li.append(letter, text, key, moves);
      li.addEventListener("click", () => select(index));
      wireDrag(li, index);
      list.appendChild(li);
    });
    document.querySelectorAll("#completions .completion").forEach((card) => {
      const position = state.order.indexOf(Number(card.dataset.index));
      card.querySelector(".rank-tag").textContent = `#${position + 1}`;
    });
  }

  function select(index) {
    state.selected = index;
    drawRanking();
  }

  function move(delta) {
    if (state.selected === null) {
      say("Pick a response first: press its digit or click it.");
      return;
    }
    const from = state.order.indexOf(state.selected);
    const to = from + delta;
    if (to < 0 || to >= state.order.length) return;
    state.order.splice(from, 1);
    state.order.splice(to, 0, state.selected);
    drawRanking();
    say(`${LETTERS[state.selected]} is now #${to + 1}.`);
  }

  // HTML5 drag and drop: dropping on the upper half of an entry puts the dragged one above it.
  function wireDrag(li, index) {
    li.addEventListener("dragstart", (event) => {
      state.dragging = index;
      event.dataTransfer.effectAllowed = "move";
      event.dataTransfer.setData("text/plain", LETTERS[index]);
      li.classList.add("dragging");
    });
    li.addEventListener("dragend", () => {
      state.dragging = null;
      document.querySelectorAll("#ranking li").forEach((el) => el.classList.remove("dragging", "drop-above", "drop-below"));
    });
    li.addEventListener("dragover", (event) => {
      if (state.dragging === null) return;
      event.preventDefault();
      event.dataTransfer.dropEffect = "move";
      const above = isUpperHalf(li, event);
      li.classList.toggle("drop-above", above);
      li.classList.toggle("drop-below", !above);
    });
    li.addEventListener("dragleave", () => li.classList.remove("drop-above", "drop-below"));
    li.addEventListener("drop", (event) => {
      event.preventDefault();
      const dragged = state.dragging;
      if (dragged === null || dragged === index) return;
      state.order.splice(state.order.indexOf(dragged), 1);
      const target = state.order.indexOf(index) + (isUpperHalf(li, event) ? 0 : 1);
      state.order.splice(target, 0, dragged);
      state.selected = dragged;
      drawRanking();
      say(`${LETTERS[dragged]} is now #${target + 1}.`);
    });
  }

  function isUpperHalf(element, event) {
    const box = element.getBoundingClientRect();
    return event.clientY < box.top + box.height / 2;
  }

  // The rank of each completion in display order (0 = best), as /api/label wants it.
  function rankingLabel() {
    const ranks = new Array(state.order.length);
    state.order.forEach((index, position) => { ranks[index] = position; });
    return ranks;
  }

  // ---- actions -----------------------------------------------------------------------------------

  async function loadNext() {
    try {
      const reply = await request("GET", "/api/next");
      if (reply.ok) showItem(reply.data);
      else if (reply.status !== 401) say(detail(reply.data, "Could not load the next item"), "error");
    } catch (_) {
      say("Could not reach the server. Reload the page to try again.", "error");
    }
  }

  function sameSubmission(a, b) {
    return a && a.item_id === b.item_id && a.version === b.version && a.comment === b.comment &&
      a.ranking.join() === b.ranking.join();
  }

  async function submitLabel(ranking) {
    if (state.busy || !state.item) return;
    const wanted = { item_id: state.item.item_id, version: state.item.version, ranking, comment: $("comment").value };
    // The same submission again (after a failure) keeps its submit_id, so the server writes it once.
    if (!sameSubmission(state.pending, wanted)) state.pending = { ...wanted, submit_id: newSubmitId() };
    const submission = state.pending;
    setBusy(true);
    say("Saving…");
    try {
      for (let attempt = 0; ; attempt++) {
        let reply = null;
        try {
          reply = await request("POST", "/api/label", submission);
        } catch (_) {
          reply = null; // no reply: the label may or may not be saved; resending is safe
        }
        const retryable = reply === null || reply.status >= 500;
        if (retryable && attempt < RETRY_DELAYS_MS.length) {
          await sleep(RETRY_DELAYS_MS[attempt]);
          continue;
        }
        if (retryable) {
          state.unanswered = submission.item_id;
          say("Could not save your label: the server does not answer. Choose again to retry; it will not be counted twice.", "error");
          return;
        }
        state.pending = null;
        const lostReply = state.unanswered === submission.item_id;
        state.unanswered = null;
        if (reply.ok) {
          $("comment").value = "";
          say("Saved.", "ok");
          await loadNext();
        } else if (reply.status === 409 && lostReply) {
          // A different choice after a lost reply: the first one had reached the server and stands.
          say("Your earlier choice for that item had been saved after all (only its reply was lost). Press u to undo it.", "error");
          await loadNext();
        } else if (reply.status === 409) {
          say(detail(reply.data, "This item changed") + " Showing your next item.", "error");
          await loadNext();
        } else if (reply.status !== 401) {
          say(detail(reply.data, "The label was refused"), "error");
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
      const reply = await request("POST", path, body);
      if (reply.ok) {
        state.pending = null;
        say(done, "ok");
        await loadNext();
      } else if (reply.status === 409) {
        say(detail(reply.data, "Refused"), "error");
        await loadNext();
      } else if (reply.status !== 401) {
        say(detail(reply.data, "Refused"), "error");
      }
    } catch (_) {
      say("Could not reach the server; try again.", "error");
    } finally {
      setBusy(false);
    }
  }

  function skip() {
    if (state.item) post("/api/skip", { item_id: state.item.item_id }, "Skipped.");
  }

  function undo() {
    if (!state.canUndo) {
      say("Nothing to undo.");
      return;
    }
    post("/api/undo", {}, "Your last label was taken back: here is its item again.");
  }

  function toggleGuidelines() {
    const panel = $("guidelines");
    panel.hidden = !panel.hidden;
    $("guidelines-toggle").setAttribute("aria-expanded", String(!panel.hidden));
  }

  async function logout() {
    try {
      await request("POST", "/api/logout", {});
    } finally {
      window.location.assign("/login");
    }
  }

  // ---- keyboard ------------------------------------------------------------------------------------

  function isTyping(target) {
    return Boolean(target) && (target.isContentEditable || /^(TEXTAREA|INPUT|SELECT)$/.test(target.tagName));
  }

  function onKey(event) {
    if (event.defaultPrevented || event.isComposing || isTyping(event.target)) return;
    const key = event.key.length === 1 ? event.key.toLowerCase() : event.key;
    if ((event.ctrlKey || event.metaKey) && !event.altKey && key === "z") {
      event.preventDefault();
      undo();
      return;
    }
    if (event.ctrlKey || event.metaKey || event.altKey) return;
    if (key === "g") return toggleGuidelines();
    if (event.repeat) return; // a held key must not label item after item
    if (key === "u") return undo();
    if (key === "s") return skip();
    if (!state.item || state.busy) return;
    if (state.project.mode === "ranking") return onRankingKey(event, key);
    if (PAIRWISE_KEYS[key]) {
      event.preventDefault();
      submitLabel(PAIRWISE_KEYS[key]);
    }
  }

  function onRankingKey(event, key) {
    const digit = /^[1-9]$/.test(key) ? Number(key) : 0;
    if (digit && digit <= state.order.length) {
      select(digit - 1);
    } else if (key === "ArrowUp" || key === "ArrowDown") {
      event.preventDefault();
      move(key === "ArrowUp" ? -1 : 1);
    } else if (key === "Enter" && !/^(BUTTON|A)$/.test(event.target.tagName)) {
      event.preventDefault();
      submitLabel(rankingLabel());
    }
  }

  // ---- start -----------------------------------------------------------------------------------------

  async function start() {
    let me;
    try {
      me = await request("GET", "/api/me");
    } catch (_) {
      say("Could not reach the server. Reload the page to try again.", "error");
      return;
    }
    if (!me.ok) return; // 401: on the way to /login
    window.annotateApi.setCsrf(me.data.csrf);
    state.project = me.data.project;
    $("whoami").textContent = me.data.name;
    $("admin-link").hidden = me.data.role !== "admin";
    $("project-name").textContent = state.project.name;
    document.title = `${state.project.name} · posttrain annotate`;
    window.Markdown.renderInto($("guidelines-body"), state.project.guidelines);
    $("choose-a").addEventListener("click", () => submitLabel([0, 1]));
    $("choose-tie").addEventListener("click", () => submitLabel([0, 0]));
    $("choose-b").addEventListener("click", () => submitLabel([1, 0]));
    $("submit-ranking").addEventListener("click", () => submitLabel(rankingLabel()));
    $("skip").addEventListener("click", skip);
    $("undo").addEventListener("click", undo);
    $("guidelines-toggle").addEventListener("click", toggleGuidelines);
    $("logout").addEventListener("click", logout);
    document.addEventListener("keydown", onKey);
    setBusy(true);
    await loadNext();
    setBusy(false);
  }

  start();
})();
