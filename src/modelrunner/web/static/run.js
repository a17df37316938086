// Follows a run that is not final yet: server-sent events update the status, progress bar,
// message and log; once the run ends the page reloads to show attempts and outputs.
(function () {
  "use strict";
  var section = document.getElementById("run");
  var url = section && section.dataset.stream;
  if (!url || !window.EventSource) return;
  var status = document.getElementById("run-status");
  var bar = document.getElementById("progress");
  var message = document.getElementById("progress-message");
  var log = document.getElementById("log");
  var source = new EventSource(url);
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
  });
  source.addEventListener("end", function () {
    source.close();
    window.location.reload();
  });
})();
