/**
 * The agents view of the chat page: your agents (create, edit, delete,
 * publish), public agents and marketplace listings (add one to yours).
 *
 * Public surface:
 *   new AgentsView({ root, main, onChanged, onChat, announce })
 *     .open({ create })   shows the view in place of the chat (`create`: the new-agent form)
 *     .close()            back to the chat
 *     .setHasAgents(b)    the chat's empty state offers a first agent when b is false
 *     .isOpen
 *
 * Everything goes through the REST API as any client would: `/api/agents/`,
 * `/api/tools/` (the registry, whose `config_schema` builds each tool's
 * config form), `/api/marketplace/`. A refused save keeps the form as typed
 * and shows the server's messages next to their fields.
 */

import { ApiError, get, listAll, post, ref, request } from "./api.js";
import { SchemaForm, toolConfigErrors } from "./schema_form.js";

const DEFAULT_TTL = 1800;
const MAX_TTL = 604800;
const SEARCH_PAGE = 50;
const ATTRIBUTES_ONLY = new Set(["list", "form"]); // read-only as properties

/** A small element builder: h("p", {className: "x"}, "text", child). */
function h(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith("on")) node.addEventListener(key.slice(2).toLowerCase(), value);
    else if (key === "dataset") Object.assign(node.dataset, value);
    else if (key in node && !key.includes("-") && !ATTRIBUTES_ONLY.has(key)) node[key] = value;
    else node.setAttribute(key, value === true ? "" : value);
  }
  node.append(...children.flat().filter((child) => child !== null && child !== undefined && child !== false));
  return node;
}

/** Every message under a `details` entry, as one sentence. */
function messagesOf(detail) {
  if (detail === null || detail === undefined) return "";
  if (typeof detail === "string") return detail;
  if (Array.isArray(detail)) return detail.map(messagesOf).filter(Boolean).join(" ");
  return Object.entries(detail)
    .map(([key, value]) => `${key}: ${messagesOf(value)}`)
    .join(" ");
}

function errorText(error) {
  return error instanceof ApiError ? error.message : String(error?.message ?? error);
}

/** A labelled input with its error line; `field.error` shows a message. */
function textField({ id, label, value = "", multiline = false, help = "", ...attributes }) {
  const input = multiline
    ? h("textarea", { id, name: id, rows: multiline === true ? 4 : multiline, ...attributes })
    : h("input", { id, name: id, type: "text", ...attributes });
  input.value = value ?? "";
  const error = h("p", { className: "field-error", id: `${id}-error`, hidden: true });
  const helpLine = help ? h("p", { className: "field-help", id: `${id}-help` }, help) : null;
  input.setAttribute("aria-describedby", [helpLine ? `${id}-help` : "", `${id}-error`].join(" ").trim());
  const wrapper = h("div", { className: "field" }, h("label", { htmlFor: id }, label), input, helpLine, error);
  return { wrapper, input, error };
}

function setFieldError(field, message) {
  field.error.textContent = message ?? "";
  field.error.hidden = !message;
  field.wrapper.classList.toggle("field-invalid", Boolean(message));
  if (message) field.input.setAttribute("aria-invalid", "true");
  else field.input.removeAttribute("aria-invalid");
}

/** A public agent's config as a new agent of yours; header values were masked, so they are left out. */
function copyOf(agent) {
  const modelSettings = { ...(agent.model_settings ?? {}) };
  delete modelSettings.extra_headers;
  const body = {
    name: agent.name,
    description: agent.description ?? "",
    model: agent.model ?? "",
    instructions: agent.instructions ?? "",
    model_settings: modelSettings,
    usage_limits: agent.usage_limits ?? {},
    kind: agent.kind,
    tools: (agent.tools ?? []).map((tool) => {
      const config = { ...(tool.config ?? {}) };
      delete config.headers;
      return { ...tool, config };
    }),
  };
  if (agent.output_schema) body.output_schema = agent.output_schema;
  if (agent.workflow) body.workflow = agent.workflow;
  return body;
}

