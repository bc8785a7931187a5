// Charts as plain SVG (no library, no CDN): bars for counts, lines over time, stacked columns
// per minute. Colours come from CSS classes (`tone-…`), so the CSP needs no inline styles;
// every chart has a text alternative and a table of its numbers for screen readers.

import { h } from "./dom.js";

const SVG = "http://www.w3.org/2000/svg";
const WIDTH = 640;
const MARGIN = { top: 12, right: 12, bottom: 34, left: 44 };

function s(tag, attributes = {}, ...children) {
  const element = document.createElementNS(SVG, tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (value !== null && value !== undefined) element.setAttribute(name, String(value));
  }
  for (const child of children) {
    if (child === null || child === undefined) continue;
    element.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return element;
}

/** A rounded-up axis maximum (1, 2, 2.5 or 5 times a power of ten), at least `floor`. */
function niceMax(value, floor = 4) {
  if (!(value > floor)) return floor || 1;
  const exponent = 10 ** Math.floor(Math.log10(value));
  return [1, 2, 2.5, 5, 10].map((factor) => factor * exponent).find((candidate) => candidate >= value);
}

function yAxis(max, height, format) {
  const ticks = [];
  for (let i = 0; i <= 4; i += 1) {
    const value = (max * i) / 4;
    const y = MARGIN.top + height - (height * i) / 4;
    ticks.push(
      s("line", { class: "chart-grid", x1: MARGIN.left, x2: WIDTH - MARGIN.right, y1: y, y2: y }),
      s("text", { class: "chart-tick", x: MARGIN.left - 6, y: y + 4, "text-anchor": "end" }, format(value)),
    );
  }
  return ticks;
}

function figure(label, svg, table, legend) {
  return h(
    "figure",
    { class: "chart", dataset: { chart: label } },
    svg,
    legend,
    h("figcaption", { class: "visually-hidden" }, label),
    table,
  );
}

function dataTable(label, headings, rows) {
  return h(
    "table",
    { class: "visually-hidden" },
    h("caption", {}, label),
    h("thead", {}, h("tr", {}, headings.map((text) => h("th", { scope: "col" }, text)))),
    h("tbody", {}, rows.map((row) => h("tr", {}, row.map((cell) => h("td", {}, String(cell)))))),
  );
}

function legendOf(series) {
  return h(
    "ul",
    { class: "chart-legend", "aria-hidden": "true" },
    series.map((item) => h("li", {}, h("span", { class: `swatch tone-${item.tone}` }), item.name)),
  );
}

const count = (value) => String(Math.round(value));

/**
 * Horizontal-label bar chart: bars [{label, value, tone, title?}].
 */
export function barChart(label, bars, { format = count } = {}) {
  const height = 160;
  const max = niceMax(Math.max(0, ...bars.map((bar) => bar.value)));
  const plotWidth = WIDTH - MARGIN.left - MARGIN.right;
  const slot = plotWidth / Math.max(1, bars.length);
  const barWidth = Math.min(56, slot * 0.7);
  const svg = s(
    "svg",
    { viewBox: `0 0 ${WIDTH} ${height + MARGIN.top + MARGIN.bottom}`, role: "img", "aria-label": label },
    s("title", {}, label),
    ...yAxis(max, height, format),
  );
  bars.forEach((bar, index) => {
    const barHeight = (height * bar.value) / max;
    const x = MARGIN.left + slot * index + (slot - barWidth) / 2;
    const y = MARGIN.top + height - barHeight;
    svg.append(
      s(
        "rect",
        { class: `chart-bar tone-${bar.tone || "accent"}`, x, y, width: barWidth, height: barHeight, "data-label": bar.label, "data-value": bar.value },
        s("title", {}, `${bar.label}: ${format(bar.value)}`),
      ),
      s("text", { class: "chart-value", x: x + barWidth / 2, y: y - 3, "text-anchor": "middle" }, format(bar.value)),
      s("text", { class: "chart-tick", x: x + barWidth / 2, y: MARGIN.top + height + 16, "text-anchor": "middle" }, bar.label),
    );
  });
  const table = dataTable(label, ["", "Value"], bars.map((bar) => [bar.label, format(bar.value)]));
  return figure(label, svg, table, null);
}

const timeFormat = new Intl.DateTimeFormat(undefined, { hour: "2-digit", minute: "2-digit" });
const secondsFormat = new Intl.DateTimeFormat(undefined, { hour: "2-digit", minute: "2-digit", second: "2-digit" });

function timeAxis(start, end, height, x) {
  // Within a quarter of an hour, minutes alone would repeat on every tick.
  const format = end - start < 15 * 60_000 ? secondsFormat : timeFormat;
  const ticks = [];
  for (let i = 0; i <= 4; i += 1) {
    const at = start + ((end - start) * i) / 4;
    ticks.push(
      s("text", { class: "chart-tick", x: x(at), y: MARGIN.top + height + 16, "text-anchor": i === 0 ? "start" : i === 4 ? "end" : "middle" }, format.format(new Date(at))),
    );
  }
  return ticks;
}

/**
 * Lines over time: series [{name, tone, points: [{at: epoch ms, value}]}] between start and end.
 */
export function lineChart(label, series, { start, end, format = count, floor = 4 } = {}) {
  const height = 160;
  const all = series.flatMap((item) => item.points);
  const from = start ?? Math.min(...all.map((p) => p.at));
  const to = end ?? Math.max(...all.map((p) => p.at));
  const span = Math.max(1, to - from);
  const max = niceMax(Math.max(0, ...all.map((p) => p.value)), floor);
  const plotWidth = WIDTH - MARGIN.left - MARGIN.right;
  const x = (at) => MARGIN.left + (plotWidth * (at - from)) / span;
  const y = (value) => MARGIN.top + height - (height * value) / max;
  const svg = s(
    "svg",
    { viewBox: `0 0 ${WIDTH} ${height + MARGIN.top + MARGIN.bottom}`, role: "img", "aria-label": label },
    s("title", {}, label),
    ...yAxis(max, height, format),
    ...timeAxis(from, to, height, x),
  );
  for (const item of series) {
    if (!item.points.length) continue;
    const d = item.points.map((p, i) => `${i ? "L" : "M"}${x(p.at).toFixed(1)},${y(p.value).toFixed(1)}`).join(" ");
    svg.append(s("path", { class: `chart-line tone-${item.tone}`, d, "data-series": item.name }));
    if (item.points.length === 1) {
      const [p] = item.points;
      svg.append(s("circle", { class: `chart-dot tone-${item.tone}`, cx: x(p.at), cy: y(p.value), r: 3 }));
    }
  }
  const times = [...new Set(all.map((p) => p.at))].sort((a, b) => a - b);
  const rows = times.map((at) => [
    secondsFormat.format(new Date(at)),
    ...series.map((item) => {
      const point = item.points.find((p) => p.at === at);
      return point ? format(point.value) : "—";
    }),
  ]);
  const table = dataTable(label, ["Time", ...series.map((item) => item.name)], rows);
  return figure(label, svg, table, legendOf(series));
}

/**
 * Stacked columns per time slot: slots [{at: epoch ms, values: {seriesName: n}}], series
 * [{name, tone}] in stacking order (bottom first).
 */
export function stackedColumns(label, slots, series, { format = count } = {}) {
  const height = 140;
  const totals = slots.map((slot) => series.reduce((sum, item) => sum + (slot.values[item.name] || 0), 0));
  const max = niceMax(Math.max(0, ...totals));
  const plotWidth = WIDTH - MARGIN.left - MARGIN.right;
  const width = plotWidth / Math.max(1, slots.length);
  const svg = s(
    "svg",
    { viewBox: `0 0 ${WIDTH} ${height + MARGIN.top + MARGIN.bottom}`, role: "img", "aria-label": label },
    s("title", {}, label),
    ...yAxis(max, height, format),
  );
  if (slots.length) {
    const from = slots[0].at;
    const to = slots[slots.length - 1].at;
    svg.append(...timeAxis(from, to, height, (at) => MARGIN.left + width / 2 + ((plotWidth - width) * (at - from)) / Math.max(1, to - from)));
  }
  slots.forEach((slot, index) => {
    let base = MARGIN.top + height;
    for (const item of series) {
      const value = slot.values[item.name] || 0;
      if (!value) continue;
      const barHeight = (height * value) / max;
      base -= barHeight;
      svg.append(
        s(
          "rect",
          { class: `chart-bar tone-${item.tone}`, x: MARGIN.left + index * width + 0.5, y: base, width: Math.max(1, width - 1), height: barHeight, "data-series": item.name, "data-value": value },
          s("title", {}, `${timeFormat.format(new Date(slot.at))} ${item.name}: ${format(value)}`),
        ),
      );
    }
  });
  const rows = slots.filter((_, i) => totals[i] > 0).map((slot) => [timeFormat.format(new Date(slot.at)), ...series.map((item) => format(slot.values[item.name] || 0))]);
  const table = dataTable(label, ["Minute", ...series.map((item) => item.name)], rows);
  return figure(label, svg, table, legendOf(series));
}
