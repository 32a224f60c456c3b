// Follows the page's server-sent events: each `update` replaces #live with the server's
// rendering; `done` ends the stream. No polling: the server pushes.
(function () {
  "use strict";
  var live = document.getElementById("live");
  if (!live || !window.EventSource) { return; }
  var source = new EventSource(live.getAttribute("data-stream"));
  source.addEventListener("update", function (e) { live.innerHTML = e.data; });
  source.addEventListener("done", function () { source.close(); });
})();
