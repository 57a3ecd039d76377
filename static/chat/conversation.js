/**
 * The conversation of one session, drawn from its events and executions.
 *
 * Stored events are applied strictly in sequence order: one that arrives
 * early waits for the gap before it to fill (from the socket's replay, or a
 * REST fetch the page makes when asked through `onGap`), and one already seen
 * is ignored, so a reload, a `resume` replay and live frames can overlap
 * freely. Partial events stream into a bubble that the stored agent message
 * replaces. Execution frames drive the "running" state and the usage line.
 * A turn paused for approval shows its pending tool calls with Approve and
 * Deny buttons for as long as its execution is `awaiting_approval`.
 */

import { ref } from "./api.js";
import { Delegation } from "./delegation.js";
import { renderMarkdown } from "./markdown.js";
import { turnCostParts } from "./usage.js";

const ACTIVE = new Set(["queued", "running"]);
const AWAITING = "awaiting_approval";
const FINAL = new Set(["succeeded", "failed", "cancelled", "interrupted"]);
const GAP_WAIT_MS = 1500;

/** What each error code means, in plain words. */
export const ERROR_WORDS = {
  cancelled: "Stopped.",
  interrupted: "The server stopped while answering. Send the message again to retry.",
  model_error: "The model could not answer.",
  model_rate_limited: "The model provider is rate-limiting requests. Wait a moment and try again.",
  model_timeout: "The model took too long to answer.",
  turn_timeout: "The answer took too long and was stopped.",
  usage_limit_exceeded: "The answer hit this agent's usage limit.",
  session_busy: "The agent is still answering the previous message. Wait for it, or press Stop.",
  invalid_frame: "The server did not understand that message.",
  message_too_large: "That message is too long to send.",
  network_error: "The server could not be reached.",
};

export function errorInWords(code, message) {
  const words = ERROR_WORDS[code];
  if (!words) return message || "Something went wrong.";
  return message && message !== words ? `${words} (${message})` : words;
}

function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

function prettyJson(value) {
  if (typeof value === "string") {
    try {
      return JSON.stringify(JSON.parse(value), null, 2);
    } catch {
      return value;
    }
  }
  return JSON.stringify(value ?? {}, null, 2);
}

function formatDuration(ms) {
  if (ms === null || ms === undefined) return null;
  return ms < 1000 ? `${ms} ms` : `${(ms / 1000).toFixed(1)} s`;
}

export class Conversation {
  /**
   * @param {HTMLElement} root  the log element
   * @param {object} hooks
   * @param {(running: boolean) => void} hooks.onRunningChange
   * @param {(afterSequence: number) => void} hooks.onGap  fetch stored events after this
   * @param {(text: string) => void} hooks.announce  for screen readers
   * @param {(execution: object) => void} hooks.onExecutionFinished
   * @param {(executionId: string, decisions: object) => void} hooks.onDecide
   */
  constructor(root, hooks) {
    this.root = root;
    this.hooks = hooks;
    this.clearState();
  }

  /** Empties the log for another session. */
  reset() {
    this.root.replaceChildren();
    this.clearState();
  }

  clearState() {
    clearTimeout(this.gapTimer);
    this.lastSequence = 0;
    this.early = new Map(); // sequence -> event, waiting for the gap before it
    this.gapTimer = null;
    this.executions = new Map(); // id -> latest execution seen
    this.turnEnd = new Map(); // execution id -> last element of that turn
    this.meta = new Map(); // execution id -> usage line element
    this.tools = new Map(); // tool_call_id -> details element
    this.delegation = new Delegation(); // delegated runs' blocks
    this.into = null; // where the event being applied goes (a child's block)
    this.approvals = new Map(); // execution id -> {el, decided, pending}
    this.stream = null; // {key, segments: [{el, text}], current}
    this.pending = []; // optimistic user messages: {clientMessageId, content, el}
    this.renderQueued = false;
    if (this.wasRunning) this.hooks.onRunningChange(false);
    this.wasRunning = false;
  }

  get isRunning() {
    for (const execution of this.executions.values()) {
      if (ACTIVE.has(execution.status)) return true;
    }
    return false;
  }

