// authgate management page: the little that needs JavaScript.
// Copy buttons, confirmation dialogs before destructive actions, and hiding
// the custom permissions unless the Custom type is chosen. Everything else
// works without it.
"use strict";

(function () {
  // --- Copy to the clipboard ------------------------------------------------
  function fallbackCopy(text) {
    var area = document.createElement("textarea");
    area.value = text;
    area.setAttribute("readonly", "");
    area.style.position = "fixed";
    area.style.opacity = "0";
    document.body.appendChild(area);
    area.select();
    var ok = false;
    try { ok = document.execCommand("copy"); } catch (e) { ok = false; }
    document.body.removeChild(area);
    return ok ? Promise.resolve() : Promise.reject(new Error("copy failed"));
  }

  function copy(text) {
    if (navigator.clipboard && window.isSecureContext) {
      return navigator.clipboard.writeText(text).catch(function () { return fallbackCopy(text); });
    }
    return fallbackCopy(text);
  }

  document.addEventListener("click", function (event) {
    var button = event.target.closest("[data-copy]");
    if (!button) { return; }
    var source = document.getElementById(button.getAttribute("data-copy"));
    var status = document.getElementById(button.getAttribute("aria-describedby") || "");
    if (!source) { return; }
    copy(source.textContent.trim()).then(function () {
      if (status) { status.textContent = "Copied to the clipboard."; }
      button.textContent = "Copied";
    }, function () {
      if (status) { status.textContent = "Could not copy: select the key and copy it by hand."; }
      var range = document.createRange();
      range.selectNodeContents(source);
      var selection = window.getSelection();
      selection.removeAllRanges();
      selection.addRange(range);
    });
  });

  // --- Confirmation dialogs -------------------------------------------------
  var dialog = document.getElementById("confirm-dialog");
  var pending = null;
  var opener = null;

  document.addEventListener("submit", function (event) {
    var form = event.target;
    var message = form.getAttribute("data-confirm");
    if (!message || form.dataset.confirmed === "1") { return; }
    if (!dialog || typeof dialog.showModal !== "function") {
      if (!window.confirm(message)) { event.preventDefault(); }
      return;
    }
    event.preventDefault();
    pending = form;
    opener = event.submitter || document.activeElement;
    document.getElementById("confirm-message").textContent = message;
    var label = form.getAttribute("data-confirm-label") || "Confirm";
    document.getElementById("confirm-ok").textContent = label;
    document.getElementById("confirm-title").textContent = label + "?";
    dialog.returnValue = "cancel";
    dialog.showModal();
    document.getElementById("confirm-cancel").focus();
  });

  if (dialog) {
    dialog.addEventListener("close", function () {
      var form = pending;
      pending = null;
      if (form && dialog.returnValue === "confirm") {
        form.dataset.confirmed = "1";
        form.submit();
      } else if (opener && typeof opener.focus === "function") {
        opener.focus();
      }
    });
  }

  // --- Custom permissions only for the Custom type ---------------------------
  var custom = document.getElementById("custom-permissions");
  if (custom) {
    var sync = function () {
      var chosen = document.querySelector('input[name="type"]:checked');
      custom.hidden = !(chosen && chosen.value === "custom");
    };
    document.querySelectorAll('input[name="type"]').forEach(function (radio) {
      radio.addEventListener("change", sync);
    });
    sync();
  }
}());
