// One endpoint: state, the rollout of a pending config, served entities, traffic, logs, gateway settings,
// permissions and the served models' grants, metrics.
import { api, endpointPath } from '../api.js';
import { lineChart } from '../chart.js';
import { append, clear, dateTime, h, icon, pretty, timeAgo } from '../dom.js';
import {
  canManage, canQuery, deploymentBadge, endpointKind, entityLabel, isExternal, replicaCounts, stateBadges, trafficBar, trafficOf,
} from '../endpoint-state.js';
import { MetricsHistory, parsePrometheus } from '../metrics.js';
import { confirmDialog } from '../dialog.js';
import { gatewayCard, inferenceCard, permissionsCard, usageCard } from './endpoint-records.js';
import { modelGrantsCard } from './model-grants.js';
import { rolloutCard, shadowSummary } from './rollout.js';

const RECORDS_EVERY = 3;   // permissions, usage and inference rows reload every third refresh

export function mount(main, { name }) {
  let endpoint = null;
  let timer = null;
  let stopped = false;
  let hasMetrics = true;
  const history = new MetricsHistory();
  const path = endpointPath(name);
  const link = `#/endpoints/${encodeURIComponent(name)}`;

  const title = h('div', { class: 'title-row' }, h('h1', {}, name));
  const actions = h('div', { class: 'actions' });
  const error = h('div', { class: 'alert alert-danger', role: 'alert', hidden: true });
  const pending = h('section', { class: 'card', id: 'pending-config', hidden: true });
  const entities = h('section', { class: 'card card-flush', id: 'served-entities' });
  const details = h('section', { class: 'card', id: 'details' });
  const manage = () => Boolean(endpoint) && canManage(endpoint.permission_level);
  const gateway = gatewayCard(name, () => endpoint, manage, () => { clearTimeout(timer); refresh(); });
  const permissions = permissionsCard(() => endpoint, manage);
  const grants = modelGrantsCard();
  const usage = usageCard(name);
  const inference = inferenceCard(name);
  let ticks = 0;
  const metrics = h('section', { class: 'card', id: 'metrics', hidden: true });
  const raw = h('pre', { class: 'code' });
  const logs = logsCard(name);
  const rollout = rolloutCard(name, () => endpoint, manage, () => { clearTimeout(timer); refresh(); });

  main.append(
    h('nav', { class: 'breadcrumb' }, h('a', { href: '#/endpoints' }, 'Serving endpoints'), h('span', {}, '/'), h('span', {}, name)),
    h('div', { class: 'page-header' }, title, actions),
    error, rollout.element, pending,
    h('div', { class: 'grid-2' },
      h('div', { class: 'stack' }, entities, logs.element),
      h('div', { class: 'stack' }, details, gateway.element, permissions.element, grants.element, usage.element)),
    metrics, inference.element,
    h('details', { class: 'card raw-json' }, h('summary', {}, 'Endpoint JSON (GET ', path, ')'), raw));

  function renderHeader() {
    append(clear(title), h('h1', {}, endpoint.name), stateBadges(endpoint), h('span', { class: `kind kind-${endpointKind(endpoint)}` }, endpointKind(endpoint)));
    const level = endpoint.permission_level;
    clear(actions);
    if (level) actions.append(h('span', { class: 'permission', id: 'permission-level', title: 'Your permission on this endpoint' }, level));
    if (canQuery(level)) actions.append(h('a', { class: 'btn', href: `${link}/query`, id: 'query-endpoint' }, icon('play'), 'Query'));
    if (canManage(level)) {
      actions.append(
        h('a', { class: 'btn', href: `${link}/edit`, id: 'edit-endpoint' }, icon('edit'), 'Edit configuration'),
        h('button', { type: 'button', class: 'btn btn-danger-ghost', id: 'delete-endpoint', onclick: remove }, icon('trash'), 'Delete'));
    }
  }

  function renderPending() {
    const config = endpoint.pending_config;
    pending.hidden = !config;
    if (!config) return;
    const state = endpoint.state || {};
    const list = config.served_entities || [];
    const ready = list.filter((e) => (e.state || {}).deployment === 'DEPLOYMENT_READY').length;
    const failed = state.config_update === 'UPDATE_FAILED';
    const percent = list.length ? Math.round((100 * ready) / list.length) : 0;
    append(clear(pending), 
      h('div', { class: 'card-header' },
        h('h2', {}, failed ? 'Configuration update failed' : `Rolling out config version ${config.config_version}`),
        h('span', { class: 'muted' }, `started ${timeAgo(config.start_time)}`)),
      failed ? h('div', { class: 'alert alert-danger', id: 'update-failure' }, h('strong', {}, 'Reason: '), failureReason(config),
        endpoint.config ? h('div', { class: 'small' }, 'The previous configuration keeps serving.') : null) : null,
      h('div', { class: `progress ${failed ? 'progress-failed' : ''}` }, h('span', { class: 'progress-fill', style: { width: `${failed ? 100 : Math.max(4, percent)}%` } })),
      h('p', { class: 'muted small' }, `${ready} of ${list.length} served entit${list.length === 1 ? 'y' : 'ies'} ready`),
      h('ul', { class: 'rollout' }, list.map((e) => h('li', {}, deploymentBadge(e.state), h('strong', {}, e.name), h('span', { class: 'muted' }, entityLabel(e)),
        h('span', { class: 'muted small' }, (e.state || {}).deployment_state_message || '')))));
  }

  function renderEntities() {
    const config = endpoint.config || endpoint.pending_config;
    append(clear(entities), h('div', { class: 'card-header padded' }, h('h2', {}, endpoint.config ? 'Served entities' : 'Served entities (pending)'),
      config ? h('span', { class: 'muted' }, `config version ${config.config_version}`) : null));
    if (!config) return;
    const shares = trafficOf(config);
    const rows = (config.served_entities || []).map((e) => h('tr', { 'data-entity': e.name },
      h('td', {}, h('strong', {}, e.name)),
      h('td', {}, isExternal(e) ? entityLabel(e) : h('span', {}, e.entity_name, h('span', { class: 'muted' }, ` v${e.entity_version}`))),
      h('td', {}, isExternal(e) ? '—' : `${e.workload_size || 'Small'}${e.scale_to_zero_enabled ? ' · scales to zero' : ''}`),
      h('td', { class: 'num' }, `${shares[e.name] ?? 0}%`),
      h('td', {}, deploymentBadge(e.state), h('div', { class: 'muted small' }, replicasText(e.state)), h('div', { class: 'muted small' }, entityMessage(e.state)))));
    entities.append(h('table', { class: 'table' },
      h('thead', {}, h('tr', {}, ['Name', 'Model', 'Workload', 'Traffic', 'State'].map((t) => h('th', { class: t === 'Traffic' ? 'num' : null }, t)))),
      h('tbody', {}, rows)),
    h('div', { class: 'padded' }, trafficBar((config.served_entities || []).map((e, index) => ({ name: e.name, percent: shares[e.name] ?? 0, index })))));
    logs.setEntities((endpoint.pending_config || endpoint.config).served_entities.map((e) => e.name));
    grants.setModels([endpoint.config, endpoint.pending_config].flatMap((c) => (c ? c.served_entities || [] : []).map((e) => e.entity_name)));
  }

  function renderDetails() {
    const tags = endpoint.tags || [];
    append(clear(details), h('h2', {}, 'Details'), h('dl', { class: 'props' },
      prop('ID', h('code', {}, endpoint.id)), prop('Creator', endpoint.creator),
      prop('Created', dateTime(endpoint.creation_timestamp)), prop('Last updated', dateTime(endpoint.last_updated_timestamp)),
      prop('Route optimized', endpoint.route_optimized ? 'yes' : 'no'),
      endpoint.task ? prop('Task', h('code', { id: 'endpoint-task' }, endpoint.task)) : null,
      endpoint.description ? prop('Description', endpoint.description) : null,
      prop('Tags', tags.length ? h('div', { class: 'chips' }, tags.map((t) => h('span', { class: 'chip' }, t.value ? `${t.key}: ${t.value}` : t.key))) : h('span', { class: 'muted' }, 'none')),
      prop('Query URL', h('code', { class: 'wrap' }, `${location.origin}/serving-endpoints/${endpoint.name}/invocations`))));
    gateway.render();
  }

  async function refreshMetrics() {
    if (!hasMetrics) return;
    try {
      const answer = await api('GET', `${path}/metrics`, undefined, { raw: true, accept: 'text/plain' });
      history.add(Date.now(), { ...parsePrometheus(answer.text), ...replicaFamilies(endpoint) });
      const charts = history.derive();
      metrics.hidden = !charts.length;
      append(clear(metrics), h('div', { class: 'card-header' }, h('h2', {}, 'Metrics'), h('span', { class: 'muted' }, 'sampled from GET …/metrics while this page is open')),
        h('div', { class: 'charts' }, charts.slice(0, 12).map((c, i) => h('figure', { class: 'chart-box' }, h('figcaption', {}, c.title), lineChart(c.points, { format: c.format, color: ['#4f46e5', '#0ea5e9', '#14b8a6', '#f59e0b'][i % 4] })))),
        shadowSummary(answer.text));
    } catch {
      hasMetrics = false;   // this server exports no per-endpoint metrics: show no chart rather than an invented one
      metrics.hidden = true;
    }
  }

  async function refresh() {
    if (stopped) return;
    try {
      endpoint = await api('GET', path);
      error.hidden = true;
      renderHeader(); renderPending(); renderEntities(); renderDetails(); rollout.render();
      raw.textContent = pretty(endpoint);
      refreshMetrics();
      if (ticks++ % RECORDS_EVERY === 0) { permissions.reload(); grants.reload(); if (manage()) { usage.reload(); inference.reload(); } }
      usage.element.hidden = !manage();
      inference.element.hidden = !manage();
    } catch (failure) {
      error.textContent = failure.status === 404 ? `Endpoint '${name}' does not exist (or you may not view it).` : `Cannot load '${name}': ${failure.display}`;
      error.hidden = false;
    }
    const updating = endpoint && (endpoint.state || {}).config_update === 'IN_PROGRESS';
    if (!stopped) timer = setTimeout(refresh, updating ? 1500 : 4000);
  }

  async function remove() {
    const confirmed = await confirmDialog({
      title: `Delete endpoint ${name}?`, body: 'Its replicas stop and its URL stops answering. This cannot be undone.', confirm: 'Delete endpoint', danger: true,
    });
    if (!confirmed) return;
    try {
      await api('DELETE', path);
      location.hash = '#/endpoints';
    } catch (failure) {
      error.textContent = `Cannot delete: ${failure.display}`;
      error.hidden = false;
    }
  }

  refresh();
  return () => { stopped = true; clearTimeout(timer); };
}