export class AgentsView {
  constructor({ root, main, onChanged, onChat, announce }) {
    this.root = root;
    this.main = main;
    this.onChanged = onChanged ?? (() => {});
    this.onChat = onChat ?? (() => {});
    this.announce = announce ?? (() => {});
    this.kinds = null; // the tool registry, loaded once
    this.me = null;
    this.agents = [];
    this.searchText = "";
    this.editorSerial = 0;
  }

  get isOpen() {
    return !this.root.hidden;
  }

  /** The chat's empty state offers a first agent to whoever has none. */
  setHasAgents(hasAgents) {
    const offer = document.getElementById("empty-first-agent");
    const pick = document.getElementById("empty-pick");
    if (!offer || !pick) return;
    offer.hidden = hasAgents;
    pick.hidden = !hasAgents;
    const button = document.getElementById("empty-create-agent");
    if (button && !button.dataset.wired) {
      button.dataset.wired = "1";
      button.addEventListener("click", () => this.open({ create: true }));
    }
  }

  async open({ create = false } = {}) {
    this.main.hidden = true;
    this.root.hidden = false;
    if (create) await this.showEditor(null);
    else await this.showOverview();
  }

  close() {
    this.root.hidden = true;
    this.main.hidden = false;
  }

  // --- frame --------------------------------------------------------------

  frame(title, ...content) {
    const heading = h("h1", { id: "agents-view-title", tabIndex: -1 }, title);
    const back = h(
      "button",
      { type: "button", className: "button button-ghost", onClick: () => this.close() },
      "Back to chat",
    );
    this.root.replaceChildren(h("header", { className: "agents-view-head" }, heading, back), ...content);
    heading.focus();
    return heading;
  }

  async loadBasics() {
    const [kinds, me] = await Promise.all([
      this.kinds ?? get("/api/tools/"),
      this.me ?? get("/api/auth/me"),
    ]);
    this.kinds = kinds;
    this.me = me;
  }

  // --- overview -------------------------------------------------------------

  async showOverview(notice = "") {
    const status = h("p", { className: "agents-notice", role: "status" }, notice);
    const mine = h("div", { className: "agent-cards", "aria-busy": "true" }, h("p", { className: "muted" }, "Loading…"));
    const found = h("div", { className: "agents-found" });
    const search = h("input", {
      type: "search",
      id: "agents-search",
      placeholder: "Search by name or description",
      value: this.searchText,
    });
    const searchForm = h(
      "form",
      {
        className: "agents-search",
        role: "search",
        onSubmit: (event) => {
          event.preventDefault();
          this.searchText = search.value.trim();
          this.loadFound(found);
        },
      },
      h("label", { htmlFor: "agents-search", className: "visually-hidden" }, "Search public agents and the marketplace"),
      search,
      h("button", { type: "submit", className: "button" }, "Search"),
    );
    this.frame(
      "Agents",
      status,
      h(
        "section",
        { className: "agents-section", "aria-labelledby": "agents-mine-title" },
        h(
          "div",
          { className: "agents-section-head" },
          h("h2", { id: "agents-mine-title" }, "Your agents"),
          h(
            "button",
            { type: "button", className: "button button-primary", onClick: () => this.showEditor(null) },
            "New agent",
          ),
        ),
        mine,
      ),
      h(
        "section",
        { className: "agents-section", "aria-labelledby": "agents-found-title" },
        h("h2", { id: "agents-found-title" }, "Public agents and marketplace"),
        searchForm,
        found,
      ),
    );
    try {
      await this.loadBasics();
      this.agents = await listAll("/api/agents/");
      this.renderMine(mine);
    } catch (error) {
      mine.replaceChildren(h("p", { className: "field-error" }, `Your agents could not be loaded: ${errorText(error)}`));
    }
    mine.setAttribute("aria-busy", "false");
    await this.loadFound(found);
  }

