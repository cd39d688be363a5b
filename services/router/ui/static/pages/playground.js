// The query playground: a JSON request prefilled from the model's signature, the answer, its latency and
// which served entity answered (the served-model-name header).
import { api, endpointPath } from '../api.js';
import { append, clear, h, icon, pretty } from '../dom.js';
import { badge, canQuery, isExternal, stateBadges, trafficOf } from '../endpoint-state.js';
import { chatBox } from '../chat.js';

// Tasks the chat box talks to: chat models and MLflow's chat and responses agents.
const CHAT_TASKS = ['llm/v1/chat', 'agent/v1/chat', 'agent/v2/chat', 'agent/v1/responses'];

const DEFAULTS = { double: 0.0, float: 0.0, long: 0, integer: 0, boolean: false, string: '', binary: '', datetime: '1970-01-01T00:00:00' };

// An invocations body that fits the signature: dataframe_split for columns, inputs for tensors.
export function exampleFromSignature(signature) {
  if (signature && signature.serving_input_example) return signature.serving_input_example;
  const inputs = signature && signature.inputs;
  if (!Array.isArray(inputs) || !inputs.length) return null;
  if (inputs.every((i) => i.type !== 'tensor')) {
    return { dataframe_split: { columns: inputs.map((i, n) => i.name ?? `col_${n}`), data: [inputs.map((i) => DEFAULTS[i.type] ?? null)] } };
  }
  const tensor = (spec) => {
    const shape = ((spec['tensor-spec'] || {}).shape || [1]).map((d) => (d < 0 ? 1 : d));
    const build = (dims) => (dims.length ? Array.from({ length: Math.min(dims[0], 8) }, () => build(dims.slice(1))) : 0);
    return build(shape);
  };
  if (inputs.length === 1 && !inputs[0].name) return { inputs: tensor(inputs[0]) };
  return { inputs: Object.fromEntries(inputs.map((i, n) => [i.name ?? `input_${n}`, tensor(i)])) };
}

