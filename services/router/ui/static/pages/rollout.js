// The endpoint page's canary rollout card (docs/progressive-delivery.md): the steps with the current one
// marked, the new config's share, the latest judgement of both sides, the decision and why, the event log,
// and (CAN_MANAGE) pause, resume, promote and abort. Read from GET …/rollout on each refresh while shown.
// Its charts draw both sides (the new config, the serving one) from the rollout's judgements since it began
// (GET …/rollout's `judgements`, then only the newer ones on each refresh): they count what the control
// plane's gates judge, per deployment and over every router, which the metrics export (one router's, by
// served entity name, which both configs may share) cannot.
// Also the shadow summary of the endpoint's metrics card: per shadow entity, how its copies compared.
import { api, endpointPath } from '../api.js';
import { append, clear, dateTime, h } from '../dom.js';
import { RolloutHistory, compact } from '../metrics.js';

const SIDES = [['candidate', 'New config', '#f59e0b'], ['incumbent', 'Serving config', '#4f46e5']];
const DECISION_BADGES = { HOLD: 'badge-neutral', ADVANCE: 'badge-success', PROMOTE: 'badge-success', ROLLBACK: 'badge-danger' };
const ACTIONS = { RUNNING: ['pause', 'promote', 'abort'], PAUSED: ['resume', 'promote', 'abort'], WAITING: ['abort'] };

export function rolloutCard(name, getEndpoint, manage, onChange) {
  const element = h('section', { class: 'card', id: 'rollout', hidden: true });
  let history = new RolloutHistory();
  const failure = h('div', { class: 'alert alert-danger', id: 'rollout-error', hidden: true });

  async function render() {
    const endpoint = getEndpoint();
    element.hidden = !(endpoint && endpoint.rollout);
    if (element.hidden) return;
    let answer;
    try {
      const since = history.latest;   // the judgements the charts hold already are not read again
      answer = await api('GET', `${endpointPath(name)}/rollout${since === null ? '' : `?judgements_since=${since}`}`);
    } catch (error) {
      append(clear(element), h('h2', {}, 'Rollout'), h('p', { class: 'muted' }, `Cannot read the rollout: ${error.display}`));
      return;
    }
    const rollout = answer.rollout;
    if (history.configVersion !== rollout.config_version) history = new RolloutHistory(rollout.config_version);
    for (const judgement of answer.judgements || []) history.add(judgement.timestamp, judgement);
    const latest = rollout.last_judgement;
    if (latest) history.add(latest.timestamp || Date.now(), latest);
    const steps = rollout.plan.steps.map((s, i) => h('span', {
      class: `chip ${i + 1 === rollout.step && ['RUNNING', 'PAUSED'].includes(rollout.phase) ? 'chip-active' : ''}`,
    }, `${s.traffic_percentage}%`));
    const judgement = rollout.last_judgement;
    append(clear(element),
      h('div', { class: 'card-header' }, h('h2', {}, `Rollout of config version ${rollout.config_version}`),
        h('span', { class: `badge badge-${rollout.phase.toLowerCase()}`, id: 'rollout-phase' }, rollout.phase)),
      h('p', {}, 'Steps: ', steps, h('span', { class: 'muted' }, ` step ${rollout.step} of ${rollout.steps}, new config at ${rollout.candidate_traffic_percentage}%`)),
      h('p', { class: 'small muted', id: 'rollout-gates' }, `Gates: ${gatesText(rollout.plan.gates || {})}`),
      rollout.reason ? h('p', { class: 'small', id: 'rollout-reason' }, rollout.reason) : null,
      judgement ? h('table', { class: 'table' },
        h('thead', {}, h('tr', {}, ['', 'Requests', 'Errors', 'Error rate', 'p99 (ms)'].map((t) => h('th', {}, t)))),
        h('tbody', {}, ['candidate', 'incumbent'].map((side) => h('tr', {}, h('td', {}, side === 'candidate' ? 'New config' : 'Serving config'),
          h('td', {}, judgement[side].requests), h('td', {}, judgement[side].errors),
          h('td', {}, `${(100 * judgement[side].error_rate).toFixed(2)}%`), h('td', {}, judgement[side].p99_latency_ms))))) : null,
      judgement && judgement.shadow ? h('p', { class: 'small', id: 'rollout-shadow' }, `Shadow agreement of the new config: ${(100 * judgement.shadow.agreement).toFixed(1)}% of ${judgement.shadow.comparisons} comparisons`,
        h('span', { class: 'muted' }, ` (equal ${judgement.shadow.equal}, numeric difference ${judgement.shadow.numeric_difference}, different ${judgement.shadow.different}, failed ${judgement.shadow.errors}${judgedText(judgement.shadow)})`)) : null,
      judgement ? h('p', { id: 'rollout-decision' }, h('span', { class: `badge ${DECISION_BADGES[judgement.decision] || 'badge-neutral'}` }, judgement.decision),
        h('span', { class: 'small' }, ` after ${judgement.window_s} s of step ${judgement.step}: ${judgement.reason}`)) : null,
      rolloutCharts(history, rollout.phase),
      manage() ? h('div', { class: 'actions' }, (ACTIONS[rollout.phase] || []).map((action) => h('button', {
        type: 'button', class: `btn btn-sm ${action === 'abort' ? 'btn-danger-ghost' : ''}`, id: `rollout-${action}`, onclick: () => act(action),
      }, action[0].toUpperCase() + action.slice(1)))) : null,
      failure,
      h('details', {}, h('summary', {}, `Events (${answer.events.length})`), h('ul', { class: 'small' },
        answer.events.map((e) => h('li', {}, dateTime(e.timestamp), ` · v${e.config_version} · ${e.phase} · step ${e.step}: ${e.message}`)))));
  }

  async function act(action) {
    failure.hidden = true;
    try {
      await api('POST', `${endpointPath(name)}/rollout/${action}`, {});
      onChange();
    } catch (error) {
      failure.textContent = `Cannot ${action}: ${error.display}`;
      failure.hidden = false;
    }
  }

  return { element, render };
}

