// Service detail: one virtual node or gateway, from GET /v1/services (instances with health
// and ejections, routes and weights, effective policies) and GET /v1/topology (its calls).
// Each section is rebuilt only when its own data changed, so open <details>, focus and
// scroll position survive the 2 s refresh.

import * as api from "../api.js";
import { code, emptyState, h, replace, setText } from "../dom.js";
import * as fmt from "../format.js";
import { edgeHealth, kindOf, nameOf } from "../graph/render.js";
import { formatSetting, settingRows, settingsList, valueOf } from "../settings.js";

const KIND_LABELS = { virtualNode: "Virtual node", virtualGateway: "Virtual gateway" };
const HEALTH_CLASS = { HEALTHY: "ok", UNHEALTHY: "bad", UNKNOWN: "unknown" };

/** A block of the page that re-renders only when its input (compared as JSON) changes. */
class Section {
  constructor(title, id) {
    this.body = h("div", { class: "section-body" });
    this.el = h("section", { class: "panel", "aria-labelledby": id }, h("h2", { id }, title), this.body);
    this.last = undefined;
  }

  render(data, build) {
    const key = JSON.stringify(data);
    if (key === this.last) return;
    this.last = key;
    replace(this.body, build(data));
  }
}

export class ServiceView {
  constructor(ctx, kind, name) {
    this.ctx = ctx;
    this.kind = kind;
    this.name = name;
    this.id = `${kind}/${name}`;
    this.summary = h("p", { class: "summary" }, "Loading…");
    this.notice = h("div", { class: "notice-slot" });
    this.instances = new Section("Instances", "instances-title");
    this.traffic = new Section("Traffic (last 1 min)", "traffic-title");
    this.routes = new Section(kind === "virtualGateway" ? "Gateway routes" : "How traffic reaches it", "routes-title");
    this.policies = new Section("Effective policies", "policies-title");
    this.proxies = new Section("Proxies", "proxies-title");
    this.policies.el.classList.add("panel-wide");
    this.sections = h("div", { class: "sections", hidden: true },
      this.instances.el, this.traffic.el, this.routes.el, this.proxies.el, this.policies.el);
    this.el = h("section", { class: "view service-view", "aria-labelledby": "service-title" },
      h("p", { class: "crumbs" }, h("a", { href: ctx.href("map") }, "← Map")),
      h("div", { class: "view-head" },
        h("h1", { id: "service-title" }, name, " ", h("span", { class: "kind-tag" }, KIND_LABELS[kind] || kind))),
      this.summary, this.notice, this.sections);
  }

  async refresh(signal) {
    const [doc, topology] = await Promise.all([
      api.services(this.ctx.mesh, { signal }),
      api.topology(this.ctx.mesh, 60, { signal }),
    ]);
    const service = (doc.services || []).find((s) => s.id === this.id || (s.kind === this.kind && s.name === this.name));
    if (!service) {
      setText(this.summary, "");
      this.sections.hidden = true;
      if (this.notice.dataset.key !== "missing") {
        this.notice.dataset.key = "missing";
        replace(this.notice, emptyState(`No ${KIND_LABELS[this.kind]?.toLowerCase() || this.kind} named “${this.name}” in mesh ${this.ctx.mesh}.`,
          "It may have been deleted; go back to the ", h("a", { href: this.ctx.href("map") }, "map"), "."));
      }
      return;
    }
    if (this.notice.dataset.key) {
      this.notice.dataset.key = "";
      replace(this.notice);
    }
    this.sections.hidden = false;
    this.render(service, topology);
  }

