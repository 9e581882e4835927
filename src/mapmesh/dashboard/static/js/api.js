// The control plane's read APIs, as the dashboard uses them (see docs/telemetry.md).
// Every call returns parsed JSON or throws an ApiError whose message a person can act on.

/** A failed API call: `status` is the HTTP status, or 0 when the server was not reached. */
export class ApiError extends Error {
  constructor(message, status, path) {
    super(message);
    this.name = "ApiError";
    this.status = status;
    this.path = path;
  }
}

/** GET `path` with query `params` (null/undefined/"" values are left out). */
export async function getJSON(path, params = {}, { signal } = {}) {
  const query = new URLSearchParams();
  for (const [key, val] of Object.entries(params)) {
    if (val !== null && val !== undefined && val !== "") query.set(key, String(val));
  }
  const url = query.size ? `${path}?${query}` : path;
  let response;
  try {
    response = await fetch(url, { signal, headers: { accept: "application/json" }, cache: "no-store" });
  } catch (err) {
    if (err.name === "AbortError") throw err;
    throw new ApiError(`cannot reach the control plane (${path}): is \`mapmesh server\` running?`, 0, path);
  }
  const text = await response.text();
  let body = null;
  try {
    body = text ? JSON.parse(text) : null;
  } catch {
    body = null;
  }
  if (!response.ok) throw new ApiError(describe(response.status, path, body, text), response.status, path);
  if (body === null) throw new ApiError(`${path} answered ${response.status} without JSON`, response.status, path);
  return body;
}

function describe(status, path, body, text) {
  const message = body && typeof body === "object" ? body.message || body.Message : null;
  if (message) return `${path}: ${message} (HTTP ${status})`;
  if (status === 404) return `${path} is not served by this control plane (HTTP 404); is it an older version?`;
  const snippet = (text || "").trim().slice(0, 120);
  return `${path} answered HTTP ${status}${snippet ? `: ${snippet}` : ""}`;
}

/** Names of the meshes, from the App Mesh API (follows nextToken pages). */
export async function meshes(options) {
  const names = [];
  let token = null;
  do {
    const page = await getJSON("/v20190125/meshes", { limit: 100, nextToken: token }, options);
    for (const m of page.meshes || []) names.push(m.meshName);
    token = page.nextToken || null;
  } while (token);
  return names.sort();
}

export const topology = (mesh, window, options) => getJSON("/v1/topology", { mesh, window }, options);
export const traces = (mesh, limit, options) => getJSON("/v1/traces", { mesh, limit }, options);
export const trace = (id, options) => getJSON(`/v1/traces/${encodeURIComponent(id)}`, {}, options);
export const events = (mesh, type, limit, options) => getJSON("/v1/events", { mesh, type, limit }, options);
export const services = (mesh, options) => getJSON("/v1/services", { mesh }, options);