  renderMine(box) {
    if (!this.agents.length) {
      box.replaceChildren(
        h("p", { className: "muted" }, "No agents yet. Create one, or add a public agent or a marketplace listing below."),
      );
      return;
    }
    box.replaceChildren(...this.agents.map((agent) => this.ownCard(agent)));
  }

  ownCard(agent) {
    const tools = (agent.tools ?? []).map((tool) => tool.tool);
    const problem = h("p", { className: "field-error", hidden: true, role: "alert" });
    const remove = h("button", { type: "button", className: "button button-small button-danger" }, "Delete");
    let armed = false;
    remove.addEventListener("click", async () => {
      // A second click confirms: no browser dialog, which a page must not rely on.
      if (!armed) {
        armed = true;
        remove.textContent = "Really delete?";
        remove.setAttribute("aria-label", `Really delete ${agent.name}?`);
        return;
      }
      remove.disabled = true;
      try {
        await request("DELETE", `/api/agents/${ref(agent.id)}/`);
        this.onChanged();
        this.announce(`${agent.name} deleted.`);
        await this.showOverview(`${agent.name} was deleted.`);
      } catch (error) {
        remove.disabled = false;
        problem.textContent = errorText(error);
        problem.hidden = false;
      }
    });
    remove.setAttribute("aria-label", `Delete ${agent.name}`);
    const button = (text, label, onClick, extra = "") =>
      h("button", { type: "button", className: `button button-small ${extra}`, "aria-label": label, onClick }, text);
    return h(
      "article",
      { className: "agent-card", dataset: { agent: ref(agent.id) } },
      h("h3", {}, agent.name),
      agent.description ? h("p", { className: "agent-card-text" }, agent.description) : null,
      h(
        "p",
        { className: "agent-card-meta muted" },
        `${agent.model || "default model"} · ${tools.length ? tools.join(", ") : "no tools"} · ${agent.visibility}`,
      ),
      h(
        "div",
        { className: "agent-card-actions" },
        button("Chat", `Chat with ${agent.name}`, () => this.onChat(agent), "button-primary"),
        button("Edit", `Edit ${agent.name}`, () => this.showEditor(agent)),
        button("Publish", `Publish ${agent.name}`, () => this.showPublish(agent)),
        remove,
      ),
      problem,
    );
  }

  async loadFound(box) {
    box.setAttribute("aria-busy", "true");
    const query = this.searchText ? `&search=${encodeURIComponent(this.searchText)}` : "";
    try {
      const [publicAgents, listings] = await Promise.all([
        get(`/api/agents/?visibility=public&page_size=${SEARCH_PAGE}${query}`),
        get(`/api/marketplace/?page_size=${SEARCH_PAGE}${query}`),
      ]);
      const others = (publicAgents?.results ?? []).filter((agent) => ref(agent.owner) !== ref(this.me?.id));
      const cards = [
        ...(listings?.results ?? []).map((listing) => this.listingCard(listing)),
        ...others.map((agent) => this.publicCard(agent)),
      ];
      box.replaceChildren(
        ...(cards.length
          ? [h("div", { className: "agent-cards" }, cards)]
          : [h("p", { className: "muted" }, this.searchText ? "Nothing matches." : "Nothing published yet.")]),
      );
    } catch (error) {
      box.replaceChildren(h("p", { className: "field-error" }, `These could not be loaded: ${errorText(error)}`));
    }
    box.setAttribute("aria-busy", "false");
  }

  /** A card with one action that adds an agent to yours, and reports how that went. */
  addingCard({ kind, title, text, meta, actionText, actionLabel, act, extra = [] }) {
    const problem = h("p", { className: "field-error", hidden: true, role: "alert" });
    const action = h("button", { type: "button", className: "button button-small button-primary", "aria-label": actionLabel }, actionText);
    action.addEventListener("click", async () => {
      action.disabled = true;
      problem.hidden = true;
      try {
        const agent = await act();
        this.onChanged();
        this.announce(`${agent.name} added to your agents.`);
        await this.showOverview(`${agent.name} is now one of your agents.`);
      } catch (error) {
        action.disabled = false;
        const details = error instanceof ApiError ? messagesOf(error.details) : "";
        problem.textContent = details || errorText(error);
        problem.hidden = false;
      }
    });
    return h(
      "article",
      { className: `agent-card agent-card-${kind}` },
      h("p", { className: "agent-card-kind" }, kind === "listing" ? "Marketplace" : "Public agent"),
      h("h3", {}, title),
      text ? h("p", { className: "agent-card-text" }, text) : null,
      h("p", { className: "agent-card-meta muted" }, meta),
      h("div", { className: "agent-card-actions" }, action, ...extra),
      problem,
    );
  }

