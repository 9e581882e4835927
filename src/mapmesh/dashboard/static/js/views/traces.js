// Traces: the sampled traces of the mesh, newest first (GET /v1/traces), and one trace as a
// waterfall (GET /v1/traces/{id}): a row per span, indented under its parent, with a bar on
// the trace's time axis. Client spans (a proxy's upstream attempt) are drawn hatched, server
// spans (a proxy receiving a request) solid; a failed span is red. A row's button opens its
// attributes.

import * as api from "../api.js";
import { code, emptyState, h, reconcile, replace, setAttr, setText } from "../dom.js";
import * as fmt from "../format.js";
import { spanFailed, ticks, waterfallRows } from "../trace-model.js";

const LIMIT = 50;

export class TracesView {
  constructor(ctx) {
    this.ctx = ctx;
    this.summary = h("p", { class: "summary" }, "Loading traces…");
    this.notice = h("div", { class: "notice-slot" });
    this.rows = h("tbody");
    this.table = h("div", { class: "table-scroll", hidden: true }, h("table", { class: "data traces" },
      h("caption", { class: "visually-hidden" }, "Recent traces, newest first"),
      h("thead", {}, h("tr", {}, ["Trace", "Started", "Duration", "Spans", "Services", "Result"]
        .map((t, n) => h("th", { scope: "col", class: n === 2 || n === 3 ? "num" : null }, t)))),
      this.rows));
    this.el = h("section", { class: "view traces-view", "aria-labelledby": "traces-title" },
      h("div", { class: "view-head" }, h("h1", { id: "traces-title" }, "Traces")),
      this.summary, this.notice, this.table);
  }

  async refresh(signal) {
    const { traces = [] } = await api.traces(this.ctx.mesh, LIMIT, { signal });
    const sorted = [...traces].sort((a, b) => b.start - a.start);
    const failed = sorted.filter((t) => t.error).length;
    setText(this.summary, sorted.length
      ? `${sorted.length} most recent sampled trace${sorted.length === 1 ? "" : "s"}${failed ? ` · ${failed} with errors` : ""}`
      : "");
    this.table.hidden = !sorted.length;
    const key = sorted.length ? "" : "empty";
    if (this.notice.dataset.key !== key) {
      this.notice.dataset.key = key;
      replace(this.notice, key ? emptyState("No traces yet — curl the gateway.",
        "Requests are sampled at their first hop and reported every 2 s; try ",
        code("curl http://127.0.0.1:8080/"), ".") : null);
    }
    const now = Date.now() / 1000;
    reconcile(this.rows, sorted, (t) => t.traceId, () => traceRow(), (row, t) => {
      const [name, started, duration, spans, services, result] = row.children;
      const link = name.firstChild;
      setAttr(link, "href", this.ctx.href("traces", [t.traceId]));
      setText(link, t.root || "(no root span)");
      setText(name.lastChild, t.traceId);
      setAttr(started.firstChild, "datetime", fmt.iso(t.start));
      setText(started.firstChild, `${fmt.clock(t.start)} (${fmt.ago(t.start, now)})`);
      setText(duration, fmt.ms(t.durationMs));
      setText(spans, t.spans);
      setText(services, (t.services || []).join(", ") || "–");
      setAttr(result.firstChild, "class", `pill ${t.error ? "pill-bad" : "pill-ok"}`);
      setText(result.firstChild, t.error ? "error" : "ok");
    });
  }
}

function traceRow() {
  return h("tr", {},
    h("td", {}, h("a", { class: "trace-link" }), h("span", { class: "trace-id mono" })),
    h("td", {}, h("time")),
    h("td", { class: "num" }),
    h("td", { class: "num" }),
    h("td"),
    h("td", {}, h("span")));
}

export class TraceView {
  constructor(ctx, traceId) {
    this.ctx = ctx;
    this.traceId = traceId;
    this.open = new Set(); // span ids whose attributes are shown
    this.shown = null; // a digest of what is drawn, to redraw only on change
    this.title = h("h1", { id: "trace-title" }, "Trace");
    this.summary = h("p", { class: "summary" }, "Loading the trace…");
    this.body = h("div", { class: "waterfall-slot" });
    this.el = h("section", { class: "view trace-view", "aria-labelledby": "trace-title" },
      h("p", { class: "crumbs" }, h("a", { href: ctx.href("traces") }, "← Traces")),
      h("div", { class: "view-head" }, this.title),
      h("p", { class: "mono muted" }, `trace id ${traceId}`),
      this.summary,
      h("ul", { class: "legend", "aria-label": "Legend" },
        h("li", {}, h("span", { class: "swatch bar-server", "aria-hidden": "true" }), "server span (a proxy received the request)"),
        h("li", {}, h("span", { class: "swatch bar-client", "aria-hidden": "true" }), "client span (a proxy's call upstream)"),
        h("li", {}, h("span", { class: "swatch bar-error", "aria-hidden": "true" }), "failed")),
      this.body);
  }

