// Alerts: the live set of active alerts (WebSocket topic `alerts`: a
// snapshot, then one `alert` frame per transition), the wallboard banner, the
// header badge and the `#/alerts` view (active alerts live, history from
// /api/alerts/history with keyset paging and filters in the URL).

import { h, text, attr } from './dom.js';
import { DASH, fmtAgo, fmtCount, fmtDateTime, fmtDuration, fmtUtc, parseTime } from './format.js';

const SEVERITY_RANK = { critical: 0, warning: 1, info: 2 };
const ACTIVE = new Set(['pending', 'firing']);

/** The value of an alert in its unit: "31.0 %", "8.2 s", "612 records". */
export function fmtAlertValue(v, unit) {
  if (typeof v !== 'number' || !Number.isFinite(v)) return DASH;
  switch (unit) {
    case 'ratio': return `${(v * 100).toFixed(1)} %`;
    case 'ms': return fmtDuration(v);
    case 'seconds': return fmtDuration(v * 1000);
    case '': return fmtCount(v);
    default: return `${fmtCount(v)} ${unit}`;
  }
}

/** Where an alert applies: its source, "a, b", or "all sources". */
export function alertScope(a) {
  if (a.source) return a.source;
  if (Array.isArray(a.sources) && a.sources.length) return a.sources.join(', ');
  return a.instance || 'all sources';
}

/** Firing before pending, then by severity, then oldest first. */
export function compareAlerts(a, b) {
  return (a.state === 'firing' ? 0 : 1) - (b.state === 'firing' ? 0 : 1)
    || (SEVERITY_RANK[a.severity] ?? 3) - (SEVERITY_RANK[b.severity] ?? 3)
    || String(a.since).localeCompare(String(b.since))
    || `${a.rule}\0${a.instance}`.localeCompare(`${b.rule}\0${b.instance}`);
}

/**
 * The active alerts as the `alerts` topic tells them. `apply(frame)` returns
 * true when the set changed; `transitions` keeps the frames seen live
 * (newest first) for the history view.
 */
export function createAlertStore() {
  const active = new Map(); // `${rule}\0${instance}` -> alert
  const transitions = [];
  let lastId = null;
  let loaded = false;
  return {
    get loaded() { return loaded; },
    list() { return [...active.values()].sort(compareAlerts); },
    transitions,
    apply(msg) {
      if (msg.type === 'snapshot' && msg.topic === 'alerts') {
        active.clear();
        for (const a of msg.data?.active || []) active.set(`${a.rule}\0${a.instance}`, a);
        lastId = Number.isSafeInteger(msg.id) ? msg.id : lastId;
        loaded = true;
        return true;
      }
      if (msg.type !== 'alert') return false;
      if (Number.isSafeInteger(msg.id)) {
        if (lastId !== null && msg.id <= lastId) return false; // already in the snapshot
        lastId = msg.id;
      }
      transitions.unshift(msg);
      if (transitions.length > 200) transitions.length = 200;
      const key = `${msg.rule}\0${msg.instance}`;
      if (ACTIVE.has(msg.state)) {
        active.set(key, { ...msg, since: msg.at, transition_id: msg.id });
      } else {
        active.delete(key);
      }
      return true;
    },
  };
}

function alertLine(a, now) {
  const since = parseTime(a.since);
  return [
    h('b', { class: 'alert-rule' }, a.rule),
    ` · ${alertScope(a)} · `,
    h('span', { class: 'alert-value' }, `${fmtAlertValue(a.value, a.unit)} (limit ${fmtAlertValue(a.threshold, a.unit)})`),
    ` · ${a.state} ${since == null ? '' : fmtAgo(since, now).replace(' ago', '')}`,
  ];
}

