// My Sessions: the chats this admin holds, latest activity first, each with
// the server's count of store messages this admin has not read (so two tabs
// and a reload agree).

import { el, firstLine, logo, syncList } from "../shared/dom.js";

export class MySessionsView {
  constructor(root, { onOpen }) {
    this.list = root.querySelector("#mine");
    this.count = root.querySelector("#mine-count");
    this.empty = root.querySelector("#mine-empty");
    this.onOpen = onOpen;
  }

  render(desk) {
    const entries = desk.mine();
    this.count.textContent = String(entries.length);
    this.empty.hidden = entries.length > 0;
    syncList(this.list, entries, (entry) => entry.session.id,
      (entry) => this.buildRow(entry),
      (row, entry) => {
        const { session, conversation } = entry;
        const { unread } = entry;
        const last = conversation.lastWords();
        const button = row.querySelector("button");
        button.setAttribute("aria-current", session.id === desk.activeId ? "true" : "false");
        button.setAttribute("aria-label", `Open chat with ${session.store.name}`
          + (unread ? `, ${unread} unread` : ""));
        row.querySelector(".store-name").textContent = session.store.name;
        row.querySelector(".last").textContent = last ? firstLine(last.body) : "";
        const badge = row.querySelector(".unread");
        badge.textContent = unread ? String(unread) : "";
        badge.hidden = !unread;
      });
  }

  buildRow(entry) {
    const id = entry.session.id;
    return el("li", { className: "row mine-row", "data-session": id },
      el("button", { type: "button", className: "open-chat", onclick: () => this.onOpen(id) },
        logo(entry.session.store.logo_url, entry.session.store.name),
        el("span", { className: "row-main" },
          el("span", { className: "row-top" },
            el("span", { className: "store-name" }),
            el("span", { className: "unread", hidden: true, "aria-hidden": "true" })),
          el("span", { className: "last" }))));
  }
}