export function mount(main, { name }) {
  const history = [];
  const editor = h('textarea', { class: 'input code-input', id: 'query-input', rows: 18, spellcheck: 'false', 'aria-label': 'Request body' });
  const hint = h('p', { class: 'hint', id: 'query-hint' });
  const send = h('button', { type: 'button', class: 'btn btn-primary', id: 'send-query' }, icon('play'), 'Send request');
  const status = h('div', { class: 'response-meta', id: 'response-meta' });
  const output = h('pre', { class: 'code response', id: 'query-output' }, 'Send a request to see the answer.');
  const recent = h('tbody', {});
  const heading = h('div', { class: 'title-row' }, h('h1', {}, `Query ${name}`));
  const error = h('div', { class: 'alert alert-danger', hidden: true });
  let example = null;
  const chat = chatBox(name);
  chat.element.hidden = true;
  const tabs = h('div', { class: 'segmented', role: 'tablist', id: 'playground-mode', hidden: true },
    h('button', { type: 'button', 'data-mode': 'chat', onclick: () => showChat(true) }, 'Chat'),
    h('button', { type: 'button', 'data-mode': 'json', onclick: () => showChat(false) }, 'JSON'));
  const jsonView = h('div', { class: 'grid-2 playground' },
      h('section', { class: 'card' },
        h('div', { class: 'card-header' }, h('h2', {}, 'Request'), h('div', { class: 'actions' },
          h('button', { type: 'button', class: 'btn btn-sm', onclick: format }, 'Format'),
          h('button', { type: 'button', class: 'btn btn-sm', id: 'reset-example', onclick: () => { if (example) editor.value = pretty(example); } }, 'Reset to example'))),
        editor, hint,
        h('div', { class: 'form-actions' }, h('span', { class: 'muted small' }, 'Ctrl+Enter sends'), send)),
      h('section', { class: 'card' }, h('div', { class: 'card-header' }, h('h2', {}, 'Response'), status), output));

  function showChat(on) {
    chat.element.hidden = !on;
    jsonView.hidden = on;
    for (const b of tabs.querySelectorAll('button')) b.classList.toggle('active', (b.dataset.mode === 'chat') === on);
  }

  main.append(
    h('nav', { class: 'breadcrumb' }, h('a', { href: '#/endpoints' }, 'Serving endpoints'), h('span', {}, '/'),
      h('a', { href: `#/endpoints/${encodeURIComponent(name)}` }, name), h('span', {}, '/'), h('span', {}, 'Query')),
    h('div', { class: 'page-header' }, heading,
      h('div', { class: 'actions' }, tabs, h('code', { class: 'muted small' }, `POST /serving-endpoints/${name}/invocations`))),
    error, chat.element, jsonView,
    h('section', { class: 'card card-flush' }, h('div', { class: 'card-header padded' }, h('h2', {}, 'Recent requests'), h('span', { class: 'muted' }, 'this page only')),
      h('table', { class: 'table', id: 'recent-requests' }, h('thead', {}, h('tr', {}, ['Time', 'Status', 'Latency', 'Served by'].map((t) => h('th', { class: t === 'Latency' ? 'num' : null }, t)))), recent)));

  function format() {
    try { editor.value = pretty(JSON.parse(editor.value)); } catch (failure) { showMeta(badge('Invalid JSON', 'danger'), failure.message); }
  }

  function showMeta(...parts) { append(clear(status), parts); }

  async function sendQuery() {
    let body;
    try { body = JSON.stringify(JSON.parse(editor.value)); } catch (failure) { showMeta(badge('Invalid JSON', 'danger'), h('span', { class: 'muted' }, failure.message)); return; }
    send.disabled = true;
    showMeta(h('span', { class: 'spinner' }), ' Waiting for the answer…');
    let reply;
    try {
      reply = await api('POST', `/serving-endpoints/${encodeURIComponent(name)}/invocations`, body, { raw: true });
    } catch (failure) {
      reply = { status: failure.status, text: failure.text ?? failure.message, data: failure.data, headers: failure.headers, latencyMs: failure.latencyMs, failed: true, code: failure.code };
    }
    send.disabled = false;
    const servedBy = (reply.headers && reply.headers.get('served-model-name')) || '';
    const latency = reply.latencyMs !== undefined ? `${Math.round(reply.latencyMs)} ms` : '—';
    const ok = !reply.failed;
    showMeta(badge(ok ? `${reply.status} OK` : `${reply.status || ''} ${reply.code || 'Error'}`.trim(), ok ? 'success' : 'danger'),
      h('span', { class: 'meta-item', id: 'latency' }, h('span', { class: 'muted' }, 'Latency '), latency),
      servedBy ? h('span', { class: 'meta-item', id: 'served-by' }, h('span', { class: 'muted' }, 'Served by '), h('strong', {}, servedBy)) : null);
    output.textContent = reply.data ? pretty(reply.data) : (reply.text || '');
    output.classList.toggle('code-error', !ok);
    history.unshift([new Date().toLocaleTimeString(), reply.status, latency, servedBy]);
    history.length = Math.min(history.length, 10);
    append(clear(recent), history.map(([time, code, ms, by]) => h('tr', {}, h('td', {}, time),
      h('td', {}, badge(String(code || 'error'), code === 200 ? 'success' : 'danger')), h('td', { class: 'num' }, ms), h('td', {}, by || '—'))));
  }

  send.addEventListener('click', sendQuery);
  editor.addEventListener('keydown', (event) => {
    if (event.key === 'Enter' && (event.ctrlKey || event.metaKey)) { event.preventDefault(); sendQuery(); }
  });

  async function prefill() {
    let endpoint;
    try {
      endpoint = await api('GET', endpointPath(name));
    } catch (failure) {
      error.textContent = `Cannot load '${name}': ${failure.display}`;
      error.hidden = false;
      return;
    }
    heading.append(stateBadges(endpoint));
    if (!canQuery(endpoint.permission_level)) {
      error.textContent = `Your permission on '${name}' (${endpoint.permission_level}) does not allow queries.`;
      error.hidden = false;
      send.disabled = true;
      chat.disable();
    }
    if (CHAT_TASKS.includes(endpoint.task)) { chat.useTask(endpoint.task); tabs.hidden = false; showChat(true); }
    const config = endpoint.config || endpoint.pending_config || {};
    const shares = trafficOf(config);
    // The served entity that takes the most traffic decides the example.
    const entity = (config.served_entities || []).slice().sort((a, b) => (shares[b.name] ?? 0) - (shares[a.name] ?? 0))[0];
    if (entity && isExternal(entity)) {
      example = { messages: [{ role: 'user', content: 'Hello!' }], max_tokens: 128 };
      hint.textContent = 'A chat request; completions ({"prompt"}) and embeddings ({"input"}) work on their endpoints.';
    } else if (entity) {
      try {
        const signature = await api('GET', `/api/2.0/podium/registered-models/${encodeURIComponent(entity.entity_name)}/versions/${encodeURIComponent(entity.entity_version)}/signature`);
        example = exampleFromSignature(signature);
        hint.textContent = example
          ? (signature.serving_input_example ? `The input example saved with ${entity.entity_name} v${signature.version}.` : `Columns from the signature of ${entity.entity_name} v${signature.version}; replace the placeholder values.`)
          : `${entity.entity_name} v${signature.version} has no signature: write the request in any MLflow scoring format.`;
      } catch (failure) {
        hint.textContent = `No signature available (${failure.display}); any MLflow scoring format works.`;
      }
    }
    if (!example) example = { dataframe_split: { columns: [], data: [[]] } };
    if (!editor.value) editor.value = pretty(example);
  }

  prefill();
}
