// The pages beside the ops console and the wallboard's live panels: on the
// wallboard the active-alerts banner, the last-hour charts and the source
// health grid; the routes `#/sources`, `#/trends`, `#/alerts` and
// `#/exports`. main.js hands over every WebSocket frame (`onFrame`) and every
// route change (`route`); this module keeps the alerts, export jobs and sources and re-renders what
// is visible at most once per animation frame (and every second, for ages).

import { createRest } from './rest.js';
import { createAlertStore, markTiles, renderAlertBanner, renderAlertsView } from './alerts.js';
import { createExportStore, renderExportsView } from './exports.js';
import { createSourcesModel, renderSourcesView } from './sources.js';
import { createWrongNow } from './wrongnow.js';

const LIST_ROUTES = new Set(['runs', 'records', 'errors']);
const LAST_LIST_KEY = 'ingestwatch.lastList';

function readLastList() {
  try {
    const [kind, query] = JSON.parse(sessionStorage.getItem(LAST_LIST_KEY));
    return LIST_ROUTES.has(kind) ? { kind, params: new URLSearchParams(query) } : null;
  } catch { return null; }
}
function saveLastList(kind, params) {
  const p = new URLSearchParams(params);
  p.delete('token');
  p.delete('access_token');
  p.delete('sort'); // an export job takes the filters, not the order
  try { sessionStorage.setItem(LAST_LIST_KEY, JSON.stringify([kind, p.toString()])); } catch { /* private mode */ }
  return { kind, params: p };
}

export function createPages({ root, getToken, onAuthError }) {
  const $ = (id) => document.getElementById(id);
  const banner = $('alert-banner');
  const badge = $('alert-count');
  const wrongNowPanel = $('wrong-now');
  const wrongNow = wrongNowPanel ? createWrongNow(wrongNowPanel) : null;
  const wallCharts = $('wall-charts');
  const rest = createRest({ getToken, onAuthError });
  let state = null;      // main.js state (kpis), as of the last frame
  let current = null;    // { name, view } of the visible route
  let wallOn = false;
  let wall = null;       // createWallCharts(), loaded with the chart code
  let stopSources = null;
  let lastList = readLastList(); // { kind, params } of the last list route, for exports
  let frame = 0;

  const schedule = () => {
    if (!frame) frame = requestAnimationFrame(() => { frame = 0; render(Date.now()); });
  };
  const alerts = createAlertStore();
  const exportsStore = createExportStore({ rest, onChange: schedule });
  const live = () => !state || state.live; // no polling while the socket is down
  const sources = createSourcesModel({ rest, onChange: schedule, canFetch: live });
  setInterval(() => { if (wallOn || current) schedule(); }, 1000); // ages, "since"

  function render(now) {
    renderAlertBanner(wallOn ? banner : null, badge, alerts, now);
    if (wallOn) markTiles(document, alerts.list());
    const needHealth = wallOn || current?.name === 'sources';
    const health = needHealth ? sources.healthOf(state?.kpis, alerts.list(), now) : null;
    if (wallOn && wrongNow) wrongNow(health, sources.loaded, now);
    if (current?.name === 'sources') current.view.update(health, now);
    else if (current?.view?.update) current.view.update(now);
  }

  async function startWall() {
    if (wallOn) return;
    wallOn = true;
    stopSources = sources.watch();
    if (wallCharts) {
      if (!wall) {
        const { createWallCharts } = await import('./trends.js');
        wall ||= createWallCharts(wallCharts, rest, { canFetch: live });
      }
      if (wallOn) wall.start();
    }
    schedule();
  }
  function stopWall() {
    if (!wallOn) return;
    wallOn = false;
    wall?.stop();
    stopSources?.();
    stopSources = null;
  }

  function leave() {
    current?.view?.leave?.();
    current?.unwatch?.();
    current = null;
  }

  const navigate = (hash) => { location.hash = hash; };

  async function show(name, params) {
    leave();
    const mine = { name };
    current = mine;
    root.dataset.view = name;
    if (name === 'sources') {
      mine.unwatch = sources.watch();
      mine.view = renderSourcesView(root, { model: sources, params });
    } else if (name === 'alerts') {
      mine.view = renderAlertsView(root, { rest, store: alerts, params, navigate });
    } else if (name === 'exports') {
      mine.view = renderExportsView(root, { rest, store: exportsStore, params, lastList });
    } else if (name === 'trends') {
      const { renderTrendsView } = await import('./trends.js');
      if (current !== mine) return;
      mine.view = renderTrendsView(root, { rest, params, sources, navigate });
    }
    schedule();
  }

  return {
    /** Every frame of the socket, with main.js's state after it. */
    onFrame(msg, appState) {
      state = appState;
      if (alerts.apply(msg) || exportsStore.apply(msg)) schedule();
      else if (msg.type === 'delta' || msg.type === 'snapshot') {
        if (msg.topic === 'kpis') {
          queueMicrotask(() => wall?.kpisChanged()); // after main.js has applied the frame (state.live)
          if (wallOn || current?.name === 'sources') schedule();
        }
      }
    },
    /** Shows `#/sources`, `#/trends`, `#/alerts` or `#/exports`; false for other routes. */
    route({ route, params }) {
      const [head, arg] = route;
      if (route.length === 0) startWall(); else stopWall();
      if (LIST_ROUTES.has(head) && !arg) lastList = saveLastList(head, params);
      const mine = ['sources', 'trends', 'alerts', 'exports'].includes(head) && !arg;
      root.hidden = !mine;
      if (mine) show(head, params);
      else leave();
      return mine;
    },
  };
}
