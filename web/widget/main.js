// The store's chat box. The first message opens a session; an admin joining
// (or taking over after a transfer) shows as "NAME joined", and each admin
// message is labelled with the admin who wrote it (agents.js); "Seen" marks the
// last message the admin has read, and what the store has seen here is marked
// read in turn; a lost connection reconnects and resumes from the last seq, and
// unacknowledged messages go again with the same client_id.

import { Api, ApiError, keyProblem } from "../shared/api.js";
import { renderLog } from "../shared/chatlog.js";
import { Conversation } from "../shared/conversation.js";
import { bindComposer } from "../shared/dom.js";
import { onAttentionChange, pageIsSeen, seqToMark, showSeen } from "../shared/receipts.js";
import { ChatSocket, CLOSE_WRONG_KIND, Disconnected } from "../shared/socket.js";
import { authorsOf, holderNamedBy } from "./agents.js";

const KEY_SLOT = "chat.widget.storeKey";
const HISTORY_PAGE = 1000; // the API's largest page
const TYPING_SHOWN_MS = 4000;
const TYPING_SEND_EVERY_MS = 1500;
const STATUS_AFTER = {
  admin_connected: "claimed", session_released: "open", session_closed: "closed",
  session_transferred: "claimed", session_requeued: "open",
};

class Widget {
  constructor(root) {
    this.$ = (selector) => root.querySelector(selector);
    this.log = this.$("#log");
    this.draft = this.$("#draft");
    this.$("#signin-form").addEventListener("submit", (event) => {
      event.preventDefault();
      this.signIn(this.$("#key").value.trim());
    });
    this.$("#signout").addEventListener("click", () => this.signOut(""));
    bindComposer(this.$("#composer"), this.draft, () => this.submit());
    this.draft.addEventListener("input", () => this.typing());
    onAttentionChange(() => this.render()); // what comes into view counts as read
  }

  boot() {
    const key = window.sessionStorage.getItem(KEY_SLOT);
    if (key) this.start(key);
    else this.showSignIn("");
  }

  async signIn(key) {
    if (!key) return;
    const error = this.$("#signin-error");
    // 404: no chat yet, which is a good key too.
    error.textContent = await keyProblem(key, "/store/session/?limit=1", "a store", [404]);
    if (error.textContent) return;
    this.$("#key").value = "";
    window.sessionStorage.setItem(KEY_SLOT, key);
    this.start(key);
  }

  signOut(why) {
    if (this.socket) this.socket.stop();
    this.socket = null;
    clearInterval(this.ticker);
    window.sessionStorage.removeItem(KEY_SLOT);
    this.log.replaceChildren(); // the next store to sign in here sees none of this chat
    this.$("#typing").textContent = "";
    this.showSignIn(why);
  }

  showSignIn(why) {
    this.$("#box").hidden = true;
    this.$("#signin").hidden = false;
    this.$("#signin-error").textContent = why;
    this.$("#key").focus();
  }

  start(key) {
    this.api = new Api(key);
    this.conversation = new Conversation(null);
    this.session = null;
    this.agent = null; // the admin's name once one joins
    this.agentNames = new Map(); // admin id -> name, from admin_connected frames
    this.reads = { store: 0, admin: 0 }; // how far each side has read
    this.markedSeq = 0; // the highest seq sent as read from this tab
    this.typingUntil = 0;
    this.typingSentAt = 0;
    this.$("#signin").hidden = true;
    this.$("#box").hidden = false;
    this.socket = new ChatSocket("/v1/chat/store/ws/", key, {
      onReady: () => this.ready(),
      onFrame: (frame) => this.onFrame(frame),
      onState: (state) => this.showConnection(state),
      onRejected: (code) => this.signOut(code === CLOSE_WRONG_KIND
        ? "That is not a store key." : "The key was not accepted."),
    });
    this.socket.start();
    this.ticker = setInterval(() => this.render(), 1000);
    this.render();
    this.draft.focus();
  }

  showConnection(state) {
    const banner = this.$("#banner");
    banner.hidden = state === "online" || state === "stopped";
    banner.textContent = state === "reconnecting" ? "Reconnecting…" : "Connecting…";
  }

  // After every (re)connect: the current session, then resume it.
  async ready() {
    try {
      await this.loadSession();
      if (this.session) {
        await this.socket.request({
          type: "resume", session_id: this.session.id, after_seq: this.conversation.lastSeq,
        });
      }
      for (const pending of this.conversation.pending.values()) {
        if (!pending.failed) this.deliver(pending);
      }
    } catch (exc) {
      if (!(exc instanceof Disconnected)) this.$("#error").textContent = exc.message;
    }
    this.render();
  }

  async loadSession() {
    let data;
    try {
      data = await this.api.get(`/store/session/?after_seq=${this.conversation.lastSeq}&limit=${HISTORY_PAGE}`);
    } catch (exc) {
      if (exc instanceof ApiError && exc.status === 404) {
        if (this.session) this.session = { ...this.session, status: "closed" };
        return; // nothing open: the next message opens a session
      }
      throw exc;
    }
    const { messages, has_more: more, read, ...session } = data;
    this.switchTo(session);
    if (read) this.readUpTo(read);
    for (const message of messages) this.take(message);
  }

