// remediate's dashboard script (served at /assets/dashboard.js; the pages work without it).
// 1. A rule field (textarea[data-rule-dialect]) is checked as it is typed: the server's own rule
//    parser answers at /rules/check with the message the API would give; it is shown next to the
//    field (aria-live) and the field is marked aria-invalid. The server checks again on submit.
// 2. Copy buttons (button[data-copy="id"]) copy the text of that element; hidden without script.
(function () {
  "use strict";

  function watchRule(field) {
    var out = document.getElementById(field.id + "-check");
    if (!out) return;
    var timer = null;
    var asked = 0;
    function show(valid, message) {
      out.textContent = message;
      out.className = "check " + (valid ? "check-ok" : "check-bad");
      if (valid) field.removeAttribute("aria-invalid");
      else field.setAttribute("aria-invalid", "true");
    }
    function check() {
      var text = field.value;
      var mine = ++asked;
      if (!text.trim()) {
        out.textContent = "";
        out.className = "check";
        field.removeAttribute("aria-invalid");
        return;
      }
      var url = "/rules/check?dialect=" + encodeURIComponent(field.getAttribute("data-rule-dialect")) +
        "&rule=" + encodeURIComponent(text);
      fetch(url, { credentials: "same-origin", headers: { accept: "application/json" } })
        .then(function (response) {
          if (!response.ok) throw new Error("status " + response.status);
          return response.json();
        })
        .then(function (answer) {
          if (mine === asked) show(answer.valid, answer.message);
        })
        .catch(function () {
          if (mine === asked) {
            out.textContent = "The rule could not be checked now; it is checked when you save.";
            out.className = "check";
          }
        });
    }
    field.addEventListener("input", function () {
      clearTimeout(timer);
      timer = setTimeout(check, 250);
    });
    if (field.value.trim()) check();
  }

  function copyButton(button) {
    var source = document.getElementById(button.getAttribute("data-copy"));
    if (!source) return;
    var label = button.textContent;
    button.hidden = false;
    function done(message) {
      button.textContent = message;
      setTimeout(function () { button.textContent = label; }, 2000);
    }
    function fallback() {
      var range = document.createRange();
      range.selectNodeContents(source);
      var selection = window.getSelection();
      selection.removeAllRanges();
      selection.addRange(range);
      try {
        done(document.execCommand("copy") ? "Copied" : "Selected: press Ctrl+C");
      } catch (e) {
        done("Selected: press Ctrl+C");
      }
    }
    button.addEventListener("click", function () {
      var text = source.textContent;
      if (navigator.clipboard && window.isSecureContext) {
        navigator.clipboard.writeText(text).then(function () { done("Copied"); }, fallback);
      } else {
        fallback();
      }
    });
  }

  function start() {
    Array.prototype.forEach.call(document.querySelectorAll("textarea[data-rule-dialect]"), watchRule);
    Array.prototype.forEach.call(document.querySelectorAll("button[data-copy]"), copyButton);
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
