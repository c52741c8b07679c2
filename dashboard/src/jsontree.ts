/**
 * The context as a collapsible JSON tree. The parser keeps every number as
 * the text the server sent, so integers beyond 2^53 and long decimals are
 * shown exactly; the tree renders a container's children only when it is
 * opened, 200 at a time, so multi-megabyte contexts stay responsive.
 *
 * @module
 */

import { h } from "./dom.js";

/** A parsed JSON value; numbers keep their text. */
export type JsonNode =
  | { kind: "object"; entries: [string, JsonNode][] }
  | { kind: "array"; items: JsonNode[] }
  | { kind: "string"; value: string }
  | { kind: "number"; text: string }
  | { kind: "literal"; text: "true" | "false" | "null" };

const NUMBER = /-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][+-]?\d+)?/y;
const PLAIN_STRING = /"[^"\\\u0000-\u001f]*"/y;
const STRING = /"(?:[^"\\\u0000-\u001f]|\\["\\/bfnrt]|\\u[0-9a-fA-F]{4})*"/y;
const WHITESPACE = /[ \t\n\r]*/y;

/** Parses JSON text without losing any number's digits. */
export function parseLossless(text: string): JsonNode {
  let at = 0;
  const fail = (what: string): never => {
    throw new SyntaxError(`${what} at position ${at}`);
  };
  const space = (): void => {
    WHITESPACE.lastIndex = at;
    WHITESPACE.exec(text);
    at = WHITESPACE.lastIndex;
  };
  const string = (): string => {
    PLAIN_STRING.lastIndex = at;
    const plain = PLAIN_STRING.exec(text);
    if (plain) {
      at = PLAIN_STRING.lastIndex;
      return plain[0].slice(1, -1);
    }
    STRING.lastIndex = at;
    const escaped = STRING.exec(text);
    if (!escaped) return fail("bad string");
    at = STRING.lastIndex;
    return JSON.parse(escaped[0]) as string;
  };
  const value = (depth: number): JsonNode => {
    if (depth > 10_000) fail("nested too deeply");
    space();
    const c = text[at];
    if (c === "{") {
      at++;
      const entries: [string, JsonNode][] = [];
      space();
      if (text[at] === "}") {
        at++;
        return { kind: "object", entries };
      }
      for (;;) {
        space();
        if (text[at] !== '"') fail("expected a key");
        const key = string();
        space();
        if (text[at] !== ":") fail("expected ':'");
        at++;
        entries.push([key, value(depth + 1)]);
        space();
        if (text[at] === ",") {
          at++;
          continue;
        }
        if (text[at] === "}") {
          at++;
          return { kind: "object", entries };
        }
        fail("expected ',' or '}'");
      }
    }
    if (c === "[") {
      at++;
      const items: JsonNode[] = [];
      space();
      if (text[at] === "]") {
        at++;
        return { kind: "array", items };
      }
      for (;;) {
        items.push(value(depth + 1));
        space();
        if (text[at] === ",") {
          at++;
          continue;
        }
        if (text[at] === "]") {
          at++;
          return { kind: "array", items };
        }
        fail("expected ',' or ']'");
      }
    }
    if (c === '"') return { kind: "string", value: string() };
    for (const literal of ["true", "false", "null"] as const) {
      if (text.startsWith(literal, at)) {
        at += literal.length;
        return { kind: "literal", text: literal };
      }
    }
    NUMBER.lastIndex = at;
    const number = NUMBER.exec(text);
    if (!number) return fail("unexpected character");
    at = NUMBER.lastIndex;
    return { kind: "number", text: number[0] };
  };
  const result = value(0);
  space();
  if (at !== text.length) fail("unexpected text after the value");
  return result;
}

const CHUNK = 200;
const LONG_STRING = 300;

/** Renders a tree; the root is open, everything below it closed. */
export function jsonTree(root: JsonNode): HTMLElement {
  return h("div", { class: "json-tree", role: "tree" }, renderNode(root, undefined, true));
}

function renderNode(node: JsonNode, key: string | undefined, open: boolean): HTMLElement {
  const keyLabel = key === undefined ? null : h("span", { class: "json-key" }, `${key}: `);
  if (node.kind === "object" || node.kind === "array") {
    const size = node.kind === "object" ? node.entries.length : node.items.length;
    const brackets = node.kind === "object" ? ["{", "}"] : ["[", "]"];
    const summary = `${brackets[0]} ${size} ${node.kind === "object" ? (size === 1 ? "key" : "keys") : size === 1 ? "item" : "items"} ${brackets[1]}`;
    const children = h("div", { class: "json-children", role: "group" });
    const toggle = h("button", { class: "json-toggle", "aria-expanded": "false", type: "button" }, keyLabel, h("span", { class: "json-summary" }, summary));
    let shown = 0;
    const more = (): void => {
      const end = Math.min(size, shown + CHUNK);
      const fragment = document.createDocumentFragment();
      for (let i = shown; i < end; i++) {
        fragment.appendChild(
          node.kind === "object"
            ? renderNode((node.entries[i] as [string, JsonNode])[1], (node.entries[i] as [string, JsonNode])[0], false)
            : renderNode(node.items[i] as JsonNode, String(i), false),
        );
      }
      shown = end;
      children.querySelector(":scope > .json-more")?.remove();
      children.appendChild(fragment);
      if (shown < size) {
        children.appendChild(h("button", { class: "json-more", type: "button", onclick: more }, `show ${Math.min(CHUNK, size - shown)} more of ${size - shown}`));
      }
    };
    const setOpen = (value: boolean): void => {
      toggle.setAttribute("aria-expanded", String(value));
      children.hidden = !value;
      if (value && shown === 0 && size > 0) more();
    };
    toggle.addEventListener("click", () => setOpen(toggle.getAttribute("aria-expanded") !== "true"));
    setOpen(open);
    return h("div", { class: "json-node", role: "treeitem" }, toggle, children);
  }
  let valueElement: HTMLElement;
  if (node.kind === "string") {
    const quoted = JSON.stringify(node.value);
    if (quoted.length > LONG_STRING) {
      valueElement = h("span", { class: "json-string" }, `${quoted.slice(0, LONG_STRING)}…`);
      const all = h("button", { class: "json-more", type: "button" }, `show all ${node.value.length} characters`);
      all.addEventListener("click", () => {
        valueElement.textContent = quoted;
        all.remove();
      });
      return h("div", { class: "json-leaf", role: "treeitem" }, keyLabel, valueElement, all);
    }
    valueElement = h("span", { class: "json-string" }, quoted);
  } else {
    valueElement = h("span", { class: node.kind === "number" ? "json-number" : "json-literal" }, node.text);
  }
  return h("div", { class: "json-leaf", role: "treeitem" }, keyLabel, valueElement);
}
