// Draws the service map into an SVG element, updating it in place on every refresh.
//
// Nodes and edges are keyed by id, so a refresh changes only numbers, colours and labels;
// positions come from layout.js and change only when the graph's structure does. Nodes that
// have a detail page are SVG links (<a href>): focusable with Tab and opened with Enter.

import { reconcile, s, setAttr, setText } from "../dom.js";
import * as fmt from "../format.js";
import { NODE_HEIGHT, NODE_WIDTH, edgePath, layout, portOffsets, structureKey } from "./layout.js";

/** Error-rate thresholds for edge colours: below 1% green, below 5% amber, else red. */
export const WARN_RATE = 0.01;
export const BAD_RATE = 0.05;

const KIND_LABELS = {
  virtualNode: "virtual node",
  virtualGateway: "gateway",
  virtualService: "virtual service",
  external: "external",
};

/** "ok" | "warn" | "bad" | "idle" for an edge, from its error rate. */
export function edgeHealth(edge) {
  if (!edge.requests && !edge.rps) return "idle";
  const rate = Number(edge.errorRate) || 0;
  if (rate >= BAD_RATE) return "bad";
  if (rate >= WARN_RATE) return "warn";
  return "ok";
}

/** "ok" | "warn" | "bad" | "none" for a node's instance badge. */
export function instanceHealth(node) {
  const total = Number(node.instances) || 0;
  const healthy = Number(node.healthy) || 0;
  if (total === 0) return "none";
  if (healthy >= total) return "ok";
  return healthy === 0 ? "bad" : "warn";
}

export const edgeKey = (e) => `${e.source}>${e.target}>${e.destination || ""}`;

export class GraphRenderer {
  /** @param linkFor (node) => href string, or null for nodes without a detail page */
  constructor(linkFor) {
    this.linkFor = linkFor;
    this.structure = null;
    this.geometry = null;
    this.svg = s("svg", { class: "graph", role: "group", "aria-label": "Service map" },
      markers(),
      (this.edgeLayer = s("g", { class: "edges" })),
      (this.nodeLayer = s("g", { class: "nodes" })));
  }

  /** Draw `topology` ({nodes, edges}); cheap when only numbers changed. */
  update(topology, label) {
    const nodes = topology.nodes || [];
    const known = new Set(nodes.map((n) => n.id));
    const edges = (topology.edges || []).filter((e) => known.has(e.source) && known.has(e.target));
    const key = structureKey(nodes, edges);
    if (key !== this.structure) {
      this.structure = key;
      this.geometry = layout(nodes, edges);
      const backwards = edges.some((e) => {
        const a = this.geometry.positions.get(e.source);
        const b = this.geometry.positions.get(e.target);
        return b.x <= a.x;
      });
      const height = this.geometry.height + (backwards ? 60 : 0);
      setAttr(this.svg, "viewBox", `0 0 ${this.geometry.width} ${height}`);
      setAttr(this.svg, "width", this.geometry.width);
      setAttr(this.svg, "height", height);
    }
    setAttr(this.svg, "aria-label", label);
    this.drawEdges(edges);
    this.drawNodes(nodes);
  }

  drawNodes(nodes) {
    const sorted = [...nodes].sort((a, b) => cmp(this.geometry.positions.get(a.id), this.geometry.positions.get(b.id)));
    reconcile(this.nodeLayer, sorted, (n) => `${n.id}@${this.linkFor(n) ? "link" : "plain"}`,
      (n) => this.createNode(n), (el, n) => this.updateNode(el, n));
  }

  createNode(node) {
    const link = this.linkFor(node);
    const el = s(link ? "a" : "g", { class: "node" },
      s("title"),
      s("rect", { class: "box", width: NODE_WIDTH, height: NODE_HEIGHT, rx: node.kind === "virtualGateway" ? 18 : 6 }),
      s("rect", { class: "stripe", width: 5, height: NODE_HEIGHT - 20, x: 5, y: 10, rx: 2 }),
      s("text", { class: "node-name", x: 18, y: 24 }),
      s("text", { class: "node-kind", x: 18, y: 44 }),
      s("g", { class: "badge", transform: `translate(${NODE_WIDTH - 12}, 12)` },
        s("rect", { class: "badge-bg", height: 20, rx: 10, y: 0 }),
        s("text", { class: "badge-text", y: 14 })));
    if (!link) el.setAttribute("role", "img");
    return el;
  }

