// Layered layout for the service map (a small Sugiyama-style layout), pure: no DOM.
//
// Calls flow left to right: gateways and other callers without callers on the left, each
// callee one column right of its furthest caller (longest path). Within a column, nodes are
// ordered by the mean row of their neighbours (barycenter heuristic, a few sweeps), ties by
// name, which keeps crossings low for service graphs of tens of nodes.
//
// The layout is a function of the graph's *structure* only (node ids and which pairs call
// each other), never of traffic numbers, so refreshing the map with new rates never moves a
// node; only a new node or a new caller→callee pair can. Cost: O(V² + sweeps · E log V),
// nothing for meshes of tens to a few hundred nodes.
//
// Cycles (A calls B calls A) are broken by leaving out of the ranking the few links that
// point backwards in a greedy order (see acyclic); they are still drawn, as curves that
// loop back below the boxes.

export const NODE_WIDTH = 180;
export const NODE_HEIGHT = 58;
const COLUMN_GAP = 130; // horizontal space between columns, room for edge labels
const ROW_GAP = 44; // between two boxes in a column
const LANE_HEIGHT = 18; // a long edge's slot in a column it crosses
const LANE_GAP = 10; // between such a slot and its neighbours
const MARGIN = 24;
const SWEEPS = 4;

const SOURCE_KINDS = new Set(["virtualGateway"]);
const LANE = "\u0000"; // prefix of the ids of long edges' slots; never in a node id

/** A string that changes only when the layout would: used to skip re-layout on refresh. */
export function structureKey(nodes, edges) {
  const ids = nodes.map((n) => `${n.kind}:${n.id}`).sort();
  const pairs = [...new Set(edges.map((e) => `${e.source}>${e.target}`))].sort();
  return `${ids.join(",")}|${pairs.join(",")}`;
}

/**
 * Positions for `nodes` ({id, kind, name}) given `edges` ({source, target}).
 * Returns {positions, routes, width, height}: positions is Map(id → {x, y, column}) with the
 * top-left corner of each box; routes is Map("source>target" → [{x, y}]) with the points
 * where an edge that skips columns crosses them (a slot kept free in each, like a box, so
 * long edges do not run through boxes). Edges naming unknown nodes are ignored.
 */
export function layout(nodes, edges) {
  const byId = new Map(nodes.map((n) => [n.id, n]));
  const links = uniqueLinks(edges, byId);
  const forward = acyclic(nodes, links);
  const rank = ranks(nodes, forward);

  // A link spanning several columns becomes a chain through one slot per column crossed.
  const chained = [];
  const slots = new Map(); // "a>b" → slot ids, left to right
  for (const [a, b] of forward) {
    let previous = a;
    const via = [];
    for (let r = rank.get(a) + 1; r < rank.get(b); r++) {
      const slot = `${LANE}${a}>${b}@${r}`;
      rank.set(slot, r);
      via.push(slot);
      chained.push([previous, slot]);
      previous = slot;
    }
    chained.push([previous, b]);
    if (via.length) slots.set(`${a}>${b}`, via);
  }
  const items = [...[...nodes].sort(sourceFirst).map((n) => n.id), ...[...slots.values()].flat()];
  const columns = order(items, chained, rank);

  const size = (id) => (id.startsWith(LANE) ? LANE_HEIGHT : NODE_HEIGHT);
  const gap = (a, b) => (a.startsWith(LANE) || b.startsWith(LANE) ? LANE_GAP : ROW_GAP);
  const extent = (column) => column.reduce((sum, id, i) => sum + size(id) + (i ? gap(column[i - 1], id) : 0), 0);
  const height = MARGIN * 2 + Math.max(NODE_HEIGHT, ...columns.map(extent));
  const positions = new Map();
  const points = new Map();
  columns.forEach((column, c) => {
    const x = MARGIN + c * (NODE_WIDTH + COLUMN_GAP);
    let y = (height - extent(column)) / 2; // centre each column vertically
    column.forEach((id, i) => {
      if (i) y += gap(column[i - 1], id);
      if (id.startsWith(LANE)) points.set(id, { x, y: y + LANE_HEIGHT / 2 });
      else positions.set(id, { x, y, column: c });
      y += size(id);
    });
  });
  const routes = new Map([...slots].map(([pair, via]) => [pair, via.map((slot) => points.get(slot))]));
  const width = MARGIN * 2 + columns.length * NODE_WIDTH + Math.max(0, columns.length - 1) * COLUMN_GAP;
  return { positions, routes, width: Math.max(width, NODE_WIDTH + MARGIN * 2), height };
}