  async refresh(signal) {
    let trace;
    try {
      trace = await api.trace(this.traceId, { signal });
    } catch (err) {
      if (!(err instanceof api.ApiError && err.status === 404)) throw err;
      this.gone();
      return;
    }
    const spans = trace.spans || [];
    const digest = spans.map((s) => `${s.spanId}:${s.end}`).join(",");
    if (digest === this.shown) return; // spans arrive late sometimes; redraw only then
    this.shown = digest;
    const { rows, totalMs, start } = waterfallRows(spans);
    const root = rows[0]?.span;
    setText(this.title, `Trace: ${root ? root.name : "(empty)"}`);
    const services = [...new Set(spans.map((s) => s.node).filter(Boolean))];
    const failed = spans.filter(spanFailed).length;
    setText(this.summary, `${fmt.ms(totalMs)} · ${spans.length} span${spans.length === 1 ? "" : "s"}` +
      `${services.length ? ` · ${services.join(", ")}` : ""} · started ${fmt.clock(start)}` +
      `${failed ? ` · ${failed} failed` : ""}`);
    replace(this.body, rows.length ? this.waterfall(rows, totalMs) :
      emptyState("This trace has no spans yet.", "Spans are reported every 2 s."));
  }

  /** The trace is unknown: evicted (the control plane keeps the last 2,000) or never seen. */
  gone() {
    if (this.shown === "gone") return;
    this.shown = "gone";
    setText(this.title, "Trace not found");
    setText(this.summary, "");
    replace(this.body, emptyState("The control plane does not have this trace.",
      "It keeps the most recent 2,000 traces; older ones are dropped. Pick a newer one from the ",
      h("a", { href: this.ctx.href("traces") }, "trace list"), "."));
  }

  waterfall(rows, totalMs) {
    const axis = h("div", { class: "axis", "aria-hidden": "true" },
      ticks(totalMs).map((t) => {
        const tick = h("span", { class: "tick" }, fmt.ms(t));
        tick.style.left = `${(t / totalMs) * 100}%`;
        return tick;
      }));
    const tbody = h("tbody");
    for (const row of rows) tbody.append(...this.spanRows(row));
    return h("div", { class: "table-scroll" }, h("table", { class: "waterfall" },
      h("caption", { class: "visually-hidden" }, "Spans of the trace on a time axis; open a span for its attributes"),
      h("colgroup", {}, h("col", { class: "col-span" }), h("col", { class: "col-bar" }), h("col", { class: "col-dur" })),
      h("thead", {}, h("tr", {},
        h("th", { scope: "col" }, "Span"),
        h("th", { scope: "col" }, h("span", { class: "visually-hidden" }, "Timeline"), axis),
        h("th", { scope: "col", class: "num" }, "Duration"))),
      tbody));
  }

  spanRows(row) {
    const { span, depth } = row;
    const failed = spanFailed(span);
    const kind = span.kind === "client" ? "client" : "server";
    const detailsId = `span-${span.spanId}`;
    const isOpen = this.open.has(span.spanId);
    const status = span.attributes?.["http.status_code"];
    const button = h("button", {
      type: "button", class: "span-toggle", "aria-expanded": String(isOpen), "aria-controls": detailsId,
    },
    h("span", { class: `kind-badge kind-${kind}` }, kind),
    h("span", { class: "span-name" }, span.name),
    span.node ? h("span", { class: "span-node" }, span.node) : null);
    button.style.paddingLeft = `${0.4 + depth * 1.1}rem`;

    const bar = h("span", { class: `bar bar-${kind}${failed ? " bar-error" : ""}` });
    bar.style.left = `${row.left}%`;
    bar.style.width = `${row.width}%`;
    const track = h("div", { class: "track" }, bar);
    track.title = `${span.name}: starts at ${fmt.ms(row.startMs)}, lasts ${fmt.ms(row.durationMs)}`;

    const main = h("tr", { class: `span-row${failed ? " failed" : ""}`, dataset: { spanId: span.spanId, kind } },
      h("td", { class: "span-cell" }, button),
      h("td", { class: "bar-cell" }, track),
      h("td", { class: "num" }, fmt.ms(row.durationMs), status ? h("span", { class: "status-code" }, ` ${status}`) : null));
    const details = h("tr", { class: "span-details", id: detailsId, hidden: !isOpen },
      h("td", { colspan: 3 }, attributesList(span)));
    const toggle = () => {
      const open = button.getAttribute("aria-expanded") !== "true";
      button.setAttribute("aria-expanded", String(open));
      details.hidden = !open;
      if (open) this.open.add(span.spanId);
      else this.open.delete(span.spanId);
    };
    button.addEventListener("click", toggle);
    track.addEventListener("click", toggle);
    return [main, details];
  }
}

function attributesList(span) {
  const fields = [
    ["span id", span.spanId],
    ["parent span id", span.parentSpanId || "–"],
    ["kind", span.kind],
    ["status", span.status || "–"],
    ["node", span.node ? `${span.node}${span.nodeKind ? ` (${span.nodeKind})` : ""}` : "–"],
    ["start", `${fmt.clock(span.start)} (${span.start})`],
    ["duration", fmt.ms((span.end - span.start) * 1000)],
    ...Object.entries(span.attributes || {}).sort(([a], [b]) => a.localeCompare(b)),
  ];
  return h("dl", { class: "attributes" },
    fields.flatMap(([k, v]) => [h("dt", {}, k), h("dd", { class: "mono" }, fmt.value(v))]));
}
