/* Line comments on the review page (templates/jobs/review.html).
 *
 * A reviewer — while the panel's decision buttons are enabled for them — clicks a line's number
 * or its "+" button, in either view, writes under the line and adds the comment to the pending
 * ones. Pending comments are sent with whichever decision is pressed, as the repeated hidden
 * fields comment_path, comment_line, comment_side and comment_body of the panel's form (read by
 * jobs.views.review_action). Comments already given, rendered once by _diff.html, are moved under
 * their lines here.
 *
 * The pending comments live in this script and in the diff, never only in the review panel:
 * htmx replaces the panel after a decision and whenever the job changes, and each new panel gets
 * them written back. A line is "old" and its old number when removed, else "new" and its new
 * number; both come from the rows' classes and data-n cells (_diff_file.html).
 *
 * Strict CSP: no inline anything; every typed or stored text reaches the page as textContent or
 * a form value, never as HTML. */
"use strict";

(() => {
  const DONE = { approve: "approved", reject: "rejected", request_changes: "requested changes" };
  let pending = [];  // [{path, side, line, body}], in the order they were added
  let typedComment = "";  // the overall comment, kept across panel refreshes

  function el(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function button(className, text, label) {
    const node = el("button", className, text);
    node.type = "button";
    if (label) node.setAttribute("aria-label", label);
    return node;
  }

  function where(comment) {
    return `${comment.path}:${comment.line}` + (comment.side === "old" ? " (removed)" : "");
  }

  /* --- which line a cell is on ----------------------------------------------------------- */

  function at(side, num) {
    const line = Number(num && num.dataset.n);
    return Number.isInteger(line) && line > 0 ? { side, line, key: `${side}:${line}` } : null;
  }

  function unifiedLine(row) {
    if (row.classList.contains("del")) return at("old", row.cells[0]);
    if (row.classList.contains("add") || row.classList.contains("context")) {
      return at("new", row.cells[1]);
    }
    return null;  // hunk headers, "no newline" notes, comment rows
  }

  /* One half of a split row. An unchanged line shows on both halves and is the new file's. */
  function splitLine(row, right) {
    if (row.cells.length !== 6) return null;
    const num = row.cells[right ? 3 : 0];
    if (num.classList.contains("del")) return at("old", num);
    if (num.classList.contains("add") || num.classList.contains("context")) {
      return at("new", row.cells[3]);
    }
    return null;
  }

  function isSplit(table) {
    return table.classList.contains("diff-split");
  }

  function lineOfCell(cell) {
    const row = cell.closest("tr");
    const table = cell.closest("table.diff-table");
    if (!row || !table) return null;
    return isSplit(table) ? splitLine(row, cell.cellIndex >= 3) : unifiedLine(row);
  }

  // table -> Map(key -> row). A table's lines never change (comment rows are not lines); a
  // file loaded on demand comes with new tables.
  const indexes = new WeakMap();

  function linesOfRow(table, row) {
    return isSplit(table) ? [splitLine(row, false), splitLine(row, true)] : [unifiedLine(row)];
  }

  function rowFor(table, key) {
    let index = indexes.get(table);
    if (!index) {
      index = new Map();
      for (const row of table.rows) {
        for (const line of linesOfRow(table, row)) {
          if (line && !index.has(line.key)) index.set(line.key, row);
        }
      }
      indexes.set(table, index);
    }
    return index.get(key);
  }

  /* data-path is percent-encoded (_diff_file.html), so any name survives the attribute. */
  function pathOf(node) {
    return decodeURIComponent(node.dataset.path);
  }

  function filesNamed(path) {
    return [...document.querySelectorAll(".diff-review .diff-scroll[data-path]")]
      .filter((scroll) => pathOf(scroll) === path);
  }

  /* The comment row under `row` for `key`; made when `create` and missing. */
  function thread(row, key, side, create) {
    let last = row;
    for (let next = row.nextElementSibling; next && next.classList.contains("line-comments");
      next = next.nextElementSibling) {
      if (next.dataset.thread === key) return next;
      last = next;
    }
    if (!create) return null;
    const tr = el("tr", "line-comments");
    tr.dataset.thread = key;
    const td = el("td", `thread thread-${side === "old" ? "old" : "new"}`);
    td.colSpan = isSplit(row.closest("table")) ? 6 : 4;
    tr.append(td);
    last.after(tr);
    return tr;
  }

  /* Put a box made by `make()` under the comment's line in each table of its file (unified and
   * split), before the first `before` there. Nothing if the line is not on the page (a collapsed
   * file, or a line the diff does not show). */
  function place(make, comment, before) {
    const key = `${comment.side}:${comment.line}`;
    for (const scroll of filesNamed(comment.path)) {
      for (const table of scroll.querySelectorAll("table.diff-table")) {
        const row = rowFor(table, key);
        if (!row) continue;
        const cell = thread(row, key, comment.side, true).cells[0];
        cell.insertBefore(make(), cell.querySelector(before));
      }
    }
  }

  function dropEmptyThreads() {
    document.querySelectorAll(".diff-review tr.line-comments").forEach((tr) => {
      if (!tr.cells[0].children.length) tr.remove();
    });
  }

  /* --- comments already given ----------------------------------------------------------- */

  function placeSubmitted() {
    const list = document.querySelector("[data-role=submitted-line-comments]");
    if (!list) return;
    list.querySelectorAll(".line-comment[data-path]").forEach((box) => {
      const comment = { path: pathOf(box), side: box.dataset.side, line: box.dataset.line };
      // The first table gets the box itself (out of the list), the other a copy.
      let moved = false;
      const make = () => (moved ? box.cloneNode(true) : ((moved = true), box));
      place(make, comment, ".line-comment.pending, .line-comment-form");
    });
    list.hidden = !list.querySelector(".line-comment");
  }

  function submittedBox(comment, who, done) {
    const box = el("div", "line-comment line-comment-submitted");
    const head = el("div", "line-comment-head");
    head.append(el("strong", "", who), ` ${done}`);
    box.append(head, el("div", "line-comment-body", comment.body));
    return box;
  }

  /* --- pending comments ------------------------------------------------------------------ */

  function pendingBox(comment) {
    const box = el("div", "line-comment pending");
    const head = el("div", "line-comment-head");
    const label = `Remove the comment on ${where(comment)}`;
    const remove = button("line-comment-remove", "Remove", label);
    remove.addEventListener("click", () => removePending(comment));
    head.append(el("strong", "", "Pending"), " · not sent yet", remove);
    box.append(head, el("div", "line-comment-body", comment.body));
    return box;
  }

  function removePending(comment) {
    pending = pending.filter((c) => c !== comment);
    render();
  }

  /* Show the pending comments under their lines and write them into the panel's form. */
  function render() {
    document.querySelectorAll(".diff-review .line-comment.pending").forEach((box) => box.remove());
    for (const comment of pending) place(() => pendingBox(comment), comment, ".line-comment-form");
    dropEmptyThreads();
    writePanel();
  }

  function hidden(name, value) {
    const input = el("input");
    input.type = "hidden";
    input.name = name;
    input.value = String(value);
    return input;
  }

  function writePanel() {
    const block = document.querySelector("#review-panel [data-role=pending-comments]");
    if (!block) return;
    const count = pending.length;
    block.hidden = count === 0;
    block.querySelector("[data-role=pending-count]").textContent =
      `${count} line comment${count === 1 ? "" : "s"} will be sent with your review`;
    block.querySelector(".pending-list").replaceChildren(...pending.map((comment) => {
      const item = el("li");
      const remove = button("pending-remove", "×", `Remove the comment on ${where(comment)}`);
      remove.addEventListener("click", () => removePending(comment));
      item.append(el("code", "", where(comment)), " — ", el("span", "pending-body", comment.body),
        remove, hidden("comment_path", comment.path), hidden("comment_line", comment.line),
        hidden("comment_side", comment.side), hidden("comment_body", comment.body));
      return item;
    }));
  }

  /* --- writing a comment ------------------------------------------------------------------ */

  function openEditor(cell) {
    const line = lineOfCell(cell);
    const scroll = cell.closest(".diff-scroll[data-path]");
    if (!line || !scroll) return;
    const comment = { path: pathOf(scroll), side: line.side, line: line.line };
    const row = cell.closest("tr");
    const td = thread(row, line.key, line.side, true).cells[0];
    const open = td.querySelector(".line-comment-form textarea");
    if (open) { open.focus(); return; }

    const form = el("div", "line-comment-form");
    const textarea = el("textarea");
    textarea.rows = 3;
    textarea.placeholder = "Comment on this line";
    textarea.setAttribute("aria-label", `Comment on ${where(comment)}`);
    const add = button("primary", "Add comment");
    add.dataset.role = "add-line-comment";
    add.disabled = true;
    const cancel = button("", "Cancel");
    const buttons = el("div", "buttons");
    buttons.append(add, cancel);
    form.append(textarea, buttons);
    td.append(form);
    textarea.focus();

    // Back to the line's "+" (its half's, in the split view), for the next comment by keyboard.
    const split = isSplit(row.closest("table"));
    const marker = row.cells[split ? (cell.cellIndex >= 3 ? 4 : 1) : 2];
    const back = () => { const plus = marker.querySelector(".lc-add"); if (plus) plus.focus(); };
    const close = () => { form.remove(); dropEmptyThreads(); back(); };
    const save = () => {
      const body = textarea.value.trim();
      if (!body) { textarea.focus(); return; }
      pending.push({ ...comment, body });
      form.remove();
      render();
      back();
    };
    textarea.addEventListener("input", () => { add.disabled = !textarea.value.trim(); });
    textarea.addEventListener("keydown", (event) => {
      if (event.key === "Escape") close();
      else if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) save();
    });
    add.addEventListener("click", save);
    cancel.addEventListener("click", close);
  }

  /* "+" buttons in the marker cells: one per commentable half row. */
  function decorate(scroll) {
    if (scroll.dataset.commentable) return;
    scroll.dataset.commentable = "true";
    for (const table of scroll.querySelectorAll("table.diff-table")) {
      const halves = isSplit(table) ? [[false, 1], [true, 4]] : [[false, 2]];
      for (const row of table.rows) {
        for (const [right, marker] of halves) {
          const line = isSplit(table) ? splitLine(row, right) : unifiedLine(row);
          if (!line) continue;
          const label = `Comment on line ${line.line}` + (line.side === "old" ? " (removed)" : "");
          row.cells[marker].append(button("lc-add", "+", label));
        }
      }
    }
  }

  /* Comments can be written while the panel's decision buttons are enabled. */
  function refreshAbility(diff) {
    const form = document.querySelector("#review-panel form.review-form");
    const able = !!form && !!form.querySelector("button[name=decision]:not([disabled])");
    diff.classList.toggle("can-comment", able);
    if (able) diff.querySelectorAll(".diff-scroll[data-path]").forEach(decorate);
  }

  /* --- the panel, replaced by htmx -------------------------------------------------------- */

  /* The decision was taken (the view's "review-decided" trigger): the pending comments went
   * with it. Shown as given until a reload renders them from the server. */
  function decided(diff, decision) {
    const who = document.body.dataset.user || "you";
    for (const comment of pending) {
      place(() => submittedBox(comment, who, DONE[decision] || "commented"), comment,
        ".line-comment.pending, .line-comment-form");
    }
    pending = [];
    typedComment = "";
    const textarea = document.getElementById("id_comment");
    if (textarea) textarea.value = "";
    render();
  }

  function panelSwapped(diff, detail) {
    const config = detail.requestConfig || {};
    const fromDecision = config.verb === "post" && config.elt instanceof Element
      && config.elt.matches("form.review-form");
    // A refresh (the job changed) brings an empty comment box; give back what was typed.
    const textarea = document.getElementById("id_comment");
    if (!fromDecision && textarea && !textarea.disabled && !textarea.value) {
      textarea.value = typedComment;
    }
    refreshAbility(diff);
    render();
  }

  /* The comments a refused decision sent, when the whole page came back with them. */
  function adoptPanel() {
    const form = document.querySelector("#review-panel form.review-form");
    if (!form) return;
    const values = (name) => [...form.querySelectorAll(`input[name=comment_${name}]`)]
      .map((input) => input.value);
    const [lines, sides, bodies] = [values("line"), values("side"), values("body")];
    pending = values("path")
      .map((path, i) => ({ path, line: lines[i], side: sides[i], body: bodies[i] }));
  }

  document.addEventListener("DOMContentLoaded", () => {
    // #path=<file>: from the job page's activity feed, the file an agent's tool call touched.
    if (location.hash.startsWith("#path=")) {
      const path = decodeURIComponent(location.hash.slice(6));
      const file = [...document.querySelectorAll(".diff-file[data-path]")]
        .find((section) => decodeURIComponent(section.dataset.path) === path);
      if (file) file.scrollIntoView();
    }
    const diff = document.querySelector(".diff-review");
    if (!diff) return;
    placeSubmitted();
    refreshAbility(diff);
    adoptPanel();
    render();

    diff.addEventListener("click", (event) => {
      if (!diff.classList.contains("can-comment")) return;
      const cell = event.target.closest("td.num, td.marker");
      if (cell && diff.contains(cell)) openEditor(cell);
    });
    // Listened for on the form itself: if a refresh of the panel replaced the form while the
    // decision was on its way, the trigger still reaches it, though no longer the page.
    document.addEventListener("submit", (event) => {
      const form = event.target;
      if (!form.matches("#review-panel form.review-form") || form.dataset.listening) return;
      form.dataset.listening = "true";
      form.addEventListener("review-decided", (decidedEvent) => {
        decided(diff, decidedEvent.detail && decidedEvent.detail.decision);
      });
    }, true);
    document.body.addEventListener("htmx:beforeSwap", (event) => {
      if (event.detail.target && event.detail.target.id === "review-panel") {
        const textarea = document.getElementById("id_comment");
        typedComment = textarea ? textarea.value : "";
      }
    });
    document.body.addEventListener("htmx:afterSwap", (event) => {
      const target = event.target;
      if (!(target instanceof Element)) return;
      if (target.id === "review-panel") panelSwapped(diff, event.detail);
      else if (target.matches(".diff-file")) {
        // A large file loaded on demand: its "+" buttons, its comments, the pending ones.
        refreshAbility(diff);
        placeSubmitted();
        render();
      }
    });
  });
})();