/** Renders the wallboard banner and the header badge from the store. */
export function renderAlertBanner(banner, badge, store, now) {
  const list = store.list();
  const firing = list.filter((a) => a.state === 'firing');
  const worst = firing.some((a) => a.severity === 'critical') ? 'critical'
    : firing.length ? 'warning' : list.length ? 'pending' : 'ok';
  if (badge) {
    attr(badge, 'hidden', list.length === 0);
    text(badge, firing.length ? String(firing.length) : String(list.length));
    attr(badge, 'data-level', worst);
    attr(badge, 'aria-label', `${firing.length} firing, ${list.length - firing.length} pending`);
  }
  if (!banner) return;
  attr(banner, 'hidden', !store.loaded);
  attr(banner, 'data-level', worst);
  const key = JSON.stringify(list.map((a) => [a.rule, a.instance, a.state, a.value, a.since]))
    + Math.floor(now / 10_000); // the "since" texts age every 10 s
  if (banner.dataset.key === key) return;
  banner.dataset.key = key;
  if (!list.length) {
    banner.replaceChildren(h('span', { class: 'alert-head' }, 'No active alerts'));
    return;
  }
  const pending = list.length - firing.length;
  const head = [firing.length ? `${firing.length} firing` : '', pending ? `${pending} pending` : '']
    .filter(Boolean).join(' · ');
  const shown = list.slice(0, 4);
  banner.replaceChildren(...[
    h('a', { class: 'alert-head', href: '#/alerts' }, head),
    h('ul', { class: 'alert-chips' }, shown.map((a) => h('li', {
      data: { severity: a.severity, state: a.state, rule: a.rule, instance: a.instance },
      title: a.summary || '',
    }, alertLine(a, now)))),
    list.length > shown.length ? h('a', { href: '#/alerts', class: 'alert-more' }, `+${list.length - shown.length} more`) : null,
  ].filter(Boolean));
}

/** The wallboard tile showing the figure each alert condition watches. */
export const TILE_OF_CONDITION = {
  lag_p95: 'lag_p95', backlog: 'backlog', reject_rate: 'rejected', error_rate: 'errors',
  failed_runs: 'runs_failed', long_run: 'runs_running',
};

/**
 * One story: while an alert on a tile's figure fires, the tile turns red
 * (critical) or amber (other severities) and names the rule.
 */
export function markTiles(doc, list) {
  const level = {};
  const rules = {};
  for (const a of list) {
    const k = TILE_OF_CONDITION[a.condition];
    if (a.state !== 'firing' || !k) continue;
    if (level[k] !== 'bad') level[k] = a.severity === 'critical' ? 'bad' : 'warn';
    (rules[k] ||= new Set()).add(a.rule);
  }
  for (const num of doc.querySelectorAll('.tiles [data-kpi]')) {
    const tile = num.closest('.tile');
    const k = num.dataset.kpi;
    attr(tile, 'data-alert', level[k] || null);
    let note = tile.querySelector('.tile-alert');
    if (level[k]) {
      if (!note) tile.append((note = h('p', { class: 'tile-alert' })));
      text(note, `alert firing: ${[...rules[k]].join(', ')}`);
    } else note?.remove();
  }
}

const HISTORY_FILTERS = ['rule', 'source', 'state'];

function timeCell(iso) {
  const t = parseTime(iso);
  return t == null ? DASH : h('time', { datetime: iso, title: fmtUtc(t) }, fmtDateTime(t));
}

