// What this admin has read: marking the open chat read when it is actually in
// view, and My sessions' unread counts taken from the server (sessions/mine/),
// so two tabs of one admin and a reload show the same numbers.

import { pageIsSeen, seqToMark } from "../shared/receipts.js";

const UNREAD_RELOAD_AFTER_MS = 250; // a burst of messages costs one sessions/mine/ request

export class Reading {
  // console: the controller (desk, api, socket, render)
  constructor(console) {
    this.console = console;
    this.timer = null;
  }

  // Ask the server for the counts again, soon, once for a burst of reasons.
  refreshUnread() {
    clearTimeout(this.timer);
    const c = this.console;
    const desk = c.desk;
    this.timer = setTimeout(async () => {
      try {
        const mine = await c.api.listAll("/admin/sessions/mine/?limit=200");
        if (desk !== c.desk) return; // signed out meanwhile
        for (const session of mine) {
          const entry = desk.entries.get(session.id);
          if (entry) entry.unread = session.unread;
        }
        c.render();
      } catch {
        // the next message, read or reconnect asks again
      }
    }, UNREAD_RELOAD_AFTER_MS);
  }

  // Tell the server what the admin has now seen of the open chat.
  markRead() {
    const { desk, socket } = this.console;
    const entry = desk.active();
    if (!entry || !desk.isMine(entry) || !pageIsSeen() || !socket || !socket.online) return;
    const seq = seqToMark(entry.conversation, "store", entry.markedSeq);
    if (!seq) return;
    entry.markedSeq = seq;
    entry.unread = 0; // the server's count follows from this mark
    socket.request({ type: "read", session_id: entry.session.id, seq }).then((answer) => {
      if (answer.type === "ack") entry.readUpTo("admin", answer.seq);
      this.refreshUnread();
    }).catch(() => { entry.markedSeq = entry.reads.admin; }); // marked again after the reconnect
  }
}
