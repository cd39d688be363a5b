// A small SVG line chart, drawn here so the UI needs no charting library and no CDN.
const SVG = 'http://www.w3.org/2000/svg';

function el(tag, attrs) {
  const node = document.createElementNS(SVG, tag);
  for (const [key, value] of Object.entries(attrs)) node.setAttribute(key, String(value));
  return node;
}

// points: [[epochMs, value], ...] oldest first. Returns an <svg> scaled to its container's width.
export function lineChart(points, { height = 120, color = '#4f46e5', format = (v) => v.toFixed(2) } = {}) {
  const width = 300;
  const pad = { top: 10, right: 6, bottom: 18, left: 34 };
  const svg = el('svg', { viewBox: `0 0 ${width} ${height}`, class: 'chart', role: 'img', preserveAspectRatio: 'none' });
  const innerW = width - pad.left - pad.right;
  const innerH = height - pad.top - pad.bottom;
  const values = points.map((p) => p[1]).filter((v) => Number.isFinite(v));
  const min = Math.min(0, ...values);
  // No traffic yet (all zero) still gets a readable 0–1 axis rather than a collapsed one.
  const max = Math.max(min + 1e-9, ...values) > min + 1e-9 ? Math.max(...values) : min + 1;
  for (const fraction of [0, 0.5, 1]) {
    const y = pad.top + innerH * (1 - fraction);
    svg.append(el('line', { x1: pad.left, x2: width - pad.right, y1: y, y2: y, class: 'chart-grid' }));
    const label = el('text', { x: pad.left - 6, y: y + 4, 'text-anchor': 'end', class: 'chart-label' });
    label.textContent = format(min + (max - min) * fraction);
    svg.append(label);
  }
  if (points.length < 2) {
    const wait = el('text', { x: pad.left + innerW / 2, y: pad.top + innerH / 2, 'text-anchor': 'middle', class: 'chart-label' });
    wait.textContent = 'collecting samples…';
    svg.append(wait);
    return svg;
  }
  const t0 = points[0][0];
  const t1 = points[points.length - 1][0];
  const x = (t) => pad.left + (innerW * (t - t0)) / Math.max(1, t1 - t0);
  const y = (v) => pad.top + innerH * (1 - (v - min) / (max - min));
  const line = points.filter((p) => Number.isFinite(p[1])).map((p, i) => `${i ? 'L' : 'M'}${x(p[0]).toFixed(1)},${y(p[1]).toFixed(1)}`).join('');
  const area = `${line}L${x(t1).toFixed(1)},${y(min).toFixed(1)}L${x(t0).toFixed(1)},${y(min).toFixed(1)}Z`;
  svg.append(el('path', { d: area, fill: color, 'fill-opacity': 0.08, stroke: 'none' }));
  svg.append(el('path', { d: line, fill: 'none', stroke: color, 'stroke-width': 1.8, 'vector-effect': 'non-scaling-stroke' }));
  const span = el('text', { x: width - pad.right, y: height - 4, 'text-anchor': 'end', class: 'chart-label' });
  span.textContent = `last ${Math.round((t1 - t0) / 1000)} s`;
  svg.append(span);
  return svg;
}
