// One WebSocket that stays up: authenticates with a first `auth` frame (the
// browser cannot set headers), reconnects by itself with backoff, and matches
// answers to requests by `ref`. What to resume after a reconnect is the page's
// business: `onReady` runs after every `hello`, first or not.

export const CLOSE_BAD_KEY = 4001;
export const CLOSE_WRONG_KIND = 4003;
// Our own code when we give up on a silent socket (4000-4999 are private use).
const CLOSE_SILENT = 4000;

// First retry soon (a server restart takes a second), then back off so a
// thousand consoles do not hammer a struggling server; jitter spreads them.
const BACKOFF_MIN_MS = 500;
const BACKOFF_MAX_MS = 15000;
// A dead network often closes nothing: ping, and reconnect when nothing at all
// has arrived for this long.
const PING_EVERY_MS = 15000;
const SILENCE_LIMIT_MS = 40000;

export class Disconnected extends Error {
  constructor() {
    super("Connection lost.");
  }
}

export class ChatSocket {
  // hooks: onReady(hello, isReconnect), onFrame(frame), onState(state), onRejected(code, reason)
  constructor(path, key, hooks) {
    this.url = `${window.location.protocol === "https:" ? "wss" : "ws"}://${window.location.host}${path}`;
    this.key = key;
    this.hooks = hooks;
    this.ws = null;
    this.state = "idle"; // connecting | online | reconnecting | stopped
    this.attempt = 0;
    this.everReady = false;
    this.pending = new Map(); // ref -> {resolve, reject}
    this.nextRef = 1;
    this.retryTimer = null;
    this.pingTimer = null;
    this.lastHeard = 0;
    this.onBrowserOnline = () => this.reconnectNow();
  }

  start() {
    window.addEventListener("online", this.onBrowserOnline);
    this.connect();
  }

  stop() {
    this.setState("stopped");
    window.removeEventListener("online", this.onBrowserOnline);
    clearTimeout(this.retryTimer);
    clearInterval(this.pingTimer);
    if (this.ws) this.ws.close(1000, "Signed out.");
    this.failPending();
  }

  get online() {
    return this.state === "online";
  }

  connect() {
    if (this.state === "stopped") return;
    this.setState(this.everReady ? "reconnecting" : "connecting");
    const ws = new WebSocket(this.url, "json");
    this.ws = ws;
    ws.addEventListener("open", () => {
      ws.send(JSON.stringify({ type: "auth", token: this.key }));
    });
    ws.addEventListener("message", (event) => this.receive(ws, event.data));
    ws.addEventListener("close", (event) => this.closed(ws, event.code, event.reason));
  }

  receive(ws, raw) {
    if (ws !== this.ws) return;
    this.lastHeard = Date.now();
    let frame;
    try {
      frame = JSON.parse(raw);
    } catch {
      return; // not ours to understand; the server only sends JSON maps
    }
    if (frame.type === "hello") {
      const isReconnect = this.everReady;
      this.everReady = true;
      this.attempt = 0;
      this.setState("online");
      this.startPings(ws);
      this.hooks.onReady(frame, isReconnect);
      return;
    }
    const waiter = frame.ref != null ? this.pending.get(frame.ref) : undefined;
    if (waiter && (frame.type === "ack" || frame.type === "error" || frame.type === "pong")) {
      this.pending.delete(frame.ref);
      waiter.resolve(frame);
      return;
    }
    this.hooks.onFrame(frame);
  }

  closed(ws, code, reason) {
    if (ws !== this.ws) return;
    this.ws = null;
    clearInterval(this.pingTimer);
    this.failPending();
    if (this.state === "stopped") return;
    if (code === CLOSE_BAD_KEY || code === CLOSE_WRONG_KIND) {
      this.setState("stopped");
      this.hooks.onRejected(code, reason);
      return;
    }
    this.setState(this.everReady ? "reconnecting" : "connecting");
    const ceiling = Math.min(BACKOFF_MAX_MS, BACKOFF_MIN_MS * 2 ** this.attempt);
    this.attempt += 1;
    const delay = ceiling / 2 + Math.random() * (ceiling / 2);
    this.retryTimer = setTimeout(() => this.connect(), delay);
  }

  // The browser says the network is back: don't wait out the backoff.
  reconnectNow() {
    if (this.ws || this.state === "stopped") return;
    clearTimeout(this.retryTimer);
    this.attempt = 0;
    this.connect();
  }

  startPings(ws) {
    clearInterval(this.pingTimer);
    this.pingTimer = setInterval(() => {
      if (Date.now() - this.lastHeard > SILENCE_LIMIT_MS) {
        ws.close(CLOSE_SILENT, "No answer from the server.");
        return;
      }
      this.send({ type: "ping" });
    }, PING_EVERY_MS);
  }

  // Send without waiting for an answer; false when not connected.
  send(frame) {
    if (!this.online || !this.ws) return false;
    this.ws.send(JSON.stringify(frame));
    return true;
  }

  // Send and wait for the answer with the same ref (an `ack`, `pong` or
  // `error` frame); rejects with Disconnected if the socket goes first.
  request(frame) {
    if (!this.online) return Promise.reject(new Disconnected());
    const ref = `r${this.nextRef++}`;
    return new Promise((resolve, reject) => {
      this.pending.set(ref, { resolve, reject });
      this.send({ ...frame, ref });
    });
  }

  failPending() {
    const waiters = [...this.pending.values()];
    this.pending.clear();
    for (const waiter of waiters) waiter.reject(new Disconnected());
  }

  setState(state) {
    if (this.state === state) return;
    this.state = state;
    this.hooks.onState(state);
  }
}
