// The queue: sessions waiting for an admin, oldest first, each with its
// store, a ticking wait and the first line of its last message, and a claim
// button. Rows are reused between renders so keyboard focus stays put.

import { el, firstLine, formatWait, logo, syncList } from "../shared/dom.js";

export class QueueView {
  constructor(root, { onClaim }) {
    this.list = root.querySelector("#queue");
    this.count = root.querySelector("#queue-count");
    this.empty = root.querySelector("#queue-empty");
    this.onClaim = onClaim;
  }

  render(desk, claiming) {
    const entries = desk.queued();
    this.count.textContent = String(entries.length);
    this.empty.hidden = entries.length > 0;
    const now = Date.now();
    syncList(this.list, entries, (entry) => entry.session.id,
      (entry) => this.buildRow(entry),
      (row, entry) => {
        const { session, conversation } = entry;
        const last = conversation.lastWords();
        row.querySelector(".store-name").textContent = session.store.name;
        row.querySelector(".wait").textContent = formatWait(now - conversation.queuedSince(session));
        row.querySelector(".last").textContent = last ? firstLine(last.body) : "";
        const button = row.querySelector("button");
        button.disabled = claiming.has(session.id);
        button.setAttribute("aria-label", `Claim session ${session.id} from ${session.store.name}`);
      });
  }

  buildRow(entry) {
    const id = entry.session.id;
    return el("li", { className: "row queue-row", "data-session": id },
      logo(entry.session.store.logo_url, entry.session.store.name),
      el("div", { className: "row-main" },
        el("div", { className: "row-top" },
          el("span", { className: "store-name" }),
          el("span", { className: "visually-hidden", text: "waiting" }),
          el("span", { className: "wait", title: "Waiting for" })),
        el("div", { className: "last" })),
      el("button", { type: "button", className: "claim", text: "Claim",
        onclick: () => this.onClaim(id) }));
  }
}