  // --- scrolling ------------------------------------------------------------

  nearBottom() {
    const { scrollTop, scrollHeight, clientHeight } = this.root;
    return scrollHeight - scrollTop - clientHeight < 80;
  }

  /** Appends while keeping the reader at the bottom if they were there. */
  withScroll(change) {
    const stick = this.nearBottom();
    const result = change();
    if (stick) this.root.scrollTop = this.root.scrollHeight;
    return result;
  }

  append(node, executionId) {
    this.withScroll(() => (this.into ?? this.root).append(node));
    if (executionId) this.markTurn(executionId, node);
    this.placeWorking();
    return node;
  }

  markTurn(executionId, node) {
    this.turnEnd.set(executionId, node);
    const meta = this.meta.get(executionId);
    if (meta && meta !== node) node.after(meta);
  }

  // --- stored events, in order ----------------------------------------------

  receive(event) {
    if (!event || typeof event !== "object") return;
    if (event.partial) {
      this.applyPartial(event);
      return;
    }
    const sequence = Number(event.sequence_number);
    if (!Number.isInteger(sequence) || sequence <= this.lastSequence) return;
    if (sequence > this.lastSequence + 1) {
      this.early.set(sequence, event);
      this.watchGap();
      return;
    }
    this.applyStored(event);
    this.lastSequence = sequence;
    while (this.early.has(this.lastSequence + 1)) {
      const next = this.early.get(this.lastSequence + 1);
      this.early.delete(this.lastSequence + 1);
      this.applyStored(next);
      this.lastSequence += 1;
    }
    if (this.early.size === 0) {
      clearTimeout(this.gapTimer);
      this.gapTimer = null;
    }
  }

  watchGap() {
    if (this.gapTimer) return;
    this.gapTimer = setTimeout(() => {
      this.gapTimer = null;
      if (this.early.size) this.hooks.onGap(this.lastSequence);
    }, GAP_WAIT_MS);
  }

  applyStored(event) {
    const executionId = ref(event.execution);
    const handlers = {
      message: () =>
        event.author === "user" ? this.userMessage(event) : this.agentMessage(event),
      tool_call: () => this.toolCall(event),
      tool_result: () => this.toolResult(event),
      error: () => this.errorEvent(event),
      state: () => this.stateEvent(event),
    };
    this.into = this.delegation.containerFor(executionId);
    const node = (handlers[event.kind] ?? (() => null))();
    this.into = null;
    if (node && executionId) this.markTurn(executionId, node);
  }

  // --- user messages --------------------------------------------------------

  userBubble(content, attachments) {
    const article = el("article", "msg msg-user");
    article.append(el("h3", "msg-author visually-hidden", "You"));
    article.append(el("div", "msg-body", content));
    const names = (attachments ?? [])
      .map((item) => (typeof item === "object" && item ? item.name ?? ref(item) : String(item)))
      .filter(Boolean);
    if (names.length) {
      const list = el("ul", "msg-attachments");
      list.setAttribute("aria-label", "Attachments");
      for (const name of names) list.append(el("li", "", name));
      article.append(list);
    }
    return article;
  }

  /** Shows a message the moment it is sent; the stored event replaces it. */
  addPending(clientMessageId, content, attachments) {
    const node = this.userBubble(content, attachments);
    node.classList.add("msg-pending");
    node.dataset.clientMessageId = clientMessageId;
    this.pending.push({ clientMessageId, content, el: node });
    this.root.append(node);
    this.placeWorking();
    this.root.scrollTop = this.root.scrollHeight; // one's own message is always in view
    return node;
  }

  /** Takes back the oldest unconfirmed message (the server refused it). */
  dropOldestPending() {
    const item = this.pending.shift();
    item?.el.remove();
    return item ?? null;
  }

  userMessage(event) {
    const id = event.metadata?.client_message_id;
    const index = this.pending.findIndex((item) =>
      id ? item.clientMessageId === id : item.content === event.content,
    );
    const node = this.userBubble(event.content, event.metadata?.attachments);
    node.dataset.sequence = event.sequence_number;
    if (index >= 0) {
      const [item] = this.pending.splice(index, 1);
      item.el.replaceWith(node);
      return node;
    }
    return this.append(node);
  }

