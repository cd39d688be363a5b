// Reads an endpoint's Prometheus text (GET .../metrics) and turns successive samples into chartable series.

// {family: {type, samples: {seriesName: value}}} from the Prometheus text format.
export function parsePrometheus(text) {
  const families = {};
  const types = {};
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (!line) continue;
    const typeMatch = line.match(/^#\s*TYPE\s+(\S+)\s+(\S+)/);
    if (typeMatch) { types[typeMatch[1]] = typeMatch[2]; continue; }
    if (line.startsWith('#')) continue;
    const match = line.match(/^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)/);
    if (!match) continue;
    const value = Number(match[3]);
    if (!Number.isFinite(value)) continue;
    const name = match[1];
    const family = Object.keys(types).find((f) => name === f || name === `${f}_total` || name === `${f}_count` || name === `${f}_sum` || name === `${f}_bucket`) || name;
    const entry = families[family] || (families[family] = { type: types[family] || (name.endsWith('_total') ? 'counter' : 'gauge'), sums: {} });
    entry.sums[name] = (entry.sums[name] || 0) + value;   // summed over labels: one line per family
  }
  return families;
}

// Keeps a sliding window of samples; derive() gives [{title, points, format}] for the charts.
export class MetricsHistory {
  constructor(windowSize = 60) { this.windowSize = windowSize; this.samples = []; }

  add(at, families) {
    this.samples.push([at, families]);
    if (this.samples.length > this.windowSize) this.samples.shift();
  }

  derive() {
    const latest = this.samples.length ? this.samples[this.samples.length - 1][1] : {};
    const charts = [];
    for (const [family, info] of Object.entries(latest)) {
      if (info.type === 'histogram' || info.type === 'summary') {
        charts.push({ title: `${family} · per second`, points: this.rate(family, `${family}_count`), format: (v) => v.toFixed(2) });
        charts.push({ title: `${family} · mean`, points: this.ratio(family, `${family}_sum`, `${family}_count`), format: (v) => v.toPrecision(3) });
      } else if (info.type === 'counter') {
        const name = Object.keys(info.sums)[0];
        charts.push({ title: `${family} · per second`, points: this.rate(family, name), format: (v) => v.toFixed(2) });
      } else {
        const name = Object.keys(info.sums)[0];
        charts.push({ title: family, points: this.samples.map(([t, f]) => [t, f[family] ? f[family].sums[name] : NaN]), format: (v) => v.toPrecision(3) });
      }
    }
    return charts;
  }

  rate(family, name) {
    const points = [];
    for (let i = 1; i < this.samples.length; i++) {
      const [t0, a] = this.samples[i - 1];
      const [t1, b] = this.samples[i];
      const before = a[family] && a[family].sums[name];
      const after = b[family] && b[family].sums[name];
      if (before === undefined || after === undefined || after < before) continue;   // a restart resets counters
      points.push([t1, (after - before) / Math.max(0.001, (t1 - t0) / 1000)]);
    }
    return points;
  }

  ratio(family, sumName, countName) {
    const points = [];
    for (let i = 1; i < this.samples.length; i++) {
      const a = this.samples[i - 1][1][family];
      const b = this.samples[i][1][family];
      if (!a || !b) continue;
      const count = b.sums[countName] - a.sums[countName];
      points.push([this.samples[i][0], count > 0 ? (b.sums[sumName] - a.sums[sumName]) / count : NaN]);
    }
    return points;
  }
}
