// The transfer picker: a modal dialog listing the other admins with their
// presence and load. Offline admins are listed too, marked, since a chat can
// wait for someone about to come back; the server decides (the limit, a chat
// closed meanwhile) and a refusal is shown here in words.

import { el, syncList } from "../shared/dom.js";

const PRESENCE_WORDS = { online: "online", away: "away", offline: "offline" };

export class TransferPicker {
  constructor(root, team, { onPick }) {
    this.team = team;
    this.onPick = onPick;
    this.dialog = root.querySelector("#picker");
    this.list = root.querySelector("#picker-list");
    this.note = root.querySelector("#picker-note");
    this.error = root.querySelector("#picker-error");
    this.title = root.querySelector("#picker-title");
    this.meId = null;
    this.busy = false;
    root.querySelector("#picker-cancel").addEventListener("click", () => this.close());
    // Esc is the dialog's own "cancel"; clicking the backdrop closes it too.
    this.dialog.addEventListener("click", (event) => {
      if (event.target === this.dialog) this.close();
    });
  }

  get isOpen() {
    return this.dialog.open;
  }

  open(meId, storeName) {
    this.meId = meId;
    this.error.textContent = "";
    this.title.textContent = `Transfer ${storeName} to`;
    if (!this.dialog.open) this.dialog.showModal();
    this.render();
    this.team.load().catch((exc) => { this.error.textContent = `Could not load the admins: ${exc.message}`; });
    const first = this.list.querySelector("button");
    if (first) first.focus();
  }

  close() {
    if (this.dialog.open) this.dialog.close();
  }

  refused(text) {
    this.error.textContent = text;
  }

  setBusy(busy) {
    this.busy = busy;
    this.render();
  }

  render() {
    if (!this.dialog.open) return;
    const others = this.team.others(this.meId);
    this.note.textContent = others.length ? "" : "There is no other admin yet.";
    syncList(this.list, others, (admin) => admin.id, (admin) => this.buildRow(admin),
      (row, admin) => {
        const state = PRESENCE_WORDS[admin.presence] || "offline";
        const load = `${admin.active_sessions} chat${admin.active_sessions === 1 ? "" : "s"}`;
        row.className = `presence-${state}`;
        const button = row.querySelector("button");
        button.disabled = this.busy;
        button.setAttribute("aria-label", `Transfer to ${admin.name}, ${state}, holds ${load}`);
        row.querySelector(".pick-name").textContent = admin.name;
        row.querySelector(".pick-state").textContent = state;
        row.querySelector(".pick-load").textContent = load;
      });
  }

  buildRow(admin) {
    return el("li", {},
      el("button", { type: "button", className: "pick", onclick: () => this.onPick(admin) },
        el("span", { className: "dot", "aria-hidden": "true" }),
        el("span", { className: "pick-name" }),
        el("span", { className: "pick-state" }),
        el("span", { className: "pick-load" })));
  }
}