// The served entities' replica counts as gauges, so the charts show replicas over time beside the router's metrics.
function replicaFamilies(endpoint) {
  const counts = replicaCounts(endpoint);
  if (!counts) return {};
  return { replicas_desired: { type: 'gauge', sums: { replicas_desired: counts.desired } },
    replicas_ready: { type: 'gauge', sums: { replicas_ready: counts.ready } } };
}

function replicasText(state) {
  if (!state || !('desired_replicas' in state)) return '';
  const starting = state.starting_replicas ? `, ${state.starting_replicas} starting` : '';
  return `${state.ready_replicas ?? 0} of ${state.desired_replicas} replicas ready${starting}`;
}

// The deployment message, unless it only repeats the replica count shown above it.
function entityMessage(state) {
  const message = (state && state.deployment_state_message) || '';
  return state && 'desired_replicas' in state && /^\d+ replicas? ready$/.test(message) ? '' : message;
}

function prop(label, value) {
  return [h('dt', {}, label), h('dd', {}, value ?? '')];
}

function failureReason(config) {
  const states = (config.served_entities || []).map((e) => [e.name, e.state || {}]);
  const failed = states.filter(([, s]) => s.deployment === 'DEPLOYMENT_FAILED' && s.deployment_state_message);
  const messages = (failed.length ? failed : states.filter(([, s]) => s.deployment_state_message)).map(([n, s]) => `${n}: ${s.deployment_state_message}`);
  return messages.join('; ') || 'The server gave no reason.';
}

