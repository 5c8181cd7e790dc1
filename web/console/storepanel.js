// The store's context beside the chat: its name, logo and email, and its
// earlier sessions (newest first, with date, who handled them and their first
// line), each opening read-only with its history paged. A third column on a
// wide screen, a drawer on a phone; Esc or × closes it.

import { ApiError } from "../shared/api.js";
import { renderLog } from "../shared/chatlog.js";
import { Conversation } from "../shared/conversation.js";
import { el, firstLine, logo, syncList } from "../shared/dom.js";

const LIST_PAGE = 10;
const HISTORY_PAGE = 50;
const FIRST_LINES_PAGE = 5; // enough to reach the store's first words past system notes
const SLOT = "chat.console.storePanel"; // "open" / "closed": the agent's last choice

export class StorePanel {
  constructor(root, api, team, { onToggle }) {
    this.api = api;
    this.team = team;
    this.onToggle = onToggle;
    this.$ = (selector) => root.querySelector(selector);
    this.panel = this.$("#store-panel");
    this.toggleButton = this.$("#store-toggle");
    this.list = this.$("#past-list");
    this.storeId = null;
    this.currentId = null;
    this.sessions = [];
    this.next = null;
    this.firstLines = new Map(); // session id -> first line of the store's words
    this.past = null; // {session, conversation, hasMore} of the earlier chat shown
    this.problem = ""; // why the list is empty or incomplete, in words
    const saved = window.sessionStorage.getItem(SLOT);
    this.wanted = saved ? saved === "open" : window.matchMedia("(min-width: 1100px)").matches;
    this.toggleButton.addEventListener("click", () => this.toggle());
    this.$("#store-close").addEventListener("click", () => this.setOpen(false, true));
    this.$("#past-more").addEventListener("click", () => this.loadMore());
    this.$("#past-back").addEventListener("click", () => this.showList(true));
    this.$("#past-later").addEventListener("click", () => this.loadLater());
  }

  get isOpen() {
    return !this.panel.hidden;
  }

  toggle() {
    this.setOpen(!this.wanted, true);
  }

  setOpen(open, focus) {
    this.wanted = open;
    window.sessionStorage.setItem(SLOT, open ? "open" : "closed");
    this.onToggle();
    if (focus) (open ? this.$("#store-close") : this.toggleButton).focus();
  }

  // The open chat changed (or not): show its store, loading it when new.
  render(entry) {
    const shown = Boolean(entry) && this.wanted;
    this.panel.hidden = !shown;
    this.toggleButton.setAttribute("aria-expanded", String(shown));
    if (!entry) return;
    const { session } = entry;
    this.currentId = session.id;
    if (this.storeId !== session.store.id) {
      this.storeId = session.store.id;
      this.showStore(session.store);
      if (shown) this.reload();
      else this.sessions = null; // loaded when opened
    } else if (shown && this.sessions === null) {
      this.reload();
    }
    this.renderList();
  }

  showStore(store) {
    this.$("#store-panel-title").textContent = store.name;
    const tile = logo(store.logo_url, store.name);
    tile.id = "store-panel-logo";
    this.$("#store-panel-logo").replaceWith(tile);
    const email = this.$("#store-email");
    email.hidden = !store.email;
    email.textContent = store.email || "";
    if (store.email) email.href = `mailto:${store.email}`;
    this.showList(false);
  }

  async reload() {
    this.sessions = [];
    this.next = `/admin/stores/${this.storeId}/sessions/?limit=${LIST_PAGE}`;
    this.problem = "Loading…";
    await this.loadMore();
  }

  async loadMore() {
    const storeId = this.storeId;
    try {
      const page = await this.api.get(this.next);
      if (storeId !== this.storeId) return; // another store's answer, late
      this.sessions.push(...page.results);
      this.next = page.next ? page.next.slice(page.next.indexOf("/v1/chat") + "/v1/chat".length) : null;
      this.problem = "";
      this.renderList();
      await Promise.all(page.results.map((session) => this.loadFirstLine(session)));
    } catch (exc) {
      if (storeId !== this.storeId) return;
      this.next = null;
      this.problem = exc instanceof ApiError && exc.status === 403
        ? "Earlier chats show while you hold this store's chat."
        : `Could not load the earlier chats: ${exc.message}`;
    }
    this.renderList();
  }

  async loadFirstLine(session) {
    if (this.firstLines.has(session.id)) return;
    try {
      const page = await this.api.get(`/admin/session/${session.id}/?limit=${FIRST_LINES_PAGE}`);
      const words = page.messages.find((message) => message.sender !== "system");
      this.firstLines.set(session.id, words ? firstLine(words.body) : "");
    } catch {
      this.firstLines.set(session.id, ""); // shown without it
    }
    this.renderList();
  }

  earlier() {
    return (this.sessions || []).filter((session) => session.id !== this.currentId);
  }

  renderList() {
    const earlier = this.earlier();
    this.$("#past-empty").textContent = this.problem || (earlier.length ? "" : "No earlier chats.");
    this.$("#past-more").hidden = !this.next || !this.sessions || this.sessions.length === 0;
    syncList(this.list, earlier, (session) => session.id, (session) => this.buildRow(session),
      (row, session) => {
        const when = formatDate(session.created);
        const who = session.admin_id ? this.team.nameOf(session.admin_id) : "nobody (never claimed)";
        row.querySelector(".past-when").textContent = when;
        row.querySelector(".past-who").textContent = `Handled by ${who} · ${session.status}`;
        row.querySelector(".last").textContent = this.firstLines.get(session.id) || "";
        row.querySelector("button").setAttribute("aria-label",
          `Open the chat of ${when}, handled by ${who}, read-only`);
      });
  }

  buildRow(session) {
    return el("li", {},
      el("button", { type: "button", className: "past-open", onclick: () => this.openPast(session) },
        el("time", { className: "past-when", datetime: session.created }),
        el("span", { className: "past-who" }),
        el("span", { className: "last" })));
  }

  async openPast(session) {
    this.past = { session, conversation: new Conversation(session.id), hasMore: true };
    this.$("#past-view-title").textContent = `Chat of ${formatDate(session.created)}`;
    this.$("#past-log").replaceChildren();
    this.$("#past-section").hidden = true;
    this.$("#past-view").hidden = false;
    await this.loadLater();
    this.$("#past-back").focus();
  }

  // History pages forward from the start: an earlier chat is read from its beginning.
  async loadLater() {
    const past = this.past;
    if (!past) return;
    try {
      const page = await this.api.get(
        `/admin/session/${past.session.id}/?after_seq=${past.conversation.lastSeq}&limit=${HISTORY_PAGE}`);
      for (const message of page.messages) past.conversation.add(message);
      past.hasMore = page.has_more;
    } catch (exc) {
      this.$("#past-view-title").textContent = `Could not load this chat: ${exc.message}`;
      past.hasMore = false;
    }
    if (past !== this.past) return;
    this.$("#past-later").hidden = !past.hasMore;
    renderLog(this.$("#past-log"), past.conversation, "admin", (message) =>
      (message.sender === "store" ? past.session.store.name : this.team.nameOf(message.sender_id)));
  }

  showList(focus) {
    this.past = null;
    this.$("#past-view").hidden = true;
    this.$("#past-section").hidden = false;
    if (focus) {
      const first = this.list.querySelector("button");
      (first || this.$("#store-close")).focus();
    }
  }
}

function formatDate(iso) {
  const date = new Date(iso);
  return Number.isNaN(date.getTime()) ? "" : date.toLocaleString([], {
    year: "numeric", month: "short", day: "numeric", hour: "2-digit", minute: "2-digit",
  });
}
