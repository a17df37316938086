// Follows a run that is not final yet: server-sent events update the status, progress bar,
// message and log in place; when the status or an attempt changes, the page's details (attempts,
// outputs, results, Cancel) are fetched again through htmx ("run-changed"). Nothing reloads.
(function () {
  "use strict";
  var section = document.getElementById("run");
  var url = section && section.dataset.stream;
  if (!url || !window.EventSource) return;
  var status = document.getElementById("run-status");
  var bar = document.getElementById("progress");
  var message = document.getElementById("progress-message");
  var log = document.getElementById("log");
  var shown = section.dataset.state; // the status and attempts the details were drawn for
  var source = new EventSource(url);

  function changed() {
    if (window.htmx) window.htmx.trigger(document.body, "run-changed");
  }

  source.addEventListener("progress", function (event) {
    var data = JSON.parse(event.data);
    status.textContent = data.status;
    status.className = "status status-" + data.status;
    if (data.progress === null) bar.removeAttribute("value"); else bar.value = data.progress;
    bar.textContent = data.progress === null ? "" : data.progress + "%";
    message.textContent = data.message;
    if (data.log) {
      var atBottom = log.scrollTop + log.clientHeight >= log.scrollHeight - 4;
      log.textContent += data.log;
      if (atBottom) log.scrollTop = log.scrollHeight;
    }
    var state = data.status + " " + data.attempts;
    if (state !== shown) changed();
    shown = state;
  });
  // The final status came with the last "progress" event, which has fetched the details.
  source.addEventListener("end", function () {
    source.close();
  });
})();
