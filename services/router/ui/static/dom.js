// Tiny DOM and formatting helpers. Text always goes in as text nodes: nothing from the API is parsed as HTML.

const PROPS = new Set(['value', 'checked', 'disabled', 'selected', 'readOnly', 'hidden']);

export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key === 'class') el.className = value;
    // CSSOM, not the style attribute: the page's CSP (style-src 'self') forbids inline style attributes.
    else if (key === 'style') Object.assign(el.style, value);
    else if (key.startsWith('on') && typeof value === 'function') el.addEventListener(key.slice(2).toLowerCase(), value);
    else if (PROPS.has(key)) el[key] = value;
    else el.setAttribute(key, value === true ? '' : String(value));
  }
  append(el, children);
  return el;
}

export function append(el, ...children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : String(child));
  }
  return el;
}

export function clear(el) {
  while (el.firstChild) el.removeChild(el.firstChild);
  return el;
}

export function timeAgo(epochMs) {
  if (!epochMs) return '';
  const seconds = Math.max(0, Math.round((Date.now() - epochMs) / 1000));
  if (seconds < 5) return 'just now';
  if (seconds < 60) return `${seconds}s ago`;
  const minutes = Math.round(seconds / 60);
  if (minutes < 60) return `${minutes} min ago`;
  const hours = Math.round(minutes / 60);
  if (hours < 48) return `${hours} h ago`;
  return new Date(epochMs).toLocaleDateString();
}

export function dateTime(epochMs) {
  return epochMs ? new Date(epochMs).toLocaleString() : '';
}

export function pretty(value) {
  return JSON.stringify(value, null, 2);
}

export function icon(name) {
  // A few inline SVG glyphs, drawn here so nothing is fetched from elsewhere.
  const paths = {
    plus: 'M12 5v14M5 12h14',
    play: 'M7 4l13 8-13 8z',
    edit: 'M4 20h4L19 9l-4-4L4 16zM14 6l4 4',
    trash: 'M4 7h16M9 7V4h6v3M6 7l1 13h10l1-13',
    back: 'M15 18l-6-6 6-6',
    refresh: 'M20 11a8 8 0 10-2.3 5.7M20 4v7h-7',
    check: 'M5 12l5 5 9-10',
    x: 'M6 6l12 12M18 6L6 18',
  };
  const svg = document.createElementNS('http://www.w3.org/2000/svg', 'svg');
  svg.setAttribute('viewBox', '0 0 24 24');
  svg.setAttribute('class', 'icon');
  svg.setAttribute('aria-hidden', 'true');
  const path = document.createElementNS('http://www.w3.org/2000/svg', 'path');
  path.setAttribute('d', paths[name] || '');
  svg.append(path);
  return svg;
}
