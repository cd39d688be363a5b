// How an endpoint's Databricks JSON reads to a person: state badges, kind, served entities, permissions.
import { h } from './dom.js';

const LEVEL_RANK = { CAN_VIEW: 1, CAN_QUERY: 2, CAN_MANAGE: 3 };

// With no permission_level in the answer (older servers), the API itself still decides: show the controls.
export const canManage = (level) => !level || LEVEL_RANK[level] >= LEVEL_RANK.CAN_MANAGE;
export const canQuery = (level) => !level || LEVEL_RANK[level] >= LEVEL_RANK.CAN_QUERY;

export function badge(text, tone, { spinning = false, title } = {}) {
  return h('span', { class: `badge badge-${tone}`, title }, spinning ? h('span', { class: 'spinner' }) : h('span', { class: 'dot' }), text);
}

export function stateBadges(endpoint) {
  const state = endpoint.state || {};
  const badges = [state.ready === 'READY' ? badge('Ready', 'success') : badge('Not ready', 'neutral')];
  if (state.config_update === 'IN_PROGRESS') badges.push(badge('Updating', 'info', { spinning: true }));
  if (state.config_update === 'UPDATE_FAILED') badges.push(badge('Update failed', 'danger'));
  if (state.config_update === 'UPDATE_CANCELED') badges.push(badge('Update canceled', 'warning'));
  return h('span', { class: 'badges', 'data-ready': state.ready, 'data-config-update': state.config_update }, badges);
}

export function deploymentBadge(entityState) {
  const deployment = (entityState && entityState.deployment) || '';
  const tones = {
    DEPLOYMENT_READY: ['Ready', 'success'], DEPLOYMENT_CREATING: ['Starting', 'info'],
    DEPLOYMENT_RECOVERING: ['Recovering', 'warning'], DEPLOYMENT_FAILED: ['Failed', 'danger'],
    DEPLOYMENT_ABORTED: ['Aborted', 'neutral'],
  };
  const [text, tone] = tones[deployment] || [deployment || 'Unknown', 'neutral'];
  return badge(text, tone, { spinning: deployment === 'DEPLOYMENT_CREATING' });
}

export function isExternal(entity) { return Boolean(entity && entity.external_model); }

export function endpointKind(endpoint) {
  const config = endpoint.config || endpoint.pending_config || {};
  return (config.served_entities || []).some(isExternal) ? 'external' : 'custom';
}

// Replicas over the served entities that run on Podium's workers: {ready, desired, starting}, or null when
// none reports counts (external models: the provider serves them).
export function replicaCounts(endpoint) {
  const config = endpoint.config || endpoint.pending_config || {};   // what serves now; a rollout shows on the page
  const states = (config.served_entities || []).filter((e) => !isExternal(e)).map((e) => e.state || {}).filter((s) => 'desired_replicas' in s);
  if (!states.length) return null;
  const sum = (field) => states.reduce((total, s) => total + (Number(s[field]) || 0), 0);
  return { ready: sum('ready_replicas'), desired: sum('desired_replicas'), starting: sum('starting_replicas') };
}

export function entityLabel(entity) {
  if (isExternal(entity)) return `${entity.external_model.provider} · ${entity.external_model.name}`;
  return `${entity.entity_name} · v${entity.entity_version}`;
}

// The served entity name the server gives when none is set: <model short name>-<version>.
export function defaultEntityName(entityName, version) {
  const short = (entityName || '').split('.').pop();
  return short && version ? `${short}-${String(version).replace(/^@/, '')}` : '';
}

export function trafficOf(config) {
  const shares = {};
  for (const route of ((config && config.traffic_config) || {}).routes || []) {
    shares[route.served_entity_name || route.served_model_name] = route.traffic_percentage;
  }
  return shares;
}

const PALETTE = ['#4f46e5', '#0ea5e9', '#14b8a6', '#f59e0b', '#ec4899', '#8b5cf6', '#22c55e', '#ef4444', '#64748b', '#a16207'];
export const colorFor = (index) => PALETTE[index % PALETTE.length];

export function trafficBar(parts) {
  // parts: [{name, percent}] in order; a stacked bar with a legend.
  const bar = h('div', { class: 'traffic-bar', role: 'img', 'aria-label': parts.map((p) => `${p.name} ${p.percent}%`).join(', ') },
    parts.filter((p) => p.percent > 0).map((p) => h('span', {
      class: 'traffic-seg', style: { width: `${Math.min(100, p.percent)}%`, background: colorFor(p.index) }, title: `${p.name}: ${p.percent}%`,
    })));
  const legend = h('div', { class: 'traffic-legend' }, parts.map((p) => h('span', { class: 'legend-item' },
    h('span', { class: 'legend-swatch', style: { background: colorFor(p.index) } }), `${p.name} `, h('strong', {}, `${p.percent}%`))));
  return h('div', { class: 'traffic' }, bar, legend);
}