// A judge endpoint's verdicts on differing text answers, when the shadow has one.
function judgedText(shadow) {
  const judged = (shadow.judge_agree || 0) + (shadow.judge_disagree || 0) + (shadow.judge_errors || 0);
  return judged ? `; judged: agree ${shadow.judge_agree || 0}, disagree ${shadow.judge_disagree || 0}, not judged ${shadow.judge_errors || 0}` : '';
}

// The plan's gates in words, as the control plane judges them (services/control_plane/rollout_policy.py).
function gatesText(gates) {
  const parts = [];
  if ('max_error_rate_increase' in gates) parts.push(`error rate at most ${(100 * gates.max_error_rate_increase).toFixed(1)}% above the serving config's`);
  if ('max_p99_latency_ratio' in gates) parts.push(`p99 at most ${gates.max_p99_latency_ratio} × the serving config's + ${gates.p99_latency_slack_ms || 0} ms`);
  if (gates.min_shadow_agreement !== undefined) parts.push(`shadow agreement at least ${(100 * gates.min_shadow_agreement).toFixed(1)}% (from ${gates.min_shadow_comparisons} comparisons)`);
  return parts.join('; ') || 'none';
}

function rolloutCharts(history, phase) {
  if (!history.samples.length && !['RUNNING', 'PAUSED'].includes(phase)) return null;
  const series = Object.fromEntries(SIDES.map(([side]) => [side, history.series(side)]));
  const chart = (title, key, format) => h('figure', { class: 'chart-box', 'data-chart': key }, h('figcaption', {}, title),
    pairChart(SIDES.map(([side, , color]) => ({ side, color, points: series[side][key] })), format));
  return h('div', { id: 'rollout-charts' },
    h('div', { class: 'traffic-legend' }, SIDES.map(([side, label, color]) => h('span', { class: 'legend-item', 'data-side': side },
      h('span', { class: 'legend-swatch', style: { background: color } }), label))),
    h('div', { class: 'charts' }, chart('Requests / s', 'rate', compact), chart('5xx error rate (%)', 'errorRate', compact),
      chart('p99 latency over the step (ms)', 'p99', compact)));
}

const SVG = 'http://www.w3.org/2000/svg';

function svg(tag, attrs) {
  const node = document.createElementNS(SVG, tag);
  for (const [key, value] of Object.entries(attrs)) node.setAttribute(key, String(value));
  return node;
}

