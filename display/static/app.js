// The wall page: connection to the gateway's push stream, board state, kiosk rotation.
// Every piece of data reaches the DOM through textContent (see render.js), never as markup.
import { render, renderChrome, setConnection } from "./render.js";

const params = new URLSearchParams(location.search);
const list = (name, fallback) =>
  (params.get(name) || fallback).split(",").map((s) => s.trim()).filter(Boolean);
// a kiosk parameter as a number within [lo, hi]; a typo ("abc") gives the default, not NaN
// (NaN pages: no board at all)
const number = (name, fallback, lo, hi) => {
  const n = Number(params.get(name) || fallback);
  return Number.isFinite(n) ? Math.min(hi, Math.max(lo, n)) : fallback;
};

// the window kinds the scorer publishes (streams/scorer.py LIVE_WINDOWS): any other one
// ("quarter", a typo) would say "no figures yet" for ever, so it is dropped like a bad number
const WINDOW_KINDS = ["month", "year"];
const windows = list("window", "month").filter((k) => WINDOW_KINDS.includes(k));

export const options = {
  lang: params.get("lang") === "en" ? "en" : "vi",
  windows: windows.length ? windows : ["month"], // window kinds shown, in this order
  groups: params.get("group") ? list("group", "") : null, // null: every group, districts first
  views: list("view", "board,map"), // board and/or map
  rotate: number("rotate", 0, 0, 86400), // seconds per view, 0 = no rotation
  rows: Math.round(number("rows", 11, 4, 20)), // rows per column
  columns: Math.round(number("columns", 2, 1, 3)),
};

// windows: kind -> current window; boards: window -> Map(unit_id -> row)
export const state = {
  windows: {},
  boards: {},
  flashes: new Map(), // "window|unit" -> time the row last changed (ms)
  received: null, // Date the board last changed (the writer's stamp)
  catchingUp: false, // the board is being rebuilt from the topics (it shows history)
  redis: null,
  conn: "connecting",
  viewIndex: 0,
  snapshots: 0,
  changes: 0,
};
window.__bando = state; // read by the end-to-end tests

const GROUP_ORDER = ["district", "department", "ward"];

// The list of views to rotate through, rebuilt from the data and the URL.
export function viewList() {
  const out = [];
  for (const kind of options.windows) {
    const window = state.windows[kind];
    const rows = window ? state.boards[window] : null;
    const present = new Set();
    if (rows) for (const r of rows.values()) present.add(r.peer_group);
    let groups = options.groups || [...present].sort(
      (a, b) => rank(GROUP_ORDER, a) - rank(GROUP_ORDER, b) || a.localeCompare(b),
    );
    if (!groups.length) groups = ["district"];
    for (const v of options.views) {
      if (v === "board") {
        for (const group of groups) {
          const n = rows ? [...rows.values()].filter((r) => r.peer_group === group).length : 0;
          const perPage = options.rows * options.columns;
          const pages = Math.max(1, Math.ceil(n / perPage));
          for (let page = 0; page < pages; page++) {
            out.push({ type: "board", kind, window, group, page, pages });
          }
        }
      } else if (v === "map") {
        out.push({ type: "map", kind, window });
      }
    }
  }
  return out.length ? out : [{ type: "board", kind: "month", window: null, group: "district", page: 0, pages: 1 }];
}

function rank(order, x) {
  const i = order.indexOf(x);
  return i < 0 ? order.length : i;
}

function currentView() {
  const views = viewList();
  if (state.viewIndex >= views.length) state.viewIndex = 0;
  return { view: views[state.viewIndex], index: state.viewIndex, count: views.length };
}

let renderPending = false;
function scheduleRender() {
  if (renderPending) return;
  renderPending = true;
  setTimeout(() => {
    renderPending = false;
    const cur = currentView();
    render(state, cur, options);
  }, 120);
}

// ---- data ----

