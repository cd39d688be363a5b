// The endpoints list: every endpoint's state, kind and served entities, refreshed live.
import { api } from '../api.js';
import { append, clear, dateTime, h, icon, timeAgo } from '../dom.js';
import { endpointKind, entityLabel, stateBadges } from '../endpoint-state.js';

const REFRESH_MS = 3000;

export function mount(main) {
  let timer = null;
  let stopped = false;
  let endpoints = null;
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
    const needle = filter.value.trim().toLowerCase();
    const shown = endpoints.filter((e) => !needle || JSON.stringify([e.name, e.config]).toLowerCase().includes(needle));
    const rows = shown.map((endpoint) => {
      const entities = ((endpoint.config || {}).served_entities) || [];
      const link = `#/endpoints/${encodeURIComponent(endpoint.name)}`;
      return h('tr', { 'data-endpoint': endpoint.name },
        h('td', {}, h('a', { class: 'strong-link', href: link }, endpoint.name)),
        h('td', {}, stateBadges(endpoint)),
        h('td', {}, h('span', { class: `kind kind-${endpointKind(endpoint)}` }, endpointKind(endpoint))),
        h('td', {}, h('div', { class: 'chips' }, entities.map((e) => h('span', { class: 'chip', title: e.name }, entityLabel(e))))),
        h('td', { class: 'muted' }, endpoint.creator || ''),
        h('td', { class: 'muted nowrap', title: dateTime(endpoint.last_updated_timestamp) }, timeAgo(endpoint.last_updated_timestamp)));
    });
    body.append(h('table', { class: 'table', id: 'endpoints-table' },
      h('thead', {}, h('tr', {}, ['Name', 'State', 'Kind', 'Served entities', 'Creator', 'Last updated'].map((t) => h('th', {}, t)))),
      h('tbody', {}, rows.length ? rows : h('tr', {}, h('td', { colspan: 6, class: 'muted center' }, 'No endpoint matches the filter.')))));
  }

  async function refresh() {
    if (stopped) return;
    if (!document.hidden) {
      try {
        const answer = await api('GET', '/api/2.0/serving-endpoints');
        endpoints = (answer.endpoints || []).slice().sort((a, b) => a.name.localeCompare(b.name));
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

  render();
  refresh();
  return () => { stopped = true; clearTimeout(timer); };
}