  updateNode(el, node) {
    const pos = this.geometry.positions.get(node.id);
    const link = this.linkFor(node);
    if (link) setAttr(el, "href", link);
    setAttr(el, "class", `node kind-${node.kind}`);
    setAttr(el, "transform", `translate(${pos.x}, ${pos.y})`);
    el.dataset.name = node.name;
    el.dataset.kind = node.kind;
    const [, box, , name, kind, badge] = el.children;
    setAttr(box, "rx", node.kind === "virtualGateway" ? 18 : 6);
    setText(name, truncate(node.name, 20));
    const version = node.version !== undefined && node.version !== null ? ` · v${node.version}` : "";
    setText(kind, `${KIND_LABELS[node.kind] || node.kind}${version}`);

    const total = Number(node.instances) || 0;
    const healthy = Number(node.healthy) || 0;
    const text = total ? `${healthy}/${total}` : "0";
    const width = 14 + text.length * 7.5;
    const [bg, label] = badge.children;
    setAttr(badge, "class", `badge badge-${instanceHealth(node)}`);
    setAttr(bg, "width", width);
    setAttr(bg, "x", -width);
    setAttr(label, "x", -width / 2);
    setText(label, text);

    const summary = `${node.name}, ${KIND_LABELS[node.kind] || node.kind}, ` +
      (total ? `${healthy} of ${total} instances healthy` : "no instances registered");
    setText(el.firstElementChild, summary);
    setAttr(el, "aria-label", link ? `${summary}; open details` : summary);
  }

  drawEdges(edges) {
    const positions = this.geometry.positions;
    const keyed = [...edges].sort((a, b) => edgeKey(a).localeCompare(edgeKey(b)))
      .map((e) => ({ key: edgeKey(e), source: e.source, target: e.target }));
    const ports = portOffsets(keyed, positions, this.geometry.routes);
    const lanes = new Map(); // back edges between the same pair loop at different depths
    for (const e of keyed) {
      if (ports.has(e.key)) continue;
      const pair = `${e.source}>${e.target}`;
      lanes.set(pair, (lanes.get(pair) ?? -1) + 1);
      ports.set(e.key, { lane: lanes.get(pair) });
    }
    reconcile(this.edgeLayer, edges, edgeKey, () => createEdge(),
      (el, e) => this.updateEdge(el, e, ports.get(edgeKey(e))));
  }

  updateEdge(el, edge, ports) {
    const from = this.geometry.positions.get(edge.source);
    const to = this.geometry.positions.get(edge.target);
    const { d, label } = edgePath(from, to, ports, this.geometry.routes.get(`${edge.source}>${edge.target}`));
    const health = edgeHealth(edge);
    const [title, line, tag] = el.children;
    setAttr(el, "class", `edge edge-${health}`);
    el.dataset.source = edge.source;
    el.dataset.target = edge.target;
    setAttr(line, "d", d);
    setAttr(line, "marker-end", `url(#arrow-${health})`);
    const rps = Number(edge.rps) || 0;
    setAttr(line, "stroke-width", (1.5 + Math.min(4, Math.log10(1 + rps) * 1.5)).toFixed(2));

    const text = `${fmt.rps(rps)} rps · ${fmt.percent(edge.errorRate)}`;
    const width = 12 + text.length * 6.3;
    const [bg, words] = tag.children;
    setAttr(tag, "transform", `translate(${label.x.toFixed(1)}, ${label.y.toFixed(1)})`);
    setAttr(bg, "x", (-width / 2).toFixed(1));
    setAttr(bg, "width", width.toFixed(1));
    setText(words, text);
    setText(title, `${nameOf(edge.source)} → ${nameOf(edge.target)} (${edge.destination || "?"}): ` +
      `${fmt.rps(rps)} rps, ${fmt.percent(edge.errorRate)} errors, p50 ${fmt.ms(edge.p50Ms)}, p99 ${fmt.ms(edge.p99Ms)}`);
  }
}

function createEdge() {
  return s("g", { class: "edge" },
    s("title"),
    s("path", { class: "edge-line", fill: "none" }),
    s("g", { class: "edge-label" },
      s("rect", { class: "label-bg", y: -10, height: 18, rx: 4 }),
      s("text", { class: "label-text", y: 3, "text-anchor": "middle" })));
}

function markers() {
  const defs = s("defs");
  for (const health of ["ok", "warn", "bad", "idle"]) {
    defs.append(s("marker", {
      id: `arrow-${health}`, class: `arrow arrow-${health}`, viewBox: "0 0 10 10", refX: 9, refY: 5,
      markerWidth: 7, markerHeight: 7, orient: "auto-start-reverse", markerUnits: "userSpaceOnUse",
    }, s("path", { d: "M0,0 L10,5 L0,10 z" })));
  }
  return defs;
}

/** The kind part of a node id ("virtualNode/frontend" → "virtualNode"; "external" → itself). */
export function kindOf(id) {
  const slash = String(id).indexOf("/");
  return slash < 0 ? String(id) : String(id).slice(0, slash);
}

/** The name part of a node id ("virtualNode/frontend" → "frontend"). */
export function nameOf(id) {
  const slash = String(id).indexOf("/");
  return slash < 0 ? String(id) : String(id).slice(slash + 1);
}

function truncate(text, max) {
  const value = String(text ?? "");
  return value.length > max ? `${value.slice(0, max - 1)}…` : value;
}

function cmp(a, b) {
  return a.column - b.column || a.y - b.y;
}
