// The dashboard's shell: mesh selector, hash routing, the refresh loop and the error banner.
//
// One view is mounted at a time. A view is an object with `el` (its root element),
// `async refresh(signal)` (fetch and render in place) and optionally `setParams(params)` and
// `destroy()`. The shell calls refresh() once on mount and then every REFRESH_MS while the
// tab is visible, never overlapping two refreshes; an error shows the banner and the next
// success clears it.

import * as api from "./api.js";
import { code, emptyState, h, replace, setText } from "./dom.js";
import { clock } from "./format.js";
import { href, parse, replaceHash } from "./router.js";
import { EventsView } from "./views/events.js";
import { MapView } from "./views/map.js";
import { ServiceView } from "./views/service.js";
import { TraceView, TracesView } from "./views/traces.js";

const REFRESH_MS = 2000;
const MESHES_EVERY = 5; // refresh the mesh list every 5th tick (10 s)
const MESH_KEY = "mapmesh.mesh";

const TITLES = { map: "Map", service: "Service", traces: "Traces", events: "Events" };

function createView(route, ctx) {
  switch (route.view) {
    case "service":
      return new ServiceView(ctx, route.parts[0], route.parts[1]);
    case "traces":
      return route.parts[0] ? new TraceView(ctx, route.parts[0]) : new TracesView(ctx);
    case "events":
      return new EventsView(ctx);
    default:
      return new MapView(ctx);
  }
}

class App {
  constructor() {
    this.main = document.getElementById("main");
    this.banner = document.getElementById("banner");
    this.status = document.getElementById("status");
    this.meshSelect = document.getElementById("mesh-select");
    this.meshes = null; // null until the first answer
    this.view = null;
    this.viewKey = null;
    this.timer = null;
    this.controller = null;
    this.ticks = 0;
    this.mounted = false;
  }

  async start() {
    window.addEventListener("hashchange", () => this.route());
    document.addEventListener("visibilitychange", () => {
      if (!document.hidden) this.tick();
      else this.setStatus("paused while the tab is hidden");
    });
    this.meshSelect.addEventListener("change", () => this.switchMesh(this.meshSelect.value));
    try {
      await this.loadMeshes();
    } catch (err) {
      this.showError(err);
    }
    this.route();
  }

  /** Fetch the mesh list and refill the selector when it changed. */
  async loadMeshes(signal) {
    const names = await api.meshes({ signal });
    if (JSON.stringify(names) !== JSON.stringify(this.meshes)) {
      this.meshes = names;
      this.fillMeshes();
    }
  }

  fillMeshes() {
    const current = parse(location.hash).params.mesh;
    const options = this.meshes.map((name) => h("option", { value: name }, name));
    if (current && !this.meshes.includes(current)) {
      options.unshift(h("option", { value: current }, `${current} (not found)`));
    }
    if (!options.length) options.push(h("option", { value: "" }, "no meshes"));
    replace(this.meshSelect, options);
    this.meshSelect.disabled = this.meshes.length === 0;
    this.meshSelect.value = current || this.meshes[0] || "";
  }

  /** Pick a mesh: detail views go back to their list, since the item belongs to the old mesh. */
  switchMesh(mesh) {
    const route = parse(location.hash);
    localStorage.setItem(MESH_KEY, mesh);
    const view = route.view === "service" ? "map" : route.view;
    const parts = route.view === "traces" || route.view === "service" ? [] : route.parts;
    location.hash = href(view, parts, { ...route.params, mesh });
  }

