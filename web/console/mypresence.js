// My presence: the Online / Away switch in the header. The choice is kept in
// the tab's sessionStorage and said again after every (re)connect, so a reload
// keeps it; a tab with no choice yet shows what the server has for this admin.

import { Disconnected } from "../shared/socket.js";

const SLOT = "chat.console.presence";

export class MyPresence {
  // say(frame) -> Promise of the answer frame; onRefused(text)
  constructor(root, { say, onRefused }) {
    this.say = say;
    this.onRefused = onRefused;
    this.box = root.querySelector("#presence-box");
    this.select = root.querySelector("#presence");
    this.select.addEventListener("change", () => {
      window.sessionStorage.setItem(SLOT, this.select.value);
      this.announce(this.select.value);
    });
  }

  // After `hello`: say again the status this tab chose, or show the server's
  // for this admin (`me` from admin/admins/, with its `presence`).
  sync(me) {
    const chosen = window.sessionStorage.getItem(SLOT);
    this.select.value = chosen || (me && me.presence === "away" ? "away" : "online");
    this.box.hidden = false;
    if (chosen) this.announce(chosen);
  }

  async announce(status) {
    try {
      const answer = await this.say({ type: "presence", status });
      if (answer.type === "error") this.onRefused(answer.detail);
    } catch (exc) {
      if (!(exc instanceof Disconnected)) throw exc; // said again after the reconnect
    }
  }

  forget() {
    window.sessionStorage.removeItem(SLOT);
    this.box.hidden = true;
  }
}
