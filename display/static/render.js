// Building the page from the board state. Data only ever goes in through textContent (and
// dataset / class names made from a fixed list), so a unit named "<img src=x onerror=...>"
// is shown as those characters, never parsed as markup.
import { DISTRICT_TILES, GRID, MAP_GROUP } from "./districts.js";
import {
  BAND_ORDER, bandLabel, formatDeadline, formatScore, formatTarget, formatTime, groupLabel,
  indicatorLabel, texts, windowLabel,
} from "./i18n.js";

const FLASH_MS = 2500;

function el(tag, cls, text) {
  const node = document.createElement(tag);
  if (cls) node.className = cls;
  if (text !== undefined && text !== null) node.textContent = String(text);
  return node;
}

function byId(id) {
  return document.getElementById(id);
}

// Band names come from data: only known ones become a class name.
function bandClass(band) {
  return BAND_ORDER.includes(band) ? `band-${band}` : "band-none";
}

function flashAge(state, window, unitId) {
  const t = state.flashes.get(`${window}|${unitId}`);
  if (t === undefined) return null;
  const age = Date.now() - t;
  return age < FLASH_MS ? age : null;
}

function markFlash(node, state, window, unitId) {
  const age = flashAge(state, window, unitId);
  if (age === null) return;
  node.classList.add("flash");
  node.style.animationDelay = `-${age}ms`; // a re-render continues the fade, not restarts it
}

export function sortRows(rows) {
  const NO_RANK = 1e9;
  return rows.sort((a, b) => {
    const ra = Number.isInteger(a.rank) ? a.rank : NO_RANK;
    const rb = Number.isInteger(b.rank) ? b.rank : NO_RANK;
    if (ra !== rb) return ra - rb;
    const na = String(a.name || "");
    const nb = String(b.name || "");
    if (na !== nb) return na.localeCompare(nb, "vi");
    return String(a.unit_id).localeCompare(String(b.unit_id));
  });
}

function rowsOf(state, window, group) {
  const rows = window ? state.boards[window] : null;
  if (!rows) return [];
  const out = [];
  for (const r of rows.values()) if (group === undefined || r.peer_group === group) out.push(r);
  return sortRows(out);
}

function latestAsOf(state, window) {
  let best = null;
  let bestT = -Infinity;
  const rows = window ? state.boards[window] : null;
  if (!rows) return null;
  for (const r of rows.values()) {
    const t = Date.parse(r.as_of);
    if (!Number.isNaN(t) && t > bestT) {
      bestT = t;
      best = r.as_of;
    }
  }
  return best;
}

function moveCell(row, lang) {
  const t = texts(lang);
  const m = row.move;
  const cell = el("div", "move");
  if (!m || !Number.isInteger(m.from) || !Number.isInteger(m.to) || m.from === m.to) {
    cell.classList.add("none");
    cell.textContent = "–";
    return cell;
  }
  const delta = m.from - m.to; // up the board = a smaller rank number
  cell.classList.add(delta > 0 ? "up" : "down");
  cell.textContent = `${delta > 0 ? "▲" : "▼"} ${Math.abs(delta)}`;
  cell.title = delta > 0 ? t.up(delta) : t.down(-delta);
  return cell;
}

// Commitment statuses (leaders/commitments.py), the one a badge shows first first.
const COMMIT_STATES = ["missed", "open", "met", "kept"];

function commitStatus(c) {
  return COMMIT_STATES.includes(c.status) ? c.status : "open";
}

// How far an open commitment is towards its target, in whole percent (null: no value yet).
function commitPercent(c) {
  if (typeof c.value !== "number" || typeof c.target !== "number" || c.target <= 0) return null;
  const pct = Math.max(0, Math.min(100, Math.floor((100 * c.value) / c.target)));
  // the value is rounded to 4 places (0.89996 -> 0.9): an open one is never shown as 100 %
  return commitStatus(c) === "open" ? Math.min(pct, 99) : pct;
}

