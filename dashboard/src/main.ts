/**
 * The dashboard's shell: the header (views, namespace, API key, the state
 * of the view's event stream), the hash router, and the API key prompt.
 * Each view is mounted with an AbortSignal that closes its calls and its
 * one event stream when another view replaces it.
 *
 * @module
 */

import { Code, ConnectError } from "@connectrpc/connect";
import { apiKey, explainError, namespace, onKeyNeeded, runs, setApiKey, setNamespace } from "./api.js";
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
const keyError = h("p", { class: "key-error", role: "alert" });
const keySubmit = h("button", { type: "submit", value: "ok" }, "Use key");
const keyForm = h(
  "form",
  { method: "dialog" },
  h("h2", { id: "key-title" }, "This server asks for an API key"),
  h("p", {}, "A viewer key is enough to read. It is kept in this tab only (session storage) and sent as a bearer token."),
  keyError,
  h("label", { for: "api-key" }, "API key "),
  keyInput,
  h("div", { class: "dialog-buttons" }, keySubmit, h("button", { type: "button", onclick: () => keyDialog.close() }, "Cancel")),
);
keyDialog.appendChild(keyForm);
// A key is tried with one small call before it is kept, so a wrong one is
// refused here, with the server's reason, and the prompt stays open.
keyForm.addEventListener("submit", async (event) => {
  event.preventDefault();
  const candidate = keyInput.value.trim();
  if (candidate === "" || keySubmit.disabled) return;
  keySubmit.disabled = true;
  try {
    await runs.listRuns({ pageSize: 1 }, { headers: { authorization: `Bearer ${candidate}` } });
  } catch (error) {
    // Anything but UNAUTHENTICATED means the key itself was accepted: what
    // it may not do is shown by the views.
    if (ConnectError.from(error).code === Code.Unauthenticated) {
      keyError.textContent = `The server refused this key: ${explainError(error)}.`;
      keySubmit.disabled = false;
      keyInput.select();
      return;
    }
  }
  keySubmit.disabled = false;
  setApiKey(candidate);
  keyInput.value = "";
  keyError.textContent = "";
  keyDialog.close();
  renderKeyButton();
  route();
});
onKeyNeeded((error) => {
  // A refusal of the key this tab holds (revoked, expired) says so; a call
  // made without a key needs no explanation.
  keyError.textContent = apiKey() ? `The server no longer accepts this tab's key: ${explainError(error)}.` : "";
  if (!keyDialog.open) keyDialog.showModal();
});
keyButton.addEventListener("click", () => {
  if (apiKey()) {
    setApiKey(null);
    renderKeyButton();
    route();
  } else {
    keyError.textContent = "";
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
