/**
 * The dashboard's shell: the header (views, namespace, API key, the state
 * of the view's event stream), the hash router, and the API key prompt.
 * Each view is mounted with an AbortSignal that closes its calls and its
 * one event stream when another view replaces it.
 *
 * @module
 */

import { apiKey, namespace, onKeyNeeded, setApiKey, setNamespace } from "./api.js";
import type { StreamState } from "./api.js";
import { h, replaceChildren } from "./dom.js";
import { mountExecutors } from "./views/executors.js";
import { mountRun } from "./views/run.js";
import { mountRuns } from "./views/runs.js";
import { mountWorkflow, mountWorkflows } from "./views/workflows.js";

/** What every view gets. */
export interface ViewContext {
  /** Aborted when the view is replaced. */
  signal: AbortSignal;
  /** Shows the state of the view's event stream in the header. */
  setStreamState: (state: StreamState | "none") => void;
  /** Sets the document title. */
  setTitle: (title: string) => void;
}

const main = h("main", { id: "main", tabindex: -1 });
const streamIndicator = h("span", { class: "stream", role: "status", "aria-live": "polite", "data-stream": "none" });
const namespaceInput = h("input", { id: "namespace", value: namespace(), size: 12, spellcheck: "false", autocomplete: "off" });
const keyButton = h("button", { type: "button", class: "link-button" });
const navLinks = (["runs", "workflows", "executors"] as const).map((name) =>
  h("a", { href: `#/${name}`, "data-nav": name }, name[0]?.toUpperCase() + name.slice(1)),
);

function renderKeyButton(): void {
  keyButton.textContent = apiKey() ? "API key: set (forget)" : "API key";
}

const keyDialog = h("dialog", { class: "key-dialog", "aria-labelledby": "key-title" });
const keyInput = h("input", { id: "api-key", type: "password", autocomplete: "off", required: true, size: 40 });
const keyForm = h(
  "form",
  { method: "dialog" },
  h("h2", { id: "key-title" }, "This server asks for an API key"),
  h("p", {}, "A viewer key is enough to read. It is kept in this tab only (session storage) and sent as a bearer token."),
  h("label", { for: "api-key" }, "API key "),
  keyInput,
  h("div", { class: "dialog-buttons" }, h("button", { type: "submit", value: "ok" }, "Use key"), h("button", { type: "button", onclick: () => keyDialog.close() }, "Cancel")),
);
keyDialog.appendChild(keyForm);
keyForm.addEventListener("submit", () => {
  if (keyInput.value.trim() !== "") {
    setApiKey(keyInput.value.trim());
    keyInput.value = "";
    renderKeyButton();
    route();
  }
});
onKeyNeeded(() => {
  if (!keyDialog.open) keyDialog.showModal();
});
keyButton.addEventListener("click", () => {
  if (apiKey()) {
    setApiKey(null);
    renderKeyButton();
    route();
  } else {
    keyDialog.showModal();
  }
});
namespaceInput.addEventListener("change", () => {
  setNamespace(namespaceInput.value);
  namespaceInput.value = namespace();
  route();
});

document.body.append(
  h("a", { href: "#main", class: "skip" }, "Skip to content"),
  h(
    "header",
    {},
    h("a", { href: "#/runs", class: "brand" }, "Tributary"),
    h("nav", { "aria-label": "views" }, navLinks),
    h("div", { class: "header-tools" }, h("label", { for: "namespace" }, "Namespace "), namespaceInput, keyButton, streamIndicator),
  ),
  main,
  keyDialog,
);
renderKeyButton();

let current: AbortController | undefined;

function route(): void {
  current?.abort();
  const controller = new AbortController();
  current = controller;
  const path = decodeURIComponent(location.hash.replace(/^#\/?/, "")).split("?")[0] ?? "";
  const [section = "runs", id] = path.split("/");
  for (const link of navLinks) {
    if (link.dataset.nav === section) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  replaceChildren(main);
  const context: ViewContext = {
    signal: controller.signal,
    setStreamState(state) {
      if (controller.signal.aborted) return;
      streamIndicator.dataset.stream = state;
      streamIndicator.textContent = state === "none" ? "" : state === "live" ? "● live" : state === "ended" ? "complete" : state;
    },
    setTitle(title) {
      document.title = `${title} · Tributary`;
    },
  };
  context.setStreamState("none");
  if (section === "runs" && id) mountRun(main, id, context);
  else if (section === "workflows" && id) mountWorkflow(main, id, context);
  else if (section === "workflows") mountWorkflows(main, context);
  else if (section === "executors") mountExecutors(main, context);
  else mountRuns(main, context);
}

window.addEventListener("hashchange", route);
route();