/** `#/alerts?rule=&source=&state=`: active alerts (live) and the history. */
export function renderAlertsView(root, { rest, store, params, navigate }) {
  let gone = false;
  const filters = new URLSearchParams();
  for (const f of HISTORY_FILTERS) if (params.get(f)) filters.set(f, params.get(f));

  const activeBody = h('tbody');
  const activeEmpty = h('p', { class: 'empty' }, 'Waiting for the alerts stream…');
  const activeTable = h('table', { class: 'list', id: 'active-alerts' },
    h('thead', {}, h('tr', {}, ['Severity', 'State', 'Rule', 'Scope', 'Value', 'Limit', 'Since', 'Summary']
      .map((c) => h('th', { scope: 'col', class: c === 'Value' || c === 'Limit' ? 'n' : null }, c)))),
    activeBody);

  const form = h('form', { class: 'filters', 'aria-label': 'Alert history filters' },
    h('label', { htmlFor: 'f-alerts-rule' }, 'Rule', h('input', { id: 'f-alerts-rule', name: 'rule', type: 'search', value: filters.get('rule') || '', autocomplete: 'off' })),
    h('label', { htmlFor: 'f-alerts-source' }, 'Source', h('input', { id: 'f-alerts-source', name: 'source', type: 'search', value: filters.get('source') || '', autocomplete: 'off' })),
    h('label', { htmlFor: 'f-alerts-state' }, 'State', h('select', { id: 'f-alerts-state', name: 'state' },
      ['', 'pending', 'firing', 'resolved', 'inactive'].map((s) => h('option', { value: s, selected: s === (filters.get('state') || '') }, s || 'any')))),
    h('button', { type: 'submit' }, 'Apply'));
  const apply = (e) => {
    e?.preventDefault();
    const next = new URLSearchParams();
    for (const [k, v] of new FormData(form)) if (String(v).trim()) next.set(k, String(v).trim());
    navigate(`#/alerts${next.toString() ? `?${next}` : ''}`);
  };
  form.addEventListener('submit', apply);
  form.addEventListener('change', (e) => { if (e.target.tagName === 'SELECT') apply(); });

  const histBody = h('tbody');
  const status = h('p', { class: 'list-status', role: 'status' }, 'Loading…');
  const more = h('button', { type: 'button', class: 'more', hidden: true }, 'Load more');
  const histTable = h('table', { class: 'list', id: 'alert-history' },
    h('thead', {}, h('tr', {}, ['Time', 'Rule', 'Scope', 'Transition', 'Severity', 'Value', 'Limit']
      .map((c) => h('th', { scope: 'col', class: c === 'Value' || c === 'Limit' ? 'n' : null }, c)))),
    histBody);
  const seen = new Set();
  let cursor = null;

  function historyRow(t, live) {
    return h('tr', { data: { id: t.id }, class: live ? 'new' : null },
      h('td', {}, timeCell(t.at)), h('td', {}, t.rule), h('td', {}, alertScope(t)),
      h('td', { data: { col: 'state' } }, `${t.from} → `, h('b', { data: { state: t.state } }, t.state)),
      h('td', { data: { severity: t.severity } }, t.severity),
      h('td', { class: 'n' }, fmtAlertValue(t.value, t.unit)), h('td', { class: 'n' }, fmtAlertValue(t.threshold, t.unit)));
  }
  const matches = (t) => (!filters.get('rule') || t.rule === filters.get('rule'))
    && (!filters.get('source') || (t.sources || []).includes(filters.get('source')))
    && (!filters.get('state') || t.state === filters.get('state'));

  async function load() {
    const q = new URLSearchParams(filters);
    q.set('limit', '50');
    if (cursor) q.set('cursor', cursor);
    more.disabled = true;
    try {
      const body = await rest.get(`/api/alerts/history?${q}`);
      if (gone) return;
      for (const t of body.transitions) {
        if (seen.has(t.id)) continue;
        seen.add(t.id);
        histBody.append(historyRow(t, false));
      }
      cursor = body.next_cursor;
      more.hidden = !cursor;
      const n = histBody.rows.length;
      text(status, `${n} transition${n === 1 ? '' : 's'}${cursor ? ' (more available)' : ''}`);
    } catch (e) {
      if (!gone) text(status, `Could not load the alert history: ${e.message}`);
    } finally {
      more.disabled = false;
    }
  }
  more.addEventListener('click', load);

  let shownLive = store.transitions[0]?.id ?? null;
  function update(now) {
    const list = store.list();
    activeEmpty.hidden = list.length > 0;
    activeTable.hidden = list.length === 0;
    text(activeEmpty, store.loaded ? 'No active alerts.' : 'Waiting for the alerts stream…');
    activeBody.replaceChildren(...list.map((a) => h('tr', { data: { rule: a.rule, instance: a.instance, state: a.state } },
      h('td', { data: { severity: a.severity } }, a.severity),
      h('td', {}, h('b', { data: { state: a.state } }, a.state)),
      h('td', {}, a.rule), h('td', {}, alertScope(a)),
      h('td', { class: 'n', data: { col: 'value' } }, fmtAlertValue(a.value, a.unit)),
      h('td', { class: 'n' }, fmtAlertValue(a.threshold, a.unit)),
      h('td', {}, h('time', { datetime: a.since, title: fmtUtc(parseTime(a.since)) }, fmtAgo(parseTime(a.since), now))),
      h('td', { class: 'summary' }, a.summary || DASH))));
    // transitions that arrived live go on top of the history
    const fresh = [];
    for (const t of store.transitions) {
      if (t.id === shownLive) break;
      if (!seen.has(t.id) && matches(t)) fresh.push(t);
    }
    if (store.transitions.length) shownLive = store.transitions[0].id;
    for (const t of fresh.reverse()) {
      seen.add(t.id);
      histBody.prepend(historyRow(t, true));
    }
  }

  root.replaceChildren(
    h('div', { class: 'console-head' }, h('h2', {}, 'Alerts')),
    h('section', { class: 'panel list-panel fit', 'aria-labelledby': 'active-h' },
      h('h3', { id: 'active-h' }, 'Active'), h('div', { class: 'scroll' }, activeTable, activeEmpty)),
    h('section', { class: 'panel list-panel', 'aria-labelledby': 'history-h' },
      h('h3', { id: 'history-h' }, 'History'), form, status, h('div', { class: 'scroll' }, histTable), more),
  );
  update(Date.now());
  load();
  return { update, leave() { gone = true; } };
}
