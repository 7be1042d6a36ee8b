// A small markdown renderer that builds DOM nodes only (completions are untrusted text: nothing here
// ever parses a string as HTML). Supported: paragraphs, # headings, - and 1. lists, ``` fenced code
// (pre > code.language-X), `inline code`, **bold**, *italic*, backslash escapes. Anything else is text.
"use strict";

(function () {
  const FENCE = /^\s{0,3}(`{3,}|~{3,})\s*([\w+#.-]*)[^`]*$/;
  const HEADING = /^\s{0,3}(#{1,6})\s+(.*?)\s*#*\s*$/;
  const BULLET = /^\s{0,3}[-*+]\s+(.*)$/;
  const NUMBERED = /^\s{0,3}(\d{1,9})[.)]\s+(.*)$/;
  const ESCAPABLE = "\\`*_#-+.!()[]{}<>|~";

  function el(tag, className) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    return node;
  }

  // Inline spans: `code`, **bold**, *italic* (nesting allowed inside bold and italic).
  function appendInline(parent, text) {
    let plain = "";
    const flush = () => {
      if (plain) parent.appendChild(document.createTextNode(plain));
      plain = "";
    };
    let i = 0;
    while (i < text.length) {
      const ch = text[i];
      if (ch === "\\" && i + 1 < text.length && ESCAPABLE.includes(text[i + 1])) {
        plain += text[i + 1];
        i += 2;
        continue;
      }
      if (ch === "`") {
        let ticks = 1;
        while (text[i + ticks] === "`") ticks++;
        const fence = "`".repeat(ticks);
        const end = text.indexOf(fence, i + ticks);
        if (end > i + ticks) {
          flush();
          const code = el("code");
          code.textContent = text.slice(i + ticks, end).replace(/^ (.*) $/, "$1");
          parent.appendChild(code);
          i = end + ticks;
          continue;
        }
        plain += fence;
        i += ticks;
        continue;
      }
      if (ch === "*" && text[i + 1] === "*") {
        const end = closingMark(text, "**", i + 2);
        if (end > 0) {
          flush();
          const strong = el("strong");
          appendInline(strong, text.slice(i + 2, end));
          parent.appendChild(strong);
          i = end + 2;
          continue;
        }
        plain += "**"; // an unclosed ** stays text (and is not read as two single stars)
        i += 2;
        continue;
      } else if (ch === "*") {
        const end = closingMark(text, "*", i + 1);
        if (end > 0) {
          flush();
          const em = el("em");
          appendInline(em, text.slice(i + 1, end));
          parent.appendChild(em);
          i = end + 1;
          continue;
        }
      }
      plain += ch;
      i++;
    }
    flush();
  }

  // Where `mark` closes an emphasis opened at `start` (text right after the opener and right
  // before the closer must not be a space, as in CommonMark); -1 when it does not close.
  function closingMark(text, mark, start) {
    if (start >= text.length || /\s/.test(text[start])) return -1;
    let at = start;
    while ((at = text.indexOf(mark, at + 1)) > 0) {
      const single = mark === "*" && (text[at + 1] === "*" || text[at - 1] === "*");
      if (!/\s/.test(text[at - 1]) && !single) return at;
      if (single) at++;
    }
    return -1;
  }

  // Lines of a paragraph keep their line breaks (model output often relies on them).
  function paragraph(lines) {
    const p = el("p");
    lines.forEach((line, n) => {
      if (n) p.appendChild(el("br"));
      appendInline(p, line.trim());
    });
    return p;
  }

  function render(source) {
    const fragment = document.createDocumentFragment();
    const lines = String(source == null ? "" : source).replace(/\r\n?/g, "\n").split("\n");
    let para = [];
    let list = null; // {node, ordered}
    const endParagraph = () => {
      if (para.length) fragment.appendChild(paragraph(para));
      para = [];
    };
    const endList = () => {
      list = null;
    };
    for (let i = 0; i < lines.length; i++) {
      const line = lines[i];
      const fence = FENCE.exec(line);
      if (fence) {
        endParagraph();
        endList();
        const body = [];
        const closer = new RegExp("^\\s{0,3}" + fence[1][0] + "{" + fence[1].length + ",}\\s*$");
        i++;
        while (i < lines.length && !closer.test(lines[i])) body.push(lines[i++]);
        const pre = el("pre");
        const code = el("code", fence[2] ? "language-" + fence[2].replace(/[^\w+#-]/g, "") : "");
        code.textContent = body.join("\n");
        pre.appendChild(code);
        pre.tabIndex = 0; // a scrolling box must be reachable by keyboard
        fragment.appendChild(pre);
        continue;
      }
      if (!line.trim()) {
        endParagraph();
        // A blank line between items keeps the list going when the next item continues it.
        const next = lines.slice(i + 1).find((l) => l.trim());
        if (list && !(next && (list.ordered ? NUMBERED : BULLET).test(next))) endList();
        continue;
      }
      const heading = HEADING.exec(line);
      if (heading) {
        endParagraph();
        endList();
        const h = el("h" + heading[1].length, "md-heading");
        appendInline(h, heading[2]);
        fragment.appendChild(h);
        continue;
      }
      const bullet = BULLET.exec(line);
      const numbered = bullet ? null : NUMBERED.exec(line);
      if (bullet || numbered) {
        endParagraph();
        const ordered = Boolean(numbered);
        if (!list || list.ordered !== ordered) {
          list = { node: el(ordered ? "ol" : "ul"), ordered };
          if (ordered && numbered[1] !== "1") list.node.start = Number(numbered[1]);
          fragment.appendChild(list.node);
        }
        const li = el("li");
        appendInline(li, (bullet || numbered)[bullet ? 1 : 2]);
        list.node.appendChild(li);
        continue;
      }
      if (list && /^\s{2,}\S/.test(line) && !para.length) {
        // An indented line right after an item continues that item.
        const last = list.node.lastChild;
        last.appendChild(el("br"));
        appendInline(last, line.trim());
        continue;
      }
      endList();
      para.push(line);
    }
    endParagraph();
    return fragment;
  }

  // Replace `target`'s children with the rendered markdown of `source`.
  function renderInto(target, source) {
    target.replaceChildren(render(source));
  }

  window.Markdown = { render, renderInto };
})();