  // --- agent answers --------------------------------------------------------

  agentBubble() {
    const article = el("article", "msg msg-agent");
    article.append(el("h3", "msg-author visually-hidden", "Agent"));
    article.append(el("div", "msg-body markdown"));
    return article;
  }

  agentMessage(event) {
    const node = this.agentBubble();
    node.dataset.sequence = event.sequence_number;
    node.querySelector(".msg-body").append(renderMarkdown(event.content));
    // The stored message holds the whole text: the streamed drafts go.
    if (this.stream) {
      for (const segment of this.stream.segments) segment.el.remove();
      this.stream = null;
    }
    const appended = this.append(node);
    if (event.turn_complete) this.hooks.announce("The answer is complete.");
    return appended;
  }

  applyPartial(event) {
    const key = ref(event.execution) ?? "current";
    if (!this.stream || this.stream.key !== key) {
      this.stream = { key, segments: [], current: null };
    }
    if (!this.stream.current) {
      const node = this.agentBubble();
      node.classList.add("msg-streaming");
      node.setAttribute("aria-busy", "true");
      this.stream.current = { el: node, text: "" };
      this.stream.segments.push(this.stream.current);
      this.into = this.delegation.containerFor(key);
      this.append(node, key === "current" ? null : key);
      this.into = null;
      this.hooks.announce("The agent is answering…");
    }
    this.stream.current.text += event.content ?? "";
    this.scheduleStreamRender();
  }

  /** One Markdown render per frame, however many tokens arrived in it. */
  scheduleStreamRender() {
    if (this.renderQueued) return;
    this.renderQueued = true;
    requestAnimationFrame(() => {
      this.renderQueued = false;
      for (const segment of this.stream?.segments ?? []) {
        const body = segment.el.querySelector(".msg-body");
        if (segment.rendered === segment.text) continue;
        this.withScroll(() => body.replaceChildren(renderMarkdown(segment.text)));
        segment.rendered = segment.text;
      }
    });
  }

  /** Later partials start below whatever the turn stored in between. */
  breakStream() {
    if (this.stream?.current) {
      this.stream.current.el.removeAttribute("aria-busy");
      this.stream.current = null;
    }
  }

  /** A turn ended without a stored message: keep the draft, marked unfinished. */
  settleStream() {
    if (!this.stream) return;
    for (const segment of this.stream.segments) {
      segment.el.classList.remove("msg-streaming");
      segment.el.classList.add("msg-unfinished");
      segment.el.removeAttribute("aria-busy");
    }
    this.stream = null;
  }

  // --- tools ----------------------------------------------------------------

  toolBlock(name, callId, executionId) {
    const details = el("details", "tool");
    if (executionId) details.dataset.execution = executionId;
    const summary = el("summary", "tool-summary");
    summary.append(el("span", "tool-label", "Tool"));
    summary.append(el("code", "tool-name", name || "unknown tool"));
    summary.append(el("span", "tool-status", "running…"));
    details.append(summary);
    details.dataset.state = "running";
    if (callId) this.tools.set(callId, details);
    return details;
  }

  section(details, title, text, className = "") {
    const wrapper = el("div", `tool-section ${className}`.trim());
    wrapper.append(el("h4", "tool-section-title", title));
    wrapper.append(el("pre", "tool-pre", text));
    details.append(wrapper);
  }

  toolCall(event) {
    this.breakStream();
    const meta = event.metadata ?? {};
    const details = this.toolBlock(meta.tool_name, meta.tool_call_id, ref(event.execution));
    const args = meta.args ?? meta.arguments ?? (event.content || {});
    this.section(details, "Arguments", prettyJson(args));
    return this.append(details);
  }

