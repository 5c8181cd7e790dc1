// The chat pane: the open session's history (with "load earlier"), "Seen"
// under the last reply the store has read, the store's typing indicator, the
// composer (Enter sends, Shift+Enter breaks the line), the transfer / release /
// close buttons, and, for a chat this admin lost, why it is read-only now.

import { renderLog } from "../shared/chatlog.js";
import { bindComposer, logo } from "../shared/dom.js";
import { showSeen } from "../shared/receipts.js";

export class ChatView {
  constructor(root, hooks) {
    // onSend(body), onTyping(), onRelease(), onClose(), onOlder(), onTransfer()
    this.hooks = hooks;
    this.pane = root.querySelector("#chat");
    this.none = root.querySelector("#chat-none");
    this.title = root.querySelector("#chat-title");
    this.status = root.querySelector("#chat-status");
    this.logoSlot = root.querySelector("#chat-logo");
    this.log = root.querySelector("#log");
    this.typing = root.querySelector("#typing");
    this.older = root.querySelector("#older");
    this.draft = root.querySelector("#draft");
    this.composer = root.querySelector("#composer");
    this.releaseButton = root.querySelector("#release");
    this.closeButton = root.querySelector("#close");
    this.transferButton = root.querySelector("#transfer");
    this.lost = root.querySelector("#chat-lost");
    this.shownId = null;

    bindComposer(this.composer, this.draft, () => this.submit());
    this.draft.addEventListener("input", () => hooks.onTyping());
    this.releaseButton.addEventListener("click", () => hooks.onRelease());
    this.closeButton.addEventListener("click", () => hooks.onClose());
    this.transferButton.addEventListener("click", () => hooks.onTransfer());
    this.older.addEventListener("click", () => hooks.onOlder());
  }

  submit() {
    const body = this.draft.value.trim();
    if (!body || this.draft.disabled) return;
    this.draft.value = "";
    this.hooks.onSend(body);
  }

  // names(adminId): a colleague's name for their messages in this chat.
  render(desk, names, now = Date.now()) {
    const entry = desk.active();
    this.pane.hidden = !entry;
    this.none.hidden = Boolean(entry);
    if (!entry) {
      this.shownId = null;
      return;
    }
    const { session, conversation } = entry;
    if (this.shownId !== session.id) {
      this.shownId = session.id;
      this.log.replaceChildren(); // another chat: its rows are not this one's
      const fresh = logo(session.store.logo_url, session.store.name);
      fresh.id = "chat-logo";
      this.logoSlot.replaceWith(fresh);
      this.logoSlot = fresh;
    }
    const holding = desk.isMine(entry);
    this.title.textContent = `${session.store.name} · #${session.id}`;
    this.status.textContent = session.status === "closed" ? "Closed"
      : holding ? "" : "Read-only";
    this.lost.textContent = holding ? "" : entry.lost || "";
    this.lost.hidden = holding || !entry.lost;
    this.releaseButton.disabled = !holding;
    this.closeButton.disabled = !holding;
    this.transferButton.disabled = !holding;
    this.draft.disabled = !holding;
    this.older.hidden = conversation.floor === 0;
    const typing = holding && entry.typingUntil > now;
    this.typing.textContent = typing ? `${session.store.name} is typing…` : "";
    renderLog(this.log, conversation, "admin", (message) =>
      message.sender === "store" ? session.store.name
        : message.sender_id === (desk.me && desk.me.id) ? "You" : names(message.sender_id));
    showSeen(this.log, conversation, "admin", entry.reads.store);
  }

  focusDraft() {
    this.draft.focus();
  }
}
