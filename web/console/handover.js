// Chats changing hands: this admin transferring one (the picker's choice, a
// refusal in words), receiving one ("Dana transferred Tech Store to you"), and
// losing one: transferred away from another tab, or put back in the queue by
// the server (a stale claim's requeue). A lost chat stays on screen read-only,
// saying why, until the admin opens another.

import { ApiError } from "../shared/api.js";

const REQUEUE_WORDS = {
  unanswered: "it waited too long for a reply",
  offline: "you were offline too long",
};

export class Handover {
  // console: the controller (desk, api, picker, team, notify, render, sync)
  constructor(console) {
    this.console = console;
    this.transferring = new Set(); // session ids this tab is handing over now
  }

  async transfer(entry, admin) {
    const { console: c } = this;
    const id = entry.session.id;
    this.transferring.add(id);
    c.picker.setBusy(true);
    try {
      const session = await c.api.post("/admin/session/transfer/", { session_id: id, admin_id: admin.id });
      this.lose(entry, session, `You transferred this chat to ${admin.name}. It is read-only here now.`);
      c.picker.close();
      c.notify(`${entry.session.store.name} is now with ${admin.name}.`);
      c.team.reloadSoon();
    } catch (exc) {
      this.transferring.delete(id);
      c.picker.refused(exc instanceof ApiError
        ? `${admin.name}: ${exc.message}` : "The transfer did not reach the server; try again.");
    } finally {
      c.picker.setBusy(false);
      c.render();
    }
  }

  // A `session_transferred` frame: to us, or away from us (perhaps by this tab).
  transferred(frame) {
    const { desk } = this.console;
    const entry = desk.entries.get(frame.session.id);
    const wasMine = Boolean(entry) && desk.isMine(entry);
    const fresh = desk.entry(frame.session);
    if (desk.isMine(fresh)) {
      fresh.lost = null;
      this.console.notify(`${frame.from_admin.name} transferred ${frame.session.store.name} to you.`);
      this.console.reading.refreshUnread();
      if (!fresh.watching) this.console.sync.watch(fresh).catch(() => {});
    } else if (wasMine || this.transferring.has(frame.session.id)) {
      fresh.watching = false; // the server stopped sending it here
      if (!this.transferring.delete(frame.session.id)) {
        this.lose(fresh, frame.session,
          `This chat was transferred to ${frame.admin.name} from another tab. It is read-only here now.`);
        this.console.notify(`${frame.session.store.name} was transferred to ${frame.admin.name}.`);
      }
    }
    this.console.team.reloadSoon();
  }

  // A `session_released` frame. `releasedHere`: this tab asked for it.
  released(frame, releasedHere) {
    const { desk } = this.console;
    const entry = desk.entries.get(frame.session.id);
    if (!entry || !desk.isMine(entry) || releasedHere) return;
    const store = frame.session.store.name;
    const why = REQUEUE_WORDS[frame.reason];
    const text = why
      ? `${store} went back to the queue: ${why}. Claim it again from the queue to answer.`
      : `${store} was released from another tab and is back in the queue.`;
    this.lose(entry, frame.session, text);
    this.console.notify(text);
  }

  lose(entry, session, why) {
    this.console.desk.entry(session);
    entry.lost = why;
    entry.unread = 0;
  }
}