function applySnapshot(snap) {
  state.windows = snap.windows || {};
  state.boards = {};
  for (const [window, groups] of Object.entries(snap.boards || {})) {
    const rows = new Map();
    for (const list_ of Object.values(groups)) for (const r of list_) rows.set(r.unit_id, r);
    state.boards[window] = rows;
  }
  // a snapshot replaces the board: flashes of rows it no longer has would pile up for ever
  for (const key of state.flashes.keys()) {
    const [window, unit] = key.split("|");
    if (!state.boards[window] || !state.boards[window].has(unit)) state.flashes.delete(key);
  }
  // when the board last changed (the writer's stamp), not when this page got it: a
  // reconnect must not make a board the feed stopped updating look fresh
  if (snap.updated) state.received = new Date(snap.updated);
  state.catchingUp = snap.catching_up === true;
  state.snapshots += 1;
  scheduleRender();
}

function applyChange(msg) {
  if (!msg || msg.t !== "unit" || !msg.unit) return;
  const rows = state.boards[msg.window];
  if (!rows) return; // not a current window (a late message for last month)
  const old = rows.get(msg.unit.unit_id);
  if (old && old.rev >= msg.unit.rev) return; // already shown, or older than what is shown
  rows.set(msg.unit.unit_id, msg.unit);
  state.flashes.set(`${msg.window}|${msg.unit.unit_id}`, Date.now());
  // the writer's stamp, as in a snapshot: this screen's clock may be off, and the time
  // would jump between the two. A change without one (an older writer) keeps the last stamp.
  const stamp = new Date(msg.updated);
  if (msg.updated && !Number.isNaN(stamp.getTime())) state.received = stamp;
  state.changes += 1;
  scheduleRender();
}

// ---- connection ----

let source = null;
let lastHeard = 0;
let retryDelay = 1000;
let pingSeconds = 15;
let retryTimer = null; // one pending retry at most: the watchdog and onerror both retry

function setConn(conn) {
  state.conn = conn;
  setConnection(state, options);
}

function connect() {
  clearTimeout(retryTimer);
  retryTimer = null;
  if (source) source.close();
  setConn(state.conn === "live" ? "reconnecting" : state.conn);
  source = new EventSource("events");
  const heard = () => {
    lastHeard = Date.now();
  };
  source.onopen = heard;
  source.addEventListener("status", (ev) => {
    heard();
    const s = JSON.parse(ev.data);
    state.redis = s.redis;
    if (s.ping) pingSeconds = s.ping;
    setConn(s.redis ? "live" : "nodata");
  });
  source.addEventListener("snapshot", (ev) => {
    heard();
    retryDelay = 1000;
    applySnapshot(JSON.parse(ev.data));
    if (state.redis !== false) setConn("live");
  });
  source.addEventListener("change", (ev) => {
    heard();
    applyChange(JSON.parse(ev.data));
  });
  source.addEventListener("ping", heard); // the gateway's heartbeat: the link is alive
  source.onerror = () => {
    setConn("reconnecting");
    if (source.readyState === EventSource.CLOSED) {
      // the browser gave up (an HTTP error): retry ourselves, backing off
      clearTimeout(retryTimer);
      retryTimer = setTimeout(connect, retryDelay);
      retryDelay = Math.min(retryDelay * 2, 15000);
    }
  };
}

// A connection that stays open but silent (a half-open TCP link) is reopened.
setInterval(() => {
  if (source && !retryTimer && lastHeard && Date.now() - lastHeard > pingSeconds * 3000) {
    lastHeard = Date.now();
    connect();
  }
}, 5000);

// ---- rotation ----

let rotationStarted = Date.now();
function nextView(step) {
  const views = viewList();
  state.viewIndex = (state.viewIndex + step + views.length) % views.length;
  rotationStarted = Date.now();
  scheduleRender();
}

if (options.rotate > 0) {
  setInterval(() => {
    if (Date.now() - rotationStarted >= options.rotate * 1000) nextView(1);
    const bar = document.getElementById("progress-bar");
    const frac = Math.min(1, (Date.now() - rotationStarted) / (options.rotate * 1000));
    bar.style.width = `${(frac * 100).toFixed(1)}%`;
  }, 250);
}

document.addEventListener("keydown", (ev) => {
  if (ev.key === "ArrowRight" || ev.key === " ") nextView(1);
  if (ev.key === "ArrowLeft") nextView(-1);
});

// Flashes fade by themselves (CSS); the clock line is refreshed once a second.
setInterval(() => renderChrome(state, currentView(), options), 1000);

document.documentElement.lang = options.lang;
renderChrome(state, currentView(), options);
connect();