  render(service, topology) {
    const instances = service.instances || [];
    const healthy = instances.filter((i) => i.health !== "UNHEALTHY").length;
    const ejected = instances.filter((i) => (i.ejectedBy || []).length).length;
    const proxies = service.proxies || {};
    setText(this.summary, [
      this.kind === "virtualGateway" && !instances.length ? null : `${healthy}/${instances.length} instances healthy`,
      ejected ? `${ejected} ejected by outlier detection` : null,
      `${proxies.connectedStreams || 0} proxy stream${proxies.connectedStreams === 1 ? "" : "s"} connected`,
      proxies.version !== null && proxies.version !== undefined ? `config version ${proxies.version}` : null,
    ].filter(Boolean).join(" · "));

    this.instances.render({ instances, discovery: service.discovery, kind: this.kind }, (d) => instancesTable(d));
    const calls = (topology.edges || []).filter((e) => e.source === this.id || e.target === this.id);
    this.traffic.render(calls, (edges) => trafficTables(edges, this.id, this.ctx));
    this.routes.render(service.routes || [], (routes) => routesTable(routes, this.kind, this.ctx));
    this.policies.render(service.policies || null, (p) => policiesPanel(p));
    this.proxies.render({ ...proxies, ejections: service.ejections || [] }, (p) => proxiesPanel(p));
  }
}

// -- instances ------------------------------------------------------------------------------

function instancesTable({ instances, discovery, kind }) {
  const where = discoveryText(discovery);
  if (!instances.length) {
    return emptyState(kind === "virtualGateway"
      ? "Gateways are not registered instances; see their proxies below."
      : "No instances registered.",
    where ? `Discovery: ${where}. ` : "",
    kind === "virtualGateway" ? "" : ["Start the service's sidecar (", code("mapmesh proxy …"), ") or register an instance in Cloud Map."]);
  }
  const tbody = h("tbody", {}, instances.map((i) => {
    const ejectedBy = i.ejectedBy || [];
    return h("tr", {},
      h("th", { scope: "row" }, i.id),
      h("td", {}, `${i.address}:${i.port}`),
      h("td", {}, h("span", { class: `pill pill-${HEALTH_CLASS[i.health] || "unknown"}` }, i.health || "UNKNOWN")),
      h("td", { class: "num" }, i.weight ?? 1),
      h("td", {}, ejectedBy.length
        ? h("span", { class: "pill pill-bad" }, `ejected by ${ejectedBy.map(sourceText).join(", ")}`)
        : h("span", { class: "muted" }, "in rotation")));
  }));
  return [
    where ? h("p", { class: "muted" }, `Discovery: ${where}`) : null,
    h("div", { class: "table-scroll" }, h("table", { class: "data" },
      h("caption", { class: "visually-hidden" }, "Instances"),
      h("thead", {}, h("tr", {}, ["Instance", "Address", "Health", "Weight", "Outlier ejection"]
        .map((t, n) => h("th", { scope: "col", class: n === 3 ? "num" : null }, t)))),
      tbody)),
  ];
}

function discoveryText(d) {
  if (!d || typeof d !== "object") return "";
  const kind = valueOf(d.kind);
  if (kind === "cloudMap" || d.namespace) {
    const attrs = valueOf(d.attributes) || [];
    const filter = attrs.length ? ` where ${attrs.map(([k, v]) => `${k}=${v}`).join(", ")}` : "";
    return `Cloud Map ${valueOf(d.service)}.${valueOf(d.namespace)}${filter}`;
  }
  if (valueOf(d.hostname)) return `DNS ${valueOf(d.hostname)}`;
  return formatSetting("", d);
}

function sourceText(source) {
  if (!source || typeof source !== "object") return String(source ?? "control plane");
  return source.instance ? `${source.name} (${source.instance})` : source.name;
}

// -- traffic --------------------------------------------------------------------------------

function trafficTables(edges, id, ctx) {
  if (!edges.length) {
    return emptyState("No calls to or from this service in the last minute.",
      "Send traffic through the gateway and it shows up within 2 s.");
  }
  const table = (title, rows, other) => rows.length ? h("div", { class: "table-scroll" }, h("table", { class: "data" },
    h("caption", {}, title),
    h("thead", {}, h("tr", {}, [other, "Destination", "Requests/s", "Errors", "p50", "p99"]
      .map((t, n) => h("th", { scope: "col", class: n >= 2 ? "num" : null }, t)))),
    h("tbody", {}, rows.map((e) => {
      const peer = other === "From" ? e.source : e.target;
      const kind = kindOf(peer);
      const linked = kind === "virtualNode" || kind === "virtualGateway";
      return h("tr", {},
        h("td", {}, linked ? h("a", { href: ctx.href("service", [kind, nameOf(peer)]) }, nameOf(peer)) : nameOf(peer)),
        h("td", {}, e.destination || "–"),
        h("td", { class: "num" }, fmt.rps(e.rps)),
        h("td", { class: `num health-${edgeHealth(e)}` }, fmt.percent(e.errorRate)),
        h("td", { class: "num" }, fmt.ms(e.p50Ms)),
        h("td", { class: "num" }, fmt.ms(e.p99Ms)));
    })))) : null;
  return [
    table("Calls in", edges.filter((e) => e.target === id), "From"),
    table("Calls out", edges.filter((e) => e.source === id), "To"),
  ];
}

