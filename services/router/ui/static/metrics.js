// Reads an endpoint's Prometheus text (GET .../metrics) and turns successive samples into chartable series;
// the same for the judgements of a canary rollout (GET .../rollout).

// {family: {type, samples: {seriesName: value}}} from the Prometheus text format.
export function parsePrometheus(text) {
  const families = {};
  const types = {};
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (!line) continue;
    const typeMatch = line.match(/^#\s*TYPE\s+(\S+)\s+(\S+)/);
    if (typeMatch) { types[typeMatch[1].replace(/_total$/, '')] = typeMatch[2]; continue; }
    if (line.startsWith('#')) continue;
    const match = line.match(/^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)/);
    if (!match) continue;
    const value = Number(match[3]);
    const name = match[1];
    // *_created is when a series started, not a measurement.
    if (Number.isNaN(value) || name.endsWith('_created')) continue;
    const family = Object.keys(types).find((f) => name === f || name === `${f}_total` || name === `${f}_count` || name === `${f}_sum` || name === `${f}_bucket`) || name;
    const entry = families[family] || (families[family] = { type: types[family] || (name.endsWith('_total') ? 'counter' : 'gauge'), sums: {} });
    // Summed over labels (every served entity together); histogram buckets stay apart by their upper bound.
    const le = name.endsWith('_bucket') && (match[2] || '').match(/le="([^"]+)"/);
    const key = le ? `le:${le[1]}` : name;
    entry.sums[key] = (entry.sums[key] || 0) + value;
  }
  return families;
}

// Axis labels: 1234 → "1234", 17.65 → "17.7", 0.5 → "0.50".
export const compact = (v) => (Math.abs(v) >= 100 ? v.toFixed(0) : Math.abs(v) >= 10 ? v.toFixed(1) : v.toFixed(2));

// Friendlier titles for the metrics Podium's router exports (Databricks' names); others keep their own.
const TITLES = {
  'request_count · per second': 'Requests / s', 'request_4xx_count · per second': '4xx answers / s',
  'request_5xx_count · per second': '5xx answers / s', 'request_latency_ms · p50': 'Latency p50 (ms)',
  'request_latency_ms · p99': 'Latency p99 (ms)', podium_router_queued_requests: 'Queue depth',
  podium_router_in_flight_requests: 'In flight', replicas_ready: 'Replicas ready', replicas_desired: 'Replicas desired',
};

