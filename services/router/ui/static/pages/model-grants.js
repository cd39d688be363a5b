// The endpoint page's "Model grants" card: Unity Catalog grants on the registered models it serves
// (GET /api/2.1/unity-catalog/effective-permissions/function/{model}); a MANAGE holder grants and revokes
// with PATCH /api/2.1/unity-catalog/permissions/function/{model} (docs/identity-wire.md §7).
import { api } from '../api.js';
import { append, clear, h } from '../dom.js';
import { card } from './endpoint-records.js';

const PRIVILEGES = ['EXECUTE', 'ALL_PRIVILEGES', 'MANAGE'];
const ADMINS = 'admins';
const grantsPath = (kind, model) => `/api/2.1/unity-catalog/${kind}/function/${encodeURIComponent(model)}`;
// A Unity Catalog model is catalog.schema.model; workspace-registry names carry no grants.
export const isCatalogModel = (name) => typeof name === 'string' && name.split('.').length === 3;

export function modelGrantsCard() {
  let models = [];
  let me = null;    // {name, groups}: who may manage, read once from SCIM Me
  let loads = 0;    // loads started; only the latest one renders
  let changing = false;
  const select = h('select', { class: 'input input-sm', id: 'grants-model', 'aria-label': 'Registered model' });
  const principal = h('input', { class: 'input input-sm', id: 'model-grant-principal', placeholder: 'user, group or application id', 'aria-label': 'Principal' });
  const privilege = h('select', { class: 'input input-sm', id: 'model-grant-privilege', 'aria-label': 'Privilege' }, PRIVILEGES.map((p) => h('option', { value: p }, p)));
  const grantError = h('div', { class: 'alert alert-danger', id: 'model-grant-error', hidden: true });

  async function whoAmI() {
    if (me) return me;
    try {
      const answer = await api('GET', '/api/2.0/preview/scim/v2/Me');
      me = { name: answer.userName, groups: (answer.groups || []).map((g) => g.display) };
    } catch {
      me = { name: null, groups: [] };   // no identity API: the API decides, the form stays hidden
    }
    return me;
  }

  // MANAGE on the model, its schema or its catalog (admins hold every privilege): what PATCH needs.
  function manages(assignments) {
    const mine = new Set([me.name, ...me.groups]);
    return me.groups.includes(ADMINS) || assignments.some((a) => mine.has(a.principal) && a.privileges.some((p) => p.privilege === 'MANAGE'));
  }

  async function load(body) {
    const model = select.value;
    if (!model) return;
    const mine = ++loads;
    let assignments;
    try {
      await whoAmI();
      assignments = (await api('GET', grantsPath('effective-permissions', model))).privilege_assignments || [];
    } catch (failure) {
      if (mine === loads) append(clear(body), h('p', { class: 'padded muted' }, `Cannot read the grants: ${failure.display}`));
      return;
    }
    if (mine !== loads) return;   // a later load (after a grant, say) answers instead: never show an older list
    const canManage = manages(assignments);
    const chip = (p, who) => {
      const from = p.inherited_from_name ? ` (from ${p.inherited_from_type.toLowerCase()} ${p.inherited_from_name})` : '';
      const revoke = canManage && !p.inherited_from_name
        ? h('button', { type: 'button', class: 'chip-remove', 'data-revoke': p.privilege, title: `Revoke ${p.privilege}`,
          'aria-label': `Revoke ${p.privilege} from ${who}`, onclick: () => change(who, 'remove', p.privilege) }, '×')
        : null;
      return h('span', { class: 'chip' }, p.privilege, from, revoke);
    };
    const rows = assignments.map((a) => h('tr', { 'data-principal': a.principal },
      h('td', {}, h('strong', {}, a.principal)), h('td', {}, h('div', { class: 'chips' }, a.privileges.map((p) => chip(p, a.principal))))));
    append(clear(body), rows.length
      ? h('table', { class: 'table' }, h('thead', {}, h('tr', {}, ['Principal', 'Privileges'].map((t) => h('th', {}, t)))), h('tbody', {}, rows))
      : h('p', { class: 'padded muted' }, canManage ? `No grants on ${model} yet.` : `You hold no grant on ${model}.`));
    if (canManage) {
      body.append(h('form', { class: 'padded grant', id: 'model-grant-form', onsubmit: (event) => {
        event.preventDefault();
        change(principal.value.trim(), 'add', privilege.value);
      } }, principal, privilege, h('button', { type: 'submit', class: 'btn btn-sm' }, 'Grant')), grantError);
    }
  }

  async function change(who, action, what) {
    if (changing) return;   // one change at a time: a second click waits for the first's answer
    changing = true;
    grantError.hidden = true;
    try {
      await api('PATCH', grantsPath('permissions', select.value), { changes: [{ principal: who, [action]: [what] }] });
      if (action === 'add') principal.value = '';
      await result.reload();
    } catch (failure) {
      grantError.textContent = `Cannot ${action === 'add' ? 'grant' : 'revoke'}: ${failure.display}`;
      grantError.hidden = false;
    } finally {
      changing = false;
    }
  }

  const result = card('model-grants', 'Model grants', load, select);
  select.addEventListener('change', result.reload);
  result.element.hidden = true;
  return {
    element: result.element,
    reload: result.reload,
    // The Unity Catalog models the endpoint serves; the card shows only while there is one.
    setModels(names) {
      const next = [...new Set(names.filter(isCatalogModel))].sort();
      result.element.hidden = !next.length;
      if (next.join('\n') === models.join('\n')) return;
      const keep = select.value;
      models = next;
      append(clear(select), models.map((m) => h('option', { value: m, selected: m === keep }, m)));
      result.reload();
    },
  };
}
