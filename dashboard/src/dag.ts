/**
 * The DAG drawn in layers, dependencies left to right: a task's layer is
 * one more than its deepest dependency's. Up to {@link MAX_DRAWN_TASKS}
 * tasks are drawn as SVG nodes coloured by state; a bigger DAG is collapsed
 * to one row per layer with its tasks counted by state, which stays
 * responsive at 10,000 tasks and more.
 *
 * @module
 */

import { h, svg, stateLabel } from "./dom.js";

/** Above this many tasks the DAG is shown collapsed by layer. */
export const MAX_DRAWN_TASKS = 300;

/** A task of the graph. */
export interface DagTask {
  id: string;
  dependencies: string[];
}

/** The tasks by layer, each layer ordered to keep edges short. */
export interface Layers {
  layers: string[][];
  layerOf: Map<string, number>;
  dependencies: Map<string, string[]>;
}

/** Computes the layers (Kahn's algorithm; the server refuses cycles). */
export function layersOf(tasks: DagTask[]): Layers {
  const dependencies = new Map(tasks.map((t) => [t.id, t.dependencies] as const));
  const dependants = new Map<string, string[]>(tasks.map((t) => [t.id, []]));
  const remaining = new Map<string, number>();
  for (const task of tasks) {
    remaining.set(task.id, task.dependencies.length);
    for (const dependency of task.dependencies) dependants.get(dependency)?.push(task.id);
  }
  const layerOf = new Map<string, number>();
  let frontier = tasks.filter((t) => t.dependencies.length === 0).map((t) => t.id);
  for (const id of frontier) layerOf.set(id, 0);
  const queue = [...frontier];
  for (let i = 0; i < queue.length; i++) {
    const id = queue[i] as string;
    const layer = layerOf.get(id) ?? 0;
    for (const dependant of dependants.get(id) ?? []) {
      layerOf.set(dependant, Math.max(layerOf.get(dependant) ?? 0, layer + 1));
      const left = (remaining.get(dependant) ?? 1) - 1;
      remaining.set(dependant, left);
      if (left === 0) queue.push(dependant);
    }
  }
  const layers: string[][] = [];
  for (const task of tasks) {
    const layer = layerOf.get(task.id) ?? 0;
    (layers[layer] ??= []).push(task.id);
  }
  // One barycenter pass: order each layer by the mean position of its
  // dependencies in the layers before, which untangles most small DAGs.
  const position = new Map<string, number>();
  layers.forEach((layer, index) => {
    if (index > 0 && layer.length <= MAX_DRAWN_TASKS) {
      const weight = (id: string): number => {
        const deps = dependencies.get(id) ?? [];
        return deps.length === 0 ? 0 : deps.reduce((sum, d) => sum + (position.get(d) ?? 0), 0) / deps.length;
      };
      layer.sort((a, b) => weight(a) - weight(b) || (a < b ? -1 : a > b ? 1 : 0));
    }
    layer.forEach((id, i) => position.set(id, i));
  });
  frontier = [];
  return { layers: layers.map((l) => l ?? []), layerOf, dependencies };
}

const NODE_WIDTH = 170;
const NODE_HEIGHT = 34;
const LAYER_GAP = 56;
const ROW_GAP = 12;

/** A drawn DAG whose node colours follow task states. */
export interface DagView {
  element: HTMLElement;
  /** Recolours the nodes (or recounts the collapsed layers). */
  update(stateOf: (taskId: string) => string, selected: string | undefined): void;
}

/**
 * Draws the DAG. `onSelect` is called when a node is clicked or chosen
 * with the keyboard (Enter or Space).
 */
