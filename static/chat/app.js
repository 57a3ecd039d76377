/**
 * The chat page: sidebar of agents and their sessions, the selected
 * conversation, and the composer.
 *
 * A session is rebuilt from its stored events (REST), then followed live over
 * its websocket, which replays anything stored since (`resume`) on every
 * reconnect. The selected session lives in the URL (`?session=<id>`), so a
 * reload comes back to the same conversation.
 */

import { AgentsView } from "./agents.js";
import { ApiError, get, listAll, post, ref, request, uploadArtifact } from "./api.js";
import { Conversation, errorInWords } from "./conversation.js";
import { SessionSocket } from "./socket.js";
import { ChatTitle } from "./rename.js";
import { SpendMeter } from "./usage.js";
import { RunsPanel } from "./runs.js";

const $ = (selector) => document.querySelector(selector);

const ui = {
  agents: $("#agents"),
  sidebar: $("#sidebar"),
  sidebarToggle: $("#sidebar-toggle"),
  scrim: $("#scrim"),
  title: $("#chat-title"),
  subtitle: $("#chat-subtitle"),
  log: $("#log"),
  composer: $("#composer"),
  message: $("#message"),
  send: $("#send"),
  stop: $("#stop"),
  attach: $("#attach"),
  fileInput: $("#file-input"),
  attachments: $("#attachments"),
  connection: $("#connection"),
  announcer: $("#announcer"),
};

const state = {
  agents: [],
  sessions: new Map(), // agent id -> sessions, newest first
  sessionId: null,
  session: null,
  socket: null,
  connectedOnce: false,
  loadToken: 0,
  uploads: [], // {id?, name, size, status: "uploading" | "ready" | "failed", el}
};

const spend = new SpendMeter(document.querySelector(".chat-header"));
const runs = new RunsPanel(document.querySelector(".chat-header"));
spend.refresh();

const conversation = new Conversation(ui.log, {
  onRunningChange: (running) => {
    ui.stop.hidden = !running;
  },
  onGap: (after) => fillGap(after),
  announce,
  onExecutionFinished: () => {
    refreshSessions(ref(state.session?.agent));
    spend.refresh();
  },
  onDecide: decide,
});

const chatTitle = new ChatTitle({
  heading: ui.title,
  label: sessionLabel,
  onRenamed: (session) => {
    document.title = `${sessionLabel(session)} · Agentry`;
    refreshSessions(ref(session.agent));
  },
  announce,
});

const agentsView = new AgentsView({
  root: $("#agents-view"),
  main: $("#main"),
  onChanged: () => loadSidebar(),
  onChat: (agent) => startSession(agent),
  announce,
});

function showAgents(options) {
  setSidebarOpen(false);
  agentsView.open(options);
}

const APPROVAL_ERRORS = new Set(["invalid_approval", "not_awaiting_approval", "not_found"]);

function announce(text) {
  ui.announcer.textContent = "";
  // A fresh text node after a tick is what makes screen readers repeat a message.
  setTimeout(() => {
    ui.announcer.textContent = text;
  }, 50);
}

function uuid4() {
  if (window.crypto?.randomUUID) return window.crypto.randomUUID();
  const bytes = window.crypto.getRandomValues(new Uint8Array(16));
  bytes[6] = (bytes[6] & 0x0f) | 0x40;
  bytes[8] = (bytes[8] & 0x3f) | 0x80;
  const hex = [...bytes].map((b) => b.toString(16).padStart(2, "0")).join("");
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}

function signedOut() {
  window.location.assign(`/login/?next=${encodeURIComponent(window.location.pathname + window.location.search)}`);
}

function showProblem(error) {
  if (error instanceof ApiError && error.status === 401) {
    signedOut();
    return;
  }
  conversation.errorFrame({ code: error.code, message: error.message });
}

// --- sidebar --------------------------------------------------------------

function sessionLabel(session) {
  if (session.title) return session.title;
  const when = new Date(session.created_at ?? session.updated_at ?? Date.now());
  return `Chat of ${when.toLocaleString([], { dateStyle: "medium", timeStyle: "short" })}`;
}

function newestFirst(sessions) {
  const time = (s) => Date.parse(s.updated_at ?? s.created_at ?? 0) || 0;
  return [...sessions].sort((a, b) => time(b) - time(a));
}