  // A different session than the one shown (a new one after a close): start
  // a fresh conversation, keeping what is still being sent.
  switchTo(session) {
    if (this.conversation.sessionId !== session.id) {
      const pending = this.conversation.pending;
      if (this.conversation.sessionId !== null) this.agent = null;
      this.conversation = new Conversation(session.id);
      this.conversation.pending = pending;
      this.reads = { store: 0, admin: 0 };
      this.markedSeq = 0;
    }
    this.session = session;
  }

  take(message) {
    if (message.session_id !== this.conversation.sessionId) {
      if (message.session_id < (this.conversation.sessionId || 0)) return; // an old chat's
      this.switchTo({ ...(this.session || {}), id: message.session_id, status: "open" });
    }
    if (!this.conversation.add(message)) return;
    // The history tells the session's state too (a resume replays it).
    if (message.seq === this.conversation.lastSeq && message.event && this.session) {
      const status = STATUS_AFTER[message.event] || this.session.status;
      this.session = { ...this.session, status };
    }
    // Who answers now, from the history's system messages (a resume replays them).
    const named = holderNamedBy(message);
    if (named) this.agent = named;
    if (message.sender === "admin") this.typingUntil = 0;
  }

  onFrame(frame) {
    switch (frame.type) {
      case "message":
        this.take(frame.message);
        break;
      case "admin_connected":
        this.agent = frame.admin.name;
        this.agentNames.set(frame.admin.id, frame.admin.name);
        if (this.session) this.session = { ...this.session, status: "claimed" };
        break;
      case "session_closed":
        if (this.session && frame.session.id === this.session.id) this.session = frame.session;
        break;
      case "typing":
        this.typingUntil = Date.now() + TYPING_SHOWN_MS;
        break;
      case "read": // the admin's (for "Seen"), or ours from another tab
        if (frame.session_id === this.conversation.sessionId) this.readUpTo({ [frame.sender]: frame.seq });
        break;
      default:
        return;
    }
    this.render();
  }

  submit() {
    const body = this.draft.value.trim();
    if (!body) return;
    this.draft.value = "";
    this.$("#error").textContent = "";
    const pending = this.conversation.addPending(body);
    this.typingSentAt = 0; // the next keystroke is a new message being typed
    this.render();
    this.deliver(pending);
  }

  async deliver(pending) {
    try {
      const answer = await this.socket.request({
        type: "message", body: pending.body, client_id: pending.client_id,
      });
      if (answer.type === "ack") {
        if (this.conversation.sessionId !== answer.message.session_id) {
          this.switchTo({ id: answer.message.session_id, status: "open" });
        }
        this.take(answer.message);
      } else {
        pending.failed = answer.detail || "refused";
      }
    } catch (exc) {
      if (!(exc instanceof Disconnected)) throw exc;
    }
    this.render();
  }

  readUpTo(read) {
    for (const side of ["store", "admin"]) {
      if (read[side] > this.reads[side]) this.reads[side] = read[side];
    }
    this.markedSeq = Math.max(this.markedSeq, this.reads.store);
  }

  // Tell the server what the store has now seen: only in a visible, focused tab.
  markRead() {
    const id = this.conversation.sessionId;
    if (!id || !pageIsSeen() || !this.socket || !this.socket.online) return;
    const seq = seqToMark(this.conversation, "admin", this.markedSeq);
    if (!seq) return;
    this.markedSeq = seq;
    this.socket.request({ type: "read", session_id: id, seq }).then((answer) => {
      if (answer.type === "ack") this.readUpTo({ store: answer.seq });
    }).catch(() => { this.markedSeq = this.reads.store; }); // again after the reconnect
  }

  typing() {
    const now = Date.now();
    if (!this.session || this.session.status === "closed"
        || now - this.typingSentAt < TYPING_SEND_EVERY_MS) return;
    this.typingSentAt = now;
    this.socket.send({ type: "typing" });
  }

  status() {
    if (!this.session) return "Write to us and an agent will answer here.";
    if (this.session.status === "closed") return "This chat is closed. Write again to start a new one.";
    if (this.agent && this.session.status !== "open") return `${this.agent} joined`;
    return "Waiting for an agent…";
  }

  render() {
    if (!this.socket) return;
    this.$("#status").textContent = this.status();
    this.$("#typing").textContent = this.typingUntil > Date.now()
      ? `${this.agent || "Support"} is typing…` : "";
    const authors = authorsOf(this.conversation, this.agentNames);
    renderLog(this.log, this.conversation, "store",
      (message) => (message.sender === "store" ? "You" : authors.get(message.seq) || "Support"));
    showSeen(this.log, this.conversation, "store", this.reads.admin);
    this.markRead();
  }
}

new Widget(document.body).boot();