// -- routes ---------------------------------------------------------------------------------

function routesTable(routes, kind, ctx) {
  if (!routes.length) {
    return emptyState(kind === "virtualGateway"
      ? "This gateway has no gateway routes: it answers 404 to everything."
      : "No virtual service or route sends traffic here.",
    kind === "virtualGateway" ? "Add a gateway route that targets a virtual service." :
      "Name this node as a virtual service's provider or as a route's weighted target.");
  }
  return h("div", { class: "table-scroll" }, h("table", { class: "data" },
    h("caption", { class: "visually-hidden" }, "Routes"),
    h("thead", {}, h("tr", {}, ["Via", "Weight", "Share", "Virtual services"]
      .map((t, n) => h("th", { scope: "col", class: n === 1 || n === 2 ? "num" : null }, t)))),
    h("tbody", {}, routes.map((r) => h("tr", {},
      h("td", {}, routeName(r)),
      h("td", { class: "num" }, r.kind === "route" ? `${r.weight}/${r.totalWeight}` : "–"),
      h("td", { class: "num" }, r.kind === "route" ? h("span", { class: "share" },
        h("meter", { min: 0, max: 1, value: r.share ?? 0, "aria-hidden": "true" }), ` ${fmt.percent(r.share)}`) :
        r.kind === "provider" ? "100%" : "–"),
      h("td", {}, (r.virtualServices || []).join(", ") || "–"))))));
}

function routeName(r) {
  if (r.kind === "route") return `route ${r.virtualRouter}/${r.route}`;
  if (r.kind === "gatewayRoute") return `gateway route ${r.gatewayRoute}`;
  if (r.kind === "provider") return "virtual service provider";
  return r.kind;
}

// -- policies -------------------------------------------------------------------------------

function policiesPanel(p) {
  if (!p) return h("p", { class: "muted" }, "No policies reported.");
  if (p.error) return emptyState("The effective configuration could not be computed.", p.error);
  const parts = [];
  for (const listener of p.listeners || []) {
    parts.push(h("div", { class: "policy" },
      h("h3", {}, `Inbound listener ${valueOf(listener.port)} (${valueOf(listener.protocol)})`),
      settingsList(policyRows(listener, ["port", "protocol"]))));
  }
  for (const route of p.gateway_routes || []) {
    parts.push(h("div", { class: "policy" },
      h("h3", {}, `Gateway route ${valueOf(route.name) ?? ""} ${route.match?.summary ? `(${route.match.summary})` : ""}`),
      settingsList(policyRows(route, ["name", "match"]))));
  }
  for (const backend of p.backends || []) {
    for (const route of backend.routes || []) {
      parts.push(h("div", { class: "policy" },
        h("h3", {}, `Calls to ${backend.virtual_service}: route ${valueOf(route.name) ?? "default"}`,
          route.match?.summary ? ` (${route.match.summary})` : ""),
        settingsList([
          ...settingRows({ retry: route.retry }),
          ...settingRows({ timeout: route.timeout }),
        ]),
        targetsTable(route.targets || [])));
    }
  }
  if (!parts.length) parts.push(h("p", { class: "muted" }, "No listeners, backends or gateway routes."));
  const warnings = p.warnings || [];
  return [
    warnings.length ? h("ul", { class: "warnings", "aria-label": "Configuration warnings" },
      warnings.map((w) => h("li", {}, h("strong", {}, w.code), ` ${w.subject}: ${w.message}`))) : null,
    h("p", { class: "muted" }, "Values tagged ", h("span", { class: "source source-default" }, "default"),
      " are mapmesh's defaults; the same view is ", code(`mapmesh explain`), " on the command line."),
    ...parts,
    h("details", { class: "raw" }, h("summary", {}, "Full effective configuration (JSON)"),
      h("pre", {}, JSON.stringify(p, null, 2))),
  ];
}