function renderSidebar() {
  ui.agents.setAttribute("aria-busy", "false");
  agentsView.setHasAgents(state.agents.length > 0);
  if (!state.agents.length) {
    const empty = document.createElement("div");
    empty.className = "muted sidebar-empty";
    empty.innerHTML =
      '<p>You have no agents yet.</p><p><button type="button" class="button button-primary">Create an agent</button></p>' +
      "<p>or add one from the marketplace under <strong>Manage agents</strong>.</p>";
    empty.querySelector("button").addEventListener("click", () => showAgents({ create: true }));
    ui.agents.replaceChildren(empty);
    return;
  }
  const sections = state.agents.map((agent) => {
    const id = ref(agent.id);
    const section = document.createElement("section");
    section.className = "agent";
    section.dataset.agent = id;
    const headingId = `agent-${id}`;
    section.setAttribute("aria-labelledby", headingId);

    const head = document.createElement("div");
    head.className = "agent-head";
    const heading = document.createElement("h3");
    heading.id = headingId;
    heading.textContent = agent.name;
    if (agent.description) heading.title = agent.description;
    const newChat = document.createElement("button");
    newChat.type = "button";
    newChat.className = "button button-small new-chat";
    newChat.textContent = "New chat";
    newChat.setAttribute("aria-label", `New chat with ${agent.name}`);
    newChat.addEventListener("click", () => startSession(agent));
    head.append(heading, newChat);

    const list = document.createElement("ul");
    list.className = "session-list";
    for (const session of state.sessions.get(id) ?? []) {
      const item = document.createElement("li");
      const link = document.createElement("a");
      link.href = `?session=${encodeURIComponent(ref(session.id))}`;
      link.className = "session-link";
      link.textContent = sessionLabel(session);
      link.dataset.session = ref(session.id);
      if (ref(session.id) === state.sessionId) link.setAttribute("aria-current", "page");
      link.addEventListener("click", (event) => {
        if (event.metaKey || event.ctrlKey || event.shiftKey) return;
        event.preventDefault();
        openSession(ref(session.id));
      });
      item.append(link);
      list.append(item);
    }
    if (!list.childElementCount) {
      const none = document.createElement("li");
      none.className = "muted session-none";
      none.textContent = "No chats yet";
      list.append(none);
    }
    section.append(head, list);
    return section;
  });
  ui.agents.replaceChildren(...sections);
}

async function loadSessions(agentId) {
  const sessions = await listAll(`/api/sessions/?agent=${encodeURIComponent(agentId)}`);
  state.sessions.set(agentId, newestFirst(sessions));
}

async function refreshSessions(agentId) {
  if (!agentId) return;
  try {
    await loadSessions(agentId);
    renderSidebar();
    chatTitle.update(state.sessions.get(agentId)?.find((s) => ref(s.id) === state.sessionId));
  } catch {
    // The list is a convenience; the conversation itself is unaffected.
  }
}

async function loadSidebar() {
  try {
    state.agents = await listAll("/api/agents/");
    await Promise.all(state.agents.map((agent) => loadSessions(ref(agent.id))));
    renderSidebar();
  } catch (error) {
    if (error instanceof ApiError && error.status === 401) return signedOut();
    ui.agents.setAttribute("aria-busy", "false");
    ui.agents.replaceChildren();
    const problem = document.createElement("p");
    problem.className = "msg-error";
    problem.textContent = `The agents could not be loaded: ${error.message}`;
    ui.agents.append(problem);
  }
}

function setSidebarOpen(open) {
  ui.sidebar.classList.toggle("open", open);
  ui.scrim.hidden = !open;
  ui.sidebarToggle.setAttribute("aria-expanded", String(open));
  if (open) ui.sidebar.querySelector("button, a")?.focus();
}

// --- sessions ---------------------------------------------------------------

/** Stops following the open chat, so nothing typed now can reach it. */
function leaveSession() {
  state.loadToken += 1;
  state.socket?.close();
  state.socket = null;
  state.sessionId = null;
  state.session = null;
  runs.show([]);
  chatTitle.show(null);
  setComposerEnabled(false);
  setConnection("idle");
}

async function startSession(agent) {
  const previous = state.sessionId;
  leaveSession();
  try {
    const session = await post("/api/sessions/", { agent: agent.id });
    const agentId = ref(agent.id);
    state.sessions.set(agentId, [session, ...(state.sessions.get(agentId) ?? [])]);
    renderSidebar();
    await openSession(ref(session.id));
    ui.message.focus();
  } catch (error) {
    if (previous) await openSession(previous);
    showProblem(error);
  }
}

function setComposerEnabled(enabled) {
  for (const control of [ui.message, ui.send, ui.attach]) control.disabled = !enabled;
}

function agentOf(session) {
  return state.agents.find((agent) => ref(agent.id) === ref(session?.agent)) ?? null;
}