// The q-quantile of the requests seen between two samples of a histogram family, from its cumulative
// buckets (linear inside the bucket, as Prometheus' histogram_quantile does); NaN when none were seen.
export function quantileBetween(a, b, q) {
  const bounds = Object.keys(b.sums).filter((k) => k.startsWith('le:')).map((k) => [k.slice(3) === '+Inf' ? Infinity : Number(k.slice(3)), b.sums[k] - (a.sums[k] || 0)]).sort((x, y) => x[0] - y[0]);
  const total = bounds.length ? bounds[bounds.length - 1][1] : 0;
  if (total <= 0) return NaN;
  const rank = q * total;
  let previousBound = 0;
  let previousCount = 0;
  for (const [bound, count] of bounds) {
    if (count >= rank) {
      return Number.isFinite(bound) ? previousBound + ((bound - previousBound) * (rank - previousCount)) / Math.max(1e-9, count - previousCount) : previousBound;
    }
    previousBound = bound;
    previousCount = count;
  }
  return NaN;
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
      if (info.type === 'histogram') {
        charts.push({ title: `${family} · p50`, points: this.quantile(family, 0.5), format: compact });
        charts.push({ title: `${family} · p99`, points: this.quantile(family, 0.99), format: compact });
      } else if (info.type === 'summary') {
        charts.push({ title: `${family} · mean`, points: this.ratio(family, `${family}_sum`, `${family}_count`), format: compact });
      } else if (info.type === 'counter') {
        const name = Object.keys(info.sums)[0];
        charts.push({ title: `${family} · per second`, points: this.rate(family, name), format: compact });
      } else {
        const name = Object.keys(info.sums)[0];
        charts.push({ title: family, points: this.samples.map(([t, f]) => [t, f[family] ? f[family].sums[name] : NaN]), format: compact });
      }
    }
    return charts.map((c) => ({ ...c, title: TITLES[c.title] || c.title }));
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

  quantile(family, q) {
    const points = [];
    for (let i = 1; i < this.samples.length; i++) {
      const a = this.samples[i - 1][1][family];
      const b = this.samples[i][1][family];
      if (a && b) points.push([this.samples[i][0], quantileBetween(a, b, q)]);
    }
    return points;
  }

  // Over the whole window (oldest to newest sample): {rps, p50, p99, seconds}, or null before two samples.
  summary(counter = 'request_count', histogram = 'request_latency_ms') {
    if (this.samples.length < 2) return null;
    const [t0, first] = this.samples[0];
    const [t1, last] = this.samples[this.samples.length - 1];
    const seconds = Math.max(0.001, (t1 - t0) / 1000);
    const count = (f) => (f[counter] ? Object.values(f[counter].sums)[0] : undefined);
    const before = count(first);
    const after = count(last);
    const rps = before === undefined || after === undefined ? (after === undefined ? 0 : after / seconds) : Math.max(0, after - before) / seconds;
    const empty = { type: 'histogram', sums: {} };
    const a = first[histogram] || empty;
    const b = last[histogram] || empty;
    return { rps, p50: quantileBetween(a, b, 0.5), p99: quantileBetween(a, b, 0.99), seconds };
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

// The judgements of one rollout, sampled as the page reads them, as per-side series: requests per second and
// the 5xx share between two judgements of the same step (each judgement counts from its step's start), and
// the p99 latency over the step so far, as the latency gate judges it.
export class RolloutHistory {
  constructor(configVersion = null, size = 300) { this.configVersion = configVersion; this.size = size; this.samples = []; }

  // The control plane's time of the latest judgement held (null: none yet), to read only newer ones.
  get latest() {
    const last = this.samples[this.samples.length - 1];
    return last && Number.isFinite(last.judgement.timestamp) ? last.judgement.timestamp : null;
  }

  add(at, judgement) {
    if (!judgement || !judgement.candidate) return;
    const last = this.samples[this.samples.length - 1];
    if (last && last.judgement.step === judgement.step && last.judgement.window_s === judgement.window_s) return;   // read again, not judged again
    if (last && judgement.step < last.judgement.step) return;   // a paused rollout shows the judgement that moved it to this step
    this.samples.push({ at, judgement });
    // Full: every other judgement goes (the first and the latest stay), so the charts still start at the
    // rollout's start, at a coarser grain, as the control plane keeps them (services/control_plane/rollouts.py).
    if (this.samples.length > this.size) this.samples = [...this.samples.slice(0, -1).filter((_, i) => i % 2 === 0), this.samples[this.samples.length - 1]];
  }

  series(side) {
    const rate = [];
    const errorRate = [];
    const p99 = [];
    this.samples.forEach(({ at, judgement }, i) => {
      const now = judgement[side];
      const before = i > 0 && this.samples[i - 1].judgement;
      // A new step starts its counts from zero: its first judgement is measured from the step's start.
      const previous = before && before.step === judgement.step && before.window_s < judgement.window_s && before[side].requests <= now.requests
        ? { requests: before[side].requests, errors: before[side].errors, window_s: before.window_s } : { requests: 0, errors: 0, window_s: 0 };
      const requests = now.requests - previous.requests;
      const seconds = judgement.window_s - previous.window_s;
      if (seconds > 0) rate.push([at, requests / seconds]);
      errorRate.push([at, requests > 0 ? (100 * (now.errors - previous.errors)) / requests : NaN]);
      p99.push([at, now.requests ? now.p99_latency_ms : NaN]);
    });
    return { rate, errorRate, p99 };
  }
}
