// Map view: the mesh's live topology (GET /v1/topology) as a graph, plus the same calls as a
// table (sortable by eye, readable by screen readers, and where exact numbers live).

import * as api from "../api.js";
import { code, emptyState, h, reconcile, replace, setText } from "../dom.js";
import * as fmt from "../format.js";
import { BAD_RATE, GraphRenderer, WARN_RATE, edgeHealth, edgeKey, kindOf, nameOf } from "../graph/render.js";

export const WINDOWS = [60, 300, 900];
const DEFAULT_WINDOW = 60;
const LINKED_KINDS = new Set(["virtualNode", "virtualGateway"]);
const HEALTH_WORDS = { ok: "healthy", warn: "degraded", bad: "failing", idle: "idle" };

export class MapView {
  constructor(ctx) {
    this.ctx = ctx;
    this.window = pickWindow(ctx.params.window);
    this.graph = new GraphRenderer((node) =>
      LINKED_KINDS.has(node.kind) ? ctx.href("service", [node.kind, node.name]) : null);

    this.windowSelect = h("select", { id: "window-select", onchange: () => ctx.replaceParams({ window: this.windowSelect.value }) },
      WINDOWS.map((w) => h("option", { value: w }, `last ${fmt.windowLabel(w)}`)));
    this.windowSelect.value = String(this.window);
    this.summary = h("p", { class: "summary" }, "Loading the topology…");
    this.notice = h("div", { class: "notice-slot" });
    this.graphWrap = h("div", { class: "graph-wrap", hidden: true }, this.graph.svg);
    this.rows = h("tbody");
    this.callsCaption = h("caption", { class: "visually-hidden" });
    this.calls = h("section", { class: "calls", "aria-labelledby": "calls-title", hidden: true },
      h("h2", { id: "calls-title" }, "Calls"),
      h("div", { class: "table-scroll" },
        h("table", { class: "data" }, this.callsCaption,
          h("thead", {}, h("tr", {},
            ["From", "To", "Destination", "Requests/s", "Errors", "p50", "p99", "Requests"]
              .map((t, i) => h("th", { scope: "col", class: i >= 3 ? "num" : null }, t)))),
          this.rows)));

    this.el = h("section", { class: "view map-view", "aria-labelledby": "map-title" },
      h("div", { class: "view-head" },
        h("h1", { id: "map-title" }, "Service map"),
        h("div", { class: "controls" }, h("label", { for: "window-select" }, "Window"), this.windowSelect)),
      this.summary, this.notice, this.graphWrap, legend(), this.calls);
    this.legendEl = this.el.querySelector(".legend");
    this.legendEl.hidden = true;
  }

  setParams(params) {
    this.window = pickWindow(params.window);
    this.windowSelect.value = String(this.window);
  }

  async refresh(signal) {
    const topology = await api.topology(this.ctx.mesh, this.window, { signal });
    this.render(topology);
  }

  render(topology) {
    const nodes = topology.nodes || [];
    const edges = topology.edges || [];
    const busy = edges.filter((e) => (Number(e.requests) || 0) > 0 || (Number(e.rps) || 0) > 0);
    const rps = edges.filter((e) => e.source.startsWith("virtualGateway/")).reduce((sum, e) => sum + (Number(e.rps) || 0), 0);
    setText(this.summary,
      `${count(nodes.length, "node")} · ${count(busy.length, "call")} with traffic in the last ` +
      `${fmt.windowLabel(topology.window || this.window)}` + (rps ? ` · ${fmt.rps(rps)} rps through gateways` : ""));

    if (!nodes.length) {
      this.showNotice("empty-mesh", () => emptyState("This mesh has no virtual nodes or gateways yet.",
        "Describe them in a mesh file and run ", code("mapmesh apply -f mesh.yaml"),
        "; they appear here within 2 s."));
      this.graphWrap.hidden = true;
      this.calls.hidden = true;
      this.legendEl.hidden = true;
      return;
    }
    if (!busy.length) {
      this.showNotice("no-traffic", () => emptyState("No traffic yet — curl the gateway.",
        "Send a few requests, e.g. ", code("curl http://127.0.0.1:8080/"),
        " or ", code("python examples/demo/load.py"),
        "; proxies report every 2 s and calls show up here as arrows."));
    } else {
      this.showNotice(null);
    }
    this.graphWrap.hidden = false;
    this.legendEl.hidden = false;
    this.graph.update(topology, `Service map of mesh ${this.ctx.mesh}: ${nodes.length} nodes, ${edges.length} calls`);
    this.calls.hidden = edges.length === 0;
    setText(this.callsCaption, `Calls between services in the last ${fmt.windowLabel(topology.window || this.window)}`);
    const ordered = [...edges].sort((a, b) => edgeKey(a).localeCompare(edgeKey(b)));
    reconcile(this.rows, ordered, edgeKey, () => callRow(), (row, e) => this.updateRow(row, e));
  }

  /** Show one notice (keyed, so a refresh with the same notice leaves the DOM alone). */
  showNotice(key, build) {
    if (this.notice.dataset.key === (key || "")) return;
    this.notice.dataset.key = key || "";
    if (key) replace(this.notice, build());
    else replace(this.notice);
  }

  updateRow(row, edge) {
    const [from, to, dest, rate, errors, p50, p99, total] = row.children;
    this.nodeCell(from, edge.source);
    this.nodeCell(to, edge.target);
    setText(dest, edge.destination || "–");
    setText(rate, fmt.rps(edge.rps));
    const health = edgeHealth(edge);
    errors.className = `num health-${health}`;
    setText(errors.firstChild, fmt.percent(edge.errorRate));
    setText(errors.lastChild, ` ${HEALTH_WORDS[health]}`);
    setText(p50, fmt.ms(edge.p50Ms));
    setText(p99, fmt.ms(edge.p99Ms));
    setText(total, edge.requests ?? "–");
  }

  nodeCell(cell, id) {
    const [kind, name] = [kindOf(id), nameOf(id)];
    const link = LINKED_KINDS.has(kind) ? this.ctx.href("service", [kind, name]) : null;
    const current = cell.firstChild;
    if (current && current.dataset.id === `${id}|${link}`) return;
    const el = link ? h("a", { href: link }, name) : h("span", {}, name);
    el.dataset.id = `${id}|${link}`;
    replace(cell, el);
  }
}

function callRow() {
  return h("tr", {}, h("td"), h("td"), h("td"), h("td", { class: "num" }),
    h("td", { class: "num" }, h("span"), h("span", { class: "visually-hidden" })),
    h("td", { class: "num" }), h("td", { class: "num" }), h("td", { class: "num" }));
}

function legend() {
  const item = (health, text) => h("li", {}, h("span", { class: `swatch swatch-${health}`, "aria-hidden": "true" }), text);
  return h("ul", { class: "legend", "aria-label": "Legend" },
    item("ok", `errors below ${WARN_RATE * 100}%`),
    item("warn", `${WARN_RATE * 100}–${BAD_RATE * 100}% errors`),
    item("bad", `${BAD_RATE * 100}% errors or more`),
    item("idle", "no requests in the window"),
    h("li", {}, h("span", { class: "badge-sample" }, "2/2"), "healthy / registered instances"));
}

function pickWindow(value) {
  const w = Number(value);
  return WINDOWS.includes(w) ? w : DEFAULT_WINDOW;
}

function count(n, noun) {
  return `${n} ${noun}${n === 1 ? "" : "s"}`;
}