async function openSession(sessionId) {
  leaveSession();
  agentsView.close();
  const token = state.loadToken;
  state.sessionId = sessionId;
  clearUploads();
  state.connectedOnce = false;
  conversation.reset();
  setSidebarOpen(false);
  const url = new URL(window.location.href);
  url.searchParams.set("session", sessionId);
  window.history.replaceState(null, "", url);
  renderSidebar();

  let session;
  let events;
  let executions;
  try {
    [session, events, executions] = await Promise.all([
      get(`/api/sessions/${sessionId}/`),
      listAll(`/api/sessions/${sessionId}/events/?limit=1000`),
      listAll(`/api/executions/?session=${encodeURIComponent(sessionId)}`),
    ]);
  } catch (error) {
    if (token !== state.loadToken) return;
    if (error instanceof ApiError && error.status === 404) {
      ui.title.textContent = "Chat not found";
      ui.subtitle.textContent = "It may have been deleted. Pick another chat.";
      setComposerEnabled(false);
      return;
    }
    showProblem(error);
    return;
  }
  if (token !== state.loadToken) return;

  state.session = session;
  const agent = agentOf(session);
  chatTitle.show(session);
  ui.subtitle.textContent = agent ? `with ${agent.name}` : "";
  document.title = `${sessionLabel(session)} · Agentry`;

  for (const event of events) conversation.receive(event);
  const oldestFirst = [...executions].reverse();
  for (const execution of oldestFirst) conversation.applyExecution(execution);
  runs.show(executions);
  ui.log.scrollTop = ui.log.scrollHeight;
  setComposerEnabled(true);

  state.socket = new SessionSocket(sessionId, {
    onFrame: (frame) => onFrame(sessionId, frame),
    onState: (socketState, detail) => onSocketState(sessionId, socketState, detail),
    resumeAfter: () => conversation.lastSequence,
  });
  state.socket.connect();
}

async function fillGap(after) {
  const sessionId = state.sessionId;
  try {
    const events = await listAll(`/api/sessions/${sessionId}/events/?after_sequence=${after}&limit=1000`);
    if (sessionId === state.sessionId) for (const event of events) conversation.receive(event);
  } catch {
    // The next reconnect's resume fills it instead.
  }
}

/** After a reconnect: anything that ended while the page was away. */
async function refreshExecutions(sessionId) {
  try {
    const executions = await listAll(`/api/executions/?session=${encodeURIComponent(sessionId)}`);
    if (sessionId !== state.sessionId) return;
    for (const execution of [...executions].reverse()) conversation.applyExecution(execution);
  } catch {
    // Frames keep coming over the socket; this only catches up.
  }
}

function onFrame(sessionId, frame) {
  if (sessionId !== state.sessionId) return;
  if (frame.type === "event") {
    conversation.receive(frame.event);
  } else if (frame.type === "execution") {
    conversation.applyExecution(frame.execution);
    runs.apply(frame.execution);
  } else if (frame.type === "error") {
    if (APPROVAL_ERRORS.has(frame.error?.code)) {
      conversation.reopenApprovals();
    } else {
      const refused = conversation.dropOldestPending();
      if (refused && !ui.message.value) ui.message.value = refused.content;
    }
    conversation.errorFrame(frame.error);
    announce(errorInWords(frame.error?.code, frame.error?.message));
  }
}

function onSocketState(sessionId, socketState, detail) {
  if (sessionId !== state.sessionId) return;
  if (socketState === "open") {
    setConnection("open");
    if (state.connectedOnce) announce("Reconnected.");
    state.connectedOnce = true;
    refreshExecutions(sessionId);
  } else if (socketState === "reconnecting") {
    setConnection("reconnecting", detail);
  } else if (socketState === "unauthenticated") {
    signedOut();
  } else if (socketState === "gone" || socketState === "refused") {
    setConnection(socketState);
    setComposerEnabled(false);
  } else {
    setConnection(socketState);
  }
}

function setConnection(connectionState, detail = {}) {
  ui.connection.dataset.state = connectionState;
  const words = {
    idle: "",
    connecting: "Connecting…",
    open: "Live",
    reconnecting: `Connection lost, retrying in ${Math.max(1, Math.round((detail.inMs ?? 0) / 1000))} s…`,
    gone: "This chat is no longer available",
    refused: "The server refused the live connection from this address (check ALLOWED_HOSTS)",
  };
  ui.connection.textContent = words[connectionState] ?? "";
}

// --- sending ----------------------------------------------------------------