  toolResult(event) {
    this.breakStream();
    const meta = event.metadata ?? {};
    let details = meta.tool_call_id ? this.tools.get(meta.tool_call_id) : null;
    const fresh = !details;
    if (fresh) details = this.toolBlock(meta.tool_name, meta.tool_call_id);
    const isError = meta.is_error === true;
    details.dataset.state = isError ? "error" : "done";
    details.querySelector(".tool-status").textContent = isError ? "error" : "done";
    this.section(
      details,
      isError ? "Error" : "Result",
      prettyJson(event.content ?? ""),
      isError ? "tool-error" : "",
    );
    return fresh ? this.append(details) : details;
  }

  // --- approvals ------------------------------------------------------------

  stateEvent(event) {
    if (Delegation.opens(event)) return this.delegation.open(event, this.tools, this.root);
    const executionId = ref(event.execution);
    const requests = event.actions?.approval_requests;
    if (event.author === "system" && Array.isArray(requests) && requests.length) {
      return this.approvalCard(event, executionId, requests);
    }
    if (event.author === "user" && event.actions?.approvals) {
      this.settleApproval(executionId, event.content || "Decided.");
    }
    return null;
  }

  approvalCard(event, executionId, requests) {
    this.breakStream();
    const card = el("section", "approval");
    card.setAttribute("aria-label", "Approval needed");
    card.append(el("h3", "approval-title", "Approval needed"));
    card.append(el("p", "approval-text", event.content || "The agent asks to run a tool."));
    for (const request of requests) {
      const call = el("div", "approval-call");
      call.append(el("code", "tool-name", request.tool_name ?? "tool"));
      call.append(el("pre", "tool-pre", prettyJson(request.args ?? {})));
      card.append(call);
    }
    const actions = el("div", "approval-actions");
    const decide = (approved) => {
      const decisions = {};
      for (const request of requests) {
        decisions[request.tool_call_id] = approved
          ? true
          : { approved: false, message: "The user denied this call." };
      }
      this.settleApproval(executionId, approved ? "Approving…" : "Denying…", true);
      this.hooks.onDecide?.(executionId, decisions);
    };
    const approve = el("button", "button button-primary", "Approve");
    approve.type = "button";
    approve.addEventListener("click", () => decide(true));
    const deny = el("button", "button button-danger", "Deny");
    deny.type = "button";
    deny.addEventListener("click", () => decide(false));
    actions.append(approve, deny);
    card.append(actions, el("p", "approval-outcome muted"));
    this.approvals.set(executionId, { el: card, decided: false });
    const appended = this.append(card);
    this.refreshApproval(executionId);
    const names = requests.map((r) => r.tool_name).join(", ");
    this.hooks.announce(`The agent asks for approval to run ${names}.`);
    return appended;
  }

  /** Buttons only while the execution really waits for a decision. */
  refreshApproval(executionId) {
    const approval = this.approvals.get(executionId);
    if (!approval) return;
    const status = this.executions.get(executionId)?.status;
    const open = !approval.decided && (status === undefined || status === AWAITING);
    for (const button of approval.el.querySelectorAll("button")) button.disabled = !open;
    approval.el.dataset.state = open ? "open" : "closed";
    if (!approval.decided && status && status !== AWAITING) {
      approval.el.querySelector(".approval-outcome").textContent = "No longer waiting for a decision.";
    }
  }

  settleApproval(executionId, words, pending = false) {
    const approval = this.approvals.get(executionId);
    if (!approval) return;
    approval.decided = true;
    approval.pending = pending;
    approval.el.querySelector(".approval-outcome").textContent = words;
    this.refreshApproval(executionId);
  }

  /** A refused decision (the server said no): the buttons come back. */
  reopenApprovals() {
    for (const [executionId, approval] of this.approvals) {
      if (approval.pending) {
        approval.decided = false;
        approval.pending = false;
        approval.el.querySelector(".approval-outcome").textContent = "";
        this.refreshApproval(executionId);
      }
    }
  }

  /** Tool calls of an ended turn that never got a result did not run. */
  closeTools(executionId) {
    for (const details of this.root.querySelectorAll(`.tool[data-state="running"]`)) {
      if (details.dataset.execution !== executionId) continue;
      details.dataset.state = "skipped";
      details.querySelector(".tool-status").textContent = "not run";
    }
  }

