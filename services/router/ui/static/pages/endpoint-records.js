// The endpoint page's cards read from the management API: permissions (the Databricks permissions API),
// usage and recent inference-table rows (GET …/usage, …/inference-table), and the AI gateway settings.
import { api, endpointPath } from '../api.js';
import { append, clear, dateTime, h, icon, pretty } from '../dom.js';

const LEVELS = ['CAN_VIEW', 'CAN_QUERY', 'CAN_MANAGE'];
const RECENT_ROWS = 20;
const RECENT_WINDOW_MS = 60 * 60 * 1000;   // the inference-table card reads the last hour

const principalOf = (entry) => entry.user_name || entry.group_name || entry.service_principal_name || entry.display_name || '?';
const kindOf = (entry) => (entry.user_name ? 'user' : entry.group_name ? 'group' : 'service principal');
const failureText = (failure) => (failure.status === 403 ? 'Only users with CAN_MANAGE on this endpoint see this.' : failure.display);

// A card with a header, a body refreshed by load(), and a reload button (model-grants.js uses it too).
export function card(id, title, load, extra) {
  const body = h('div', { class: 'card-body' });
  const element = h('section', { class: 'card card-flush', id },
    h('div', { class: 'card-header padded' }, h('h2', {}, title), h('div', { class: 'actions' }, extra || null,
      h('button', { type: 'button', class: 'btn btn-sm', title: 'Reload', 'aria-label': `Reload ${title.toLowerCase()}`, onclick: () => load(body) }, icon('refresh')))),
    body);
  return { element, reload: () => load(body) };
}

const message = (text, tone = 'muted') => h('p', { class: `padded ${tone}` }, text);

export function permissionsCard(getEndpoint, manage) {
  const principal = h('input', { class: 'input input-sm', id: 'grant-principal', placeholder: 'user name', 'aria-label': 'User name' });
  const level = h('select', { class: 'input input-sm', id: 'grant-level', 'aria-label': 'Permission level' }, LEVELS.map((l) => h('option', { value: l }, l)));
  const grantError = h('div', { class: 'alert alert-danger', id: 'grant-error', hidden: true });

  async function load(body) {
    const endpoint = getEndpoint();
    if (!endpoint) return;
    try {
      const answer = await api('GET', `/api/2.0/permissions/serving-endpoints/${encodeURIComponent(endpoint.id)}`);
      const rows = (answer.access_control_list || []).map((entry) => h('tr', { 'data-principal': principalOf(entry) },
        h('td', {}, h('strong', {}, principalOf(entry))), h('td', { class: 'muted' }, kindOf(entry)),
        h('td', {}, (entry.all_permissions || []).map((p) => h('span', { class: 'chip' }, p.permission_level, p.inherited ? ' (inherited)' : '')))));
      append(clear(body), h('table', { class: 'table' }, h('thead', {}, h('tr', {}, ['Principal', 'Kind', 'Permission'].map((t) => h('th', {}, t)))), h('tbody', {}, rows)));
    } catch (failure) {
      append(clear(body), message(`Cannot read the permissions: ${failure.display}`, 'muted'));
    }
    if (manage()) {
      body.append(h('form', { class: 'padded grant', id: 'grant-form', onsubmit: grant }, principal, level,
        h('button', { type: 'submit', class: 'btn btn-sm' }, 'Grant')), grantError);
    }
  }

  async function grant(event) {
    event.preventDefault();
    grantError.hidden = true;
    const endpoint = getEndpoint();
    try {
      await api('PATCH', `/api/2.0/permissions/serving-endpoints/${encodeURIComponent(endpoint.id)}`,
        { access_control_list: [{ user_name: principal.value.trim(), permission_level: level.value }] });
      principal.value = '';
      result.reload();
    } catch (failure) {
      grantError.textContent = `Cannot grant: ${failure.display}`;
      grantError.hidden = false;
    }
  }

  const result = card('permissions', 'Permissions', load);
  return result;
}

export function usageCard(name) {
  return card('usage', 'Usage', async (body) => {
    try {
      const answer = await api('GET', `${endpointPath(name)}/usage`);
      const usage = answer.usage || [];
      append(clear(body), usage.length
        ? h('table', { class: 'table' }, h('thead', {}, h('tr', {}, ['Requester', 'Requests', 'Errors', 'Blocked', 'Fallbacks', 'Tokens in', 'Tokens out']
          .map((t, i) => h('th', { class: i ? 'num' : null }, t)))),
        h('tbody', {}, usage.map((u) => h('tr', { 'data-requester': u.requester }, h('td', {}, u.requester),
          ...[u.request_count, u.error_count, u.blocked_count, u.fallback_count, u.input_token_count, u.output_token_count].map((v) => h('td', { class: 'num' }, String(v ?? 0)))))))
        : message('No usage recorded. Usage is tracked when the AI gateway has usage tracking or an inference table on.'));
      // Spend budgets (a Podium extension): what each has spent in its current day or month.
      if ((answer.budgets || []).length) {
        append(body, h('table', { class: 'table', 'data-budgets': '' }, h('thead', {}, h('tr', {}, ['Budget', 'Principal', 'Period', 'Spent', 'Limit']
          .map((t, i) => h('th', { class: i > 2 ? 'num' : null }, t)))),
        h('tbody', {}, answer.budgets.map((b) => {
          const unit = 'limit_tokens' in b ? ' tokens' : ' USD';
          return h('tr', { 'data-budget': `${b.key}:${b.principal || ''}` }, h('td', {}, b.key), h('td', {}, b.principal || ''), h('td', {}, b.period),
            h('td', { class: 'num' }, String(b.spent_tokens ?? b.spent_usd) + unit), h('td', { class: 'num' }, String(b.limit_tokens ?? b.limit_usd) + unit));
        }))));
      }
    } catch (failure) {
      append(clear(body), message(failureText(failure)));
    }
  });
}

