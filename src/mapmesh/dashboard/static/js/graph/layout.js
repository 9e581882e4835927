// Layered layout for the service map (a small Sugiyama-style layout), pure: no DOM.
//
// Calls flow left to right: gateways and other callers without callers on the left, each
// callee one column right of its furthest caller (longest path). Within a column, nodes are
// ordered by the mean row of their neighbours (barycenter heuristic, a few sweeps), ties by
// name, which keeps crossings low for service graphs of tens of nodes.
//
// The layout is a function of the graph's *structure* only (node ids and which pairs call
// each other), never of traffic numbers, so refreshing the map with new rates never moves a
// node; only a new node or a new caller→callee pair can. Cost: O(sweeps · (V + E) log V).
//
// Cycles (A calls B calls A) are broken by ignoring the edges that close a cycle in a
// depth-first walk; those edges are still drawn, as curves back to the left.

export const NODE_WIDTH = 180;
export const NODE_HEIGHT = 58;
const COLUMN_GAP = 150; // horizontal space between columns, room for edge labels
const ROW_GAP = 44;
const MARGIN = 24;
const SWEEPS = 4;

const SOURCE_KINDS = new Set(["virtualGateway", "external"]);

/** A string that changes only when the layout would: used to skip re-layout on refresh. */
export function structureKey(nodes, edges) {
  const ids = nodes.map((n) => `${n.kind}:${n.id}`).sort();
  const pairs = [...new Set(edges.map((e) => `${e.source}>${e.target}`))].sort();
  return `${ids.join(",")}|${pairs.join(",")}`;
}

/**
 * Positions for `nodes` ({id, kind, name}) given `edges` ({source, target}).
 * Returns {positions: Map(id → {x, y, column}), width, height}; x, y are the top-left corner.
 * Edges naming unknown nodes are ignored.
 */
export function layout(nodes, edges) {
  const byId = new Map(nodes.map((n) => [n.id, n]));
  const links = uniqueLinks(edges, byId);
  const forward = acyclic(nodes, links);
  const rank = ranks(nodes, forward);
  const columns = order(nodes, links, rank);

  const tallest = Math.max(1, ...columns.map((c) => c.length));
  const height = MARGIN * 2 + tallest * NODE_HEIGHT + (tallest - 1) * ROW_GAP;
  const positions = new Map();
  columns.forEach((column, c) => {
    const used = column.length * NODE_HEIGHT + (column.length - 1) * ROW_GAP;
    const top = (height - used) / 2; // centre each column vertically
    column.forEach((id, row) => {
      positions.set(id, {
        x: MARGIN + c * (NODE_WIDTH + COLUMN_GAP),
        y: top + row * (NODE_HEIGHT + ROW_GAP),
        column: c,
      });
    });
  });
  const width = MARGIN * 2 + columns.length * NODE_WIDTH + Math.max(0, columns.length - 1) * COLUMN_GAP;
  return { positions, width: Math.max(width, NODE_WIDTH + MARGIN * 2), height };
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

/** The links that do not close a cycle, by an iterative depth-first walk in name order. */
function acyclic(nodes, links) {
  const out = adjacency(links);
  const state = new Map(); // id → 1 on the stack, 2 done
  const kept = [];
  const starts = [...nodes].sort(sourceFirst).map((n) => n.id);
  for (const start of starts) {
    if (state.has(start)) continue;
    const stack = [[start, 0]];
    state.set(start, 1);
    while (stack.length) {
      const top = stack[stack.length - 1];
      const next = (out.get(top[0]) || [])[top[1]++];
      if (next === undefined) {
        state.set(top[0], 2);
        stack.pop();
      } else if (!state.has(next)) {
        kept.push([top[0], next]);
        state.set(next, 1);
        stack.push([next, 0]);
      } else if (state.get(next) === 2) {
        kept.push([top[0], next]); // a cross or forward edge: no cycle
      } // else: a back edge, dropped for ranking
    }
  }
  return kept;
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

/** Columns of ids, ordered by barycenter sweeps (down, then up), ties by kind and name. */
function order(nodes, links, rank) {
  const count = Math.max(0, ...rank.values()) + 1;
  const columns = Array.from({ length: count }, () => []);
  for (const n of [...nodes].sort(sourceFirst)) columns[rank.get(n.id)].push(n.id);
  const preds = adjacency(links.map(([a, b]) => [b, a]));
  const succs = adjacency(links);
  const rowOf = new Map();
  const index = () => columns.forEach((col) => col.forEach((id, i) => rowOf.set(id, i)));
  index();
  for (let sweep = 0; sweep < SWEEPS; sweep++) {
    const down = sweep % 2 === 0;
    const range = down ? columns.keys() : [...columns.keys()].reverse();
    for (const c of range) {
      const neighbours = down ? preds : succs;
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
 * Forward edges leave the right side and enter the left side with a horizontal S-curve;
 * edges to the same or an earlier column loop below the boxes. `lane` (0, 1, …) separates
 * several edges between the same pair of boxes.
 */
export function edgePath(from, to, lane = 0) {
  const offset = lane * 10;
  if (to.x > from.x) {
    const x1 = from.x + NODE_WIDTH;
    const y1 = from.y + NODE_HEIGHT / 2 + offset;
    const x2 = to.x;
    const y2 = to.y + NODE_HEIGHT / 2 + offset;
    const bend = (x2 - x1) / 2;
    return {
      d: `M${x1},${y1} C${x1 + bend},${y1} ${x2 - bend},${y2} ${x2},${y2}`,
      label: { x: (x1 + x2) / 2, y: (y1 + y2) / 2 },
    };
  }
  // Back or same-column edge: out of the bottom of the caller, into the bottom of the callee.
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
