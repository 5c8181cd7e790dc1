// The agent console: wires the REST client, the socket and the views together.
// State lives in the Desk (chats) and the Team (other admins); every change
// goes through here and ends in render().

import { Api, ApiError, keyProblem } from "../shared/api.js";
import { ChatSocket, CLOSE_WRONG_KIND, Disconnected } from "../shared/socket.js";
import { onAttentionChange } from "../shared/receipts.js";
import { ChatView } from "./chat.js";
import { Claims } from "./claims.js";
import { Desk } from "./desk.js";
import { Handover } from "./handover.js";
import { Shortcuts } from "./keys.js";
import { MyPresence } from "./mypresence.js";
import { Alerts } from "./notify.js";
import { TransferPicker } from "./picker.js";
import { QueueView } from "./queue.js";
import { Reading } from "./reading.js";
import { MySessionsView } from "./sessions.js";
import { StorePanel } from "./storepanel.js";
import { ChatSync } from "./sync.js";
import { Team } from "./team.js";

// sessionStorage: gone when the tab closes, never sent anywhere by itself.
const KEY_SLOT = "chat.console.adminKey";
const TYPING_SHOWN_MS = 4000; // the store's indicator, renewed by each typing frame
const TYPING_SEND_EVERY_MS = 1500; // the server drops repeats within 1 s anyway
const NOTICE_SHOWN_MS = 8000;
const TICK_MS = 1000;

class Console {
  constructor(root) {
    this.root = root;
    this.$ = (selector) => root.querySelector(selector);
    this.queueView = new QueueView(root, { onClaim: (id) => this.claims.claim(id) });
    this.mineView = new MySessionsView(root, { onOpen: (id) => this.open(id) });
    this.chatView = new ChatView(root, {
      onSend: (body) => this.send(body),
      onTyping: () => this.typing(),
      onRelease: () => this.release(),
      onClose: () => this.close(),
      onOlder: () => this.sync.older(),
      onTransfer: () => this.openPicker(),
    });
    this.team = new Team(null, () => this.render());
    this.picker = new TransferPicker(root, this.team, {
      onPick: (admin) => this.desk.active() && this.handover.transfer(this.desk.active(), admin),
    });
    this.team.shown = () => this.picker.isOpen;
    this.storePanel = new StorePanel(root, null, this.team, { onToggle: () => this.render() });
    this.myPresence = new MyPresence(root, {
      say: (frame) => this.socket.request(frame),
      onRefused: (text) => this.notify(text),
    });
    this.reading = new Reading(this);
    this.handover = new Handover(this);
    this.sync = new ChatSync(this);
    this.claims = new Claims(this);
    this.shortcuts = new Shortcuts(root, {
      nextChat: (step) => this.nextChat(step),
      transfer: () => this.openPicker(),
      toggleStore: () => Boolean(this.desk && this.desk.active()) && (this.storePanel.toggle(), true),
      closeStore: () => this.storePanel.isOpen && (this.storePanel.setOpen(false, true), true),
    });
    onAttentionChange(() => this.render()); // a chat in view now counts as read
    this.alerts = new Alerts(this.$("#notify"));
    this.$("#signin-form").addEventListener("submit", (event) => {
      event.preventDefault();
      this.signIn(this.$("#key").value.trim());
    });
    this.$("#signout").addEventListener("click", () => this.signOut(""));
    this.renderQueued = false;
    this.socket = null;
  }

  boot() {
    const key = window.sessionStorage.getItem(KEY_SLOT);
    if (key) this.start(key);
    else this.showSignIn("");
  }

  // --- signing in and out ---------------------------------------------------
  async signIn(key) {
    if (!key) return;
    const error = this.$("#signin-error");
    error.textContent = "";
    error.textContent = await keyProblem(key, "/admin/sessions/mine/?limit=1", "an admin");
    if (error.textContent) return; // a wrong key fails here, visibly
    this.$("#key").value = "";
    window.sessionStorage.setItem(KEY_SLOT, key);
    this.start(key);
  }

  signOut(why) {
    if (this.socket) this.socket.stop();
    this.socket = null;
    clearInterval(this.ticker);
    window.sessionStorage.removeItem(KEY_SLOT);
    this.myPresence.forget();
    this.picker.close();
    // Whoever signs in next in this tab must not see this admin's chats.
    // (start() makes a fresh Desk again, so late answers land in this one.)
    this.desk = new Desk();
    this.claims.reset();
    this.render();
    this.showSignIn(why);
  }