  // --- errors ---------------------------------------------------------------

  errorEvent(event) {
    this.settleStream();
    const node = el("div", "msg-error");
    node.append(el("strong", "", "Error: "));
    node.append(
      document.createTextNode(errorInWords(event.error_code, event.error_message || event.content)),
    );
    if (event.error_code === "cancelled") node.classList.add("msg-error-quiet");
    return this.append(node);
  }

  /** An error frame (a refused message or a bad frame): shown, never stored. */
  errorFrame(error) {
    const node = el("div", "msg-error");
    node.append(el("strong", "", "Not sent: "));
    node.append(document.createTextNode(errorInWords(error?.code, error?.message)));
    return this.append(node);
  }

  // --- executions -----------------------------------------------------------

  applyExecution(execution) {
    if (!execution?.id) return;
    const id = ref(execution.id);
    const known = this.executions.get(id);
    // A stale REST read never takes back an ending the socket already reported.
    if (known && FINAL.has(known.status) && !FINAL.has(execution.status)) return;
    this.executions.set(id, { ...known, ...execution });
    this.refreshApproval(id);
    if (execution.status === AWAITING) this.settleStream();
    if (FINAL.has(execution.status)) {
      this.closeTools(id);
      if (this.stream && (this.stream.key === id || this.stream.key === "current")) {
        this.settleStream();
      }
      this.showUsage(this.executions.get(id));
      // Only an ending seen live: history loaded on open ended long ago.
      if (known && !FINAL.has(known.status)) this.hooks.onExecutionFinished?.(execution);
    }
    this.runningChanged();
  }

  runningChanged() {
    const running = this.isRunning;
    this.placeWorking();
    if (running !== this.wasRunning) {
      this.wasRunning = running;
      this.hooks.onRunningChange(running);
    }
  }

  /** The "working" line sits at the end of the log while a turn runs. */
  placeWorking() {
    if (!this.working) {
      this.working = el("div", "working");
      this.working.append(el("span", "working-dot"), el("span", "", "The agent is working…"));
    }
    if (this.isRunning) {
      if (this.root.lastElementChild !== this.working) {
        this.withScroll(() => this.root.append(this.working));
      }
    } else {
      this.working.remove();
    }
  }

  showUsage(execution) {
    const id = ref(execution.id);
    const usage = execution.usage ?? {};
    const parts = [];
    const tokensIn = usage.input_tokens ?? 0;
    const tokensOut = usage.output_tokens ?? 0;
    if (tokensIn || tokensOut) {
      parts.push(`${tokensIn + tokensOut} tokens (${tokensIn} in, ${tokensOut} out)`);
    }
    if (usage.requests) parts.push(`${usage.requests} request${usage.requests === 1 ? "" : "s"}`);
    if (usage.tool_calls) {
      parts.push(`${usage.tool_calls} tool call${usage.tool_calls === 1 ? "" : "s"}`);
    }
    const duration = formatDuration(execution.duration_ms);
    if (duration) parts.push(duration);
    if (execution.model) parts.push(execution.model);
    parts.push(...turnCostParts(execution));

    const meta = el("div", "turn-meta");
    meta.dataset.execution = id;
    meta.dataset.status = execution.status;
    const line = el("p", "turn-usage");
    const status = el("span", `turn-status turn-status-${execution.status}`, execution.status);
    line.append(status);
    if (parts.length) line.append(document.createTextNode(` · ${parts.join(" · ")}`));
    meta.append(line);

    const { output } = execution;
    if (output !== null && typeof output === "object") {
      const details = el("details", "structured-output");
      details.open = true;
      details.append(el("summary", "", "Structured output"));
      details.append(el("pre", "tool-pre", JSON.stringify(output, null, 2)));
      meta.append(details);
    }

    const old = this.meta.get(id);
    this.meta.set(id, meta);
    if (old) {
      old.replaceWith(meta);
      return;
    }
    const end = this.turnEnd.get(id);
    if (end?.isConnected) {
      this.withScroll(() => end.after(meta));
    } else {
      this.append(meta);
    }
  }
}
