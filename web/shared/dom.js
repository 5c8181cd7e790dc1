// DOM building without innerHTML: every piece of data becomes a text node or
// an attribute value, so a message body can never turn into markup.

export function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(props)) {
    if (value === undefined || value === null || value === false) continue;
    if (name === "text") node.textContent = value;
    else if (name === "className") node.className = value;
    else if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else node.setAttribute(name, value === true ? "" : String(value));
  }
  for (const child of children) {
    if (child !== null && child !== undefined && child !== false) node.append(child);
  }
  return node;
}

// Make `container`'s children match `items` in order, reusing the element of
// each key: a re-render every second keeps focus and scroll where they are.
export function syncList(container, items, keyOf, build, update) {
  const wanted = new Map(items.map((item) => [String(keyOf(item)), item]));
  for (const child of [...container.children]) {
    if (!wanted.has(child.dataset.key)) child.remove();
  }
  const existing = new Map([...container.children].map((child) => [child.dataset.key, child]));
  let cursor = container.firstElementChild;
  for (const [key, item] of wanted) {
    let node = existing.get(key);
    if (!node) {
      node = build(item);
      node.dataset.key = key;
    }
    update(node, item);
    if (node === cursor) cursor = cursor.nextElementSibling;
    else container.insertBefore(node, cursor);
  }
}

export function firstLine(text, max = 80) {
  const line = (text || "").trim().split("\n", 1)[0];
  return line.length > max ? `${line.slice(0, max - 1)}…` : line;
}

export function formatWait(ms) {
  const secs = Math.max(0, Math.floor(ms / 1000));
  if (secs < 60) return `${secs}s`;
  const mins = Math.floor(secs / 60);
  if (mins < 60) return `${mins}m ${String(secs % 60).padStart(2, "0")}s`;
  return `${Math.floor(mins / 60)}h ${String(mins % 60).padStart(2, "0")}m`;
}

export function formatTime(iso) {
  const date = new Date(iso);
  return Number.isNaN(date.getTime())
    ? ""
    : date.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
}

// A store's logo on a tile showing its initial: the image only from https
// (the CSP allows nothing else off-site), and if it fails the initial stays.
export function logo(url, name) {
  const tile = el("span", { className: "logo", "aria-hidden": "true",
    text: (name || "?").trim().charAt(0).toUpperCase() });
  if (typeof url === "string" && url.startsWith("https://")) {
    const img = el("img", { alt: "", loading: "lazy" });
    img.addEventListener("error", () => img.remove());
    img.src = url;
    tile.append(img);
  }
  return tile;
}

// A composer: the form's submit button and Enter in its textarea both send;
// Shift+Enter makes a new line, and Enter that ends an IME composition does not send.
export function bindComposer(form, textarea, send) {
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    send();
  });
  textarea.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      send();
    }
  });
}
