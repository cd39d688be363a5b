// The endpoint page's canary rollout card (docs/progressive-delivery.md): the steps with the current one
// marked, the new config's share, the latest judgement of both sides, the decision and why, the event log,
// and (CAN_MANAGE) pause, resume, promote and abort. Read from GET …/rollout on each refresh while shown.
// Also the shadow summary of the endpoint's metrics card: per shadow entity, how its copies compared.
import { api, endpointPath } from '../api.js';
import { append, clear, dateTime, h } from '../dom.js';

const ACTIONS = { RUNNING: ['pause', 'promote', 'abort'], PAUSED: ['resume', 'promote', 'abort'], WAITING: ['abort'] };

export function rolloutCard(name, getEndpoint, manage, onChange) {
  const element = h('section', { class: 'card', id: 'rollout', hidden: true });
  const failure = h('div', { class: 'alert alert-danger', id: 'rollout-error', hidden: true });

  async function render() {
    const endpoint = getEndpoint();
    element.hidden = !(endpoint && endpoint.rollout);
    if (element.hidden) return;
    let answer;
    try {
      answer = await api('GET', `${endpointPath(name)}/rollout`);
    } catch (error) {
      append(clear(element), h('h2', {}, 'Rollout'), h('p', { class: 'muted' }, `Cannot read the rollout: ${error.display}`));
      return;
    }
    const rollout = answer.rollout;
    const steps = rollout.plan.steps.map((s, i) => h('span', {
      class: `chip ${i + 1 === rollout.step && ['RUNNING', 'PAUSED'].includes(rollout.phase) ? 'chip-active' : ''}`,
    }, `${s.traffic_percentage}%`));
    const judgement = rollout.last_judgement;
    append(clear(element),
      h('div', { class: 'card-header' }, h('h2', {}, `Rollout of config version ${rollout.config_version}`),
        h('span', { class: `badge badge-${rollout.phase.toLowerCase()}`, id: 'rollout-phase' }, rollout.phase)),
      h('p', {}, 'Steps: ', steps, h('span', { class: 'muted' }, ` step ${rollout.step} of ${rollout.steps}, new config at ${rollout.candidate_traffic_percentage}%`)),
      rollout.reason ? h('p', { class: 'small', id: 'rollout-reason' }, rollout.reason) : null,
      judgement ? h('table', { class: 'table' },
        h('thead', {}, h('tr', {}, ['', 'Requests', 'Errors', 'Error rate', 'p99 (ms)'].map((t) => h('th', {}, t)))),
        h('tbody', {}, ['candidate', 'incumbent'].map((side) => h('tr', {}, h('td', {}, side === 'candidate' ? 'New config' : 'Serving config'),
          h('td', {}, judgement[side].requests), h('td', {}, judgement[side].errors),
          h('td', {}, `${(100 * judgement[side].error_rate).toFixed(2)}%`), h('td', {}, judgement[side].p99_latency_ms))))) : null,
      judgement && judgement.shadow ? h('p', { class: 'small', id: 'rollout-shadow' }, `Shadow agreement of the new config: ${(100 * judgement.shadow.agreement).toFixed(1)}% of ${judgement.shadow.comparisons} comparisons`,
        h('span', { class: 'muted' }, ` (equal ${judgement.shadow.equal}, numeric difference ${judgement.shadow.numeric_difference}, different ${judgement.shadow.different}, failed ${judgement.shadow.errors})`)) : null,
      judgement ? h('p', { class: 'muted small' }, `${judgement.decision} after ${judgement.window_s} s: ${judgement.reason}`) : null,
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

const OUTCOMES = ['equal', 'numeric_difference', 'different', 'error', 'dropped'];

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
  const agreement = (e) => {
    const compared = (e.equal || 0) + (e.numeric_difference || 0) + (e.different || 0) + (e.error || 0);
    return compared ? `${((100 * ((e.equal || 0) + (e.numeric_difference || 0))) / compared).toFixed(1)}%` : '–';
  };
  return h('div', { id: 'shadow-summary' }, h('h3', {}, 'Shadow comparisons'),
    h('table', { class: 'table' },
      h('thead', {}, h('tr', {}, ['Shadow entity', 'Equal', 'Numeric difference', 'Different', 'Failed', 'Dropped', 'Agreement', 'Largest difference'].map((t) => h('th', {}, t)))),
      h('tbody', {}, names.map((name) => h('tr', {}, h('td', {}, name), OUTCOMES.map((o) => h('td', {}, entities[name][o] || 0)),
        h('td', {}, agreement(entities[name])), h('td', {}, entities[name].max ? entities[name].max.toPrecision(3) : '–'))))));
}