  listingCard(listing) {
    const tools = (listing.config?.tools ?? []).map((tool) => tool.tool);
    const extra = [];
    if (ref(listing.publisher) === ref(this.me?.id)) {
      extra.push(
        h(
          "button",
          {
            type: "button",
            className: "button button-small",
            "aria-label": `Withdraw listing ${listing.title}`,
            onClick: async () => {
              try {
                await request("DELETE", `/api/marketplace/${ref(listing.id)}/`);
                await this.showOverview(`The listing ${listing.title} was withdrawn.`);
              } catch (error) {
                this.announce(errorText(error));
              }
            },
          },
          "Withdraw",
        ),
      );
    }
    const facts = [
      listing.category,
      (listing.tags ?? []).map((tag) => `#${tag}`).join(" "),
      tools.length ? tools.join(", ") : "no tools",
      `${listing.install_count ?? 0} installs`,
      listing.is_approved ? "" : "awaiting approval",
    ];
    return this.addingCard({
      kind: "listing",
      title: listing.title,
      text: listing.description,
      meta: facts.filter(Boolean).join(" · "),
      actionText: "Install",
      actionLabel: `Install ${listing.title}`,
      act: () => post(`/api/marketplace/${ref(listing.id)}/install/`),
      extra,
    });
  }

  publicCard(agent) {
    const tools = (agent.tools ?? []).map((tool) => tool.tool);
    return this.addingCard({
      kind: "public",
      title: agent.name,
      text: agent.description,
      meta: `${agent.model || "default model"} · ${tools.length ? tools.join(", ") : "no tools"}`,
      actionText: "Add to my agents",
      actionLabel: `Add ${agent.name} to my agents`,
      act: () => post("/api/agents/", copyOf(agent)),
    });
  }

  // --- editor ----------------------------------------------------------------

  async showEditor(agent) {
    this.frame(agent ? `Edit ${agent.name}` : "New agent", h("p", { className: "muted" }, "Loading…"));
    try {
      await this.loadBasics();
    } catch (error) {
      this.frame("Agents", h("p", { className: "field-error" }, `The tool registry could not be loaded: ${errorText(error)}`));
      return;
    }
    const editor = new AgentEditor(this.kinds, agent, (this.editorSerial += 1));
    editor.onCancel = () => this.showOverview();
    editor.onSaved = async (saved) => {
      this.onChanged();
      this.announce(`${saved.name} saved.`);
      await this.showOverview(agent ? `${saved.name} was saved.` : `${saved.name} was created. Start a chat with it.`);
    };
    this.frame(agent ? `Edit ${agent.name}` : "New agent", editor.element);
    editor.focusFirst();
  }

  // --- publishing ------------------------------------------------------------

