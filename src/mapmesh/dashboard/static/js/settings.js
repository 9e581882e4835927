// Renders the effective configuration that /v1/explain produces (and /v1/services embeds as
// "policies"): every setting is {"value": v, "source": "configured" | "default" | ...}.
// Settings become rows of a description list, each with its value as the CLI prints it and
// a tag naming where it came from.

import { h } from "./dom.js";
import { durationSetting } from "./format.js";

/** True for a {value, source} leaf. */
export function isSetting(v) {
  return v !== null && typeof v === "object" && !Array.isArray(v) &&
    Object.keys(v).length === 2 && "value" in v && "source" in v;
}

/** "per_try_timeout_ms" → "per try timeout". */
export function label(key) {
  return String(key).replace(/_ms$/, "").replaceAll("_", " ");
}

/** A setting's value as text, knowing its key (durations end in _ms). */
export function formatSetting(key, v) {
  if (v === null || v === undefined) return "off";
  if (String(key).endsWith("_ms") && typeof v === "number") return durationSetting(v);
  if (typeof v === "boolean") return v ? "yes" : "no";
  if (Array.isArray(v)) {
    if (!v.length) return "none";
    if (v.every((x) => Array.isArray(x) && x.length === 2)) return v.map(([a, b]) => `${a}=${b}`).join(", ");
    return v.map((x) => formatSetting("", x)).join(", ");
  }
  if (typeof v === "object") {
    return Object.entries(v).filter(([, x]) => x !== null && !(Array.isArray(x) && !x.length))
      .map(([k, x]) => `${label(k)} ${formatSetting(k, isSetting(x) ? x.value : x)}`).join(" · ") || "on";
  }
  return String(v);
}

/**
 * Flatten a settings object into rows [{label, text, source}]. Nested groups prefix their
 * labels ("connection pool › max connections"); keys in `skip` are left out.
 */
export function settingRows(obj, skip = [], prefix = "") {
  const rows = [];
  if (!obj || typeof obj !== "object") return rows;
  for (const [key, v] of Object.entries(obj)) {
    if (skip.includes(key)) continue;
    const name = prefix ? `${prefix} › ${label(key)}` : label(key);
    if (isSetting(v)) rows.push({ label: name, text: formatSetting(key, v.value), source: v.source });
    else if (v && typeof v === "object" && !Array.isArray(v)) rows.push(...settingRows(v, skip, name));
    else rows.push({ label: name, text: formatSetting(key, v), source: null });
  }
  return rows;
}

/** A <dl> of setting rows; defaults are tagged so configured values stand out. */
export function settingsList(rows, className = "settings") {
  if (!rows.length) return h("p", { class: "muted" }, "nothing configured");
  return h("dl", { class: className },
    rows.flatMap((row) => [
      h("dt", {}, row.label),
      h("dd", {}, row.text,
        row.source ? h("span", { class: `source source-${row.source}` }, row.source) : null),
    ]));
}

/** The value of a setting or of a plain field. */
export function valueOf(v) {
  return isSetting(v) ? v.value : v;
}