function uniqueLinks(edges, byId) {
  const seen = new Set();
  const links = [];
  for (const e of edges) {
    const key = `${e.source}>${e.target}`;
    if (e.source === e.target || seen.has(key) || !byId.has(e.source) || !byId.has(e.target)) continue;
    seen.add(key);
    links.push([e.source, e.target]);
  }
  return links.sort(([a, b], [c, d]) => (a === c ? cmp(b, d) : cmp(a, c)));
}

/**
 * The links kept for ranking: nodes are put in a line by the greedy heuristic of Eades, Lin
 * and Smyth (sinks to the end, sources to the front, else the node with the most outgoing
 * minus incoming links next), and links that point backwards in that line are dropped.
 * It keeps most links (at least half, usually nearly all) in O(V² + E) for our sizes.
 */
function acyclic(nodes, links) {
  const ids = [...nodes].sort(sourceFirst).map((n) => n.id);
  const out = new Map(ids.map((id) => [id, new Set()]));
  const into = new Map(ids.map((id) => [id, new Set()]));
  for (const [a, b] of links) {
    out.get(a).add(b);
    into.get(b).add(a);
  }
  const remaining = new Set(ids);
  const front = [];
  const back = [];
  const take = (id) => {
    remaining.delete(id);
    for (const b of out.get(id)) into.get(b).delete(id);
    for (const a of into.get(id)) out.get(a).delete(id);
  };
  const first = (test) => ids.find((id) => remaining.has(id) && test(id));
  while (remaining.size) {
    let id;
    while ((id = first((x) => out.get(x).size === 0)) !== undefined) {
      back.unshift(id);
      take(id);
    }
    while ((id = first((x) => into.get(x).size === 0)) !== undefined) {
      front.push(id);
      take(id);
    }
    if (!remaining.size) break;
    let best = null;
    for (const x of ids) {
      if (!remaining.has(x)) continue;
      const delta = out.get(x).size - into.get(x).size;
      if (best === null || delta > best.delta) best = { id: x, delta };
    }
    front.push(best.id);
    take(best.id);
  }
  const position = new Map([...front, ...back].map((x, i) => [x, i]));
  return links.filter(([a, b]) => position.get(a) < position.get(b));
}

/** Longest-path ranks over the acyclic links; nodes without any link share a column. */
function ranks(nodes, forward) {
  const incoming = new Map(nodes.map((n) => [n.id, 0]));
  for (const [, b] of forward) incoming.set(b, incoming.get(b) + 1);
  const out = adjacency(forward);
  const rank = new Map();
  const queue = nodes.filter((n) => incoming.get(n.id) === 0).map((n) => n.id);
  for (const id of queue) rank.set(id, 0);
  while (queue.length) {
    const id = queue.shift();
    for (const next of out.get(id) || []) {
      rank.set(next, Math.max(rank.get(next) || 0, rank.get(id) + 1));
      incoming.set(next, incoming.get(next) - 1);
      if (incoming.get(next) === 0) queue.push(next);
    }
  }
  // Nodes nobody calls and that call nobody (no traffic yet): gateways stay in the first
  // column, services go one column right of the gateways, so an idle mesh still reads
  // gateway → services.
  const linked = new Set(forward.flat());
  const hasGateway = nodes.some((n) => SOURCE_KINDS.has(n.kind));
  for (const n of nodes) {
    if (!linked.has(n.id)) rank.set(n.id, hasGateway && !SOURCE_KINDS.has(n.kind) ? 1 : 0);
  }
  return rank;
}

/** Columns of ids, ordered by barycenter sweeps (down, then up); ties keep the given order. */
function order(items, links, rank) {
  const count = Math.max(0, ...items.map((id) => rank.get(id))) + 1;
  const columns = Array.from({ length: count }, () => []);
  for (const id of items) columns[rank.get(id)].push(id);
  const preds = adjacency(links.map(([a, b]) => [b, a]));
  const succs = adjacency(links);
  const rowOf = new Map();
  columns.forEach((col) => col.forEach((id, i) => rowOf.set(id, i)));
  for (let sweep = 0; sweep < SWEEPS; sweep++) {
    const down = sweep % 2 === 0;
    const range = down ? [...columns.keys()] : [...columns.keys()].reverse();
    const neighbours = down ? preds : succs;
    for (const c of range) {
      const weight = new Map(columns[c].map((id) => [id, barycenter(neighbours.get(id), rowOf, rowOf.get(id))]));
      columns[c].sort((a, b) => weight.get(a) - weight.get(b) || rowOf.get(a) - rowOf.get(b));
      columns[c].forEach((id, i) => rowOf.set(id, i));
    }
  }
  return columns.filter((c) => c.length);
}

