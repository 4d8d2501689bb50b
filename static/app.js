// mcpstore web UI: progressive enhancements only. Every page works without this file.
"use strict";

// Copy buttons: <button class="copy" data-copy-target="ELEMENT_ID">. The target is an input or a <pre>/<code>.
function setupCopyButtons() {
  document.querySelectorAll("button.copy[data-copy-target]").forEach(function (button) {
    button.addEventListener("click", function () {
      var target = document.getElementById(button.getAttribute("data-copy-target"));
      if (!target) { return; }
      var text = "value" in target && target.tagName === "INPUT" ? target.value : target.textContent;
      var done = function () {
        var label = button.textContent;
        button.textContent = "Copied";
        setTimeout(function () { button.textContent = label; }, 1500);
      };
      if (navigator.clipboard && window.isSecureContext) {
        navigator.clipboard.writeText(text).then(done, function () { selectText(target); });
      } else {
        selectText(target);
        try { if (document.execCommand("copy")) { done(); } } catch (e) { /* the selection is left for the user */ }
      }
    });
  });
}

function selectText(target) {
  if (target.select) { target.select(); return; }
  var range = document.createRange();
  range.selectNodeContents(target);
  var selection = window.getSelection();
  selection.removeAllRanges();
  selection.addRange(range);
}

// Upload forms (form[data-upload]): send with XMLHttpRequest to show a progress bar. The server answers a
// successful upload with a redirect (followed here) and a refused one with the form page and its errors.
function setupUploadForms() {
  document.querySelectorAll("form[data-upload]").forEach(function (form) {
    form.addEventListener("submit", function (event) {
      if (!window.FormData || !window.XMLHttpRequest) { return; } // plain form post
      event.preventDefault();
      var box = document.getElementById(form.getAttribute("data-upload"));
      var bar = box && box.querySelector("progress");
      var label = box && box.querySelector("[data-progress-label]");
      var submit = form.querySelector("button[type=submit]");
      if (box) { box.hidden = false; }
      if (submit) { submit.disabled = true; }
      var xhr = new XMLHttpRequest();
      xhr.open("POST", form.action);
      xhr.setRequestHeader("Accept", "text/html");
      xhr.upload.addEventListener("progress", function (e) {
        if (!e.lengthComputable || !bar) { return; }
        var percent = Math.round((e.loaded / e.total) * 100);
        bar.value = percent;
        if (label) { label.textContent = percent < 100 ? "Uploading: " + percent + "%" : "Checking the bundle…"; }
      });
      xhr.addEventListener("load", function () {
        var redirected = xhr.responseURL && xhr.responseURL.split("#")[0] !== form.action;
        if (xhr.status < 400 && redirected) { window.location.assign(xhr.responseURL); return; }
        replacePage(xhr.responseText);
      });
      xhr.addEventListener("error", function () {
        if (label) { label.textContent = "The upload failed: the connection was lost. Please try again."; }
        if (submit) { submit.disabled = false; }
      });
      xhr.send(new FormData(form));
    });
  });
}

// Show a server-rendered page (our own escaped HTML) that answered an upload, without a second request.
function replacePage(html) {
  var doc = new DOMParser().parseFromString(html, "text/html");
  var main = doc.getElementById("main");
  if (!main) { document.body.textContent = "The upload failed. Please reload the page."; return; }
  document.title = doc.title;
  document.getElementById("main").replaceWith(document.adoptNode(main));
  setupCopyButtons();
  setupUploadForms();
  var alert = document.querySelector("#main [role=alert]");
  if (alert) { alert.setAttribute("tabindex", "-1"); alert.focus(); }
}

document.addEventListener("DOMContentLoaded", function () {
  setupCopyButtons();
  setupUploadForms();
});
