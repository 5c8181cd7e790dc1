// Claiming a chat from the queue: which claims this tab has in flight (their
// buttons wait), the claimed chat opened at once, and a lost race said in
// words with the winner's name ("Tech Store: Taken by Omar.").

import { ApiError } from "../shared/api.js";

const CLAIM_WINNER_WAIT_MS = 2000; // how long a lost claim waits to learn the winner

export class Claims {
  // console: the controller (desk, api, open, notify, render)
  constructor(console) {
    this.console = console;
    this.inFlight = new Set(); // session ids being claimed from this tab
  }

  reset() {
    this.inFlight = new Set();
  }

  async claim(id) {
    const c = this.console;
    const entry = c.desk.entries.get(id);
    this.inFlight.add(id);
    c.render();
    try {
      const session = await c.api.post("/admin/session/claim/", { session_id: id });
      c.desk.entry(session);
      c.desk.dequeue(id);
      c.open(id);
    } catch (exc) {
      if (!(exc instanceof ApiError)) {
        c.notify("The claim did not reach the server; try again.");
      } else if (exc.status === 409 && exc.message === "Session already claimed.") {
        c.desk.dequeue(id);
        const winner = await this.winnerOf(entry);
        c.notify(`${entry.session.store.name}: Taken by ${winner}.`);
      } else {
        if (exc.status === 404 || exc.status === 409) c.desk.dequeue(id);
        c.notify(`${entry.session.store.name}: ${exc.message}`);
      }
    } finally {
      this.inFlight.delete(id);
      c.render();
    }
  }

  // The 409 does not say who won; the session_claimed frame does, and it may
  // arrive a moment after the answer.
  async winnerOf(entry) {
    const deadline = Date.now() + CLAIM_WINNER_WAIT_MS;
    while (!entry.claimedBy && Date.now() < deadline) {
      await new Promise((resolve) => { setTimeout(resolve, 50); });
    }
    return entry.claimedBy || "another admin";
  }
}