export function inferenceCard(name) {
  return card('inference-table', 'Recent requests (inference table)', async (body) => {
    try {
      // Rows come oldest first; the last hour's, newest shown first.
      const answer = await api('GET', `${endpointPath(name)}/inference-table?start_time_ms=${Date.now() - RECENT_WINDOW_MS}&max_results=1000`);
      const rows = (answer.rows || []).slice(-RECENT_ROWS).reverse();
      append(clear(body), rows.length
        ? h('table', { class: 'table table-compact' }, h('thead', {}, h('tr', {}, ['Time', 'Status', 'Requester', 'Served by', 'ms', 'Request', 'Response']
          .map((t) => h('th', { class: t === 'ms' ? 'num' : null }, t)))),
        h('tbody', {}, rows.map((r) => h('tr', { 'data-request-id': r.databricks_request_id },
          h('td', { class: 'nowrap', title: r.databricks_request_id }, dateTime(r.timestamp_ms)), h('td', {}, String(r.status_code)),
          h('td', {}, r.requester), h('td', {}, r.served_entity_name), h('td', { class: 'num' }, String(r.execution_duration_ms)),
          h('td', {}, h('code', { class: 'clip', title: r.request }, r.request || '')), h('td', {}, h('code', { class: 'clip', title: r.response }, r.response || ''))))))
        : message('No rows in the last hour. Rows are kept when the AI gateway\'s inference table is on.'));
    } catch (failure) {
      append(clear(body), message(failureText(failure)));
    }
  });
}

// Rate limits and the AI gateway settings; managers edit them as JSON (PUT …/ai-gateway).
export function gatewayCard(name, getEndpoint, manage, onSaved) {
  const editor = h('textarea', { class: 'input code-input', id: 'ai-gateway-json', rows: 12, spellcheck: 'false', hidden: true, 'aria-label': 'AI gateway JSON' });
  const save = h('button', { type: 'button', class: 'btn btn-primary btn-sm', id: 'save-ai-gateway', hidden: true }, 'Save');
  const edit = h('button', { type: 'button', class: 'btn btn-sm', id: 'edit-ai-gateway', hidden: true }, icon('edit'), 'Edit');
  const error = h('div', { class: 'alert alert-danger', hidden: true });
  const view = h('div', {});
  let editing = false;

  edit.addEventListener('click', () => {
    editing = true;
    editor.value = pretty(getEndpoint().ai_gateway || {});
    editor.hidden = false; save.hidden = false; edit.hidden = true; view.hidden = true;
  });
  save.addEventListener('click', async () => {
    error.hidden = true;
    try {
      await api('PUT', `${endpointPath(name)}/ai-gateway`, JSON.parse(editor.value));
      editing = false;
      editor.hidden = true; save.hidden = true; view.hidden = false;
      onSaved();
    } catch (failure) {
      error.textContent = `Cannot save: ${failure.display || failure.message}`;
      error.hidden = false;
    }
  });

  const element = h('section', { class: 'card', id: 'gateway' },
    h('div', { class: 'card-header' }, h('h2', {}, 'Rate limits & AI gateway'), h('div', { class: 'actions' }, edit, save)),
    error, view, editor);

  function render() {
    const endpoint = getEndpoint();
    edit.hidden = editing || !manage();
    clear(view);
    const limits = endpoint.rate_limits || (endpoint.ai_gateway || {}).rate_limits || [];
    append(view, h('h3', {}, 'Rate limits'), limits.length
      ? h('ul', { class: 'plain', id: 'rate-limits' }, limits.map((l) => h('li', {}, `${l.calls ?? '—'} calls${l.tokens ? ` / ${l.tokens} tokens` : ''} per ${l.renewal_period || 'minute'} · per ${l.key || 'endpoint'}${l.principal ? ` (${l.principal})` : ''}`)))
      : h('p', { class: 'muted' }, 'None configured.'));
    const ai = { ...(endpoint.ai_gateway || {}) };
    delete ai.rate_limits;
    const flags = [['Usage tracking', (ai.usage_tracking_config || {}).enabled], ['Inference table', (ai.inference_table_config || {}).enabled],
      ['Guardrails', Boolean(ai.guardrails)], ['Fallbacks', (ai.fallback_config || {}).enabled], ['Budgets', (ai.budgets || []).length > 0]];
    append(view, h('h3', {}, 'AI gateway'), h('div', { class: 'chips', id: 'gateway-flags' },
      flags.map(([label, on]) => h('span', { class: `chip ${on ? 'chip-on' : ''}` }, `${label}: ${on ? 'on' : 'off'}`))),
    Object.keys(ai).length ? h('pre', { class: 'code small' }, pretty(ai)) : null);
  }
  return { element, render };
}