  showPublish(agent) {
    const fields = {
      title: textField({ id: "listing-title", label: "Title", value: agent.name, maxLength: 200 }),
      description: textField({ id: "listing-description", label: "Description", value: agent.description, multiline: 3 }),
      category: textField({ id: "listing-category", label: "Category", help: "For example: coding, writing, research." }),
      tags: textField({ id: "listing-tags", label: "Tags", help: "Separated by commas." }),
    };
    const problem = h("p", { className: "form-errors", role: "alert", hidden: true });
    const submit = h("button", { type: "submit", className: "button button-primary" }, "Publish");
    const form = h(
      "form",
      { className: "agent-form", noValidate: true },
      h(
        "p",
        { className: "muted" },
        "Publishing puts a copy of this agent's current settings in the marketplace; anyone can install it. " +
          "Header values are never published.",
      ),
      problem,
      Object.values(fields).map((field) => field.wrapper),
      h(
        "div",
        { className: "agent-form-actions" },
        submit,
        h("button", { type: "button", className: "button button-ghost", onClick: () => this.showOverview() }, "Cancel"),
      ),
    );
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      for (const field of Object.values(fields)) setFieldError(field, "");
      problem.hidden = true;
      const body = {
        agent: ref(agent.id),
        title: fields.title.input.value,
        description: fields.description.input.value,
        category: fields.category.input.value,
        tags: fields.tags.input.value.split(",").map((tag) => tag.trim()).filter(Boolean),
      };
      submit.disabled = true;
      try {
        const listing = await post("/api/marketplace/", body);
        this.announce(`${listing.title} published.`);
        await this.showOverview(
          listing.is_approved
            ? `${listing.title} is in the marketplace.`
            : `${listing.title} awaits approval before others can see it.`,
        );
      } catch (error) {
        submit.disabled = false;
        const details = error instanceof ApiError ? error.details ?? {} : {};
        const rest = [];
        for (const [key, value] of Object.entries(details)) {
          if (fields[key]) setFieldError(fields[key], messagesOf(value));
          else rest.push(messagesOf(value));
        }
        problem.textContent = rest.length ? rest.join(" ") : errorText(error);
        problem.hidden = false;
      }
    });
    this.frame(`Publish ${agent.name}`, form);
    fields.title.input.focus();
  }
}

/** The create / edit form of one agent. */
class AgentEditor {
  constructor(kinds, agent, serial) {
    this.kinds = kinds;
    this.agent = agent;
    this.prefix = `agent-form-${serial}`;
    this.tools = []; // {entry: fieldset, kind, form: SchemaForm, approval fields, error}
    this.toolSerial = 0;
    this.onCancel = () => {};
    this.onSaved = () => {};

    const id = (name) => `${this.prefix}-${name}`;
    this.fields = {
      name: textField({ id: id("name"), label: "Name", value: agent?.name ?? "", maxLength: 200, required: true }),
      description: textField({ id: id("description"), label: "Description", value: agent?.description, multiline: 2 }),
      model: textField({
        id: id("model"),
        label: "Model",
        value: agent?.model ?? "",
        placeholder: "the server's default model",
        list: id("models"),
        spellcheck: false,
        help:
          "A provider:model string such as openai-chat:gpt-4o-mini, or offline for the built-in offline model. " +
          "Empty: the server's default.",
      }),
      instructions: textField({ id: id("instructions"), label: "Instructions", value: agent?.instructions, multiline: 6 }),
    };
    const visibility = h("select", { id: id("visibility"), name: "visibility" });
    visibility.append(new Option("Private: only you", "private"), new Option("Public: anyone can chat with it", "public"));
    visibility.value = agent?.visibility ?? "private";
    this.fields.visibility = {
      input: visibility,
      error: h("p", { className: "field-error", hidden: true }),
    };
    this.fields.visibility.wrapper = h(
      "div",
      { className: "field" },
      h("label", { htmlFor: visibility.id }, "Visibility"),
      visibility,
      this.fields.visibility.error,
    );

    this.toolList = h("div", { className: "tool-entries" });
    this.toolsError = h("p", { className: "field-error", hidden: true, role: "alert" });
    const picker = h("select", { id: id("add-tool") });
    const byCategory = new Map();
    for (const kind of kinds) {
      if (!byCategory.has(kind.category)) byCategory.set(kind.category, []);
      byCategory.get(kind.category).push(kind);
    }
    for (const [category, members] of byCategory) {
      const group = h("optgroup", { label: category });
      for (const kind of members) group.append(new Option(kind.name, kind.name));
      picker.append(group);
    }
    const add = h(
      "button",
      {
        type: "button",
        className: "button",
        onClick: () => {
          const entry = this.addTool({ tool: picker.value, config: {} });
          entry?.legend.focus();
        },
      },
      "Add tool",
    );
    for (const tool of agent?.tools ?? []) this.addTool(tool);

    this.problem = h("div", { className: "form-errors", role: "alert", hidden: true });
    this.submit = h("button", { type: "submit", className: "button button-primary" }, agent ? "Save" : "Create agent");
    this.element = h(
      "form",
      { className: "agent-form", noValidate: true, onSubmit: (event) => this.save(event) },
      this.problem,
      this.fields.name.wrapper,
      this.fields.description.wrapper,
      this.fields.model.wrapper,
      h("datalist", { id: id("models") }, new Option("offline", "offline")),
      this.fields.instructions.wrapper,
      this.fields.visibility.wrapper,
      h(
        "fieldset",
        { className: "agent-tools" },
        h("legend", {}, "Tools"),
        this.toolsError,
        this.toolList,
        h(
          "div",
          { className: "tool-add" },
          h("label", { htmlFor: picker.id }, "Tool kind"),
          picker,
          add,
        ),
      ),
      h(
        "div",
        { className: "agent-form-actions" },
        this.submit,
        h("button", { type: "button", className: "button button-ghost", onClick: () => this.onCancel() }, "Cancel"),
      ),
    );
  }

