// autosched dashboard: draws the Plotly figures, sorts and filters tables, compares targets,
// and in live mode reloads the page when the database has new records.
"use strict";

function drawFigures() {
  document.querySelectorAll("[data-figure]").forEach(function (div) {
    var spec = JSON.parse(document.getElementById(div.dataset.figure).textContent);
    // A responsive plot takes its container's size: give the container the figure's height.
    if (spec.layout.height) div.style.height = spec.layout.height + "px";
    Plotly.newPlot(div, spec.data, spec.layout, {responsive: true, displaylogo: false});
  });
}

function cellValue(row, index) {
  var cell = row.cells[index];
  if (!cell) return "";
  return cell.dataset.sort !== undefined ? cell.dataset.sort : cell.textContent.trim();
}

function compareValues(a, b) {
  var x = parseFloat(a), y = parseFloat(b);
  var xNum = a !== "" && !isNaN(x) && isFinite(a), yNum = b !== "" && !isNaN(y) && isFinite(b);
  if (xNum && yNum) return x - y;
  if (xNum !== yNum) return xNum ? -1 : 1;   // empty and unknown values sort last
  return a.localeCompare(b);
}

function makeSortable(table) {
  table.querySelectorAll("thead th").forEach(function (th, index) {
    th.classList.add("sort");
    th.addEventListener("click", function () {
      var ascending = th.dataset.order !== "asc";
      table.querySelectorAll("thead th").forEach(function (h) { delete h.dataset.order; });
      th.dataset.order = ascending ? "asc" : "desc";
      var body = table.tBodies[0];
      var rows = Array.prototype.slice.call(body.rows);
      rows.sort(function (r1, r2) {
        var d = compareValues(cellValue(r1, index), cellValue(r2, index));
        return ascending ? d : -d;
      });
      rows.forEach(function (r) { body.appendChild(r); });
    });
  });
}

function applyFilters(tableId) {
  var table = document.getElementById(tableId);
  if (!table) return;
  var controls = document.querySelectorAll('[data-filter-table="' + tableId + '"]');
  var shown = 0, rows = table.tBodies[0].rows;
  for (var i = 0; i < rows.length; i++) {
    var row = rows[i], visible = true;
    controls.forEach(function (c) {
      var want = c.value.trim().toLowerCase();
      if (!want) return;
      var text = c.dataset.filterColumn !== undefined
        ? cellValue(row, parseInt(c.dataset.filterColumn, 10)).toLowerCase()
        : row.textContent.toLowerCase();
      if (c.tagName === "SELECT" ? text !== want : text.indexOf(want) < 0) visible = false;
    });
    row.hidden = !visible;
    if (visible) shown++;
  }
  var counter = document.querySelector('[data-count-for="' + tableId + '"]');
  if (counter) counter.textContent = shown + " of " + rows.length + " shown";
}

function setUpFilters() {
  var ids = {};
  document.querySelectorAll("[data-filter-table]").forEach(function (c) {
    ids[c.dataset.filterTable] = true;
    c.addEventListener("input", function () { applyFilters(c.dataset.filterTable); });
    c.addEventListener("change", function () { applyFilters(c.dataset.filterTable); });
  });
  Object.keys(ids).forEach(applyFilters);
}

function setUpCompare() {
  var holder = document.getElementById("compare-data");
  if (!holder) return;
  var data = JSON.parse(holder.textContent);
  var a = document.getElementById("compare-a"), b = document.getElementById("compare-b");
  data.targets.forEach(function (t) {
    a.add(new Option(t.label, t.id));
    b.add(new Option(t.label, t.id));
  });
  if (data.targets.length > 1) b.selectedIndex = 1;
  function update() {
    var bestA = data.best[a.value] || {}, bestB = data.best[b.value] || {};
    var body = document.querySelector("#compare-table tbody");
    body.innerHTML = "";
    var labels = [], ratios = [];
    Object.keys(bestA).sort().forEach(function (key) {
      if (!bestB[key]) return;
      var ra = bestA[key], rb = bestB[key], ratio = ra.seconds / rb.seconds;
      var row = body.insertRow();
      [ra.label, (ra.seconds * 1e3).toFixed(3), (rb.seconds * 1e3).toFixed(3), ratio.toFixed(2) + "x"]
        .forEach(function (text, i) {
          var cell = row.insertCell();
          cell.textContent = text;
          if (i > 0) cell.className = "num";
        });
      row.cells[3].dataset.sort = String(ratio);
      labels.push(ra.label);
      ratios.push(ratio);
    });
    if (!labels.length) {
      var cell = body.insertRow().insertCell();
      cell.colSpan = 4;
      cell.textContent = "No workload was tuned on both targets.";
    }
    var plot = document.getElementById("compare-plot");
    var spec = JSON.parse(document.getElementById("compare-plot-spec").textContent);
    spec.data[0].x = labels;
    spec.data[0].y = ratios;
    Plotly.react(plot, spec.data, spec.layout, {responsive: true, displaylogo: false});
    applyFilters("compare-table");
  }
  a.addEventListener("change", update);
  b.addEventListener("change", update);
  update();
}

function watchForNewRecords() {
  var meta = document.querySelector('meta[name="autosched-live"]');
  if (!meta) return;
  var state = document.getElementById("live-state");
  setInterval(function () {
    fetch("api/version", {cache: "no-store"})
      .then(function (r) { return r.json(); })
      .then(function (v) {
        if (v.version !== meta.content) window.location.reload();
        if (state) state.textContent = "live";
      })
      .catch(function () { if (state) state.textContent = "live (server unreachable)"; });
  }, 3000);
}

document.addEventListener("DOMContentLoaded", function () {
  drawFigures();
  document.querySelectorAll("table.sortable").forEach(makeSortable);
  setUpFilters();
  setUpCompare();
  watchForNewRecords();
});
