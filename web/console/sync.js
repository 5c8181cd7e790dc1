// Each chat's history kept in step with the server: resuming it on this socket
// from the last seq held (a held chat seen for the first time loads only its
// newest page), earlier pages on demand, every page also telling how far both
// sides have read, and, after a reconnect, what became of chats held before.

import { ApiError } from "../shared/api.js";
import { fetchOlder, findLastSeq } from "../shared/history.js";

const PAGE_SIZE = 50;

export class ChatSync {
  // console: the controller (desk, api, socket, notify, render, $)
  constructor(console) {
    this.console = console;
  }

  // Sessions we held that the server no longer lists: released or closed
  // while we were away. Learn what became of them.
  async forgetLost(mineIds) {
    const c = this.console;
    for (const entry of [...c.desk.entries.values()]) {
      const id = entry.session.id;
      if (!c.desk.isMine(entry) || mineIds.has(id)) continue;
      try {
        const { messages, has_more: more, ...session } = await c.api.get(`/admin/session/${id}/?limit=1`);
        entry.session = session;
      } catch (exc) {
        if (!(exc instanceof ApiError)) throw exc;
        c.desk.entries.delete(id); // no longer ours to read
        if (c.desk.activeId === id) c.desk.activeId = null;
      }
    }
  }

  // Resume a session on this socket from the last seq we hold. A held session
  // seen for the first time loads only its newest page.
  async watch(entry) {
    const c = this.console;
    const { conversation } = entry;
    const id = entry.session.id;
    if (!entry.primed && c.desk.isMine(entry) && conversation.lastSeq === 0) {
      const last = await findLastSeq(this.pageOf(id));
      conversation.floor = Math.max(0, last - PAGE_SIZE);
      conversation.lastSeq = conversation.floor;
    } else if (c.desk.isMine(entry)) {
      await this.pageOf(id)(conversation.lastSeq, 1); // where each side has read to
    }
    entry.primed = true;
    const answer = await c.socket.request({
      type: "resume", session_id: id, after_seq: conversation.lastSeq,
    });
    if (answer.type === "error") {
      c.desk.dequeue(id); // gone, or another admin's by now
      return;
    }
    entry.watching = true;
  }

  // A page of a session's history; each answer also says how far both sides have read.
  pageOf(id) {
    return async (afterSeq, limit) => {
      const c = this.console;
      const page = await c.api.get(`/admin/session/${id}/?after_seq=${afterSeq}&limit=${limit}`);
      const entry = c.desk.entries.get(id);
      if (entry && page.read) {
        entry.readUpTo("store", page.read.store);
        entry.readUpTo("admin", page.read.admin);
      }
      return page;
    };
  }

  // The page before the oldest shown of the open chat ("load earlier").
  async older() {
    const c = this.console;
    const entry = c.desk.active();
    if (!entry || entry.conversation.floor === 0) return;
    const log = c.$("#log");
    const fromBottom = log.scrollHeight - log.scrollTop;
    try {
      const page = await fetchOlder(this.pageOf(entry.session.id), entry.conversation.floor, PAGE_SIZE);
      entry.conversation.addOlder(page.messages, page.floor);
    } catch (exc) {
      c.notify(exc instanceof ApiError ? exc.message : "The server cannot be reached.");
    }
    c.render();
    log.scrollTop = log.scrollHeight - fromBottom; // keep the reader's place
  }
}