export function drawDag(layers: Layers, onSelect: (taskId: string) => void): DagView {
  const total = layers.layerOf.size;
  if (total > MAX_DRAWN_TASKS) return collapsedDag(layers);
  const tallest = Math.max(1, ...layers.layers.map((l) => l.length));
  const width = layers.layers.length * (NODE_WIDTH + LAYER_GAP) - LAYER_GAP + 8;
  const height = tallest * (NODE_HEIGHT + ROW_GAP) - ROW_GAP + 8;
  const at = new Map<string, { x: number; y: number }>();
  layers.layers.forEach((layer, column) => {
    const offset = ((tallest - layer.length) * (NODE_HEIGHT + ROW_GAP)) / 2;
    layer.forEach((id, row) => at.set(id, { x: 4 + column * (NODE_WIDTH + LAYER_GAP), y: 4 + offset + row * (NODE_HEIGHT + ROW_GAP) }));
  });
  const edges = svg("g", { class: "edges" });
  for (const [id, deps] of layers.dependencies) {
    const to = at.get(id);
    if (!to) continue;
    for (const dep of deps) {
      const from = at.get(dep);
      if (!from) continue;
      const x1 = from.x + NODE_WIDTH;
      const y1 = from.y + NODE_HEIGHT / 2;
      const x2 = to.x;
      const y2 = to.y + NODE_HEIGHT / 2;
      const mid = (x1 + x2) / 2;
      edges.appendChild(svg("path", { d: `M${x1},${y1} C${mid},${y1} ${mid},${y2} ${x2},${y2}`, class: "edge" }));
    }
  }
  const nodes = new Map<string, SVGGElement>();
  const group = svg("g", { class: "nodes" });
  for (const [id, { x, y }] of at) {
    const label = id.length > 22 ? `${id.slice(0, 21)}…` : id;
    const node = svg(
      "g",
      { class: "node state-waiting", transform: `translate(${x},${y})`, tabindex: 0, role: "button", "data-task": id, "aria-label": id },
      svg("title", {}, id),
      svg("rect", { width: NODE_WIDTH, height: NODE_HEIGHT, rx: 6 }),
      svg("text", { x: 10, y: NODE_HEIGHT / 2 + 5 }, label),
    );
    node.addEventListener("click", () => onSelect(id));
    node.addEventListener("keydown", (event) => {
      if (event.key === "Enter" || event.key === " ") {
        event.preventDefault();
        onSelect(id);
      }
    });
    nodes.set(id, node);
    group.appendChild(node);
  }
  const drawing = svg("svg", { width, height, viewBox: `0 0 ${width} ${height}`, class: "dag", role: "group", "aria-label": "the workflow's tasks, dependencies left to right" }, edges, group);
  // A DAG of a few layers is scaled to fit; a longer one scrolls, so that
  // its labels stay readable.
  if (layers.layers.length <= 10) drawing.classList.add("fit");
  const element = h("div", { class: "dag-scroll" }, drawing);
  const shown = new Map<string, string>();
  return {
    element,
    update(stateOf, selected) {
      for (const [id, node] of nodes) {
        const state = stateOf(id);
        const key = `${state}|${id === selected}`;
        if (shown.get(id) === key) continue;
        shown.set(id, key);
        node.setAttribute("class", `node state-${state.toLowerCase()}${id === selected ? " selected" : ""}`);
        node.setAttribute("data-state", state);
        node.setAttribute("aria-label", `${id}: ${stateLabel(state)}`);
      }
    },
  };
}

/** One row per layer, its tasks counted by state in a stacked bar. */
function collapsedDag(layers: Layers): DagView {
  const rows = layers.layers.map((layer, index) => {
    const bar = h("div", { class: "stack" });
    const text = h("span", { class: "layer-counts" });
    const row = h("div", { class: "layer-row" }, h("span", { class: "layer-name" }, `layer ${index + 1}`), h("span", { class: "layer-size" }, `${layer.length} task${layer.length === 1 ? "" : "s"}`), bar, text);
    return { layer, bar, text, row };
  });
  const element = h(
    "div",
    { class: "dag-collapsed", "data-collapsed": "true" },
    h("p", { class: "hint" }, `${layers.layerOf.size} tasks in ${layers.layers.length} layers: shown collapsed by layer. Find a task in the task list below.`),
    rows.map((r) => r.row),
  );
  let lastKey = "";
  return {
    element,
    update(stateOf) {
      const summaries = rows.map(({ layer }) => {
        const counts = new Map<string, number>();
        for (const id of layer) {
          const state = stateOf(id);
          counts.set(state, (counts.get(state) ?? 0) + 1);
        }
        return counts;
      });
      const key = JSON.stringify(summaries.map((c) => [...c]));
      if (key === lastKey) return;
      lastKey = key;
      rows.forEach(({ layer, bar, text }, index) => {
        const counts = summaries[index] as Map<string, number>;
        bar.textContent = "";
        const parts: string[] = [];
        for (const [state, count] of [...counts].sort()) {
          bar.appendChild(h("span", { class: `seg state-${state.toLowerCase()}`, style: `flex-grow:${count}`, title: `${count} ${stateLabel(state)}` }));
          parts.push(`${count} ${stateLabel(state)}`);
        }
        text.textContent = parts.join(", ");
        void layer;
      });
    },
  };
}
