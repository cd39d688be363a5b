// The endpoints list: every endpoint's state, kind and served entities, refreshed live.
import { api, endpointPath } from '../api.js';
import { append, clear, dateTime, h, icon, timeAgo } from '../dom.js';
import { endpointKind, entityLabel, replicaCounts, stateBadges } from '../endpoint-state.js';
import { MetricsHistory, parsePrometheus } from '../metrics.js';

const REFRESH_MS = 3000;
const WINDOW_SAMPLES = 100;   // five minutes of samples at REFRESH_MS: the columns' "last minutes"
const SAMPLED_ENDPOINTS = 50;   // endpoints whose replicas, rate and latency columns are sampled
const PARALLEL_SAMPLES = 8;     // requests in flight at once while sampling

const number = (v, digits) => (Number.isFinite(v) ? v.toFixed(digits) : '—');

export function mount(main) {
  let timer = null;
  let stopped = false;
  let endpoints = null;
  const histories = new Map();   // endpoint name → MetricsHistory of its GET …/metrics samples
  const details = new Map();     // endpoint name → its GET answer (the list's items carry no replica counts)
  const filter = h('input', { type: 'search', class: 'input input-search', placeholder: 'Filter by name or model', 'aria-label': 'Filter endpoints' });
  const status = h('span', { class: 'live', title: `Refreshed every ${REFRESH_MS / 1000} s` });
  const error = h('div', { class: 'alert alert-danger', role: 'alert', hidden: true });
  const body = h('div', { class: 'card card-flush' });

  main.append(
    h('div', { class: 'page-header' },
      h('div', {}, h('h1', {}, 'Serving endpoints'), h('p', { class: 'muted' }, 'Models served behind the Databricks-compatible API. ', status)),
      h('div', { class: 'actions' }, filter,
        h('a', { class: 'btn btn-primary', href: '#/endpoints/new', id: 'create-endpoint' }, icon('plus'), 'Create endpoint'))),
    error, body);

  filter.addEventListener('input', () => render());

  // The endpoints the filter shows: the ones whose columns are sampled, so that filtering a large workspace
  // down to one endpoint shows its figures.
  function matching(all) {
    const needle = filter.value.trim().toLowerCase();
    return all.filter((e) => !needle || JSON.stringify([e.name, e.config]).toLowerCase().includes(needle));
  }

  function render() {
    if (endpoints === null) { append(clear(body), h('div', { class: 'empty' }, h('span', { class: 'spinner' }), ' Loading…')); return; }
    clear(body);
    if (!endpoints.length) {
      body.append(h('div', { class: 'empty' },
        h('h2', {}, 'No serving endpoints yet'),
        h('p', { class: 'muted' }, 'Create one from a model in the registry; it is ready to query once its replicas start.'),
        h('a', { class: 'btn btn-primary', href: '#/endpoints/new' }, icon('plus'), 'Create endpoint')));
      return;
    }
    const shown = matching(endpoints);
    const rows = shown.map((endpoint) => {
      const entities = ((endpoint.config || {}).served_entities) || [];
      const link = `#/endpoints/${encodeURIComponent(endpoint.name)}`;
      const replicas = details.has(endpoint.name) ? replicaCounts(details.get(endpoint.name)) : null;
      const history = histories.get(endpoint.name);
      const summary = history ? history.summary() : null;
      const span = summary ? `over the last ${Math.round(summary.seconds)} s` : 'collecting samples';
      return h('tr', { 'data-endpoint': endpoint.name },
        h('td', { class: 'nowrap' }, h('a', { class: 'strong-link', href: link }, endpoint.name)),
        h('td', {}, stateBadges(endpoint)),
        h('td', {}, h('span', { class: `kind kind-${endpointKind(endpoint)}` }, endpointKind(endpoint))),
        h('td', {}, h('div', { class: 'chips' }, entities.map((e) => h('span', { class: 'chip', title: e.name }, entityLabel(e))))),
        h('td', { class: 'num', 'data-col': 'replicas', title: replicas ? `${replicas.ready} ready of ${replicas.desired} desired${replicas.starting ? `, ${replicas.starting} starting` : ''}` : 'served by the provider' },
          replicas ? `${replicas.ready} / ${replicas.desired}` : '—'),
        h('td', { class: 'num', 'data-col': 'rps', title: span }, summary ? number(summary.rps, 2) : '—'),
        h('td', { class: 'num', 'data-col': 'p50', title: span }, summary ? number(summary.p50, 1) : '—'),
        h('td', { class: 'num', 'data-col': 'p99', title: span }, summary ? number(summary.p99, 1) : '—'),
        h('td', { class: 'muted' }, endpoint.creator || ''),
        h('td', { class: 'muted nowrap', title: dateTime(endpoint.last_updated_timestamp) }, timeAgo(endpoint.last_updated_timestamp)));
    });
    body.append(h('table', { class: 'table', id: 'endpoints-table' },
      h('thead', {}, h('tr', {}, [['Name'], ['State'], ['Kind'], ['Served entities'], ['Replicas', 'ready / desired'], ['Req/s', 'requests per second, last minutes'],
        ['p50 ms', 'median latency, last minutes'], ['p99 ms', '99th percentile latency, last minutes'], ['Creator'], ['Last updated']]
        .map(([t, title]) => h('th', { class: title ? 'num' : null, title }, t)))),
      h('tbody', {}, rows.length ? rows : h('tr', {}, h('td', { colspan: 10, class: 'muted center' }, 'No endpoint matches the filter.')))));
  }

  async function refresh() {
    if (stopped) return;
    if (!document.hidden) {
      try {
        const answer = await api('GET', '/api/2.0/serving-endpoints');
        endpoints = (answer.endpoints || []).slice().sort((a, b) => a.name.localeCompare(b.name));
        await sampleMetrics();
        error.hidden = true;
        status.textContent = `${endpoints.length} endpoint${endpoints.length === 1 ? '' : 's'} · live · updated ${new Date().toLocaleTimeString()}`;
      } catch (failure) {
        error.textContent = `Cannot list endpoints: ${failure.display}`;
        error.hidden = false;
      }
      if (!stopped) render();
    }
    if (!stopped) timer = setTimeout(refresh, REFRESH_MS);
  }

  // Per endpoint and refresh, GET …/metrics (the rate and latency columns are differences of samples) and
  // GET the endpoint itself: replica counts are in its served entities' state, which the list leaves out.
  // Bounded: the first SAMPLED_ENDPOINTS endpoints the filter shows, PARALLEL_SAMPLES requests at a time, so
  // a page open on a large workspace never floods the router (the others show — in those columns).
  async function sampleMetrics() {
    const sampled = matching(endpoints).slice(0, SAMPLED_ENDPOINTS);
    const names = new Set(sampled.map((e) => e.name));
    for (const map of [histories, details]) for (const name of [...map.keys()]) if (!names.has(name)) map.delete(name);
    for (let start = 0; start < sampled.length; start += PARALLEL_SAMPLES) {
      await Promise.all(sampled.slice(start, start + PARALLEL_SAMPLES).map(sampleOne));
    }
  }

  async function sampleOne(endpoint) {
    try { details.set(endpoint.name, await api('GET', endpointPath(endpoint.name))); } catch { details.delete(endpoint.name); }
    try {
      const answer = await api('GET', `${endpointPath(endpoint.name)}/metrics`, undefined, { raw: true, accept: 'text/plain' });
      if (!histories.has(endpoint.name)) histories.set(endpoint.name, new MetricsHistory(WINDOW_SAMPLES));
      histories.get(endpoint.name).add(Date.now(), parsePrometheus(answer.text));
    } catch { /* not exported for this endpoint (or not viewable): the columns show — */ }
  }

  render();
  refresh();
  return () => { stopped = true; clearTimeout(timer); };
}