  focusFirst() {
    this.fields.name.input.focus();
  }

  addTool(tool) {
    const kind = this.kinds.find((candidate) => candidate.name === tool.tool);
    const serial = (this.toolSerial += 1);
    const prefix = `${this.prefix}-tool${serial}`;
    const form = new SchemaForm(kind?.config_schema ?? {}, tool.config ?? {}, { idPrefix: prefix });
    const check = (name, label, checked) => {
      const input = h("input", { type: "checkbox", id: `${prefix}-${name}`, checked: Boolean(checked) });
      return { input, wrapper: h("div", { className: "field field-check" }, h("label", { htmlFor: input.id }, input, " ", label)) };
    };
    const enabled = check("enabled", "Enabled", tool.enabled ?? true);
    const approval = check("requires_approval", "Ask me before each call", tool.requires_approval);
    const allowEdit = check("allow_edit", "Whoever approves may edit the call's arguments", tool.allow_edit);
    const ttl = textField({
      id: `${prefix}-approval_ttl_seconds`,
      label: "An unanswered approval is denied after (seconds)",
      value: String(tool.approval_ttl_seconds ?? DEFAULT_TTL),
      type: "number",
      min: 1,
      max: MAX_TTL,
      step: 1,
      inputMode: "numeric",
    });
    const approvalBox = h("div", { className: "tool-approval" }, approval.wrapper, ttl.wrapper, allowEdit.wrapper);
    const syncApproval = () => {
      ttl.wrapper.hidden = !approval.input.checked;
      allowEdit.wrapper.hidden = !approval.input.checked;
    };
    approval.input.addEventListener("change", syncApproval);
    syncApproval();
    const legend = h("legend", { tabIndex: -1 }, tool.tool);
    const error = h("p", { className: "field-error", hidden: true, role: "alert" });
    const entry = {
      tool: tool.tool,
      form,
      enabled,
      approval,
      allowEdit,
      ttl,
      error,
      legend,
    };
    entry.element = h(
      "fieldset",
      { className: "tool-entry", dataset: { tool: tool.tool } },
      legend,
      kind
        ? h("p", { className: "field-help" }, kind.description)
        : h("p", { className: "field-error" }, "This tool kind is not offered by this server."),
      error,
      form.element,
      enabled.wrapper,
      approvalBox,
      h(
        "button",
        {
          type: "button",
          className: "button button-small button-ghost",
          "aria-label": `Remove tool ${tool.tool}`,
          onClick: () => {
            this.tools = this.tools.filter((other) => other !== entry);
            entry.element.remove();
          },
        },
        "Remove tool",
      ),
    );
    this.tools.push(entry);
    this.toolList.append(entry.element);
    return entry;
  }

