// Small SVG charts built with DOM calls only (no inline style, no library): they render under a
// Content-Security-Policy of `default-src 'self'`. Colours come from CSS classes in dashboard.css.

const SVG = "http://www.w3.org/2000/svg";

function svg(tag, attrs = {}, text) {
  const node = document.createElementNS(SVG, tag);
  for (const [name, value] of Object.entries(attrs)) node.setAttribute(name, String(value));
  if (text !== undefined) node.textContent = text;
  return node;
}

export const formatCount = value => new Intl.NumberFormat("en-US").format(value);
export const formatMoney = (value, currency = "USD") =>
  new Intl.NumberFormat("en-US", {style: "currency", currency, maximumFractionDigits: 0}).format(value);

function frame(width, height, label, kind) {
  return svg("svg", {viewBox: `0 0 ${width} ${height}`, class: `chart ${kind}`, role: "img", "aria-label": label});
}

// Horizontal bars: rows [{label, value, display}], one bar per row, longest = full width.
export function barChart(rows, {label, format = formatCount, tone = "primary"} = {}) {
  const rowHeight = 26, labelWidth = 170, barWidth = 300, valueWidth = 110;
  const chart = frame(labelWidth + barWidth + valueWidth, rows.length * rowHeight + 4, label, "bars");
  const max = Math.max(1, ...rows.map(r => Math.abs(r.value)));
  rows.forEach((row, i) => {
    const y = i * rowHeight + 2;
    chart.append(svg("text", {x: labelWidth - 8, y: y + 16, class: "axis-label", "text-anchor": "end"}, row.label));
    const width = Math.max(row.value ? 2 : 0, (Math.abs(row.value) / max) * barWidth);
    const bar = svg("rect", {x: labelWidth, y: y + 3, width, height: rowHeight - 8, rx: 3,
                             class: `bar ${row.tone || tone}${row.value < 0 ? " negative" : ""}`});
    bar.append(svg("title", {}, `${row.label}: ${format(row.value)}`));
    chart.append(bar);
    chart.append(svg("text", {x: labelWidth + width + 6, y: y + 16, class: "value-label"}, format(row.value)));
  });
  return chart;
}

// Flows between columns of nodes (a Sankey diagram). `columns`: [[{key, label, count}]] left to right;
// `links`: [{from: [column, key], to: [column, key], count}], drawn with width ∝ count.
export function sankey(columns, links, {label, titles = []} = {}) {
  const width = 1100, nodeWidth = 14, gap = 10, top = 26, margin = 240, height = 320;
  const tallest = Math.max(...columns.map(c => c.reduce((sum, n) => sum + n.count, 0)), 1);
  const most = Math.max(...columns.map(c => c.length), 1);
  const scale = (height - gap * (most - 1)) / tallest;
  const chart = frame(width, height + top + 8, label, "sankey");
  const step = (width - 2 * margin - nodeWidth) / Math.max(1, columns.length - 1);
  const placed = columns.map((column, i) => {
    const x = margin + i * step;
    if (titles[i]) chart.append(svg("text", {x: x + nodeWidth / 2, y: 14, class: "axis-title", "text-anchor": "middle"}, titles[i]));
    let y = top;
    return new Map(column.map(node => {
      const at = {x, y, h: Math.max(2, node.count * scale), out: 0, in: 0, node};
      y += at.h + gap;
      return [node.key, at];
    }));
  });
  links.forEach((link, i) => {
    const a = placed[link.from[0]].get(link.from[1]), b = placed[link.to[0]].get(link.to[1]);
    const h = Math.max(1, link.count * scale);
    const y0 = a.y + a.out + h / 2, y1 = b.y + b.in + h / 2;
    a.out += h;
    b.in += h;
    const x0 = a.x + nodeWidth, x1 = b.x, mid = (x0 + x1) / 2;
    const path = svg("path", {d: `M${x0},${y0} C${mid},${y0} ${mid},${y1} ${x1},${y1}`,
                              class: `flow tone-${i % 6}`, "stroke-width": h});
    path.append(svg("title", {}, `${a.node.label} → ${b.node.label}: ${formatCount(link.count)}`));
    chart.append(path);
  });
  placed.forEach((column, i) => column.forEach(at => {
    chart.append(svg("rect", {x: at.x, y: at.y, width: nodeWidth, height: at.h, class: "node"}));
    const first = i === 0, last = i === columns.length - 1;
    if (!first && !last) return;  // inner columns are named by their title
    chart.append(svg("text", {x: first ? at.x - 6 : at.x + nodeWidth + 6, y: at.y + at.h / 2 + 4, class: "axis-label",
                              "text-anchor": first ? "end" : "start"}, `${at.node.label} (${formatCount(at.node.count)})`));
  }));
  return chart;
}

// A step line of a cohort's size per version: points [{version, when, size}] in version order.
export function stepChart(points, {label} = {}) {
  const width = 300, height = 90, pad = 22;
  const chart = frame(width, height, label, "steps");
  const max = Math.max(1, ...points.map(p => p.size));
  const x = i => pad + (points.length < 2 ? (width - 2 * pad) / 2 : i * (width - 2 * pad) / (points.length - 1));
  const y = size => height - pad - (size / max) * (height - 2 * pad);
  chart.append(svg("line", {x1: pad, y1: height - pad, x2: width - pad, y2: height - pad, class: "axis"}));
  if (points.length > 1) {
    const d = points.map((p, i) => `${i ? "L" : "M"}${x(i)},${y(p.size)}`).join(" ");
    chart.append(svg("path", {d, class: "line"}));
  }
  points.forEach((p, i) => {
    const dot = svg("circle", {cx: x(i), cy: y(p.size), r: 3.5, class: "dot"});
    dot.append(svg("title", {}, `version ${p.version} (${p.when}): ${formatCount(p.size)} members`));
    chart.append(dot);
  });
  chart.append(svg("text", {x: pad, y: height - 6, class: "axis-label"}, `v${points[0]?.version ?? "–"}`));
  chart.append(svg("text", {x: width - pad, y: height - 6, class: "axis-label", "text-anchor": "end"},
                   `v${points.at(-1)?.version ?? "–"}`));
  chart.append(svg("text", {x: pad, y: 14, class: "axis-label"}, `max ${formatCount(max)}`));
  return chart;
}
