// Markdown to DOM without HTML parsing: every piece of text goes in through textContent, so a
// completion's "<script>" is shown as those characters and never runs. Supported: paragraphs,
// # headings, - / * / 1. lists, ``` fenced code, `inline code`, **bold**, *italic*.
"use strict";

(function () {
  function el(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined) node.textContent = text;
    return node;
  }

  // Inline spans: `code` first (its content is literal), then **bold** and *italic*.
  function inline(parent, text) {
    const pattern = /(`[^`\n]+`)|(\*\*[^*\n]+\*\*)|(\*[^*\n]+\*)/g;
    let last = 0;
    for (const match of text.matchAll(pattern)) {
      if (match.index > last) parent.appendChild(document.createTextNode(text.slice(last, match.index)));
      const token = match[0];
      if (match[1]) parent.appendChild(el("code", null, token.slice(1, -1)));
      else if (match[2]) inline(parent.appendChild(el("strong")), token.slice(2, -2));
      else inline(parent.appendChild(el("em")), token.slice(1, -1));
      last = match.index + token.length;
    }
    if (last < text.length) parent.appendChild(document.createTextNode(text.slice(last)));
  }

  function render(target, source) {
    target.replaceChildren();
    const lines = String(source).replace(/\r\n?/g, "\n").split("\n");
    let paragraph = [];
    let list = null;
    const flush = () => {
      if (paragraph.length) {
        const p = el("p");
        paragraph.forEach((line, i) => {
          if (i) p.appendChild(el("br"));
          inline(p, line);
        });
        target.appendChild(p);
      }
      paragraph = [];
    };
    for (let i = 0; i < lines.length; i++) {
      const line = lines[i];
      const fence = line.match(/^\s*```\s*([\w+-]*)\s*$/);
      if (fence) {
        flush();
        list = null;
        const body = [];
        for (i++; i < lines.length && !/^\s*```\s*$/.test(lines[i]); i++) body.push(lines[i]);
        const pre = el("pre");
        const code = el("code", fence[1] ? "language-" + fence[1] : null, body.join("\n"));
        pre.appendChild(code);
        target.appendChild(pre);
        continue;
      }
      const heading = line.match(/^(#{1,6})\s+(.*)$/);
      const bullet = line.match(/^\s*[-*]\s+(.*)$/);
      const numbered = line.match(/^\s*\d+[.)]\s+(.*)$/);
      if (heading) {
        flush();
        list = null;
        inline(target.appendChild(el("h" + Math.min(heading[1].length + 2, 6), "md-heading")), heading[2]);
      } else if (bullet || numbered) {
        flush();
        const tag = bullet ? "ul" : "ol";
        if (!list || list.tagName.toLowerCase() !== tag) list = target.appendChild(el(tag));
        inline(list.appendChild(el("li")), (bullet || numbered)[1]);
      } else if (!line.trim()) {
        flush();
        list = null;
      } else {
        list = null;
        paragraph.push(line);
      }
    }
    flush();
  }

  window.renderMarkdown = render;
})();
