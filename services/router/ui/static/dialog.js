// A modal confirmation (window.confirm cannot be styled and blocks the page).
import { h } from './dom.js';

export function confirmDialog({ title, body, confirm = 'Confirm', danger = false }) {
  return new Promise((resolve) => {
    const close = (answer) => { overlay.remove(); document.removeEventListener('keydown', onKey); resolve(answer); };
    const onKey = (event) => { if (event.key === 'Escape') close(false); };
    const confirmButton = h('button', { type: 'button', class: `btn ${danger ? 'btn-danger' : 'btn-primary'}`, id: 'dialog-confirm', onclick: () => close(true) }, confirm);
    const overlay = h('div', { class: 'overlay', onclick: (event) => { if (event.target === overlay) close(false); } },
      h('div', { class: 'dialog card', role: 'dialog', 'aria-modal': 'true', 'aria-labelledby': 'dialog-title' },
        h('h2', { id: 'dialog-title' }, title),
        h('p', { class: 'muted' }, body),
        h('div', { class: 'dialog-actions' },
          h('button', { type: 'button', class: 'btn', onclick: () => close(false) }, 'Cancel'),
          confirmButton)));
    document.addEventListener('keydown', onKey);
    document.body.append(overlay);
    confirmButton.focus();
  });
}
