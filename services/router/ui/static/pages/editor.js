// Create an endpoint or edit its config: models from the registry, workload, scale to zero, traffic split.
import { api, endpointPath } from '../api.js';
import { append, clear, h, icon, pretty } from '../dom.js';
import { colorFor, defaultEntityName, isExternal, trafficBar, trafficOf } from '../endpoint-state.js';

const NAME_RULE = /^[A-Za-z0-9][A-Za-z0-9_-]{0,62}$/;
const SIZES = [['Small', '0–4 concurrent requests'], ['Medium', '8–16 concurrent requests'], ['Large', '16–64 concurrent requests']];
// Output-only fields of a served entity: dropped when an existing config is sent back as input.
const OUTPUT_FIELDS = ['state', 'creator', 'creation_timestamp', 'foundation_model'];

const PROVIDERS = {   // provider → [its config field, the base-URL field, the key reference's path in the config]
  openai: ['openai_config', 'openai_api_base', ['openai_api_key']],
  anthropic: ['anthropic_config', 'anthropic_api_base', ['anthropic_api_key']],
  custom: ['custom_provider_config', 'custom_provider_url', ['bearer_token_auth', 'token']],
  cohere: ['cohere_config', 'cohere_api_base', ['cohere_api_key']],
  'databricks-model-serving': ['databricks_model_serving_config', 'databricks_workspace_url', ['databricks_api_token']],
  // The form edits the URL and the main key; their other fields (region, model family, project, Azure's
  // deployment) come from the API and are kept as they are when the form saves.
  'amazon-bedrock': ['amazon_bedrock_config', 'bedrock_api_base', ['aws_secret_access_key']],
  'google-cloud-vertex-ai': ['google_cloud_vertex_ai_config', 'vertex_api_base', ['private_key']],
};
const TASKS = ['llm/v1/chat', 'llm/v1/completions', 'llm/v1/embeddings'];
const SECRET_REFERENCE = /^\{\{secrets\/[^/{}]+\/[^/{}]+\}\}$/;

// The parts of an external_model the form edits: {provider, task, name, base, key}.
function externalFields(model) {
  const [configField, baseField, keyPath] = PROVIDERS[model.provider] || PROVIDERS.openai;
  const config = model[configField] || {};
  const key = keyPath.reduce((value, part) => (value || {})[part], config) || '';
  return { provider: model.provider || 'openai', task: model.task || 'llm/v1/chat', name: model.name || '', base: config[baseField] || '', key };
}

function externalModel(fields, previous = {}) {
  const [configField, baseField, keyPath] = PROVIDERS[fields.provider];
  const config = { ...(previous.provider === fields.provider ? previous[configField] : {}) };
  if (fields.base) config[baseField] = fields.base; else delete config[baseField];
  if (keyPath.length === 2) config[keyPath[0]] = { [keyPath[1]]: fields.key };
  else config[keyPath[0]] = fields.key;
  const model = { ...previous, provider: fields.provider, name: fields.name, task: fields.task, [configField]: config };
  for (const [other] of Object.values(PROVIDERS)) if (other !== configField) delete model[other];
  return model;
}

let nextUid = 1;