// Served-model logs and build logs (GET .../served-models/{name}/logs | build-logs), on demand.
function logsCard(endpointName) {
  let names = [];
  const select = h('select', { class: 'input input-sm', 'aria-label': 'Served entity' });
  const kind = h('select', { class: 'input input-sm', 'aria-label': 'Log kind' }, h('option', { value: 'logs' }, 'Server logs'), h('option', { value: 'build-logs' }, 'Build logs'));
  const output = h('pre', { class: 'code logs', id: 'logs-output' }, 'Choose a served entity.');
  const load = async () => {
    if (!select.value) return;
    output.textContent = 'Loading…';
    output.classList.remove('code-error', 'code-muted');
    try {
      const answer = await api('GET', `${endpointPath(endpointName)}/served-models/${encodeURIComponent(select.value)}/${kind.value}`);
      output.textContent = answer.logs || '(empty)';
      output.scrollTop = output.scrollHeight;
    } catch (failure) {
      const missingApi = failure.status === 404 && failure.code === 'NOT_FOUND';
      output.textContent = missingApi
        ? `This server has no ${kind.value === 'logs' ? 'logs' : 'build logs'} API yet (${failure.message}).`
        : `Cannot load logs: ${failure.display}`;
      output.classList.add(missingApi ? 'code-muted' : 'code-error');
    }
  };
  select.addEventListener('change', load);
  kind.addEventListener('change', load);
  const element = h('section', { class: 'card', id: 'logs' },
    h('div', { class: 'card-header' }, h('h2', {}, 'Logs'),
      h('div', { class: 'actions' }, select, kind, h('button', { type: 'button', class: 'btn btn-sm', onclick: load, title: 'Reload' }, icon('refresh')))),
    output);
  return {
    element,
    setEntities(next) {
      if (next.join('\n') === names.join('\n')) return;
      const keep = select.value;
      names = next;
      append(clear(select), names.map((n) => h('option', { value: n, selected: n === keep }, n)));
      if (!keep || !names.includes(keep)) load();
    },
  };
}