function send() {
  const content = ui.message.value;
  const ready = state.uploads.filter((upload) => upload.status === "ready");
  if (!state.socket || (!content.trim() && !ready.length)) return;
  if (state.uploads.some((upload) => upload.status === "uploading")) {
    announce("Wait for the attachments to finish uploading.");
    return;
  }
  const clientMessageId = uuid4();
  const frame = {
    type: "message",
    content,
    client_message_id: clientMessageId,
    attachments: ready.map((upload) => upload.id),
  };
  conversation.addPending(
    clientMessageId,
    content,
    ready.map((upload) => ({ id: upload.id, name: upload.name })),
  );
  state.socket.send(frame);
  ui.message.value = "";
  clearUploads();
}

/** Sends the decisions on a paused turn's tool calls. */
function decide(executionId, decisions) {
  const frame = { type: "approve", execution: executionId, decisions };
  if (state.socket?.isOpen) {
    state.socket.send(frame);
    return;
  }
  request("POST", `/api/executions/${executionId}/approve/`, { json: { decisions } }).catch(
    (error) => {
      conversation.reopenApprovals();
      showProblem(error);
    },
  );
}

function stop() {
  if (!conversation.isRunning || !state.sessionId) return;
  if (state.socket?.isOpen) {
    state.socket.send({ type: "cancel" });
  } else {
    request("POST", `/api/sessions/${state.sessionId}/cancel/`).catch(showProblem);
  }
  announce("Stopping…");
}

// --- attachments ------------------------------------------------------------

function formatSize(bytes) {
  if (bytes < 1024) return `${bytes} B`;
  if (bytes < 1024 * 1024) return `${(bytes / 1024).toFixed(1)} KB`;
  return `${(bytes / 1024 / 1024).toFixed(1)} MB`;
}

function renderUpload(upload) {
  upload.el.replaceChildren();
  upload.el.dataset.status = upload.status;
  const words = { uploading: "uploading…", ready: formatSize(upload.size), failed: upload.error };
  const name = document.createElement("span");
  name.className = "attachment-name";
  name.textContent = upload.name;
  const status = document.createElement("span");
  status.className = "attachment-status";
  status.textContent = words[upload.status];
  const remove = document.createElement("button");
  remove.type = "button";
  remove.className = "button button-icon";
  remove.textContent = "×";
  remove.setAttribute("aria-label", `Remove ${upload.name}`);
  remove.addEventListener("click", () => {
    state.uploads = state.uploads.filter((item) => item !== upload);
    upload.el.remove();
    ui.message.focus();
  });
  upload.el.append(name, status, remove);
}

async function attachFiles(files) {
  const sessionId = state.sessionId;
  if (!sessionId) return;
  await Promise.all(
    [...files].map(async (file) => {
      const upload = { name: file.name, size: file.size, status: "uploading", el: document.createElement("li") };
      upload.el.className = "attachment";
      state.uploads.push(upload);
      renderUpload(upload);
      ui.attachments.append(upload.el);
      try {
        const artifact = await uploadArtifact(sessionId, file);
        upload.id = ref(artifact.id);
        upload.status = "ready";
      } catch (error) {
        upload.status = "failed";
        upload.error = error.message;
      }
      if (sessionId === state.sessionId) renderUpload(upload);
    }),
  );
}

function clearUploads() {
  state.uploads = [];
  ui.attachments.replaceChildren();
}

// --- wiring -----------------------------------------------------------------

ui.composer.addEventListener("submit", (event) => {
  event.preventDefault();
  send();
});

ui.message.addEventListener("keydown", (event) => {
  if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
    event.preventDefault();
    send();
  }
});

document.addEventListener("keydown", (event) => {
  if (event.key !== "Escape") return;
  if (ui.sidebar.classList.contains("open")) {
    setSidebarOpen(false);
    ui.sidebarToggle.focus();
  } else if (conversation.isRunning) {
    event.preventDefault();
    stop();
  }
});

ui.stop.addEventListener("click", stop);
ui.attach.addEventListener("click", () => ui.fileInput.click());
ui.fileInput.addEventListener("change", () => {
  attachFiles(ui.fileInput.files);
  ui.fileInput.value = "";
});
ui.sidebarToggle.addEventListener("click", () =>
  setSidebarOpen(!ui.sidebar.classList.contains("open")),
);
ui.scrim.addEventListener("click", () => setSidebarOpen(false));
$("#manage-agents").addEventListener("click", () => showAgents());

async function start() {
  await loadSidebar();
  const wanted = new URL(window.location.href).searchParams.get("session");
  if (wanted) await openSession(wanted);
}

start();
