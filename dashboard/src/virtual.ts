/**
 * A virtualized list: rows of a fixed height, only those in view (plus a
 * margin) in the DOM, so lists of 10,000 tasks or events scroll smoothly.
 *
 * @module
 */

import { h } from "./dom.js";

/** A list showing `count()` rows, rendered by `renderRow`. */
export interface VirtualList {
  element: HTMLElement;
  /** Renders the rows in view again (after the data changed). */
  refresh(): void;
  /** Scrolls so that the last row is visible. */
  scrollToEnd(): void;
}

/** Creates a virtualized list in a scrolling box of `height` CSS pixels. */
export function virtualList(options: {
  rowHeight: number;
  height: string;
  count: () => number;
  renderRow: (index: number) => HTMLElement;
  label: string;
  header?: HTMLElement;
  /** Keep showing the last rows as rows are added, until the user scrolls up. */
  follow?: boolean;
}): VirtualList {
  const spacer = h("div", { class: "virtual-spacer" });
  const rows = h("div", { class: "virtual-rows", role: "presentation" });
  // Focusable, so that the keyboard scrolls it; the header row sits
  // outside the scrolling box but inside the table.
  const scroller = h("div", { class: "virtual", role: "rowgroup", tabindex: 0, style: `max-height:${options.height}` }, spacer, rows);
  const element = h("div", { class: "virtual-wrap", role: "table", "aria-label": options.label }, options.header ? h("div", { role: "rowgroup" }, options.header) : null, scroller);
  let shownKey = "";
  const render = (force: boolean): void => {
    const count = options.count();
    spacer.style.height = `${count * options.rowHeight}px`;
    const viewport = scroller.clientHeight || 400;
    const first = Math.max(0, Math.floor(scroller.scrollTop / options.rowHeight) - 10);
    const last = Math.min(count, Math.ceil((scroller.scrollTop + viewport) / options.rowHeight) + 10);
    const key = `${first}:${last}:${count}`;
    if (!force && key === shownKey) return;
    shownKey = key;
    rows.style.transform = `translateY(${first * options.rowHeight}px)`;
    const fragment = document.createDocumentFragment();
    for (let i = first; i < last; i++) {
      const row = options.renderRow(i);
      row.style.height = `${options.rowHeight}px`;
      fragment.appendChild(row);
    }
    rows.textContent = "";
    rows.appendChild(fragment);
  };
  let following = options.follow ?? false;
  let programmatic = false;
  scroller.addEventListener(
    "scroll",
    () => {
      if (options.follow && !programmatic) following = scroller.scrollTop + scroller.clientHeight >= scroller.scrollHeight - options.rowHeight;
      programmatic = false;
      render(false);
    },
    { passive: true },
  );
  if (typeof ResizeObserver !== "undefined") new ResizeObserver(() => render(false)).observe(scroller);
  return {
    element,
    refresh() {
      render(true);
      if (following && scroller.scrollTop + scroller.clientHeight < scroller.scrollHeight - 1) {
        programmatic = true;
        scroller.scrollTop = scroller.scrollHeight;
        render(false);
      }
    },
    scrollToEnd() {
      programmatic = true;
      scroller.scrollTop = scroller.scrollHeight;
      render(false);
    },
  };
}
