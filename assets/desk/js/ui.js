// Small DOM helpers. Everything goes through textContent / attributes —
// never innerHTML — so mail content can never become markup here.

/**
 * h('div', {class: 'x', 'data-testid': 'y', onclick: fn, style: {color: 'red'}}, 'text', child, [more])
 * - `on<event>` keys with a function become addEventListener (no inline handlers: CSP).
 * - `style` takes an object (CSSOM, allowed by the CSP; a style attribute string is not).
 * - `class` may be a string or an array (falsy entries dropped).
 * - `value`, `checked`, `disabled`, `selected`, `hidden` and other known properties are set as properties.
 * - null / undefined / false attribute values are skipped; children may be strings, numbers, nodes, arrays, or null.
 */
export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  if (attrs && (typeof attrs !== 'object' || attrs instanceof Node || Array.isArray(attrs))) {
    children.unshift(attrs);
    attrs = null;
  }
  if (attrs) {
    for (const [k, v] of Object.entries(attrs)) {
      if (v === null || v === undefined || v === false) continue;
      if (k.startsWith('on') && typeof v === 'function') {
        el.addEventListener(k.slice(2).toLowerCase(), v);
      } else if (k === 'style' && typeof v === 'object') {
        Object.assign(el.style, v);
      } else if (k === 'class' || k === 'className') {
        el.className = Array.isArray(v) ? v.filter(Boolean).join(' ') : v;
      } else if (k === 'dataset' && typeof v === 'object') {
        Object.assign(el.dataset, v);
      } else if (PROPS.has(k)) {
        el[k] = v;
      } else {
        el.setAttribute(k, v === true ? '' : String(v));
      }
    }
  }
  append(el, children);
  return el;
}

const PROPS = new Set(['value', 'checked', 'disabled', 'selected', 'hidden', 'multiple', 'readOnly', 'textContent', 'htmlFor', 'tabIndex']);

function append(el, children) {
  for (const c of children) {
    if (c === null || c === undefined || c === false) continue;
    if (Array.isArray(c)) append(el, c);
    else if (c instanceof Node) el.appendChild(c);
    else el.appendChild(document.createTextNode(String(c)));
  }
}

/** Remove every child of `el`, then append `children`. */
export function clear(el, ...children) {
  while (el.firstChild) el.removeChild(el.firstChild);
  append(el, children);
  return el;
}

/** Shorthand for document.querySelector. */
export const $ = (sel, root = document) => root.querySelector(sel);

function toastRoot() {
  let root = document.getElementById('toasts');
  if (!root) {
    root = h('div', { id: 'toasts', 'aria-live': 'polite' });
    document.body.appendChild(root);
  }
  return root;
}

/** A transient message (`[data-testid=toast]`, class `toast toast-<kind>`). kind: info | success | warn | error. */
export function toast(text, kind = 'info', ms = 6000) {
  const el = h('div', { class: ['toast', `toast-${kind}`], 'data-testid': 'toast', 'data-kind': kind, role: kind === 'error' ? 'alert' : 'status' }, text);
  const close = () => el.remove();
  el.appendChild(h('button', { class: 'toast-x', type: 'button', 'aria-label': 'dismiss', onclick: close }, '×'));
  toastRoot().appendChild(el);
  if (ms > 0) setTimeout(close, ms);
  return el;
}

/**
 * A modal dialog in #modal-root. `body` is a node (or text); `buttons` a list of
 * {label, value, kind?: 'primary'|'danger', testid?}. Resolves with the clicked
 * button's value (a function value is called and its result used; if it throws
 * or returns undefined while `keepOpen` the dialog stays), or null on Escape / backdrop.
 */
export function modal(title, body, buttons = [{ label: 'OK', value: true, kind: 'primary' }], opts = {}) {
  return new Promise((resolve) => {
    const root = document.getElementById('modal-root') || document.body;
    const done = (v) => {
      backdrop.remove();
      document.removeEventListener('keydown', onKey);
      resolve(v);
    };
    const onKey = (e) => {
      if (e.key === 'Escape') done(null);
    };
    const btns = buttons.map((b) =>
      h('button', {
        type: 'button',
        class: ['btn', b.kind && `btn-${b.kind}`],
        'data-testid': b.testid,
        onclick: async () => {
          let v = b.value;
          if (typeof v === 'function') {
            try {
              v = await v();
            } catch {
              return; // the callback reported its own error; keep the dialog
            }
            if (v === undefined && opts.keepOpen) return;
          }
          done(v);
        },
      }, b.label),
    );
    const dialog = h('div', { class: 'modal', role: 'dialog', 'aria-modal': 'true', 'aria-label': title, 'data-testid': opts.testid || 'modal' },
      h('div', { class: 'modal-title' }, title),
      h('div', { class: 'modal-body' }, body),
      h('div', { class: 'modal-buttons' }, btns));
    const backdrop = h('div', { class: 'modal-backdrop' }, dialog);
    backdrop.addEventListener('mousedown', (e) => {
      if (e.target === backdrop) done(null);
    });
    document.addEventListener('keydown', onKey);
    root.appendChild(backdrop);
    const first = dialog.querySelector('input, select, textarea') || btns[btns.length - 1];
    if (first) first.focus();
  });
}

/** Yes / no question → Promise<boolean>. */
export async function confirmDialog(text, { yes = 'OK', no = 'Cancel', danger = false } = {}) {
  const v = await modal('Confirm', h('p', null, text), [
    { label: no, value: false, testid: 'confirm-cancel' },
    { label: yes, value: true, kind: danger ? 'danger' : 'primary', testid: 'confirm-ok' },
  ], { testid: 'confirm-dialog' });
  return v === true;
}

/** A short local time: today → "14:05", this year → "24 Nov 14:05", else "24 Nov 2025". */
export function fmtTime(iso) {
  if (!iso) return '';
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return String(iso);
  const now = new Date();
  const hm = d.toLocaleTimeString(undefined, { hour: '2-digit', minute: '2-digit' });
  if (d.toDateString() === now.toDateString()) return hm;
  const dm = d.toLocaleDateString(undefined, { day: 'numeric', month: 'short' });
  if (d.getFullYear() === now.getFullYear()) return `${dm} ${hm}`;
  return d.toLocaleDateString(undefined, { day: 'numeric', month: 'short', year: 'numeric' });
}

/** Full local date and time, for title attributes. */
export function fmtFull(iso) {
  if (!iso) return '';
  const d = new Date(iso);
  return Number.isNaN(d.getTime()) ? String(iso) : d.toLocaleString();
}

/** "1.2 MB" */
export function fmtSize(n) {
  if (n == null) return '';
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KB`;
  return `${(n / 1024 / 1024).toFixed(1)} MB`;
}

/** Debounce `fn` by `ms`. */
export function debounce(fn, ms) {
  let t = null;
  return (...args) => {
    clearTimeout(t);
    t = setTimeout(() => fn(...args), ms);
  };
}
