// Sign in with a token: kept in sessionStorage (gone when the tab closes), checked against the API first.
import { api, session } from '../api.js';
import { h } from '../dom.js';

export function mount(main, { message }) {
  const error = h('div', { class: 'alert alert-danger', role: 'alert', hidden: !message }, message || '');
  const token = h('input', { type: 'password', id: 'token', name: 'token', autocomplete: 'off', spellcheck: 'false',
    placeholder: 'dapi… or your Podium token', class: 'input' });
  const submit = h('button', { type: 'submit', class: 'btn btn-primary btn-block' }, 'Sign in');

  async function signIn(event) {
    event.preventDefault();
    submit.disabled = true;
    error.hidden = true;
    session.signIn(token.value.trim());
    try {
      await api('GET', '/api/2.0/serving-endpoints');
      window.dispatchEvent(new CustomEvent('podium:signed-in'));
      location.hash = '#/endpoints';
    } catch (failure) {
      session.signOut();
      error.textContent = failure.status === 401 || failure.status === 403
        ? `This token was refused: ${failure.message}` : `Cannot sign in: ${failure.display}`;
      error.hidden = false;
      submit.disabled = false;
      token.focus();
    }
  }

  main.append(h('div', { class: 'signin' },
    h('form', { class: 'card signin-card', onsubmit: signIn },
      h('div', { class: 'signin-brand' }, h('img', { src: '/ui/static/logo.svg', alt: '', width: 40, height: 40 }), h('span', {}, 'Podium')),
      h('h1', {}, 'Sign in'),
      h('p', { class: 'muted' }, 'Use a personal access token. ', h('code', {}, 'podium up'), ' writes the admin token to ',
        h('code', {}, 'podium.json'), '; ', h('code', {}, 'podium tokens create'), ' makes more.'),
      error,
      h('label', { for: 'token', class: 'label' }, 'Access token'),
      token,
      submit,
      h('p', { class: 'fineprint' }, 'The token stays in this browser tab only and is sent as an Authorization header on every API call.'))));
  token.focus();
}
