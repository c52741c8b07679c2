/**
 * A few DOM helpers: element creation, and the formatting of times,
 * durations and states. No framework: every view builds its elements once
 * and updates the ones that change.
 *
 * @module
 */

/** Attributes and event handlers of {@link h}. */
export type Props = Record<string, string | number | boolean | undefined | ((event: Event) => void)>;

/** A child of {@link h}: nodes, text, or nothing. */
export type Child = Node | string | number | null | undefined | false | Child[];

/**
 * Creates an element: `h("a", { href: "#/runs", class: "nav" }, "Runs")`.
 * Props starting with `on` are event listeners; `false`/`undefined` skip
 * an attribute.
 */
export function h<K extends keyof HTMLElementTagNameMap>(tag: K, props: Props = {}, ...children: Child[]): HTMLElementTagNameMap[K] {
  const element = document.createElement(tag);
  for (const [name, value] of Object.entries(props)) {
    if (value === undefined || value === false) continue;
    if (typeof value === "function") {
      element.addEventListener(name.slice(2).toLowerCase(), value);
    } else if (name === "style") {
      // Through the CSSOM: the Content-Security-Policy refuses style attributes.
      element.style.cssText = String(value);
    } else {
      element.setAttribute(name, value === true ? "" : String(value));
    }
  }
  append(element, children);
  return element;
}

const SVG_NS = "http://www.w3.org/2000/svg";

/** Creates an SVG element with attributes. */
export function svg<K extends keyof SVGElementTagNameMap>(tag: K, attributes: Record<string, string | number> = {}, ...children: Child[]): SVGElementTagNameMap[K] {
  const element = document.createElementNS(SVG_NS, tag);
  for (const [name, value] of Object.entries(attributes)) element.setAttribute(name, String(value));
  append(element, children);
  return element;
}

function append(parent: Node, children: Child[]): void {
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    if (Array.isArray(child)) append(parent, child);
    else parent.appendChild(typeof child === "string" || typeof child === "number" ? document.createTextNode(String(child)) : child);
  }
}

/** Replaces an element's children. */
export function replaceChildren(parent: Element, ...children: Child[]): void {
  parent.textContent = "";
  append(parent, children);
}

/** A time as `2026-12-01 20:51:03` in local time, or `—`. */
export function formatTime(ms: number | undefined): string {
  if (ms === undefined) return "—";
  const date = new Date(ms);
  const pad = (n: number): string => String(n).padStart(2, "0");
  return `${date.getFullYear()}-${pad(date.getMonth() + 1)}-${pad(date.getDate())} ${pad(date.getHours())}:${pad(date.getMinutes())}:${pad(date.getSeconds())}`;
}

/** A duration as `850 ms`, `12.3 s`, `4 min 05 s` or `2 h 03 min`. */
export function formatDuration(ms: number | undefined): string {
  if (ms === undefined || !Number.isFinite(ms)) return "—";
  if (ms < 0) ms = 0;
  if (ms < 1000) return `${Math.round(ms)} ms`;
  if (ms < 60_000) return `${(ms / 1000).toFixed(1)} s`;
  const seconds = Math.floor(ms / 1000);
  if (seconds < 3600) return `${Math.floor(seconds / 60)} min ${String(seconds % 60).padStart(2, "0")} s`;
  return `${Math.floor(seconds / 3600)} h ${String(Math.floor((seconds % 3600) / 60)).padStart(2, "0")} min`;
}

/** A state name for people: `RETRY_SCHEDULED` → `retry scheduled`. */
export function stateLabel(state: string): string {
  return state.toLowerCase().replace(/_/g, " ");
}

/** A badge showing a run or task state, coloured by CSS class. */
export function stateBadge(state: string): HTMLSpanElement {
  return h("span", { class: `badge state-${state.toLowerCase()}`, "data-state": state }, stateLabel(state));
}

/**
 * Calls `render` at most once per animation frame however often
 * `schedule` is called, so that a burst of events renders once.
 */
export function frameScheduler(render: () => void): () => void {
  let pending = false;
  return () => {
    if (pending) return;
    pending = true;
    requestAnimationFrame(() => {
      pending = false;
      render();
    });
  };
}
