// Number, duration and time formatting shared by the views.

/** Requests per second: "0", "0.35", "4.2", "120". */
export function rps(value) {
  const v = Number(value) || 0;
  if (v === 0) return "0";
  if (v < 1) return v.toFixed(2);
  if (v < 100) return v.toFixed(1);
  return Math.round(v).toString();
}

/** A ratio (0..1) as a percentage: "0%", "0.4%", "12%". */
export function percent(ratio) {
  const p = (Number(ratio) || 0) * 100;
  if (p === 0) return "0%";
  if (p < 10) return `${p.toFixed(1)}%`;
  return `${Math.round(p)}%`;
}

/** Milliseconds: "0.42 ms", "12.3 ms", "1.25 s". */
export function ms(value) {
  if (value === null || value === undefined || Number.isNaN(Number(value))) return "–";
  const v = Number(value);
  if (v === 0) return "0 ms";
  if (v >= 1000) return `${(v / 1000).toFixed(v >= 10000 ? 1 : 2)} s`;
  if (v >= 100) return `${Math.round(v)} ms`;
  if (v >= 10) return `${v.toFixed(1)} ms`;
  return `${v.toFixed(2)} ms`;
}

/** A settings value in milliseconds as the CLI shows it: 0 → "disabled", 15000 → "15 s". */
export function durationSetting(value) {
  if (value === null || value === undefined) return "off";
  const v = Number(value);
  if (v === 0) return "disabled";
  for (const [size, unit] of [[3_600_000, "h"], [60_000, "min"], [1000, "s"]]) {
    if (v % size === 0) return `${v / size} ${unit}`;
  }
  return `${v} ms`;
}

/** Unix seconds → local wall-clock time with milliseconds: "14:03:07.123". */
export function clock(unixSeconds) {
  const d = new Date(Number(unixSeconds) * 1000);
  if (Number.isNaN(d.getTime())) return "–";
  const pad = (n, w = 2) => String(n).padStart(w, "0");
  return `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}.${pad(d.getMilliseconds(), 3)}`;
}

/** Unix seconds → ISO string for <time datetime>. */
export function iso(unixSeconds) {
  const d = new Date(Number(unixSeconds) * 1000);
  return Number.isNaN(d.getTime()) ? "" : d.toISOString();
}

/** How long ago, coarse: "just now", "12 s ago", "3 min ago", "2 h ago". */
export function ago(unixSeconds, now = Date.now() / 1000) {
  const delta = Math.max(0, now - Number(unixSeconds));
  if (delta < 2) return "just now";
  if (delta < 60) return `${Math.round(delta)} s ago`;
  if (delta < 3600) return `${Math.round(delta / 60)} min ago`;
  return `${Math.round(delta / 3600)} h ago`;
}

/** A window in seconds as a label: 60 → "1 min". */
export function windowLabel(seconds) {
  const v = Number(seconds);
  if (v % 3600 === 0) return `${v / 3600} h`;
  if (v % 60 === 0) return `${v / 60} min`;
  return `${v} s`;
}

/** Any JSON value as short text for tables. */
export function value(v) {
  if (v === null || v === undefined) return "–";
  if (typeof v === "boolean") return v ? "yes" : "no";
  if (Array.isArray(v)) return v.length ? v.map(value).join(", ") : "none";
  if (typeof v === "object") return JSON.stringify(v);
  return String(v);
}