/** Rows for the policy parts of a listener or route, highlighting breaker and outlier. */
function policyRows(obj, skip) {
  const renamed = {};
  for (const [key, v] of Object.entries(obj)) {
    if (skip.includes(key)) continue;
    renamed[key === "connection_pool" ? "circuit breaker (connection pool)" : key] = v;
  }
  return settingRows(renamed);
}

function targetsTable(targets) {
  if (!targets.length) return null;
  return h("div", { class: "table-scroll" }, h("table", { class: "data compact" },
    h("caption", { class: "visually-hidden" }, "Weighted targets"),
    h("thead", {}, h("tr", {}, ["Target", "Weight", "Load balancer", "Circuit breaker", "Outlier detection", "Endpoints"]
      .map((t) => h("th", { scope: "col" }, t)))),
    h("tbody", {}, targets.map((t) => {
      const up = t.upstream || {};
      const pool = up.connection_pool || {};
      return h("tr", {},
        h("td", {}, t.cluster),
        h("td", { class: "num" }, t.weight ?? "–"),
        h("td", {}, formatSetting("", valueOf(up.lb_policy))),
        h("td", {}, breakerText(pool)),
        h("td", {}, formatSetting("outlier", valueOf(up.outlier_detection) ?? (isGroup(up.outlier_detection) ? flat(up.outlier_detection) : null))),
        h("td", { class: "num" }, (up.endpoints || []).length));
    }))));
}

/** "1024 connections · 1024 pending · 1024 requests" from a connection pool's settings. */
function breakerText(pool) {
  const parts = [["max_connections", "connections"], ["max_pending_requests", "pending"], ["max_requests", "requests"]]
    .filter(([key]) => pool[key] !== undefined && valueOf(pool[key]) !== null)
    .map(([key, word]) => `${valueOf(pool[key])} ${word}`);
  return parts.join(" · ") || "off";
}

function isGroup(v) {
  return v && typeof v === "object" && !("value" in v);
}

function flat(group) {
  return Object.fromEntries(Object.entries(group).map(([k, v]) => [k, valueOf(v)]));
}

// -- proxies --------------------------------------------------------------------------------

function proxiesPanel(p) {
  const reporting = p.reporting || [];
  const now = Date.now() / 1000;
  return [
    reporting.length ? h("div", { class: "table-scroll" }, h("table", { class: "data" },
      h("caption", {}, "Proxy instances reporting telemetry"),
      h("thead", {}, h("tr", {}, ["Instance", "Last report", "Config version"].map((t) => h("th", { scope: "col" }, t)))),
      h("tbody", {}, reporting.map((r) => h("tr", {},
        h("th", { scope: "row" }, r.instance),
        h("td", {}, h("time", { datetime: fmt.iso(r.lastSeen) }, fmt.ago(r.lastSeen, now))),
        h("td", {}, r.configVersion ?? "–")))))) :
      emptyState("No proxy of this service has reported yet.",
        "Proxies report every 2 s once they run: ", code("mapmesh proxy --mesh … --virtual-node …")),
    p.ejections.length ? h("div", { class: "table-scroll" }, h("table", { class: "data" },
      h("caption", {}, "Active outlier ejections"),
      h("thead", {}, h("tr", {}, ["Endpoint", "Cluster", "Ejected by", "Since", "Until"].map((t) => h("th", { scope: "col" }, t)))),
      h("tbody", {}, p.ejections.map((e) => h("tr", {},
        h("td", {}, e.endpoint), h("td", {}, e.cluster), h("td", {}, sourceText(e.by)),
        h("td", {}, fmt.clock(e.since)), h("td", {}, e.until ? fmt.clock(e.until) : "–")))))) : null,
  ];
}
