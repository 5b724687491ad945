// Line charts drawn as inline SVG: no library, no CDN.
"use strict";

const PALETTE = ["#3359d6", "#d65a33", "#1f8a4c", "#8a3bd6", "#b7791f", "#0f8f9e", "#c53071"];
const SVG_NS = "http://www.w3.org/2000/svg";

function svgEl(tag, attrs) {
  const el = document.createElementNS(SVG_NS, tag);
  for (const [k, v] of Object.entries(attrs || {})) el.setAttribute(k, v);
  return el;
}

function niceNumber(v) {
  if (!isFinite(v)) return "";
  const a = Math.abs(v);
  if (a !== 0 && (a < 0.01 || a >= 10000)) return v.toExponential(1);
  return (Math.round(v * 1000) / 1000).toString();
}

// series: [{name, points: [[x, y], ...], color?, key?}]; returns a .chart element. A series' color
// defaults to the palette by position; `key` (e.g. a job id) lands in data-key for the compare view.
function lineChart(title, series, key) {
  const box = document.createElement("div");
  box.className = "chart";
  box.dataset.chart = key || title;
  const head = document.createElement("h3");
  head.textContent = title;
  box.appendChild(head);
  const drawn = series.filter(s => s.points.length > 0);
  if (drawn.length === 0) {
    const empty = document.createElement("div");
    empty.className = "empty";
    empty.textContent = "no data yet";
    box.appendChild(empty);
    return box;
  }
  const W = 400, H = 160, L = 44, R = 8, T = 8, B = 20;
  const xs = drawn.flatMap(s => s.points.map(p => p[0]));
  const ys = drawn.flatMap(s => s.points.map(p => p[1]));
  let [x0, x1, y0, y1] = [Math.min(...xs), Math.max(...xs), Math.min(...ys), Math.max(...ys)];
  if (x0 === x1) { x1 = x0 + 1; }
  if (y0 === y1) { y0 -= 0.5; y1 += 0.5; }
  const sx = x => L + (x - x0) / (x1 - x0) * (W - L - R);
  const sy = y => T + (1 - (y - y0) / (y1 - y0)) * (H - T - B);
  const svg = svgEl("svg", { viewBox: `0 0 ${W} ${H}`, preserveAspectRatio: "none", role: "img" });
  for (const y of [y0, (y0 + y1) / 2, y1]) {
    svg.appendChild(svgEl("line", { x1: L, x2: W - R, y1: sy(y), y2: sy(y), stroke: "#e2e5ec" }));
    const label = svgEl("text", { x: L - 4, y: sy(y) + 3, "text-anchor": "end", "font-size": 10, fill: "#6b7385" });
    label.textContent = niceNumber(y);
    svg.appendChild(label);
  }
  for (const [x, anchor] of [[x0, "start"], [x1, "end"]]) {
    const label = svgEl("text", { x: sx(x), y: H - 5, "text-anchor": anchor, "font-size": 10, fill: "#6b7385" });
    label.textContent = `step ${x}`;
    svg.appendChild(label);
  }
  const colorOf = (s, i) => s.color || PALETTE[i % PALETTE.length];
  drawn.forEach((s, i) => {
    const color = colorOf(s, i);
    const points = s.points.map(p => `${sx(p[0]).toFixed(1)},${sy(p[1]).toFixed(1)}`).join(" ");
    const line = svgEl("polyline", { points, fill: "none", stroke: color, "stroke-width": 1.6,
                                     "vector-effect": "non-scaling-stroke", "data-series": s.name,
                                     "data-count": s.points.length });
    if (s.key) line.setAttribute("data-key", s.key);
    svg.appendChild(line);
    if (s.points.length === 1) {
      svg.appendChild(svgEl("circle", { cx: sx(s.points[0][0]), cy: sy(s.points[0][1]), r: 2.5, fill: color }));
    }
  });
  box.appendChild(svg);
  const legend = document.createElement("div");
  legend.className = "legend";
  legend.innerHTML = drawn.map((s, i) => {
    const last = s.points[s.points.length - 1][1];
    return `<span style="color:${colorOf(s, i)}">■</span> ${escapeHtml(s.name)} ${niceNumber(last)}`;
  }).join(" &nbsp; ");
  box.appendChild(legend);
  return box;
}

function escapeHtml(text) {
  return String(text).replace(/[&<>"']/g, c => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);
}

// rows: metrics rows; keys: metric names; returns series for lineChart
function seriesOf(rows, keys, rename) {
  return keys.map(k => ({
    name: rename ? rename(k) : k,
    points: rows.filter(r => typeof r[k] === "number").map(r => [r.step, r[k]]),
  }));
}
