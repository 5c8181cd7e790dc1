// Keyboard shortcuts, and the "?" help that lists them (the help dialog's
// contents in index.html are the documentation: keep the two in step).
// Alt+arrows move between My sessions from anywhere, the reply box included,
// as in Slack and Zendesk; "?" opens the help only outside text fields, where
// it would otherwise be typed.

export class Shortcuts {
  // actions: nextChat(step), transfer(), toggleStore(), closeStore() -> bool
  constructor(root, actions) {
    this.help = root.querySelector("#help");
    root.querySelector("#help-open").addEventListener("click", () => this.showHelp());
    root.querySelector("#help-close").addEventListener("click", () => this.help.close());
    document.addEventListener("keydown", (event) => {
      if (this.handle(event, actions)) event.preventDefault();
    });
  }

  showHelp() {
    if (!this.help.open) this.help.showModal();
  }

  handle(event, actions) {
    if (event.defaultPrevented || event.isComposing) return false;
    if (event.key === "Escape") {
      // An open dialog closes itself on Esc (its "cancel"); the drawer is ours.
      if (document.querySelector("dialog[open]")) return false;
      return actions.closeStore();
    }
    if (document.querySelector("dialog[open]")) return false;
    if (event.altKey && !event.ctrlKey && !event.metaKey) {
      if (event.key === "ArrowDown") return actions.nextChat(1);
      if (event.key === "ArrowUp") return actions.nextChat(-1);
      if (event.code === "KeyT") return actions.transfer();
      if (event.code === "KeyI") return actions.toggleStore();
      return false;
    }
    if (event.key === "?" && !event.ctrlKey && !event.metaKey && !isTextField(event.target)) {
      this.showHelp();
      return true;
    }
    return false;
  }
}

function isTextField(node) {
  return node instanceof HTMLElement
    && (node.isContentEditable || ["INPUT", "TEXTAREA", "SELECT"].includes(node.tagName));
}
