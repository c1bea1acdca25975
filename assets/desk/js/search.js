// Advanced search (docs/api.md "Advanced search"): conditions on 18 fields
// with the operators valid for each field's kind, match all / any; each
// condition can be edited, disabled (kept but ignored) or removed. While a
// search is applied, the list shows its results and a blinking "active"
// badge; the server's 400 text is shown when a condition is invalid.

import { bus } from './bus.js';
import { h, clear } from './ui.js';
import * as list from './list.js';

const TEXT_OPS = ['equals', 'not_equals', 'contains', 'not_contains', 'starts_with', 'ends_with', 'in', 'is_empty'];
const KINDS = {
  int: ['equals', 'not_equals', 'gt', 'lt', 'between', 'in'],
  text: TEXT_OPS,
  bool: ['equals', 'not_equals'],
  time: ['equals', 'gt', 'lt', 'between', 'is_empty'],
};

export const FIELDS = [
  ['id', 'Id', 'int'],
  ['subject', 'Subject', 'text'],
  ['text', 'Message text', 'text'],
  ['status', 'Status', 'text'],
  ['substatus', 'Sub-status', 'text'],
  ['account', 'Account (key)', 'text'],
  ['queue', 'Queue', 'text'],
  ['owner', 'Owner', 'text'],
  ['first_agent', 'First agent', 'text'],
  ['tag', 'Tag', 'text'],
  ['disposition', 'Disposition', 'text'],
  ['unread', 'Unread', 'bool'],
  ['contact.email', 'Contact email', 'text'],
  ['contact.first_name', 'Contact first name', 'text'],
  ['contact.last_name', 'Contact last name', 'text'],
  ['created_at', 'Created', 'time'],
  ['closed_at', 'Closed', 'time'],
  ['last_message.direction', 'Last message direction', 'text'],
];

const OP_LABELS = {
  equals: 'equals', not_equals: 'not equals', contains: 'contains', not_contains: 'does not contain',
  starts_with: 'starts with', ends_with: 'ends with', in: 'is one of', is_empty: 'is empty',
  gt: 'greater than', lt: 'less than', between: 'between',
};

const KEY = 'mailroom.advancedSearch';

const state = {
  match: 'all',
  conditions: [], // {field, op, value (string as typed), value2 (between), enabled}
  applied: false,
};

let els = null;

function kindOf(field) {
  const f = FIELDS.find(([name]) => name === field);
  return f ? f[2] : 'text';
}

function newCondition() {
  return { field: 'subject', op: 'contains', value: '', value2: '', enabled: true };
}

function persist() {
  localStorage.setItem(KEY, JSON.stringify({ match: state.match, conditions: state.conditions }));
}

function restoreSaved() {
  try {
    const s = JSON.parse(localStorage.getItem(KEY) || 'null');
    if (s && Array.isArray(s.conditions)) {
      state.match = s.match === 'any' ? 'any' : 'all';
      state.conditions = s.conditions;
    }
  } catch {
    // ignore
  }
}

/** A time input's value (local) → RFC 3339. */
function toRfc3339(v) {
  if (!v) return v;
  const d = new Date(v);
  return Number.isNaN(d.getTime()) ? v : d.toISOString();
}

/** The JSON value the API expects for one condition. */
function valueFor(c) {
  const kind = kindOf(c.field);
  if (c.op === 'is_empty') return c.value !== 'false';
  if (c.op === 'in') {
    return String(c.value || '').split(',').map((s) => s.trim()).filter((s) => s !== '')
      .map((s) => (kind === 'int' && /^\d+$/.test(s) ? Number(s) : s));
  }
  if (c.op === 'between') {
    if (kind === 'time') return [toRfc3339(c.value), toRfc3339(c.value2)];
    if (kind === 'int') return [Number(c.value), Number(c.value2)];
    return [c.value, c.value2];
  }
  if (kind === 'bool') return c.value !== 'false';
  if (kind === 'int') return /^\d+$/.test(String(c.value).trim()) ? Number(c.value) : c.value;
  if (kind === 'time') return toRfc3339(c.value);
  return c.value;
}

function body() {
  return {
    match: state.match,
    conditions: state.conditions.map((c) => ({ field: c.field, op: c.op, value: valueFor(c), enabled: c.enabled !== false })),
  };
}

function valueInputs(c, onchange) {
  const kind = kindOf(c.field);
  if (c.op === 'is_empty') {
    return h('select', { 'data-testid': 'adv-value', 'aria-label': 'Value', onchange: (e) => onchange('value', e.target.value) },
      h('option', { value: 'true', selected: c.value !== 'false' }, 'yes'),
      h('option', { value: 'false', selected: c.value === 'false' }, 'no'));
  }
  if (kind === 'bool') {
    return h('select', { 'data-testid': 'adv-value', 'aria-label': 'Value', onchange: (e) => onchange('value', e.target.value) },
      h('option', { value: 'true', selected: c.value !== 'false' }, 'true'),
      h('option', { value: 'false', selected: c.value === 'false' }, 'false'));
  }
  // Ids stay text (inputmode numeric): what the agent typed goes to the server, whose 400 says what is wrong.
  const type = kind === 'time' && c.op !== 'in' ? 'datetime-local' : 'text';
  const placeholder = c.op === 'in' ? 'a, b, c' : c.field === 'last_message.direction' ? 'in / out' : c.field === 'status' ? 'open / closed / closed_unmanaged' : 'value';
  const v1 = h('input', {
    type, 'data-testid': 'adv-value', 'aria-label': 'Value', placeholder, value: c.value || '', inputmode: kind === 'int' ? 'numeric' : null,
    oninput: (e) => onchange('value', e.target.value, true),
  });
  if (c.op !== 'between') return v1;
  const v2 = h('input', {
    type, 'data-testid': 'adv-value-2', 'aria-label': 'Second value', placeholder: 'to', value: c.value2 || '', inputmode: kind === 'int' ? 'numeric' : null,
    oninput: (e) => onchange('value2', e.target.value, true),
  });
  return h('span', { class: 'adv-between' }, v1, h('span', { class: 'muted' }, 'and'), v2);
}