  showSignIn(why) {
    this.$("#desk").hidden = true;
    this.$("#signout").hidden = true;
    this.$("#whoami").hidden = true;
    this.$("#banner").hidden = true;
    this.$("#signin").hidden = false;
    this.$("#signin-error").textContent = why;
    this.$("#key").focus();
  }

  start(key) {
    this.api = new Api(key);
    this.team.api = this.api;
    this.storePanel.api = this.api;
    this.desk = new Desk();
    this.claims.reset();
    this.typingSentAt = 0;
    this.$("#signin").hidden = true;
    this.$("#desk").hidden = false;
    this.$("#signout").hidden = false;
    this.alerts.showButton();
    this.socket = new ChatSocket("/v1/chat/admin/ws/", key, {
      onReady: (hello) => this.ready(hello),
      onFrame: (frame) => this.onFrame(frame),
      onState: (state) => this.showConnection(state),
      onRejected: (code) => this.signOut(code === CLOSE_WRONG_KIND
        ? "That is not an admin key." : "The key was not accepted. Sign in again."),
    });
    this.socket.start();
    this.ticker = setInterval(() => this.render(), TICK_MS); // waits and typing expire
    this.render();
  }

  showConnection(state) {
    const banner = this.$("#banner");
    banner.hidden = state === "online" || state === "stopped";
    banner.textContent = state === "reconnecting"
      ? "Reconnecting… the chats will catch up by themselves." : "Connecting…";
    banner.classList.toggle("reconnecting", state === "reconnecting");
  }

  // --- after every (re)connect: the server's view, then resume every chat ---
  async ready(hello) {
    this.desk.me = hello.admin;
    const whoami = this.$("#whoami");
    whoami.textContent = `Signed in as ${hello.admin.name}`;
    whoami.hidden = false;
    for (const entry of this.desk.entries.values()) entry.watching = false;
    try {
      const [open, mine] = await Promise.all([
        this.api.listAll("/admin/sessions/open/?limit=200"),
        this.api.listAll("/admin/sessions/mine/?limit=200"),
        this.team.load(),
      ]);
      this.myPresence.sync(this.team.admins.get(hello.admin.id));
      this.desk.setQueue(open);
      for (const session of mine) this.desk.entry(session).unread = session.unread;
      await this.sync.forgetLost(new Set(mine.map((session) => session.id)));
      const watched = [...this.desk.queued(), ...this.desk.mine()];
      await Promise.all(watched.map((entry) => this.sync.watch(entry)));
      for (const entry of this.desk.mine()) this.flushPending(entry);
    } catch (exc) {
      if (exc instanceof Disconnected) return; // the next hello starts over
      this.notify(`Could not load the sessions: ${exc.message}`);
    }
    this.render();
  }

  openPicker() {
    const entry = this.desk && this.desk.active();
    if (!entry || !this.desk.isMine(entry)) return false;
    this.picker.open(this.desk.me.id, entry.session.store.name);
    return true;
  }

  nextChat(step) {
    const mine = this.desk ? this.desk.mine() : [];
    if (!mine.length) return false;
    const at = mine.findIndex((entry) => entry.session.id === this.desk.activeId);
    const next = at < 0 ? (step > 0 ? 0 : mine.length - 1) : (at + step + mine.length) % mine.length;
    this.open(mine[next].session.id);
    return true;
  }