function commitLine(c, lang) {
  const t = texts(lang);
  return `${indicatorLabel(c.indicator, lang)}: ${formatTarget(c.value, c.indicator, lang)}`
    + ` / ${t.target} ${formatTarget(c.target, c.indicator, lang)}`
    + ` · ${t.deadline} ${formatDeadline(c.deadline, lang)} · ${t.commitStatus[commitStatus(c)]}`;
}

// One badge per row: the worst status of the unit's commitments (✗ missed, ◔ open with the
// least progress, ✓ met or kept); every commitment in the tooltip. Null: no commitment.
function commitBadge(row, lang) {
  const list = Array.isArray(row.commitments)
    ? row.commitments.filter((c) => c && typeof c === "object") : [];
  if (!list.length) return null;
  const t = texts(lang);
  const worst = COMMIT_STATES.find((s) => list.some((c) => commitStatus(c) === s));
  const these = list.filter((c) => commitStatus(c) === worst);
  let text = "✓";
  if (worst === "missed") {
    text = these.length > 1 ? `✗ ${these.length}` : "✗";
  } else if (worst === "open") {
    const pcts = these.map(commitPercent).filter((p) => p !== null);
    text = pcts.length ? `◔ ${Math.min(...pcts)}%` : "◔";
  }
  const node = el("div", `commit commit-${worst}`, text);
  node.dataset.status = worst;
  node.title = `${t.commitment}\n${list.map((c) => commitLine(c, lang)).join("\n")}`;
  node.setAttribute("aria-label", node.title);
  return node;
}

function boardRow(state, row, window, lang) {
  const node = el("div", `row ${bandClass(row.band)}`);
  node.dataset.unit = row.unit_id;
  node.appendChild(el("div", "rank", Number.isInteger(row.rank) ? row.rank : "–"));
  node.appendChild(moveCell(row, lang));
  node.appendChild(el("div", "name", row.name || row.unit_id));
  const commit = commitBadge(row, lang);
  if (commit) {
    node.classList.add("has-commit");
    node.appendChild(commit);
  }
  node.appendChild(el("div", "score", formatScore(row.total, lang)));
  const band = el("div", "band");
  band.appendChild(el("span", `chip ${bandClass(row.band)}`, bandLabel(row.band, lang)));
  node.appendChild(band);
  markFlash(node, state, window, row.unit_id);
  return node;
}

function header(lang) {
  const t = texts(lang);
  const node = el("div", "row head");
  for (const [cls, text] of [["rank", t.rank], ["move", ""], ["name", t.unit], ["score", t.score], ["band", t.band]]) {
    node.appendChild(el("div", cls, text));
  }
  return node;
}

function renderBoard(main, state, view, options) {
  const t = texts(options.lang);
  const rows = rowsOf(state, view.window, view.group);
  const perPage = options.rows * options.columns;
  const page = rows.slice(view.page * perPage, (view.page + 1) * perPage);
  const board = el("section", "board");
  board.dataset.group = view.group;
  if (!page.length) {
    board.appendChild(el("div", "empty", t.noData));
  }
  for (let c = 0; c < options.columns && c * options.rows < page.length; c++) {
    const col = el("div", "column");
    col.appendChild(header(options.lang));
    for (const row of page.slice(c * options.rows, (c + 1) * options.rows)) {
      col.appendChild(boardRow(state, row, view.window, options.lang));
    }
    board.appendChild(col);
  }
  board.style.setProperty("--rows", String(options.rows + 1));
  board.style.setProperty("--cols", String(options.columns));
  main.replaceChildren(board);
}

