// Events: what happened in the mesh, newest first (GET /v1/events): outlier ejections and
// returns and health changes reported by proxies; registrations, deregistrations, health
// checks and config acknowledgements recorded by the control plane. Filterable by type.

import * as api from "../api.js";
import { emptyState, h, reconcile, replace, setAttr, setText } from "../dom.js";
import * as fmt from "../format.js";

const LIMIT = 200;
export const EVENT_TYPES = ["ejection", "return", "health", "registration", "deregistration", "config"];
const TYPE_CLASS = {
  ejection: "bad", return: "ok", health: "warn", registration: "ok", deregistration: "unknown", config: "info",
};

export class EventsView {
  constructor(ctx) {
    this.ctx = ctx;
    this.type = pickType(ctx.params.type);
    this.filter = h("select", { id: "event-type", onchange: () => ctx.replaceParams({ type: this.filter.value }) },
      h("option", { value: "" }, "all types"),
      EVENT_TYPES.map((t) => h("option", { value: t }, t)));
    this.filter.value = this.type;
    this.summary = h("p", { class: "summary" }, "Loading events…");
    this.notice = h("div", { class: "notice-slot" });
    this.rows = h("tbody");
    this.table = h("div", { class: "table-scroll", hidden: true }, h("table", { class: "data events" },
      h("caption", { class: "visually-hidden" }, "Recent events, newest first"),
      h("thead", {}, h("tr", {}, ["Time", "Type", "Source", "What happened"].map((t) => h("th", { scope: "col" }, t)))),
      this.rows));
    this.el = h("section", { class: "view events-view", "aria-labelledby": "events-title" },
      h("div", { class: "view-head" },
        h("h1", { id: "events-title" }, "Events"),
        h("div", { class: "controls" }, h("label", { for: "event-type" }, "Type"), this.filter)),
      this.summary, this.notice, this.table);
  }

  setParams(params) {
    this.type = pickType(params.type);
    this.filter.value = this.type;
  }

  async refresh(signal) {
    const type = this.type;
    const { events = [] } = await api.events(this.ctx.mesh, type, LIMIT, { signal });
    if (type !== this.type) return; // the filter changed while loading
    const sorted = [...events].sort((a, b) => b.time - a.time);
    setText(this.summary, sorted.length
      ? `${sorted.length} most recent${type ? ` ${type}` : ""} event${sorted.length === 1 ? "" : "s"}`
      : "");
    this.table.hidden = !sorted.length;
    const key = sorted.length ? "" : `empty:${type}`;
    if (this.notice.dataset.key !== key) {
      this.notice.dataset.key = key;
      replace(this.notice, key ? emptyState(type ? `No ${type} events yet.` : "No events yet.",
        "Outlier ejections, health changes, instance registrations and config versions appear here as they happen.") : null);
    }
    const now = Date.now() / 1000;
    reconcile(this.rows, sorted, eventKey, () => eventRow(), (row, e) => {
      const [time, kind, source, what] = row.children;
      setAttr(time.firstChild, "datetime", fmt.iso(e.time));
      setText(time.firstChild, fmt.clock(e.time));
      setAttr(time.firstChild, "title", fmt.ago(e.time, now));
      setAttr(kind.firstChild, "class", `pill pill-${TYPE_CLASS[e.type] || "unknown"}`);
      setText(kind.firstChild, e.type);
      setText(source, sourceText(e.source));
      setText(what, describe(e));
    });
  }
}

function eventRow() {
  return h("tr", {}, h("td", { class: "nowrap" }, h("time")), h("td", {}, h("span")), h("td"), h("td"));
}

function pickType(value) {
  return EVENT_TYPES.includes(value) ? value : "";
}

/** A stable key for an event (events have no id): FNV-1a of its JSON. */
function eventKey(e) {
  const text = JSON.stringify([e.time, e.type, e.source, e.detail]);
  let hash = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) {
    hash ^= text.charCodeAt(i);
    hash = Math.imul(hash, 0x01000193);
  }
  return (hash >>> 0).toString(36) + text.length.toString(36);
}

export function sourceText(source) {
  if (!source || source === "control-plane") return "control plane";
  if (typeof source !== "object") return String(source);
  const kind = source.kind === "virtualGateway" ? "gateway " : "";
  return `${kind}${source.name}${source.instance ? ` (${source.instance})` : ""}`;
}

/** One sentence for an event's detail; unknown shapes fall back to key=value pairs. */
export function describe(e) {
  const d = e.detail || {};
  const instance = d.instanceId ? `instance ${d.instanceId}${d.address ? ` (${d.address}:${d.port})` : ""}` : null;
  const service = d.service ? `${d.service}${d.namespace ? `.${d.namespace}` : ""}` : null;
  const nodes = Array.isArray(d.nodes) && d.nodes.length ? ` — node ${d.nodes.join(", ")}` : "";
  switch (e.type) {
    case "ejection":
      return `${d.endpoint} ejected from ${d.cluster}${d.durationMs ? ` for ${fmt.durationSetting(d.durationMs)}` : ""}`;
    case "return":
      return `${d.endpoint} back in ${d.cluster}`;
    case "health":
      if (instance) {
        return `${instance} of ${service}: ${d.from ?? "?"} → ${d.to ?? "?"}${d.reason ? ` (${d.reason})` : ""}${nodes}`;
      }
      return `${d.endpoint} in ${d.cluster} is ${d.healthy ? "healthy" : "unhealthy"}${d.reason ? `: ${d.reason}` : ""}`;
    case "registration":
      return `${instance || "an instance"} registered in ${service || "a service"}${nodes}`;
    case "deregistration":
      return `${instance || "an instance"} deregistered from ${service || "a service"}${nodes}`;
    case "config": {
      const who = d.name ? `${d.name}${d.instance ? ` (${d.instance})` : ""} ` : "";
      return `${who}${d.accepted === false ? "rejected" : "applied"} config version ${d.version}${d.error ? `: ${d.error}` : ""}`;
    }
    default:
      return Object.entries(d).map(([k, v]) => `${k}=${fmt.value(v)}`).join(" ") || "–";
  }
}
