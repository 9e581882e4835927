// Hash routes: "#/<view>/<part>/<part>?key=value". The whole state of a page (mesh, window,
// filters, the open trace) lives in the hash, so every view is a link that can be shared and
// the back button works.
//
//   #/map?mesh=social&window=300
//   #/service/virtualNode/frontend?mesh=social
//   #/traces?mesh=social            #/traces/<traceId>?mesh=social
//   #/events?mesh=social&type=ejection

export const VIEWS = ["map", "service", "traces", "events"];

/** Parse a location hash into {view, parts, params}; unknown views fall back to the map. */
export function parse(hash) {
  const raw = (hash || "").replace(/^#\/?/, "");
  const [path, query = ""] = raw.split("?", 2);
  const segments = path.split("/").filter(Boolean).map(decodeURIComponent);
  const params = Object.fromEntries(new URLSearchParams(query));
  const view = VIEWS.includes(segments[0]) ? segments[0] : "map";
  return { view, parts: VIEWS.includes(segments[0]) ? segments.slice(1) : [], params };
}

/** Build a hash: href("service", ["virtualNode", "frontend"], {mesh: "social"}). */
export function href(view, parts = [], params = {}) {
  const path = [view, ...parts].map(encodeURIComponent).join("/");
  const query = new URLSearchParams();
  for (const [key, val] of Object.entries(params)) {
    if (val !== null && val !== undefined && val !== "") query.set(key, String(val));
  }
  const text = query.toString();
  return `#/${path}${text ? `?${text}` : ""}`;
}

/** Navigate, replacing the history entry (for filters that should not pile up history). */
export function replaceHash(hash) {
  if (location.hash !== hash) {
    history.replaceState(null, "", hash);
    window.dispatchEvent(new HashChangeEvent("hashchange"));
  }
}