export function mount(main, { mode, name }) {
  const creating = mode === 'create';
  const form = { name: '', entities: [], traffic: {}, trafficTouched: false };
  let models = null;          // [{name, versions: [{version, aliases}], aliases}] or null while loading
  let registryError = '';
  let jsonMode = false;

  const error = h('div', { class: 'alert alert-danger', role: 'alert', id: 'save-error', hidden: true });
  const notice = h('div', { class: 'alert alert-info', hidden: true });
  const nameInput = h('input', { class: 'input', id: 'endpoint-name', placeholder: 'e.g. iris-classifier', autocomplete: 'off', spellcheck: 'false' });
  const entityList = h('div', { class: 'entity-list' });
  const traffic = h('div', { class: 'traffic-editor', id: 'traffic-editor' });
  const preview = h('pre', { class: 'code small', id: 'request-preview' });
  const jsonEditor = h('textarea', { class: 'input code-input', id: 'json-spec', rows: 24, spellcheck: 'false' });
  const problems = h('ul', { class: 'problems', id: 'problems' });
  const save = h('button', { type: 'submit', class: 'btn btn-primary', id: 'save-endpoint' }, creating ? 'Create endpoint' : 'Update configuration');
  const modeTabs = h('div', { class: 'segmented', role: 'tablist' },
    h('button', { type: 'button', class: 'active', 'data-mode': 'form', onclick: () => setJsonMode(false) }, 'Form'),
    h('button', { type: 'button', 'data-mode': 'json', onclick: () => setJsonMode(true) }, 'JSON'));
  const formPane = h('div', { class: 'stack' },
    creating ? h('section', { class: 'card' }, h('h2', {}, 'Endpoint'),
      h('label', { class: 'label', for: 'endpoint-name' }, 'Name'), nameInput,
      h('p', { class: 'hint' }, 'Letters, digits, - and _; it becomes the URL /serving-endpoints/NAME/invocations.')) : null,
    h('section', { class: 'card' }, h('div', { class: 'card-header' }, h('h2', {}, 'Served entities'),
      h('div', { class: 'actions' },
        h('button', { type: 'button', class: 'btn btn-sm', id: 'add-entity', onclick: () => { addEntity(); renderEntities(); } }, icon('plus'), 'Add registered model'),
        h('button', { type: 'button', class: 'btn btn-sm', id: 'add-external', onclick: () => {
          addEntity({ external_model: externalModel({ provider: 'openai', task: 'llm/v1/chat', name: '', base: '', key: '' }) }); renderEntities();
        } }, icon('plus'), 'Add external model'))),
    entityList),
    h('section', { class: 'card' }, h('div', { class: 'card-header' }, h('h2', {}, 'Traffic split'),
      h('button', { type: 'button', class: 'btn btn-sm', id: 'split-evenly', onclick: () => { splitEvenly(); renderTraffic(); update(); } }, 'Split evenly')),
    traffic));
  const jsonPane = h('section', { class: 'card', hidden: true }, h('h2', {}, 'Request body'),
    h('p', { class: 'hint' }, creating ? 'Sent as is to POST /api/2.0/serving-endpoints (external models too).' : `Sent as is to PUT ${endpointPath(name)}/config.`),
    jsonEditor);

  main.append(
    h('nav', { class: 'breadcrumb' }, h('a', { href: '#/endpoints' }, 'Serving endpoints'), h('span', {}, '/'),
      creating ? h('span', {}, 'New endpoint') : [h('a', { href: `#/endpoints/${encodeURIComponent(name)}` }, name), h('span', {}, '/'), h('span', {}, 'Edit')]),
    h('div', { class: 'page-header' }, h('h1', {}, creating ? 'Create serving endpoint' : `Edit ${name}`), modeTabs),
    notice, error,
    h('form', { class: 'grid-editor', onsubmit: submit },
      h('div', {}, formPane, jsonPane),
      h('aside', { class: 'stack sticky' },
        h('section', { class: 'card' }, h('h2', {}, 'Request'), preview),
        h('section', { class: 'card' }, problems,
          h('div', { class: 'form-actions' }, h('a', { class: 'btn', href: creating ? '#/endpoints' : `#/endpoints/${encodeURIComponent(name)}` }, 'Cancel'), save)))));

  nameInput.addEventListener('input', () => { form.name = nameInput.value.trim(); update(); });
  jsonEditor.addEventListener('input', update);

  function addEntity(spec = {}) {
    const uid = nextUid++;
    form.entities.push({ uid, spec: { ...spec }, customName: Boolean(spec.name) && spec.name !== defaultEntityName(spec.entity_name, spec.entity_version) });
    if (!form.trafficTouched) splitEvenly(); else form.traffic[uid] = 0;
  }

  function splitEvenly() {
    const count = form.entities.length;
    form.entities.forEach((e, i) => { form.traffic[e.uid] = Math.floor(100 / count) + (i < 100 % count ? 1 : 0); });
  }

  // The server's default names: <model>-<version>, or the external model's name with '.' and ':' as '-'.
  const entityName = (e) => e.spec.name || defaultEntityName(e.spec.entity_name, e.spec.entity_version) || (isExternal(e.spec) ? (e.spec.external_model.name || '').replace(/[.:]/g, '-') : '');

  function body() {
    const served = form.entities.map((e) => {
      const spec = { ...e.spec };
      if (!e.customName) delete spec.name;
      if (!isExternal(spec)) { spec.workload_size = spec.workload_size || 'Small'; spec.scale_to_zero_enabled = Boolean(spec.scale_to_zero_enabled); }
      else { delete spec.workload_size; delete spec.scale_to_zero_enabled; }
      return spec;
    });
    const config = { served_entities: served,
      traffic_config: { routes: form.entities.map((e) => ({ served_entity_name: entityName(e), traffic_percentage: Number(form.traffic[e.uid]) || 0 })) } };
    return creating ? { name: form.name, config: { name: form.name, ...config } } : config;
  }

  function validate() {
    const found = [];
    if (creating && !NAME_RULE.test(form.name)) found.push('Give the endpoint a name of letters, digits, - or _.');
    if (!form.entities.length) found.push('Add at least one served entity.');
    form.entities.forEach((e, i) => {
      if (!isExternal(e.spec) && (!e.spec.entity_name || !e.spec.entity_version)) found.push(`Served entity ${i + 1}: choose a model and a version.`);
      if (isExternal(e.spec)) {
        const fields = externalFields(e.spec.external_model);
        if (!fields.name) found.push(`Served entity ${i + 1}: give the provider's model name.`);
        if (['custom', 'databricks-model-serving'].includes(fields.provider) && !fields.base) found.push(`Served entity ${i + 1}: give the provider's URL.`);
        if (!SECRET_REFERENCE.test(fields.key)) found.push(`Served entity ${i + 1}: the API key must be a secret reference {{secrets/<scope>/<key>}}.`);
      }
    });
    const names = form.entities.map(entityName);
    if (new Set(names).size !== names.length) found.push('Served entity names must be unique (give one a name).');
    const total = form.entities.reduce((sum, e) => sum + (Number(form.traffic[e.uid]) || 0), 0);
    if (total !== 100) found.push(`Traffic percentages must sum to 100 (now ${total}).`);
    return found;
  }

  function update() {
    let found;
    if (jsonMode) {
      found = [];
      try { JSON.parse(jsonEditor.value); } catch (failure) { found.push(`The JSON does not parse: ${failure.message}`); }
      preview.textContent = jsonEditor.value;
    } else {
      found = validate();
      preview.textContent = pretty(body());
      updateTrafficTotals();
    }
    append(clear(problems), found.map((p) => h('li', {}, p)));
    problems.hidden = !found.length;
    save.disabled = found.length > 0;
  }

  function setJsonMode(on) {
    if (on && !jsonMode) jsonEditor.value = pretty(body());
    jsonMode = on;
    formPane.hidden = on;
    jsonPane.hidden = !on;
    for (const b of modeTabs.querySelectorAll('button')) b.classList.toggle('active', (b.dataset.mode === 'json') === on);
    if (!on) renderEntities(); else update();
  }

  function modelOptions(entity) {
    const current = entity.spec.entity_name;
    const options = [h('option', { value: '', disabled: true, selected: !current }, 'Choose a registered model')];
    for (const m of models) options.push(h('option', { value: m.name, selected: m.name === current }, m.name));
    if (current && !models.some((m) => m.name === current)) options.push(h('option', { value: current, selected: true }, `${current} (not in the registry)`));
    return options;
  }

  function versionOptions(entity) {
    const model = (models || []).find((m) => m.name === entity.spec.entity_name);
    const current = String(entity.spec.entity_version || '');
    const options = [];
    for (const v of (model ? model.versions : [])) {
      options.push(h('option', { value: v.version, selected: v.version === current }, `Version ${v.version}${v === model.versions[0] ? ' (latest)' : ''}${v.status && v.status !== 'READY' ? ` · ${v.status}` : ''}`));
    }
    for (const [alias, version] of Object.entries((model && model.aliases) || {})) {
      options.push(h('option', { value: alias, selected: alias === current.replace(/^@/, '') }, `@${alias} → version ${version}`));
    }
    if (current && !options.some((o) => o.selected)) options.push(h('option', { value: current, selected: true }, current));
    return options;
  }

  function entityCard(entity, index) {
    const spec = entity.spec;
    const header = h('div', { class: 'entity-header' },
      h('span', { class: 'swatch', style: { background: colorFor(index) } }), h('strong', {}, `Served entity ${index + 1}`),
      form.entities.length > 1 ? h('button', { type: 'button', class: 'btn btn-ghost btn-sm', title: 'Remove', 'aria-label': `Remove served entity ${index + 1}`,
        onclick: () => { form.entities.splice(index, 1); delete form.traffic[entity.uid]; if (!form.trafficTouched) splitEvenly(); renderEntities(); } }, icon('x')) : null);
    if (isExternal(spec)) return externalCard(entity, index, header);
    const picker = models
      ? [h('select', { class: 'input', 'data-field': 'entity_name', 'aria-label': 'Registered model', onchange: (ev) => {
          spec.entity_name = ev.target.value;
          const model = models.find((m) => m.name === spec.entity_name);
          spec.entity_version = model && model.versions.length ? model.versions[0].version : '';
          renderEntities();
        } }, modelOptions(entity)),
        h('select', { class: 'input', 'data-field': 'entity_version', 'aria-label': 'Version', disabled: !spec.entity_name,
          onchange: (ev) => { spec.entity_version = ev.target.value; renderTraffic(); update(); refreshName(); } }, versionOptions(entity))]
      : [h('input', { class: 'input', 'data-field': 'entity_name', placeholder: 'catalog.schema.model', value: spec.entity_name || '',
          oninput: (ev) => { spec.entity_name = ev.target.value.trim(); renderTraffic(); update(); refreshName(); } }),
        h('input', { class: 'input', 'data-field': 'entity_version', placeholder: 'version or alias', value: spec.entity_version || '',
          oninput: (ev) => { spec.entity_version = ev.target.value.trim(); renderTraffic(); update(); refreshName(); } })];
    const nameField = h('input', { class: 'input', 'data-field': 'name', value: entity.customName ? spec.name : '', spellcheck: 'false',
      placeholder: defaultEntityName(spec.entity_name, spec.entity_version) || 'model-version',
      oninput: (ev) => { spec.name = ev.target.value.trim(); entity.customName = Boolean(spec.name); renderTraffic(); update(); } });
    const refreshName = () => { nameField.placeholder = defaultEntityName(spec.entity_name, spec.entity_version) || 'model-version'; };
    const size = spec.workload_size || 'Small';
    return h('div', { class: 'entity', 'data-index': index }, header,
      h('div', { class: 'field-row' },
        h('div', { class: 'field grow' }, h('span', { class: 'label' }, 'Registered model'), picker[0]),
        h('div', { class: 'field' }, h('span', { class: 'label' }, 'Version'), picker[1])),
      h('div', { class: 'field-row' },
        h('div', { class: 'field grow' }, h('span', { class: 'label' }, 'Served entity name ', h('span', { class: 'muted' }, '(optional)')), nameField),
        h('div', { class: 'field' }, h('span', { class: 'label' }, 'Workload size'),
          h('div', { class: 'segmented', role: 'radiogroup', 'data-field': 'workload_size' }, SIZES.map(([value, help]) => h('button', {
            type: 'button', class: value === size ? 'active' : '', title: help, 'aria-pressed': String(value === size),
            onclick: () => { spec.workload_size = value; renderEntities(); } }, value))))),
      h('label', { class: 'toggle' }, h('input', { type: 'checkbox', 'data-field': 'scale_to_zero_enabled', checked: Boolean(spec.scale_to_zero_enabled),
        onchange: (ev) => { spec.scale_to_zero_enabled = ev.target.checked; update(); } }),
        h('span', {}, 'Scale to zero'), h('span', { class: 'muted small' }, ' — stop every replica when idle; the first request after waits for a cold start.')));
  }

  // An external model: provider, task, the provider's model name and URL, and the key as a secret reference
  // (created beforehand with `podium secrets put` or POST /api/2.0/secrets/put; the value is never shown).
  function externalCard(entity, index, header) {
    const fields = externalFields(entity.spec.external_model);
    const set = (field, value, rerender = false) => {
      fields[field] = value;
      entity.spec.external_model = externalModel(fields, entity.spec.external_model);
      if (rerender) renderEntities(); else { renderTraffic(); update(); }
    };
    const input = (field, attrs) => h('input', { class: 'input', 'data-field': `external.${field}`, value: fields[field], spellcheck: 'false',
      oninput: (ev) => set(field, ev.target.value.trim()), ...attrs });
    const [, baseField] = PROVIDERS[fields.provider];
    return h('div', { class: 'entity entity-external', 'data-index': index }, header,
      h('div', { class: 'field-row' },
        h('div', { class: 'field' }, h('span', { class: 'label' }, 'Provider'),
          h('select', { class: 'input', 'data-field': 'external.provider', 'aria-label': 'Provider', onchange: (ev) => set('provider', ev.target.value, true) },
            Object.keys(PROVIDERS).map((p) => h('option', { value: p, selected: p === fields.provider }, p)))),
        h('div', { class: 'field' }, h('span', { class: 'label' }, 'Task'),
          h('select', { class: 'input', 'data-field': 'external.task', 'aria-label': 'Task', onchange: (ev) => set('task', ev.target.value) },
            TASKS.map((t) => h('option', { value: t, selected: t === fields.task }, t)))),
        h('div', { class: 'field grow' }, h('span', { class: 'label' }, 'Model name at the provider'), input('name', { placeholder: 'e.g. gpt-4o-mini', 'aria-label': 'Model name' }))),
      h('div', { class: 'field-row' },
        h('div', { class: 'field grow' }, h('span', { class: 'label' }, `${baseField} `, h('span', { class: 'muted' }, fields.provider === 'custom' ? '' : '(optional)')),
          input('base', { placeholder: fields.provider === 'custom' ? 'an OpenAI-compatible base URL' : 'default: the provider\'s public API', 'aria-label': 'Provider URL' })),
        h('div', { class: 'field grow' }, h('span', { class: 'label' }, 'API key (secret reference)'),
          input('key', { placeholder: '{{secrets/my-scope/openai-key}}', 'aria-label': 'API key secret reference' }))),
      h('p', { class: 'hint' }, 'The key is read from Podium\'s secrets store when the endpoint is queried; put it there first with ',
        h('code', {}, 'podium secrets put SCOPE KEY'), '.'));
  }

  function renderEntities() {
    clear(entityList);
    if (registryError) entityList.append(h('div', { class: 'alert alert-warning' }, `The model registry could not be listed (${registryError}); type the model name and version.`));
    if (models === null && !registryError) { entityList.append(h('p', { class: 'muted' }, h('span', { class: 'spinner' }), ' Loading the registry…')); return; }
    if (models && !models.length) entityList.append(h('div', { class: 'alert alert-info' }, 'The registry has no models yet: log and register one with MLflow first.'));
    form.entities.forEach((entity, index) => entityList.append(entityCard(entity, index)));
    renderTraffic();
    update();
  }

  function renderTraffic() {
    clear(traffic);
    form.entities.forEach((entity, index) => {
      const value = Number(form.traffic[entity.uid]) || 0;
      const number = h('input', { type: 'number', min: 0, max: 100, step: 1, class: 'input input-num', value: String(value), 'aria-label': `Traffic for ${entityName(entity) || `entity ${index + 1}`}`, 'data-traffic': index });
      const range = h('input', { type: 'range', min: 0, max: 100, step: 1, value: String(value), class: 'range', tabindex: -1, 'aria-hidden': 'true' });
      const set = (v) => { form.trafficTouched = true; form.traffic[entity.uid] = Math.max(0, Math.min(100, Math.round(Number(v) || 0))); update(); };
      number.addEventListener('input', () => { range.value = number.value; set(number.value); });
      range.addEventListener('input', () => { number.value = range.value; set(range.value); });
      traffic.append(h('div', { class: 'traffic-row' }, h('span', { class: 'swatch', style: { background: colorFor(index) } }),
        h('span', { class: 'traffic-name' }, entityName(entity) || `entity ${index + 1}`), range, number, h('span', { class: 'muted' }, '%')));
    });
    traffic.append(h('div', { class: 'traffic-total', id: 'traffic-total' }), h('div', { id: 'traffic-preview' }));
  }

  function updateTrafficTotals() {
    const total = form.entities.reduce((sum, e) => sum + (Number(form.traffic[e.uid]) || 0), 0);
    const totalEl = traffic.querySelector('#traffic-total');
    if (!totalEl) return;
    totalEl.className = `traffic-total ${total === 100 ? 'ok' : 'bad'}`;
    totalEl.textContent = total === 100 ? 'Total 100%' : `Total ${total}% — the split must add up to exactly 100%`;
    append(clear(traffic.querySelector('#traffic-preview')), trafficBar(form.entities.map((e, index) => ({ name: entityName(e) || `entity ${index + 1}`, percent: Number(form.traffic[e.uid]) || 0, index }))));
  }

  async function submit(event) {
    event.preventDefault();
    if (save.disabled) return;
    save.disabled = true;
    error.hidden = true;
    const payload = jsonMode ? jsonEditor.value : body();
    try {
      const answer = creating ? await api('POST', '/api/2.0/serving-endpoints', payload) : await api('PUT', `${endpointPath(name)}/config`, payload);
      location.hash = `#/endpoints/${encodeURIComponent(answer.name || name || form.name)}`;
    } catch (failure) {
      error.textContent = `${creating ? 'Cannot create the endpoint' : 'Cannot update the configuration'}: ${failure.display}`;
      error.hidden = false;
      save.disabled = false;
      window.scrollTo(0, 0);
    }
  }

  async function load() {
    renderEntities();
    const registry = api('GET', '/api/2.0/podium/registered-models').then((a) => { models = a.registered_models || []; })
      .catch((failure) => { registryError = failure.display; models = null; });
    if (!creating) {
      try {
        const endpoint = await api('GET', endpointPath(name));
        const config = endpoint.config || endpoint.pending_config;
        const shares = trafficOf(config);
        for (const served of config.served_entities || []) {
          const spec = Object.fromEntries(Object.entries(served).filter(([k]) => !OUTPUT_FIELDS.includes(k)));
          addEntity(spec);
          form.traffic[form.entities[form.entities.length - 1].uid] = shares[served.name] ?? 0;
        }
        form.trafficTouched = true;
        if ((endpoint.state || {}).config_update === 'IN_PROGRESS') {
          notice.textContent = `Config version ${endpoint.pending_config.config_version} is rolling out; saving replaces it.`;
          notice.hidden = false;
        }
      } catch (failure) {
        error.textContent = `Cannot load '${name}': ${failure.display}`;
        error.hidden = false;
      }
    } else {
      addEntity({ workload_size: 'Small', scale_to_zero_enabled: false });
    }
    await registry;
    if (creating && models && models.length) {
      const [first] = models;
      form.entities[0].spec.entity_name = first.name;
      form.entities[0].spec.entity_version = first.versions.length ? first.versions[0].version : '';
    }
    renderEntities();
    if (creating) nameInput.focus();
  }

  load();
}
