// What the console knows: every session it has seen, which of them wait in the
// queue (in queue order) and which this admin holds. Views read it; the
// controller (main.js) changes it from REST answers and socket frames.

import { Conversation } from "../shared/conversation.js";

export class Desk {
  constructor() {
    this.me = null; // the admin object from `hello`
    this.entries = new Map(); // session id -> Entry
    this.queue = []; // ids, oldest waiting first
    this.activeId = null; // the chat open in the pane
  }

  entry(session) {
    let entry = this.entries.get(session.id);
    if (!entry) {
      entry = new Entry(session);
      this.entries.set(session.id, entry);
    } else {
      entry.session = session;
    }
    return entry;
  }

  // A session enters the queue (opened or released): it goes to the back.
  enqueue(session) {
    this.entry(session);
    if (!this.queue.includes(session.id)) this.queue.push(session.id);
  }

  dequeue(id) {
    this.queue = this.queue.filter((queued) => queued !== id);
  }

  // Replace the queue with the server's view (after a (re)connect).
  setQueue(sessions) {
    for (const session of sessions) this.entry(session);
    this.queue = sessions.map((session) => session.id);
  }

  isMine(entry) {
    return Boolean(this.me) && entry.session.status === "claimed"
      && entry.session.admin_id === this.me.id;
  }

  queued() {
    return this.queue.map((id) => this.entries.get(id)).filter(Boolean);
  }

  // My sessions, latest activity first (the last message, else the claim).
  mine() {
    return [...this.entries.values()]
      .filter((entry) => this.isMine(entry))
      .sort((a, b) => b.activityAt() - a.activityAt());
  }

  active() {
    return this.activeId == null ? null : this.entries.get(this.activeId) || null;
  }
}

class Entry {
  constructor(session) {
    this.session = session;
    this.conversation = new Conversation(session.id);
    this.unread = session.unread || 0; // the server's count (sessions/mine/), never guessed
    this.reads = { store: 0, admin: 0 }; // how far each side has read (Get Session, `read` frames)
    this.markedSeq = 0; // the highest seq this tab has sent as read
    this.lost = null; // why this admin can no longer write here, in words
    this.watching = false; // resumed on the current socket
    this.claimedBy = null; // the winner's name, from session_claimed
    this.typingUntil = 0;
  }

  activityAt() {
    const last = this.conversation.lastWords();
    return Math.max(Date.parse(this.session.updated) || 0, last ? Date.parse(last.created) : 0);
  }

  // A `read` position from the server (Get Session, a frame): only forward.
  readUpTo(side, seq) {
    this.reads[side] = Math.max(this.reads[side], seq);
    if (side === "admin") this.markedSeq = Math.max(this.markedSeq, seq);
  }
}
