// Small DOM helpers. Text always goes in through textContent, never innerHTML, so nothing a
// proxy reports (span names, attributes, event details) can inject markup.

const SVG_NS = "http://www.w3.org/2000/svg";

/**
 * Create an HTML element: h("a", {href: "#/map", class: "x"}, "text", child).
 * Attributes: `class`, `dataset` (object), `on<event>` (listener), `hidden`/boolean, else
 * setAttribute. Children: strings, numbers, nodes; null/false are skipped; arrays flatten.
 */
export function h(tag, attrs = {}, ...children) {
  return build(document.createElement(tag), attrs, children);
}

/** Same as h() for SVG elements. */
export function s(tag, attrs = {}, ...children) {
  return build(document.createElementNS(SVG_NS, tag), attrs, children);
}

function build(el, attrs, children) {
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key === "dataset") Object.assign(el.dataset, value);
    else if (key.startsWith("on") && typeof value === "function") {
      el.addEventListener(key.slice(2), value);
    } else if (value === true) el.setAttribute(key, "");
    else el.setAttribute(key, String(value));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    if (Array.isArray(child)) append(el, child);
    else el.append(child instanceof Node ? child : String(child));
  }
}

/** Replace all children of `el`. */
export function replace(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

/** Set an attribute only when it changes (avoids style recalculation on every refresh). */
export function setAttr(el, name, value) {
  const text = String(value);
  if (el.getAttribute(name) !== text) el.setAttribute(name, text);
}

/** Set text only when it changes. */
export function setText(el, text) {
  const value = String(text);
  if (el.textContent !== value) el.textContent = value;
}

/**
 * Keyed reconciliation of a container's children: rows for keys that stay are updated in
 * place (focus and open state survive a refresh), new keys get `create(item)`, gone keys are
 * removed, and the order follows `items`.
 *   reconcile(tbody, items, item => item.id, item => h("tr"), (row, item) => {...})
 */
export function reconcile(container, items, keyOf, create, update) {
  const existing = new Map();
  for (const child of container.children) {
    if (child.dataset.key !== undefined) existing.set(child.dataset.key, child);
  }
  let cursor = container.firstElementChild;
  for (const item of items) {
    const key = String(keyOf(item));
    let el = existing.get(key);
    if (el) existing.delete(key);
    else {
      el = create(item);
      el.dataset.key = key;
    }
    update(el, item);
    if (el !== cursor) container.insertBefore(el, cursor);
    else cursor = cursor.nextElementSibling;
  }
  for (const stale of existing.values()) stale.remove();
}

/** An empty-state panel: a title and a hint (strings or nodes). */
export function emptyState(title, ...hint) {
  return h("div", { class: "empty", role: "note" }, h("p", { class: "empty-title" }, title),
    hint.length ? h("p", {}, ...hint) : null);
}

/** A <code> element, for commands in hints. */
export function code(text) {
  return h("code", {}, text);
}