function barycenter(neighbours, rowOf, fallback) {
  if (!neighbours || !neighbours.length) return fallback;
  return neighbours.reduce((sum, id) => sum + rowOf.get(id), 0) / neighbours.length;
}

function adjacency(links) {
  const out = new Map();
  for (const [a, b] of links) {
    if (!out.has(a)) out.set(a, []);
    out.get(a).push(b);
  }
  return out;
}

function sourceFirst(a, b) {
  const sa = SOURCE_KINDS.has(a.kind) ? 0 : 1;
  const sb = SOURCE_KINDS.has(b.kind) ? 0 : 1;
  return sa - sb || cmp(a.name || a.id, b.name || b.id) || cmp(a.id, b.id);
}

function cmp(a, b) {
  return a < b ? -1 : a > b ? 1 : 0;
}

/**
 * The SVG path and label point of an edge between two laid-out boxes.
 * Forward edges leave the right side and enter the left side with horizontal S-curves,
 * running straight across each column they skip (`waypoints`, from layout's routes), with
 * the label on the first such straight part (else halfway). `ports.out` / `ports.in` shift
 * where they leave and enter (see portOffsets), so a fan-out does not overlap. Edges to the
 * same or an earlier column loop below the boxes; `ports.lane` (0, 1, …) separates several
 * of those between the same pair.
 */
export function edgePath(from, to, ports = {}, waypoints = []) {
  if (to.x > from.x) {
    const start = { x: from.x + NODE_WIDTH, y: from.y + NODE_HEIGHT / 2 + (ports.out || 0) };
    const end = { x: to.x, y: to.y + NODE_HEIGHT / 2 + (ports.in || 0) };
    let d = `M${start.x},${start.y}`;
    let at = start;
    for (const w of waypoints) {
      d += curve(at, w) + ` L${w.x + NODE_WIDTH},${w.y}`;
      at = { x: w.x + NODE_WIDTH, y: w.y };
    }
    d += curve(at, end);
    const label = waypoints.length
      ? { x: waypoints[0].x + NODE_WIDTH / 2, y: waypoints[0].y }
      : { x: (start.x + end.x) / 2, y: (start.y + end.y) / 2 };
    return { d, label };
  }
  // Back or same-column edge: out of the bottom of the caller, into the bottom of the callee.
  const offset = (ports.lane || 0) * 10;
  const x1 = from.x + NODE_WIDTH / 2 + 12 + offset;
  const y1 = from.y + NODE_HEIGHT;
  const x2 = to.x + NODE_WIDTH / 2 - 12 - offset;
  const y2 = to.y + NODE_HEIGHT;
  const dip = Math.max(y1, y2) + 40 + offset;
  return {
    d: `M${x1},${y1} C${x1},${dip} ${x2},${dip} ${x2},${y2}`,
    label: { x: (x1 + x2) / 2, y: dip - 8 },
  };
}

function curve(p, q) {
  const bend = (q.x - p.x) / 2;
  return ` C${p.x + bend},${p.y} ${q.x - bend},${q.y} ${q.x},${q.y}`;
}

/**
 * Vertical port offsets for forward edges: at each node, the edges leaving it are spread
 * over its right side in the order of where they head next (a waypoint or the target), and
 * arriving ones over its left side in the order of where they come from, so a fan-out
 * reads as separate lines. `edges` are {key, source, target}; `routes` is layout's.
 * Returns Map(key → {out, in}).
 */
export function portOffsets(edges, positions, routes = new Map()) {
  const centre = (id) => positions.get(id).y + NODE_HEIGHT / 2;
  const forward = edges.filter((e) => positions.get(e.target).x > positions.get(e.source).x);
  const via = (e) => routes.get(`${e.source}>${e.target}`) || [];
  const next = (e) => (via(e).length ? via(e)[0].y : centre(e.target));
  const previous = (e) => (via(e).length ? via(e)[via(e).length - 1].y : centre(e.source));
  const ports = new Map(forward.map((e) => [e.key, { out: 0, in: 0 }]));
  const spread = (end, towards, side) => {
    const groups = new Map();
    for (const e of forward) {
      if (!groups.has(e[end])) groups.set(e[end], []);
      groups.get(e[end]).push(e);
    }
    for (const group of groups.values()) {
      group.sort((a, b) => towards(a) - towards(b) || (a.key < b.key ? -1 : 1));
      const step = Math.min(10, (NODE_HEIGHT - 24) / Math.max(1, group.length - 1));
      group.forEach((e, i) => {
        ports.get(e.key)[side] = (i - (group.length - 1) / 2) * step;
      });
    }
  };
  spread("source", next, "out");
  spread("target", previous, "in");
  return ports;
}
