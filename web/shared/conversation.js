// One chat's messages as this page knows them: stored ones keyed by `seq`
// (so a message that arrives twice, from a resume replay, an ack and a live
// frame, is kept once and the list is always in seq order), and the ones we
// sent that the server has not acknowledged yet, keyed by `client_id`.

export class Conversation {
  constructor(sessionId) {
    this.sessionId = sessionId;
    this.messages = new Map(); // seq -> message
    this.pending = new Map(); // client_id -> {client_id, body, failed}
    this.lastSeq = 0; // highest seq held; resume from here
    this.floor = 0; // history below this seq is not loaded yet (paging back)
  }

  // Keep a stored message; false when it was already here.
  add(message) {
    if (message.client_id) this.pending.delete(message.client_id);
    if (message.seq <= this.floor || this.messages.has(message.seq)) return false;
    this.messages.set(message.seq, message);
    if (message.seq > this.lastSeq) this.lastSeq = message.seq;
    return true;
  }

  // Older history fetched with after_seq: everything from `newFloor` up.
  addOlder(messages, newFloor) {
    this.floor = newFloor;
    for (const message of messages) {
      if (!this.messages.has(message.seq)) this.messages.set(message.seq, message);
    }
  }

  addPending(body) {
    const entry = { client_id: newClientId(), body, failed: null };
    this.pending.set(entry.client_id, entry);
    return entry;
  }

  ordered() {
    return [...this.messages.values()].sort((a, b) => a.seq - b.seq);
  }

  // The newest store or admin message (system ones only report state).
  lastWords() {
    let best = null;
    for (const message of this.messages.values()) {
      if (message.sender !== "system" && (!best || message.seq > best.seq)) best = message;
    }
    return best;
  }

  countAfter(seq, sender) {
    let count = 0;
    for (const message of this.messages.values()) {
      if (message.seq > seq && message.sender === sender) count += 1;
    }
    return count;
  }

  // When the session last entered the queue: its last release, else its opening.
  queuedSince(session) {
    let since = session.created;
    let sinceSeq = 0;
    for (const message of this.messages.values()) {
      if (message.event === "session_released" && message.seq > sinceSeq) {
        since = message.created;
        sinceSeq = message.seq;
      }
    }
    return Date.parse(since);
  }
}

// A UUID v4 per message. crypto.randomUUID exists only in secure contexts
// (https, localhost); a console opened over plain http on a LAN address still
// needs one, and getRandomValues is available everywhere.
export function newClientId() {
  if (window.crypto.randomUUID) return window.crypto.randomUUID();
  const bytes = window.crypto.getRandomValues(new Uint8Array(16));
  bytes[6] = (bytes[6] & 0x0f) | 0x40;
  bytes[8] = (bytes[8] & 0x3f) | 0x80;
  const hex = [...bytes].map((b) => b.toString(16).padStart(2, "0")).join("");
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}
