// Keyboard shortcuts for the queue and draft pages. No framework, no inline script (CSP).
(function () {
  "use strict";
  function typing(ev) {
    var t = ev.target;
    return t && (t.isContentEditable || /^(INPUT|TEXTAREA|SELECT)$/.test(t.tagName));
  }

  function queuePage() {
    var rows = Array.prototype.slice.call(document.querySelectorAll("tr.draft"));
    var one = document.getElementById("approve-one");
    var at = -1;
    function focus(i) {
      if (!rows.length) return;
      at = Math.max(0, Math.min(rows.length - 1, i));
      rows.forEach(function (r, j) { r.classList.toggle("focus", j === at); });
      rows[at].scrollIntoView({ block: "nearest" });
    }
    document.querySelectorAll("input.all").forEach(function (box) {
      box.addEventListener("change", function () {
        box.closest("table").querySelectorAll("tbody input[type=checkbox]").forEach(function (c) {
          c.checked = box.checked;
        });
      });
    });
    try {
      var saved = sessionStorage.getItem("refseq.queueAt");
      sessionStorage.removeItem("refseq.queueAt");
      if (saved !== null) focus(parseInt(saved, 10));
    } catch (e) { /* private mode */ }
    return function (key) {
      if (key === "j") { focus(at + 1); return true; }
      if (key === "k") { focus(at - 1); return true; }
      if (at < 0) return false;
      var row = rows[at];
      if (key === "x") { var c = row.querySelector("input[type=checkbox]"); c.checked = !c.checked; return true; }
      if (key === "o" || key === "Enter") { location.href = row.dataset.href; return true; }
      if (key === "r") { location.href = row.dataset.href + "#reject"; return true; }
      if (key === "a" && one) {
        one.action = "/drafts/" + row.dataset.id + "/approve";
        one.elements.revision.value = row.dataset.revision;
        try { sessionStorage.setItem("refseq.queueAt", String(at)); } catch (e) { /* private mode */ }
        one.submit();
        return true;
      }
      return false;
    };
  }

  function draftPage() {
    if (location.hash === "#reject") {
      var reason = document.getElementById("reject-reason");
      if (reason) reason.focus();
    }
    return function (key) {
      var link;
      if (key === "j" && (link = document.getElementById("next"))) { location.href = link.href; return true; }
      if (key === "k" && (link = document.getElementById("prev"))) { location.href = link.href; return true; }
      if (key === "a" && document.getElementById("approve")) { document.getElementById("approve").submit(); return true; }
      if (key === "r" && document.getElementById("reject-reason")) { document.getElementById("reject-reason").focus(); return true; }
      if (key === "e" && document.getElementById("edit-subject")) { document.getElementById("edit-subject").focus(); return true; }
      return false;
    };
  }

  document.addEventListener("DOMContentLoaded", function () {
    var handler = document.getElementById("bulk") ? queuePage()
      : document.querySelector(".pager") ? draftPage() : null;
    if (!handler) return;
    document.addEventListener("keydown", function (ev) {
      if (ev.ctrlKey || ev.metaKey || ev.altKey || typing(ev)) return;
      if (handler(ev.key)) ev.preventDefault();
    });
  });
})();