function conditionRow(c, idx) {
  const kind = kindOf(c.field);
  const ops = KINDS[kind];
  const change = (key, value, quiet) => {
    c[key] = value;
    if (key === 'field') {
      // Keep the operator if the new field's kind allows it.
      const allowed = KINDS[kindOf(value)];
      if (!allowed.includes(c.op)) c.op = allowed[0];
      if (kindOf(value) === 'bool') c.value = 'true';
    }
    if (key === 'op' && value === 'is_empty') c.value = 'true';
    persist();
    if (!quiet) renderConditions();
  };
  return h('div', { class: ['adv-condition', c.enabled === false && 'disabled'], 'data-testid': 'adv-condition', 'data-index': idx },
    h('input', {
      type: 'checkbox', 'data-testid': 'adv-enabled', checked: c.enabled !== false, title: 'Enabled (unchecked: kept but ignored)',
      onchange: (e) => change('enabled', e.target.checked),
    }),
    h('select', { 'data-testid': 'adv-field', 'aria-label': 'Field', onchange: (e) => change('field', e.target.value) },
      FIELDS.map(([name, label]) => h('option', { value: name, selected: name === c.field }, label))),
    h('select', { 'data-testid': 'adv-operator', 'aria-label': 'Operator', onchange: (e) => change('op', e.target.value) },
      ops.map((op) => h('option', { value: op, selected: op === c.op }, OP_LABELS[op] || op))),
    valueInputs(c, change),
    h('button', {
      type: 'button', class: 'btn btn-small btn-ghost', 'data-testid': 'adv-remove', title: 'Remove this condition', 'aria-label': 'Remove',
      onclick: () => {
        state.conditions.splice(idx, 1);
        persist();
        renderConditions();
      },
    }, '✕'));
}

function renderConditions() {
  clear(els.conditions, state.conditions.map(conditionRow));
  if (!state.conditions.length) els.conditions.appendChild(h('div', { class: 'muted' }, 'No condition: add one.'));
  els.match.value = state.match;
}

function showError(text) {
  els.error.textContent = text || '';
  els.error.hidden = !text;
}

async function apply() {
  showError('');
  state.applied = true;
  els.badge.hidden = false;
  els.button.classList.add('active');
  await list.setAdvanced(body());
}

function clearSearch() {
  state.conditions = [];
  state.match = 'all';
  persist();
  renderConditions();
  showError('');
  if (state.applied) {
    state.applied = false;
    els.badge.hidden = true;
    els.button.classList.remove('active');
    list.setAdvanced(null);
  }
}

function toggle(open) {
  const show = open === undefined ? els.panel.hidden : open;
  els.panel.hidden = !show;
  els.button.setAttribute('aria-expanded', show ? 'true' : 'false');
  if (show && !state.conditions.length) {
    state.conditions.push(newCondition());
    renderConditions();
  }
}

let mounted = false;

/** Build the button (in the search bar) and the panel (once). */
export function mount() {
  if (mounted) return;
  mounted = true;
  restoreSaved();
  const slot = document.getElementById('adv-slot') || document.getElementById('list-search');
  const container = document.getElementById('advanced-search');
  const badge = h('span', { class: 'adv-active', 'data-testid': 'advanced-active', title: 'An advanced search is applied', hidden: true }, 'active');
  const button = h('button', {
    type: 'button', class: 'btn btn-small', 'data-testid': 'advanced-search-button', 'aria-expanded': 'false',
    title: 'Advanced search', onclick: () => toggle(),
  }, 'Advanced');
  const conditions = h('div', { class: 'adv-conditions' });
  const match = h('select', {
    class: 'adv-match', 'data-testid': 'adv-match', 'aria-label': 'Match all or any condition',
    onchange: (e) => {
      state.match = e.target.value === 'any' ? 'any' : 'all';
      persist();
    },
  },
  h('option', { value: 'all', selected: state.match === 'all' }, 'Match all'),
  h('option', { value: 'any', selected: state.match === 'any' }, 'Match any'));
  const error = h('div', { class: 'adv-error', 'data-testid': 'adv-error', role: 'alert', hidden: true });
  const panel = h('div', { class: 'adv-panel', 'data-testid': 'advanced-search-panel', hidden: true },
    h('div', { class: 'adv-head' }, match,
      h('button', {
        type: 'button', class: 'btn btn-small', 'data-testid': 'adv-add',
        onclick: () => {
          state.conditions.push(newCondition());
          persist();
          renderConditions();
        },
      }, '+ Condition')),
    conditions,
    error,
    h('div', { class: 'adv-buttons' },
      h('button', { type: 'button', class: 'btn btn-small', 'data-testid': 'adv-clear', onclick: clearSearch }, 'Clear'),
      h('button', { type: 'button', class: 'btn btn-small btn-primary', 'data-testid': 'adv-apply', onclick: apply }, 'Apply')));
  els = { button, badge, panel, conditions, match, error };
  slot.appendChild(button);
  slot.appendChild(badge);
  container.appendChild(panel);
  renderConditions();
  bus.on('advanced-error', (e) => {
    // The list failed under the advanced search: a 400 names every bad condition.
    showError(e && e.message ? e.message : String(e));
    els.panel.hidden = false;
  });
  bus.on('logged-in', () => {
    if (state.applied) {
      state.applied = false;
      badge.hidden = true;
      button.classList.remove('active');
    }
  });
}
