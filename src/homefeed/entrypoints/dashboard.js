"use strict";
(function () {
  var POLL_MS = 2000;
  var SVGNS = "http://www.w3.org/2000/svg";

  function $(id) { return document.getElementById(id); }
  function set(id, text) { var el = $(id); if (el) { el.textContent = text; } }
  function num(v, digits) {
    if (v === null || v === undefined || isNaN(v)) { return "–"; }
    if (digits === undefined) { digits = Math.abs(v) >= 100 ? 0 : Math.abs(v) >= 10 ? 1 : 2; }
    return Number(v).toLocaleString("en-US", { minimumFractionDigits: digits, maximumFractionDigits: digits });
  }
  function int(v) { return (v === null || v === undefined) ? "–" : Number(v).toLocaleString("en-US"); }
  function pct(v) { return (v === null || v === undefined) ? "–" : (v * 100).toFixed(v < 0.01 && v > 0 ? 3 : 2) + "%"; }
  function ago(seconds) {
    var s = Math.round(seconds);
    if (s < 120) { return s + " s"; }
    if (s < 7200) { return Math.round(s / 60) + " min"; }
    return (s / 3600).toFixed(1) + " h";
  }

  function el(tag, attrs, text) {
    var e = document.createElementNS(SVGNS, tag);
    for (var k in attrs) { if (Object.prototype.hasOwnProperty.call(attrs, k)) { e.setAttribute(k, attrs[k]); } }
    if (text !== undefined) { e.textContent = text; }
    return e;
  }

  // A small line chart: xs (seconds), several series of ys (numbers or null).
  function chart(svg, xs, series, fmt) {
    while (svg.firstChild) { svg.removeChild(svg.firstChild); }
    var W = svg.clientWidth || 320, H = svg.clientHeight || 110;
    var L = 44, R = 6, T = 8, B = 16;
    svg.setAttribute("viewBox", "0 0 " + W + " " + H);
    var max = 0;
    series.forEach(function (ys) { ys.forEach(function (y) { if (y !== null && y > max) { max = y; } }); });
    if (max <= 0) { max = 1; }
    var x0 = xs.length ? xs[0] : 0, x1 = xs.length ? xs[xs.length - 1] : 1;
    if (x1 - x0 < 60) { x0 = x1 - 60; }
    function X(x) { return L + (W - L - R) * (x - x0) / (x1 - x0); }
    function Y(y) { return T + (H - T - B) * (1 - y / max); }
    [0, 0.5, 1].forEach(function (f) {
      var y = T + (H - T - B) * (1 - f);
      svg.appendChild(el("line", { x1: L, x2: W - R, y1: y, y2: y, "class": "grid" }));
      svg.appendChild(el("text", { x: L - 4, y: y + 3, "text-anchor": "end", "class": "axis" }, fmt(max * f, max)));
    });
    svg.appendChild(el("text", { x: L, y: H - 3, "class": "axis" }, ago(x1 - x0) + " ago"));
    svg.appendChild(el("text", { x: W - R, y: H - 3, "text-anchor": "end", "class": "axis" }, "now"));
    series.forEach(function (ys, i) {
      var pts = [], segs = [];
      for (var j = 0; j < ys.length && j < xs.length; j++) {
        if (ys[j] === null || ys[j] === undefined) {
          if (pts.length) { segs.push(pts); pts = []; }
          continue;
        }
        pts.push(X(xs[j]).toFixed(1) + "," + Y(ys[j]).toFixed(1));
      }
      if (pts.length) { segs.push(pts); }
      segs.forEach(function (p) {
        if (p.length === 1) {  // a lone point: a dot, not an invisible zero-length line
          var xy = p[0].split(",");
          svg.appendChild(el("circle", { cx: xy[0], cy: xy[1], r: 2.2, "class": "dot" + (i % 4) }));
          return;
        }
        svg.appendChild(el("polyline", { points: p.join(" "), "class": "s" + (i % 4) }));
      });
    });
  }

  function cell(tr, text, cls) {
    var td = document.createElement("td");
    td.textContent = text;
    if (cls) { td.className = cls; }
    tr.appendChild(td);
  }

  function fillRoutes(data) {
    var w1 = data.windows["1m"].routes, w5 = data.windows["5m"].routes;
    var names = Object.keys(w5).sort(function (a, b) { return (w5[b].count - w5[a].count) || (a < b ? -1 : 1); });
    var body = document.querySelector("#routes tbody");
    var rows = [];
    names.forEach(function (name) {
      var a = w1[name] || { rps: 0, count: 0, errors: 0, client_errors: 0 }, b = w5[name];
      var tr = document.createElement("tr");
      tr.setAttribute("data-route", name);
      cell(tr, name);
      cell(tr, num(a.rps)); cell(tr, num(a.p50)); cell(tr, num(a.p95)); cell(tr, num(a.p99)); cell(tr, num(a.p999));
      cell(tr, int(a.errors), a.errors ? "bad" : ""); cell(tr, int(a.client_errors));
      cell(tr, num(b.rps)); cell(tr, num(b.p50)); cell(tr, num(b.p95)); cell(tr, num(b.p99)); cell(tr, num(b.p999));
      cell(tr, int(b.errors), b.errors ? "bad" : "");
      rows.push(tr);
    });
    body.replaceChildren.apply(body, rows);
  }

  function fillTable(sel, rows) {
    var body = document.querySelector(sel + " tbody");
    body.replaceChildren.apply(body, rows.map(function (r) {
      var tr = document.createElement("tr");
      r.forEach(function (c) { cell(tr, c); });
      return tr;
    }));
  }

  function render(d) {
    var w1 = d.windows["1m"], w5 = d.windows["5m"];
    set("profile", d.profile + " · " + d.role + " · pid " + d.pid);
    set("uptime", "up " + ago(d.uptime_s));
    set("api-rps-1m", num(w1.api.rps)); set("api-count-1m", int(w1.api.count)); set("api-rps-5m", num(w5.api.rps));
    set("api-error-rate-1m", pct(w1.api.error_rate)); set("api-error-rate-5m", pct(w5.api.error_rate));
    set("api-client-errors-1m", int(w1.api.client_errors));
    set("api-p50-1m", num(w1.api.p50)); set("api-p99-1m", num(w1.api.p99)); set("api-p999-1m", num(w1.api.p999));
    set("fanout-p50-1m", num(w1.fanout.p50)); set("fanout-p99-1m", num(w1.fanout.p99));
    set("fanout-rate-1m", num(w1.fanout.rate));
    var total = 0, parts = [], dead = 0, known = false;
    Object.keys(d.consumers).sort().forEach(function (name) {
      var c = d.consumers[name];
      if (c.behind !== null && c.behind !== undefined) { total += c.behind; known = true; }
      dead += c.dead_lettered || 0;
      parts.push(name + " " + int(c.behind));
    });
    set("lag-total", known ? int(total) : "–"); set("lag-detail", parts.join(" · "));
    Object.keys(d.consumers).forEach(function (name) { set("lag-" + name, int(d.consumers[name].behind)); });
    set("outbox-unrelayed", d.outbox_unrelayed === null ? "n/a" : int(d.outbox_unrelayed));
    set("dead-lettered", int(dead));
    set("timeline-hit-ratio", pct(d.timeline_cache.hit_ratio));
    set("timeline-hit-ratio-1m", pct(d.timeline_cache.hit_ratio_1m));
    set("rebuilds", int(d.timeline_cache.rebuilds));
    set("in-flight", int(d.in_flight));
    set("open-streams", d.streaming ? int(d.streaming.open) : "n/a");
    set("post-hit-ratio", d.post_cache ? pct(d.post_cache.hit_ratio) : "n/a");

    var s = d.series;
    // axis labels: as many decimals as the chart's scale needs
    function axis(v, max) { return num(v, max >= 20 ? 0 : max >= 2 ? 1 : 2); }
    chart($("chart-rps"), s.t, [s.rps], axis);
    chart($("chart-latency"), s.t, [s.p50_ms, s.p99_ms], axis);
    chart($("chart-errors"), s.t, [s.error_rate], function (v, max) { return (v * 100).toFixed(max > 0.2 ? 0 : 1) + "%"; });
    chart($("chart-fanout"), s.t, [s.fanout_p99_ms], axis);
    var names = Object.keys(d.samples.lag).sort();
    chart($("chart-lag"), d.samples.t, names.map(function (n) { return d.samples.lag[n]; }), axis);
    var legend = $("lag-legend");
    var colors = ["var(--accent)", "var(--accent2)", "var(--good)", "#c58cff"];
    legend.replaceChildren.apply(legend, names.map(function (n, i) {
      var span = document.createElement("span"), dot = document.createElement("i");
      dot.style.background = colors[i % 4];
      span.appendChild(dot); span.appendChild(document.createTextNode(n));
      return span;
    }));

    fillRoutes(d);
    fillTable("#fanout", [["1 min", w1.fanout], ["5 min", w5.fanout]].map(function (r) {
      var f = r[1];
      return [r[0], int(f.count), num(f.p50), num(f.p95), num(f.p99), num(f.p999)];
    }));
    fillTable("#consumers", Object.keys(d.consumers).sort().map(function (n) {
      var c = d.consumers[n];
      return [n, int(c.behind), c.running ? "yes" : "no", int(c.failures), int(c.dead_lettered)];
    }));
    var jobs = (d.jobs && d.jobs.jobs) || {};
    fillTable("#jobs", Object.keys(jobs).map(function (n) {
      var j = jobs[n], runs = j.runs || {};
      return [n, j.schedule, j.last_run || "never", j.duration_s == null ? "–" : j.duration_s + " s",
              j.outcome || "–", int(runs.ok || 0) + " / " + int(runs.failed || 0), j.next_run];
    }));
    var rows = [
      ["home timeline reads", int(d.timeline_cache.home_reads)],
      ["timeline rebuilds (home)", int(d.timeline_cache.rebuilds)],
      ["author list rebuilds", int(d.timeline_cache.author_rebuilds)],
      ["pages continued from the database", int(d.timeline_cache.db_pages)],
      ["ids pushed by fan-out here", int(d.timeline_cache.pushes)]
    ];
    if (d.post_cache) { rows.push(["post cache hit ratio (1 min)", pct(d.post_cache.hit_ratio_1m)]); }
    Object.keys(d.sizes).sort().forEach(function (k) { rows.push(["size: " + k.replace(/_/g, " "), int(d.sizes[k])]); });
    if (d.relay) { rows.push(["relay: events relayed here", int(d.relay.relayed)], ["relay: leader", d.relay.leader ? "yes" : "no"]); }
    fillTable("#stores", rows);
    var errs = Object.keys(d.errors || {}).map(function (k) { return k + ": " + d.errors[k]; });
    set("errors", errs.length ? "not answering: " + errs.join("; ") : "");
  }

  var failures = 0;
  function poll() {
    fetch("metrics.json", { cache: "no-store" }).then(function (r) {
      if (!r.ok) { throw new Error("HTTP " + r.status); }
      return r.json();
    }).then(function (d) {
      failures = 0;
      render(d);
      $("conn").className = "ok";
      set("status", "live · updated " + new Date(d.time * 1000).toLocaleTimeString());
      document.body.setAttribute("data-updates", String(Number(document.body.getAttribute("data-updates") || 0) + 1));
    }).catch(function (e) {
      failures += 1;
      $("conn").className = "bad";
      set("status", "no answer from the server (" + (e && e.message ? e.message : e) + "); retrying");
    }).then(function () {
      setTimeout(poll, failures ? Math.min(POLL_MS * (failures + 1), 15000) : POLL_MS);
    });
  }
  poll();
})();
