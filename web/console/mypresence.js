// My presence: the Online / Away switch in the header. The choice is kept in
// the tab's sessionStorage and said again after every (re)connect, so a reload
// keeps it; a tab with no choice yet shows what the server has for this admin.

const SLOT = "chat.console.presence";

export class MyPresence {
  constructor(root, { onChange }) {
    this.box = root.querySelector("#presence-box");
    this.select = root.querySelector("#presence");
    this.select.addEventListener("change", () => {
      window.sessionStorage.setItem(SLOT, this.select.value);
      onChange(this.select.value);
    });
  }

  // After `hello`: the status to announce (the tab's choice), or null to keep
  // the server's, which `known` gives ("online" / "away" / "offline").
  wanted(known) {
    const chosen = window.sessionStorage.getItem(SLOT);
    this.select.value = chosen || (known === "away" ? "away" : "online");
    this.box.hidden = false;
    return chosen;
  }

  forget() {
    window.sessionStorage.removeItem(SLOT);
    this.box.hidden = true;
  }
}
