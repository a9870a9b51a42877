// "Recent incidents": what an operator wants from the event stream — failed
// and partial runs, error bursts, rejected records and alert transitions —
// read from each `event` frame's KPI contributions (`kpi`, see
// docs/data-model.md) and from the `alert` frames. Repeats of one kind for
// one source within a minute fold into one row with a count. Also the
// readable names of the raw event kinds ("raw_records.update" → "records
// processed"). Pure functions; main.js keeps the list.

export const MAX_INCIDENTS = 50;
const FOLD_MS = 60_000;

const TABLE_WORDS = {
  raw_records: ['records received', 'records processed', 'records deleted'],
  runs: ['run started', 'run updated', 'run deleted'],
  errors: ['errors logged', 'errors changed', 'errors deleted'],
  meetings: ['meetings written', 'meetings updated', 'meetings deleted'],
  sources: ['source added', 'source changed', 'source removed'],
};
const OPS = ['insert', 'update', 'delete'];

/** "raw_records.update" → "records processed"; unknown kinds as they are. */
export function readableKind(kind) {
  if (typeof kind !== 'string') return '';
  const [table, op] = kind.split('.');
  return TABLE_WORDS[table]?.[OPS.indexOf(op)] ?? kind;
}

/**
 * The incidents one `event` frame holds: [{ key, kind, level, text, source, n, at }].
 * `kind` is one of run_failed, run_partial, errors, rejected.
 */
export function incidentsOfEvent(ev) {
  if (!Array.isArray(ev?.kpi)) return [];
  const at = Date.parse(ev.at) || Date.now();
  const names = Array.isArray(ev.sources) ? ev.sources : [];
  const one = ev.source ?? (names.length === 1 ? names[0] : null);
  const sums = new Map(); // kind\0label -> { kind, label, n }
  for (const c of ev.kpi) {
    if (!Array.isArray(c)) continue;
    const [, metric, , , n, label] = c;
    if (!(n > 0)) continue; // a retraction (-1) is no incident
    const kind = { runs_failed: 'run_failed', runs_partial: 'run_partial', errors: 'errors', rejected: 'rejected' }[metric];
    if (!kind) continue;
    const key = `${kind}\0${kind === 'errors' ? label ?? '' : ''}`;
    const s = sums.get(key) || { kind, label: kind === 'errors' ? label : null, n: 0 };
    s.n += n;
    sums.set(key, s);
  }
  const source = one ?? (names.length ? names.join(', ') : null);
  return [...sums.values()].map(({ kind, label, n }) => ({
    key: `${kind}\0${label ?? ''}\0${source ?? ''}`,
    kind,
    level: kind === 'run_failed' || kind === 'errors' ? 'bad' : 'warn',
    label,
    source,
    n,
    at,
  }));
}

/** The incident of an `alert` frame (firing, resolved, …), or null for pending. */
export function incidentOfAlert(a) {
  if (a?.type !== 'alert' || a.state === 'pending') return null;
  const scope = a.source || (Array.isArray(a.sources) && a.sources.length ? a.sources.join(', ') : null);
  return {
    key: `alert\0${a.rule}\0${a.instance}\0${a.id}`,
    kind: a.state === 'firing' ? 'alert_firing' : 'alert_resolved',
    level: a.state === 'firing' ? (a.severity === 'critical' ? 'bad' : 'warn') : 'good',
    label: a.rule,
    source: scope,
    n: 1,
    at: Date.parse(a.at) || Date.now(),
  };
}

/** What the incident says: "Run failed", "Errors: timeout ×3", "Alert firing: backlog-high". */
export function incidentText(inc) {
  const times = inc.n > 1 ? ` ×${inc.n}` : '';
  switch (inc.kind) {
    case 'run_failed': return `Run failed${times}`;
    case 'run_partial': return `Run partial${times}`;
    case 'errors': return `Errors${inc.label ? `: ${inc.label}` : ''}${times}`;
    case 'rejected': return `Records rejected${times}`;
    case 'alert_firing': return `Alert firing: ${inc.label}`;
    case 'alert_resolved': return `Alert resolved: ${inc.label}`;
    default: return inc.kind;
  }
}

/**
 * Adds `inc` to `list` (newest first): a repeat of the newest incident with
 * the same key within a minute adds to its count instead (same object, so
 * its row is updated, not flashed again). Returns the list.
 */
export function pushIncident(list, inc) {
  const same = list.find((x) => x.key === inc.key);
  if (same && inc.kind.startsWith('alert')) return list; // the same transition again (a replay)
  if (same && inc.at - same.at <= FOLD_MS) {
    same.n += inc.n;
    same.at = Math.max(same.at, inc.at);
    same.rev = (same.rev || 0) + 1;
    return list;
  }
  inc.id = `${inc.key}\0${inc.at}`;
  list.unshift(inc);
  if (list.length > MAX_INCIDENTS) list.length = MAX_INCIDENTS;
  return list;
}