// Both sides' lines on one time axis and one value axis (chart.js's lineChart draws a single series).
function pairChart(lines, format) {
  const [width, height] = [300, 120];
  const pad = { top: 10, right: 6, bottom: 18, left: 34 };
  const chart = svg('svg', { viewBox: `0 0 ${width} ${height}`, class: 'chart', role: 'img', preserveAspectRatio: 'none' });
  const all = lines.flatMap((l) => l.points).filter((p) => Number.isFinite(p[1]));
  const max = Math.max(1e-9, ...all.map((p) => p[1])) > 1e-9 ? Math.max(...all.map((p) => p[1])) : 1;
  const [innerW, innerH] = [width - pad.left - pad.right, height - pad.top - pad.bottom];
  for (const fraction of [0, 0.5, 1]) {
    const y = pad.top + innerH * (1 - fraction);
    chart.append(svg('line', { x1: pad.left, x2: width - pad.right, y1: y, y2: y, class: 'chart-grid' }));
    const label = svg('text', { x: pad.left - 6, y: y + 4, 'text-anchor': 'end', class: 'chart-label' });
    label.textContent = format(max * fraction);
    chart.append(label);
  }
  const times = all.map((p) => p[0]);
  if (new Set(times).size < 2) {
    const wait = svg('text', { x: pad.left + innerW / 2, y: pad.top + innerH / 2, 'text-anchor': 'middle', class: 'chart-label' });
    wait.textContent = 'collecting judgements…';
    chart.append(wait);
    return chart;
  }
  const [t0, t1] = [Math.min(...times), Math.max(...times)];
  const x = (t) => pad.left + (innerW * (t - t0)) / Math.max(1, t1 - t0);
  const y = (v) => pad.top + innerH * (1 - v / max);
  for (const { side, color, points } of [...lines].reverse()) {   // the new config's line drawn last, on top
    const d = points.filter((p) => Number.isFinite(p[1])).map((p, i) => `${i ? 'L' : 'M'}${x(p[0]).toFixed(1)},${y(p[1]).toFixed(1)}`).join('');
    if (d) chart.append(svg('path', { d, fill: 'none', stroke: color, 'stroke-width': 1.8, 'vector-effect': 'non-scaling-stroke', 'data-series': side }));
  }
  const span = svg('text', { x: width - pad.right, y: height - 4, 'text-anchor': 'end', class: 'chart-label', 'data-span-s': Math.round((t1 - t0) / 1000) });
  span.textContent = `last ${Math.round((t1 - t0) / 1000)} s`;
  chart.append(span);
  return chart;
}

const OUTCOMES = ['equal', 'numeric_difference', 'different', 'error', 'dropped'];
const JUDGED = ['judge_agree', 'judge_disagree', 'judge_error'];   // a shadow with a judge endpoint

// The endpoint's shadow entities as a table (outcome counts since the router started, agreement, largest
// numeric difference) from its Prometheus text (GET …/metrics); null when it has none.
export function shadowSummary(text) {
  const entities = {};
  for (const line of text.split('\n')) {
    const match = line.match(/^podium_router_shadow_(requests_total|max_abs_difference)\{([^}]*)\}\s+(\S+)/);
    if (!match) continue;
    const labels = Object.fromEntries([...match[2].matchAll(/(\w+)="([^"]*)"/g)].map((m) => [m[1], m[2]]));
    const entity = entities[labels.served_entity_name] || (entities[labels.served_entity_name] = { max: 0 });
    if (match[1] === 'max_abs_difference') entity.max = Number(match[3]);
    else entity[labels.outcome] = (entity[labels.outcome] || 0) + Number(match[3]);
  }
  const names = Object.keys(entities);
  if (!names.length) return null;
  // As the rollout gate counts: a judged agreement agrees, a text the judge could not judge is no comparison.
  const agreement = (e) => {
    const agreed = (e.equal || 0) + (e.numeric_difference || 0) + (e.judge_agree || 0);
    const compared = agreed + (e.different || 0) + (e.error || 0) + (e.judge_disagree || 0);
    return compared ? `${((100 * agreed) / compared).toFixed(1)}%` : '–';
  };
  const judged = names.some((name) => JUDGED.some((o) => entities[name][o]));
  const outcomes = judged ? [...OUTCOMES, ...JUDGED] : OUTCOMES;
  const headers = ['Shadow entity', 'Equal', 'Numeric difference', 'Different', 'Failed', 'Dropped',
    ...(judged ? ['Judged agree', 'Judged disagree', 'Judge failed'] : []), 'Agreement', 'Largest difference'];
  return h('div', { id: 'shadow-summary' }, h('h3', {}, 'Shadow comparisons'),
    h('table', { class: 'table' },
      h('thead', {}, h('tr', {}, headers.map((t) => h('th', {}, t)))),
      h('tbody', {}, names.map((name) => h('tr', { 'data-entity': name }, h('td', {}, name),
        outcomes.map((o) => h('td', { 'data-outcome': o }, entities[name][o] || 0)),
        h('td', { 'data-outcome': 'agreement' }, agreement(entities[name])),
        h('td', {}, entities[name].max ? entities[name].max.toPrecision(3) : '–'))))));
}
