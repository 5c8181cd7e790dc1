// Telling an admin in another tab that someone is waiting: a count in the
// title, and a desktop notification where the admin has allowed them.

export class Alerts {
  constructor(button) {
    this.button = button;
    this.baseTitle = document.title;
    this.missed = 0;
    document.addEventListener("visibilitychange", () => {
      if (!document.hidden) this.clear();
    });
    button.addEventListener("click", async () => {
      await window.Notification.requestPermission();
      this.showButton();
    });
  }

  // Browsers only ask for permission on a click, so offer a button for it.
  showButton() {
    this.button.hidden = !("Notification" in window) || window.Notification.permission !== "default";
  }

  // A session entered the queue.
  sessionQueued(session) {
    if (!document.hidden) return;
    this.missed += 1;
    document.title = `(${this.missed}) ${this.baseTitle}`;
    if ("Notification" in window && window.Notification.permission === "granted") {
      const note = new window.Notification("A store is waiting", {
        body: session.store.name, tag: `chat-session-${session.id}`,
      });
      note.addEventListener("click", () => window.focus());
    }
  }

  clear() {
    this.missed = 0;
    document.title = this.baseTitle;
  }
}
