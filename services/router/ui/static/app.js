// The shell: sign-in state, the top bar, and a hash router (#/endpoints/NAME/...) that mounts one page at a time.
import { api, session } from './api.js';
import { clear } from './dom.js';
import * as signin from './pages/signin.js';
import * as endpoints from './pages/endpoints.js';
import * as endpoint from './pages/endpoint.js';
import * as editor from './pages/editor.js';
import * as playground from './pages/playground.js';

const ROUTES = [
  [/^#\/signin$/, () => [signin, {}]],
  [/^#\/endpoints$/, () => [endpoints, {}]],
  [/^#\/endpoints\/new$/, () => [editor, { mode: 'create' }]],
  [/^#\/endpoints\/([^/]+)\/edit$/, (m) => [editor, { mode: 'edit', name: decodeURIComponent(m[1]) }]],
  [/^#\/endpoints\/([^/]+)\/query$/, (m) => [playground, { name: decodeURIComponent(m[1]) }]],
  [/^#\/endpoints\/([^/]+)$/, (m) => [endpoint, { name: decodeURIComponent(m[1]) }]],
];

const main = document.getElementById('main');
let unmount = null;
let signInMessage = '';

function route() {
  if (unmount) { unmount(); unmount = null; }
  const hash = location.hash || '#/endpoints';
  if (!session.signedIn && hash !== '#/signin') { location.replace('#/signin'); return; }
  const topbar = document.getElementById('topbar');
  topbar.hidden = !session.signedIn || hash === '#/signin';
  for (const link of document.querySelectorAll('[data-nav]')) {
    link.classList.toggle('active', hash.startsWith(`#/${link.dataset.nav}`));
  }
  let page = null;
  for (const [pattern, make] of ROUTES) {
    const match = hash.match(pattern);
    if (match) { page = make(match); break; }
  }
  if (!page) { location.replace('#/endpoints'); return; }
  const [module, params] = page;
  clear(main);
  window.scrollTo(0, 0);
  unmount = module.mount(main, { ...params, message: signInMessage }) || null;
  signInMessage = '';
}

async function showWho() {
  // Who the token belongs to, where the server has an identity API; nothing shown otherwise.
  const who = document.getElementById('who');
  who.textContent = '';
  try {
    const me = await api('GET', '/api/2.0/preview/scim/v2/Me');
    who.textContent = me.userName || me.displayName || '';
  } catch { /* no identity API on this server */ }
}

document.getElementById('sign-out').addEventListener('click', () => {
  session.signOut();
  location.hash = '#/signin';
});

window.addEventListener('podium:unauthenticated', (event) => {
  if (!session.signedIn || event.detail.token !== session.token) return;
  session.signOut();
  signInMessage = `Signed out: ${event.detail.message || 'the token was refused'}`;
  location.hash = '#/signin';
});
window.addEventListener('podium:signed-in', showWho);
window.addEventListener('hashchange', route);

if (session.signedIn) showWho();
route();
