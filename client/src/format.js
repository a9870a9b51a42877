// Number and time formatting. Pure functions; `now` is passed in where needed.

export const DASH = '—';

const nfInt = new Intl.NumberFormat(undefined, { maximumFractionDigits: 0 });
const nfCompact = new Intl.NumberFormat(undefined, { notation: 'compact', maximumSignificantDigits: 3 });
const nf1 = new Intl.NumberFormat(undefined, { maximumFractionDigits: 1 });
const nfPct = new Intl.NumberFormat(undefined, { style: 'percent', minimumFractionDigits: 1, maximumFractionDigits: 1 });

export const isNum = (v) => typeof v === 'number' && Number.isFinite(v);

/** Counts: full with grouping below 100 000, compact ("1.23M") above. */
export function fmtCount(v) {
  if (!isNum(v)) return DASH;
  return Math.abs(v) >= 1e5 ? nfCompact.format(v) : nfInt.format(v);
}

/** Full precision, for title attributes. */
export const fmtFull = (v) => (isNum(v) ? nfInt.format(v) : '');

/** Percentage given as 0..100. Rounded down so 99.96 never reads "100.0%". */
export function fmtPercent(p) {
  if (!isNum(p)) return DASH;
  const floored = p >= 100 ? 100 : Math.floor(p * 10) / 10;
  return nfPct.format(floored / 100);
}

/** Durations in ms: "120 ms", "2.3 s", "4.5 min", "1.2 h". */
export function fmtDuration(ms) {
  if (!isNum(ms)) return DASH;
  if (ms > 0 && ms < 1) return '<1 ms';
  if (Math.round(ms) < 1000) return `${nfInt.format(Math.round(ms))} ms`;
  if (ms < 59_950) return `${nf1.format(ms / 1000)} s`;
  if (ms < 3_597_000) return `${nf1.format(ms / 60_000)} min`;
  return `${nf1.format(ms / 3_600_000)} h`;
}

/** "12 s ago"; `t` and `now` in epoch ms. */
export function fmtAgo(t, now) {
  if (!isNum(t)) return DASH;
  const s = Math.floor((now - t) / 1000);
  if (s < 1) return 'just now';
  if (s < 60) return `${s} s ago`;
  if (s < 3600) return `${Math.floor(s / 60)} min ago`;
  if (s < 172_800) return `${Math.floor(s / 3600)} h ago`;
  return `${Math.floor(s / 86_400)} d ago`;
}

const pad = (n) => String(n).padStart(2, '0');

/** Browser-local "HH:MM:SS". */
export function fmtClock(t) {
  if (!isNum(t)) return DASH;
  const d = new Date(t);
  return `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}

const dayFmt = new Intl.DateTimeFormat(undefined, { month: 'short', day: 'numeric' });
/** Browser-local short date, e.g. "May 1". */
export const fmtDay = (t) => (isNum(t) ? dayFmt.format(t) : DASH);

/** Browser-local "2024-05-01 14:34:56" (24-hour, like the wallboard's clock). */
export function fmtDateTime(t) {
  if (!isNum(t)) return DASH;
  const d = new Date(t);
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${fmtClock(t)}`;
}

/** "2024-05-01 12:34:56 UTC". */
export function fmtUtc(t) {
  if (!isNum(t)) return '';
  return `${new Date(t).toISOString().slice(0, 19).replace('T', ' ')} UTC`;
}

/** RFC 3339 string → epoch ms, or null. */
export function parseTime(s) {
  if (typeof s !== 'string') return null;
  const t = Date.parse(s);
  return Number.isNaN(t) ? null : t;
}
