// The waterfall's geometry, pure: spans in, rows out. No DOM.
//
// Rows are the spans depth first (a parent before its children, siblings by start time), each
// with its depth and its bar as percentages of the trace's time span. A span whose parent is
// not in the trace (sampled out, or not reported yet) starts a tree of its own.

/** True when a span failed: status "error", or an HTTP status of 500 or more. */
export function spanFailed(span) {
  if (span.status === "error") return true;
  const code = Number(span.attributes?.["http.status_code"]);
  return Number.isFinite(code) && code >= 500;
}

/**
 * Rows of the waterfall: [{span, depth, startMs, durationMs, left, width}] where `left` and
 * `width` are percentages of the whole trace (a zero-length span still gets a sliver).
 */
export function waterfallRows(spans) {
  if (!spans.length) return { rows: [], totalMs: 0, start: 0 };
  const ids = new Set(spans.map((s) => s.spanId));
  const children = new Map();
  for (const span of spans) {
    const parent = span.parentSpanId && ids.has(span.parentSpanId) && span.parentSpanId !== span.spanId
      ? span.parentSpanId : null;
    if (!children.has(parent)) children.set(parent, []);
    children.get(parent).push(span);
  }
  const serverFirst = (a, b) => (a.kind === b.kind ? 0 : a.kind === "server" ? -1 : 1);
  const byStart = (a, b) => a.start - b.start || serverFirst(a, b) || String(a.spanId).localeCompare(String(b.spanId));
  for (const list of children.values()) list.sort(byStart);

  const start = Math.min(...spans.map((s) => s.start));
  const end = Math.max(...spans.map((s) => Math.max(s.end, s.start)));
  const totalMs = Math.max((end - start) * 1000, 0.001);
  const row = (span, depth) => {
    const startMs = (span.start - start) * 1000;
    const durationMs = Math.max(0, (span.end - span.start) * 1000);
    const width = Math.max((durationMs / totalMs) * 100, 0.3);
    return { span, depth, startMs, durationMs, left: Math.min((startMs / totalMs) * 100, 100 - width), width };
  };
  const rows = [];
  const seen = new Set();
  const stack = [...(children.get(null) || [])].reverse().map((span) => [span, 0]);
  while (stack.length) {
    const [span, depth] = stack.pop();
    if (seen.has(span.spanId)) continue; // a span id reported twice: draw it once
    seen.add(span.spanId);
    rows.push(row(span, depth));
    for (const child of [...(children.get(span.spanId) || [])].reverse()) stack.push([child, depth + 1]);
  }
  // Spans caught in a parent cycle are never reached from a root; show them at the end.
  for (const span of spans) {
    if (!seen.has(span.spanId)) {
      seen.add(span.spanId);
      rows.push(row(span, 0));
    }
  }
  return { rows, totalMs, start };
}

/** About five "round" tick positions (ms) for an axis of `totalMs`. */
export function ticks(totalMs) {
  if (!(totalMs > 0)) return [0];
  const rough = totalMs / 4;
  const magnitude = 10 ** Math.floor(Math.log10(rough));
  const step = [1, 2, 2.5, 5, 10].map((m) => m * magnitude).find((s) => s >= rough) || rough;
  const out = [];
  for (let t = 0; t <= totalMs + step * 1e-9; t += step) out.push(Number(t.toPrecision(12)));
  return out;
}
