// cloudrec web: live refresh of the jobs list and of a job's page, countdowns, the player.
// Markup comes rendered and escaped from the server (worker/web/pages.py); this script only
// puts it in place, so no data is ever turned into markup here.
(function () {
  "use strict";

  var POLL_MS = 2000;
  var body = document.body;
  var skew = 0; // the server's clock minus ours, in ms: countdowns follow the server's clock

  function parseTime(text) {
    var t = Date.parse(text || "");
    return isNaN(t) ? null : t;
  }

  function duration(seconds) {
    var whole = Math.max(Math.round(seconds), 0);
    var h = Math.floor(whole / 3600);
    var m = Math.floor((whole % 3600) / 60);
    var s = whole % 60;
    var two = function (n) { return (n < 10 ? "0" : "") + n; };
    if (h) return h + "h" + two(m) + "m" + two(s) + "s";
    return m ? m + "m" + two(s) + "s" : s + "s";
  }

  function tick() {
    var now = Date.now() + skew;
    document.querySelectorAll(".countdown").forEach(function (el) {
      var stop = parseTime(el.dataset.stopAt);
      if (el.dataset.ended === "1" || stop === null) {
        el.textContent = "-";
        return;
      }
      var left = (stop - now) / 1000;
      el.textContent = left >= 0 ? duration(left) + " left" : "overdue " + duration(-left);
    });
  }

  // URLs are built on location.origin: a page opened as http://user:pass@host/ must not hand
  // its credentials to fetch (which refuses URLs that carry them).
  function absolute(path) {
    return location.origin + path;
  }

  function poll(path, apply) {
    var indicator = document.getElementById("refresh");
    function once() {
      fetch(absolute(path), { credentials: "same-origin", cache: "no-store" })
        .then(function (response) {
          if (!response.ok) throw new Error("HTTP " + response.status);
          return response.json();
        })
        .then(function (data) {
          var server = parseTime(data.now);
          if (server !== null) skew = server - Date.now();
          apply(data);
          tick();
          if (indicator) {
            indicator.textContent = "live";
            indicator.classList.remove("stale");
          }
        })
        .catch(function () {
          if (indicator) {
            indicator.textContent = "not updating";
            indicator.classList.add("stale");
          }
        })
        .finally(function () {
          setTimeout(once, POLL_MS);
        });
    }
    setTimeout(once, POLL_MS);
  }

  function jobsPage() {
    var rows = document.getElementById("jobs");
    poll(body.dataset.poll, function (data) {
      rows.innerHTML = data.rows; // server-rendered, escaped
      body.dataset.refreshed = String(Number(body.dataset.refreshed || "0") + 1);
    });
  }

  function jobPage() {
    var video = document.getElementById("player");
    var sourceList = document.getElementById("sources");
    var hls = null;
    var current = null;

    function play(source) {
      if (hls) {
        hls.destroy();
        hls = null;
      }
      current = source;
      video.dataset.source = source.url;
      video.dataset.kind = source.kind;
      var url = absolute(source.url);
      if (source.kind === "hls" && window.Hls && window.Hls.isSupported()) {
        hls = new window.Hls({ liveDurationInfinity: true });
        hls.on(window.Hls.Events.ERROR, function (_event, data) {
          if (data.fatal) video.dataset.error = data.type + ": " + data.details;
        });
        hls.loadSource(url);
        hls.attachMedia(video);
      } else {
        video.src = url; // an MP4, or HLS where the browser plays it natively
      }
    }

    sourceList.addEventListener("click", function (event) {
      var link = event.target.closest("a.source");
      if (!link) return;
      event.preventDefault();
      play({ url: link.getAttribute("href"), kind: link.dataset.kind });
    });

    var initial = JSON.parse(body.dataset.sources || "[]");
    if (initial.length) play(initial[0]);

    poll(body.dataset.poll, function (data) {
      Object.keys(data.sections).forEach(function (id) {
        var section = document.getElementById(id);
        if (section) section.innerHTML = data.sections[id]; // server-rendered, escaped
      });
      // The player keeps what it plays; it starts by itself once there is something to play.
      if (current === null && data.sources.length) play(data.sources[0]);
      body.dataset.refreshed = String(Number(body.dataset.refreshed || "0") + 1);
    });
  }

  tick();
  setInterval(tick, 1000);
  if (body.dataset.page === "jobs") jobsPage();
  if (body.dataset.page === "job") jobPage();
})();