  // --- frames from the server ---------------------------------------------
  onFrame(frame) {
    const { desk } = this;
    switch (frame.type) {
      case "message": {
        const entry = desk.entries.get(frame.message.session_id);
        if (!entry) return;
        entry.conversation.add(frame.message);
        if (frame.message.sender === "store") {
          entry.typingUntil = 0;
          if (desk.isMine(entry)) this.reading.refreshUnread();
        }
        break;
      }
      case "typing": {
        const entry = desk.entries.get(frame.session_id);
        if (entry && frame.sender === "store") entry.typingUntil = Date.now() + TYPING_SHOWN_MS;
        break;
      }
      case "session_opened": {
        desk.enqueue(frame.session);
        this.alerts.sessionQueued(frame.session);
        this.sync.watch(desk.entry(frame.session)).catch(() => {}); // a lost socket resumes it on hello
        break;
      }
      case "session_released": {
        const releasedHere = this.releasing === frame.session.id;
        this.handover.released(frame, releasedHere);
        desk.enqueue(frame.session);
        const lost = desk.entries.get(frame.session.id).lost;
        if (desk.activeId === frame.session.id && !lost) desk.activeId = null;
        this.team.reloadSoon();
        this.alerts.sessionQueued(frame.session);
        const entry = desk.entry(frame.session);
        if (!entry.watching) this.sync.watch(entry).catch(() => {});
        break;
      }
      case "session_claimed": {
        const entry = desk.entry(frame.session);
        entry.claimedBy = frame.admin ? frame.admin.name : entry.claimedBy;
        desk.dequeue(frame.session.id);
        if (desk.isMine(entry)) entry.lost = null;
        this.team.reloadSoon();
        break;
      }
      case "session_closed":
        desk.entry(frame.session);
        desk.dequeue(frame.session.id);
        this.team.reloadSoon();
        break;
      case "session_transferred": // to us or from us; the session names the new holder
        this.handover.transferred(frame);
        break;
      case "presence":
        this.team.applyPresence(frame);
        break;
      case "read": { // the store's (for "Seen"), or ours from another tab
        const entry = desk.entries.get(frame.session_id);
        if (!entry) return;
        entry.readUpTo(frame.sender, frame.seq);
        if (frame.sender === "admin") this.reading.refreshUnread();
        break;
      }
      case "error":
        this.notify(frame.detail || "The server refused a request.");
        break;
      default:
        return; // pong, and types newer than this page
    }
    this.render();
  }

  // --- actions ----------------------------------------------------------------
  open(id) {
    const entry = this.desk.entries.get(id);
    if (!entry) return;
    this.desk.activeId = id;
    this.render();
    this.chatView.focusDraft();
  }

  send(body) {
    const entry = this.desk.active();
    if (!entry) return;
    const pending = entry.conversation.addPending(body);
    this.typingSentAt = 0; // the next keystroke is a new reply being typed
    this.render();
    this.deliver(entry, pending);
  }

  // Send one pending message; it stays "sending" through a lost connection and
  // goes again after the next resume with the same client_id (stored once).
  async deliver(entry, pending) {
    try {
      const answer = await this.socket.request({
        type: "message", session_id: entry.session.id, body: pending.body,
        client_id: pending.client_id,
      });
      if (answer.type === "ack") entry.conversation.add(answer.message);
      else pending.failed = answer.detail || "refused";
    } catch (exc) {
      if (!(exc instanceof Disconnected)) throw exc;
    }
    this.render();
  }

  flushPending(entry) {
    for (const pending of entry.conversation.pending.values()) {
      if (!pending.failed) this.deliver(entry, pending);
    }
  }

  typing() {
    const entry = this.desk.active();
    const now = Date.now();
    if (!entry || !this.desk.isMine(entry) || now - this.typingSentAt < TYPING_SEND_EVERY_MS) return;
    this.typingSentAt = now;
    this.socket.send({ type: "typing", session_id: entry.session.id });
  }

  async release() {
    const entry = this.desk.active();
    this.releasing = entry && entry.session.id; // its session_released is no news here
    await this.changeState("/admin/session/release/", (session) => {
      this.desk.enqueue(session);
      this.desk.activeId = null;
    });
  }

  async close() {
    await this.changeState("/admin/session/close/", () => {});
  }

  async changeState(path, after) {
    const entry = this.desk.active();
    if (!entry) return;
    try {
      const session = await this.api.post(path, { session_id: entry.session.id });
      this.desk.entry(session);
      after(session);
    } catch (exc) {
      this.notify(exc instanceof ApiError ? exc.message : "The server cannot be reached.");
    }
    this.render();
  }

  notify(text) {
    const notice = this.$("#notice");
    notice.textContent = text;
    notice.hidden = false;
    clearTimeout(this.noticeTimer);
    this.noticeTimer = setTimeout(() => { notice.hidden = true; }, NOTICE_SHOWN_MS);
  }

  render() {
    if (!this.desk) return;
    const active = this.desk.active();
    this.reading.markRead();
    this.queueView.render(this.desk, this.claims.inFlight);
    this.mineView.render(this.desk);
    this.chatView.render(this.desk, (id) => this.team.nameOf(id));
    this.storePanel.render(active);
    this.picker.render();
    this.$("#desk").classList.toggle("chatting", Boolean(active));
    this.$("#desk").classList.toggle("with-panel", this.storePanel.isOpen);
  }
}

new Console(document.body).boot();