  clearErrors() {
    this.problem.hidden = true;
    this.problem.replaceChildren();
    this.toolsError.hidden = true;
    for (const field of Object.values(this.fields)) {
      if (field.wrapper) setFieldError(field, "");
    }
    for (const entry of this.tools) {
      entry.form.clearErrors();
      entry.error.hidden = true;
      setFieldError(entry.ttl, "");
    }
  }

  /** The body to send, or null after showing what could not be read. */
  read() {
    let firstBad = null;
    const tools = [];
    for (const entry of this.tools) {
      const { value, problems } = entry.form.read();
      if (Object.keys(problems).length) firstBad ??= entry.form.showErrors(problems);
      const ttlText = entry.ttl.input.value.trim();
      const ttl = ttlText ? Number(ttlText) : DEFAULT_TTL;
      if (entry.ttl.input.validity.badInput || !Number.isInteger(ttl)) {
        setFieldError(entry.ttl, "Enter a whole number of seconds.");
        firstBad ??= entry.ttl.input;
      }
      tools.push({
        tool: entry.tool,
        config: value,
        enabled: entry.enabled.input.checked,
        requires_approval: entry.approval.input.checked,
        approval_ttl_seconds: ttl,
        allow_edit: entry.allowEdit.input.checked,
      });
    }
    if (firstBad) {
      this.showProblem("Some fields need fixing.");
      firstBad.focus();
      return null;
    }
    return {
      name: this.fields.name.input.value,
      description: this.fields.description.input.value,
      model: this.fields.model.input.value.trim(),
      instructions: this.fields.instructions.input.value,
      visibility: this.fields.visibility.input.value,
      tools,
    };
  }

  showProblem(message) {
    this.problem.replaceChildren(h("p", {}, message));
    this.problem.hidden = false;
  }

  async save(event) {
    event.preventDefault();
    this.clearErrors();
    const body = this.read();
    if (!body) return;
    this.submit.disabled = true;
    try {
      const saved = this.agent
        ? await request("PATCH", `/api/agents/${ref(this.agent.id)}/`, { json: body })
        : await post("/api/agents/", body);
      await this.onSaved(saved);
    } catch (error) {
      this.submit.disabled = false;
      this.showServerErrors(error);
    }
  }

  /** Puts each of the server's messages next to its field; the form keeps what was typed. */
  showServerErrors(error) {
    const details = error instanceof ApiError ? error.details ?? {} : {};
    const general = [];
    let first = null;
    for (const [key, value] of Object.entries(details)) {
      if (key === "tools") {
        first = this.showToolErrors(value) ?? first;
      } else if (this.fields[key]?.wrapper) {
        setFieldError(this.fields[key], messagesOf(value));
        first ??= this.fields[key].input;
      } else {
        general.push(`${key}: ${messagesOf(value)}`);
      }
    }
    this.showProblem(
      Object.keys(details).length
        ? ["The agent was not saved; see the marked fields.", ...general].join(" ")
        : errorText(error),
    );
    (first ?? this.problem).focus?.();
  }

  showToolErrors(value) {
    // A list: about the tools as a whole; an object: keyed by the entry's position.
    if (Array.isArray(value) || typeof value !== "object" || value === null) {
      this.toolsError.textContent = messagesOf(value);
      this.toolsError.hidden = false;
      return null;
    }
    let first = null;
    for (const [index, problems] of Object.entries(value)) {
      const entry = this.tools[Number(index)];
      if (!entry) continue;
      for (const [key, messages] of Object.entries(problems ?? {})) {
        if (key === "config") {
          first ??= entry.form.showErrors(toolConfigErrors(messages)) ?? entry.legend;
        } else if (key === "approval_ttl_seconds") {
          setFieldError(entry.ttl, messagesOf(messages));
          first ??= entry.ttl.input;
        } else {
          entry.error.textContent = `${key}: ${messagesOf(messages)}`;
          entry.error.hidden = false;
          first ??= entry.legend;
        }
      }
    }
    return first;
  }
}