function renderMap(main, state, view, options) {
  const lang = options.lang;
  const rows = new Map(rowsOf(state, view.window, MAP_GROUP).map((r) => [r.unit_id, r]));
  const wrap = el("section", "mapview");
  const grid = el("div", "map");
  grid.style.setProperty("--cols", String(GRID.cols));
  grid.style.setProperty("--rows", String(GRID.rows));
  const counts = {};
  for (const tile of DISTRICT_TILES) {
    const row = rows.get(tile.id);
    const band = row ? row.band : null;
    counts[band || "none"] = (counts[band || "none"] || 0) + 1;
    const node = el("div", `tile ${bandClass(band)}`);
    node.dataset.unit = tile.id;
    node.style.gridColumn = `${tile.col + 1} / span ${tile.colSpan || 1}`;
    node.style.gridRow = `${tile.row + 1} / span ${tile.rowSpan || 1}`;
    node.appendChild(el("div", "tname", tile[lang] || tile.vi));
    if (row && row.name) {
      // the full name and rank as a tooltip: a property, so text, never markup
      node.title = Number.isInteger(row.rank) ? `${row.name} · #${row.rank}` : String(row.name);
    }
    node.appendChild(el("div", "tscore", formatScore(row ? row.total : null, lang)));
    node.appendChild(el("div", "tband", bandLabel(band, lang)));
    if (row) markFlash(node, state, view.window, tile.id);
    grid.appendChild(node);
  }
  wrap.appendChild(grid);
  const side = el("aside", "mapside");
  for (const band of [...BAND_ORDER, "none"]) {
    const item = el("div", "count");
    item.appendChild(el("span", `chip ${bandClass(band === "none" ? null : band)}`,
      bandLabel(band === "none" ? null : band, lang)));
    item.appendChild(el("span", "n", counts[band] || 0));
    side.appendChild(item);
  }
  wrap.appendChild(side);
  main.replaceChildren(wrap);
}

export function renderChrome(state, cur, options) {
  const t = texts(options.lang);
  const view = cur.view;
  byId("title").textContent = t.title;
  byId("view-title").textContent = view.type === "map" ? t.map : groupLabel(view.group, options.lang);
  // while catching up the window shown is history, not "this month"
  byId("window-label").textContent = windowLabel(
    view.window || `${view.kind}:`, options.lang, !state.catchingUp,
  );
  byId("page-label").textContent = view.type === "board" && view.pages > 1
    ? t.page(view.page + 1, view.pages) : "";
  // with its date once it is not today's: an old time of day reads as fresh. While catching
  // up the board changes every moment but shows history: its time would read as fresh.
  const updated = state.catchingUp ? null : state.received;
  const today = updated && formatTime(updated, "en", true).slice(0, 10)
    === formatTime(new Date(), "en", true).slice(0, 10);
  byId("updated").textContent = `${t.updated} ${updated ? formatTime(updated, options.lang, !today) : t.never}`;
  const asOf = latestAsOf(state, view.window);
  byId("as-of").textContent = `${t.asOf} ${asOf ? formatTime(asOf, options.lang, true) : t.never}`;
  const models = new Set();
  const rows = view.window ? state.boards[view.window] : null;
  if (rows) for (const r of rows.values()) if (r.model) models.add(r.model);
  byId("model").textContent = [...models].join(", ");
  const dots = byId("views");
  dots.replaceChildren();
  if (cur.count > 1) {
    for (let i = 0; i < cur.count; i++) dots.appendChild(el("span", i === cur.index ? "dot on" : "dot"));
  }
  setConnection(state, options);
}

export function renderLegend(options) {
  const legend = byId("legend");
  legend.replaceChildren();
  for (const band of BAND_ORDER) {
    legend.appendChild(el("span", `chip ${bandClass(band)}`, bandLabel(band, options.lang)));
  }
}

// A live link to a board that is being rebuilt is not "Live": what it shows is history.
function shownConn(state) {
  return state.conn === "live" && state.catchingUp ? "catchup" : state.conn;
}

export function setConnection(state, options) {
  const t = texts(options.lang);
  const shown = shownConn(state);
  const conn = byId("conn");
  conn.className = `conn conn-${shown}`;
  byId("conn-text").textContent = t.conn[shown] || shown;
  const stale = byId("stale");
  const bad = shown === "reconnecting" || shown === "nodata" || shown === "catchup";
  stale.hidden = !bad;
  stale.textContent = shown === "nodata" ? t.redisDown : shown === "catchup" ? t.catchup : t.stale;
  document.body.classList.toggle("is-stale", bad);
}

export function render(state, cur, options) {
  const main = byId("view");
  main.dataset.view = cur.view.type;
  main.dataset.window = cur.view.window || "";
  if (cur.view.type === "map") renderMap(main, state, cur.view, options);
  else renderBoard(main, state, cur.view, options);
  renderLegend(options);
  renderChrome(state, cur, options);
}
