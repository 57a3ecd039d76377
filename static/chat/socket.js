/**
 * The websocket of one chat session, kept alive.
 *
 * Connects same-origin to /ws/sessions/{id}/ (the Django session cookie
 * authenticates it), and on every (re)connect first asks the server to replay
 * what was stored after the last sequence number the page has seen, so a
 * dropped connection loses nothing. Reconnects with exponential backoff and
 * jitter; a ping that goes unanswered counts as a dead connection, because a
 * network that silently drops packets never fires `close` on its own.
 */

const BACKOFF_MS = [500, 1000, 2000, 4000, 8000, 15000];
const PING_EVERY_MS = 20000;
const PONG_WITHIN_MS = 10000;

export const CLOSE_UNAUTHENTICATED = 4401;
export const CLOSE_FORBIDDEN_ORIGIN = 4403;
export const CLOSE_NOT_FOUND = 4404;

export class SessionSocket {
  /**
   * @param {string} sessionId
   * @param {object} hooks
   * @param {(frame: object) => void} hooks.onFrame  every server frame
   * @param {(state: string, detail?: object) => void} hooks.onState
   *   "connecting" | "open" | "reconnecting" (detail.inMs) | "unauthenticated"
   *   | "gone" (no such session) | "refused" (this page's origin is not allowed)
   * @param {() => number} hooks.resumeAfter  last stored sequence number seen
   */
  constructor(sessionId, { onFrame, onState, resumeAfter }) {
    this.sessionId = sessionId;
    this.onFrame = onFrame;
    this.onState = onState;
    this.resumeAfter = resumeAfter;
    this.ws = null;
    this.queue = [];
    this.attempt = 0;
    this.closed = false;
    this.retryTimer = null;
    this.pingTimer = null;
    this.pongTimer = null;
    this.onOnline = () => this.reconnectNow();
    window.addEventListener("online", this.onOnline);
  }

  get url() {
    const scheme = window.location.protocol === "https:" ? "wss:" : "ws:";
    return `${scheme}//${window.location.host}/ws/sessions/${this.sessionId}/`;
  }

  get isOpen() {
    return this.ws?.readyState === WebSocket.OPEN;
  }

  connect() {
    if (this.closed) return;
    clearTimeout(this.retryTimer);
    this.onState("connecting");
    let ws;
    try {
      ws = new WebSocket(this.url);
    } catch {
      this.scheduleReconnect(); // refused before any network use (a blocked port)
      return;
    }
    this.ws = ws;
    ws.addEventListener("open", () => {
      if (ws !== this.ws) return;
      this.attempt = 0;
      this.rawSend({ type: "resume", after_sequence: this.resumeAfter() });
      for (const frame of this.queue.splice(0)) this.rawSend(frame);
      this.startHeartbeat();
      this.onState("open");
    });
    ws.addEventListener("message", (message) => {
      if (ws !== this.ws) return;
      this.sawLife();
      let frame;
      try {
        frame = JSON.parse(message.data);
      } catch {
        return; // not one of ours; the protocol only sends JSON objects
      }
      if (frame?.type !== "pong") this.onFrame(frame);
    });
    // A refused connection (CSP, a blocked port) may fire only `error`.
    ws.addEventListener("error", () => {
      setTimeout(() => {
        if (ws.readyState === WebSocket.CLOSED) this.lost(ws, 1006);
      }, 0);
    });
    ws.addEventListener("close", (event) => this.lost(ws, event.code));
  }

  lost(ws, code) {
    if (ws !== this.ws) return;
    this.stopHeartbeat();
    this.ws = null;
    if (this.closed) return;
    if (code === CLOSE_UNAUTHENTICATED) {
      this.onState("unauthenticated");
    } else if (code === CLOSE_NOT_FOUND) {
      this.onState("gone");
    } else if (code === CLOSE_FORBIDDEN_ORIGIN) {
      this.onState("refused");
    } else {
      this.scheduleReconnect();
    }
  }

  scheduleReconnect() {
    const base = BACKOFF_MS[Math.min(this.attempt, BACKOFF_MS.length - 1)];
    const inMs = Math.round(base * (0.8 + Math.random() * 0.4));
    this.attempt += 1;
    this.onState("reconnecting", { inMs });
    clearTimeout(this.retryTimer);
    this.retryTimer = setTimeout(() => this.connect(), inMs);
  }

  reconnectNow() {
    if (this.closed || this.isOpen) return;
    if (this.ws) return; // still connecting
    this.connect();
  }

  /** Sends now, or as soon as the connection is back. */
  send(frame) {
    if (this.isOpen) {
      this.rawSend(frame);
      return true;
    }
    this.queue.push(frame);
    this.reconnectNow();
    return false;
  }

  rawSend(frame) {
    this.ws.send(JSON.stringify(frame));
  }

  startHeartbeat() {
    this.stopHeartbeat();
    this.pingTimer = setInterval(() => {
      if (!this.isOpen) return;
      this.rawSend({ type: "ping" });
      clearTimeout(this.pongTimer);
      this.pongTimer = setTimeout(() => this.dropConnection(), PONG_WITHIN_MS);
    }, PING_EVERY_MS);
  }

  /** Gives up on a connection that stopped answering, without waiting for its close. */
  dropConnection() {
    const ws = this.ws;
    this.ws = null;
    this.stopHeartbeat();
    ws?.close();
    if (!this.closed) this.scheduleReconnect();
  }

  sawLife() {
    clearTimeout(this.pongTimer);
  }

  stopHeartbeat() {
    clearInterval(this.pingTimer);
    clearTimeout(this.pongTimer);
  }

  /** Closes for good (the page switched to another chat). */
  close() {
    this.closed = true;
    clearTimeout(this.retryTimer);
    this.stopHeartbeat();
    window.removeEventListener("online", this.onOnline);
    const ws = this.ws;
    this.ws = null;
    ws?.close(1000);
  }
}