  route() {
    const route = parse(location.hash);
    const mesh = route.params.mesh;
    if (!mesh && this.meshes?.length) {
      const remembered = localStorage.getItem(MESH_KEY);
      const chosen = this.meshes.includes(remembered) ? remembered : this.meshes[0];
      replaceHash(href(route.view, route.parts, { ...route.params, mesh: chosen }));
      return;
    }
    if (mesh && this.meshSelect.value !== mesh && this.meshes) this.fillMeshes();
    this.markNav(route.view, mesh);
    document.title = `${TITLES[route.view]}${mesh ? ` · ${mesh}` : ""} · mapmesh`;

    if (!mesh) {
      // No mesh to show yet: either none exists or the list has not loaded.
      this.unmount();
      replace(this.main, this.meshes ? noMeshes() : connecting());
      this.tick();
      return;
    }
    const key = `${route.view}/${route.parts.join("/")}?${mesh}`;
    if (key === this.viewKey && this.view) {
      this.view.setParams?.(route.params);
    } else {
      this.unmount();
      const ctx = {
        mesh,
        params: route.params,
        href: (view, parts = [], params = {}) => href(view, parts, { mesh, ...params }),
        replaceParams: (params) =>
          replaceHash(href(route.view, route.parts, { ...parse(location.hash).params, ...params })),
      };
      this.view = createView(route, ctx);
      this.viewKey = key;
      replace(this.main, this.view.el);
      // After the first page, following a link moves focus to the new content (keyboard
      // users start reading there); picking another mesh leaves focus on the selector.
      if (this.mounted && document.activeElement !== this.meshSelect) this.main.focus({ preventScroll: true });
      this.mounted = true;
    }
    this.tick();
  }

  unmount() {
    this.controller?.abort();
    this.view?.destroy?.();
    this.view = null;
    this.viewKey = null;
  }

  markNav(view, mesh) {
    const active = view === "service" ? "map" : view;
    for (const link of document.querySelectorAll("nav a[data-view]")) {
      link.setAttribute("href", href(link.dataset.view, [], { mesh }));
      if (link.dataset.view === active) link.setAttribute("aria-current", "page");
      else link.removeAttribute("aria-current");
    }
  }

  /** One refresh of the mounted view (and now and then the mesh list); then reschedule. */
  async tick() {
    clearTimeout(this.timer);
    this.controller?.abort();
    if (document.hidden) return;
    const controller = new AbortController();
    this.controller = controller;
    try {
      const hadMeshes = Boolean(this.meshes?.length);
      if (!hadMeshes || ++this.ticks % MESHES_EVERY === 0) {
        await this.loadMeshes(controller.signal);
        if (hadMeshes !== Boolean(this.meshes.length)) {
          this.route(); // the first mesh appeared or the last one went: mount accordingly
          return;
        }
      }
      if (this.view) await this.view.refresh(controller.signal);
      if (controller.signal.aborted) return;
      this.clearError();
      this.setStatus(`live · updated ${clock(Date.now() / 1000).slice(0, 8)}`);
    } catch (err) {
      if (err.name === "AbortError" || controller.signal.aborted) return;
      this.showError(err);
    } finally {
      if (this.controller === controller) this.schedule();
    }
  }

  schedule() {
    clearTimeout(this.timer);
    this.timer = setTimeout(() => this.tick(), REFRESH_MS);
  }

  showError(err) {
    const message = err instanceof api.ApiError ? err.message : `Unexpected error: ${err.message || err}`;
    setText(this.banner, `${message} — retrying every ${REFRESH_MS / 1000} s.`);
    this.banner.hidden = false;
    this.setStatus("error");
    if (!(err instanceof api.ApiError)) console.error(err);
  }

  clearError() {
    if (!this.banner.hidden) {
      this.banner.hidden = true;
      setText(this.banner, "");
    }
  }

  setStatus(text) {
    setText(this.status, text);
  }
}

function connecting() {
  return h("section", { class: "view" }, h("h1", {}, "Connecting…"),
    emptyState("Waiting for the control plane's mesh list."));
}

function noMeshes() {
  return h("section", { class: "view", "aria-labelledby": "no-mesh-title" },
    h("h1", { id: "no-mesh-title" }, "No meshes yet"),
    emptyState("This control plane has no mesh to show.",
      "Create one with ", code("mapmesh apply -f mesh.yaml"), " or ",
      code("aws appmesh create-mesh --mesh-name demo --endpoint-url http://127.0.0.1:7070"),
      "; it appears here within a few seconds."));
}

new App().start();
