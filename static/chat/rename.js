/**
 * The open chat's name in its header, and renaming it: a "Rename" button
 * beside the title opens a small form (Enter or Save renames the chat through
 * `PATCH /api/sessions/{id}/`, Escape or Cancel leaves it as it was).
 */

import { ApiError, ref, request } from "./api.js";

const MAX_TITLE = 200;

export class ChatTitle {
  /**
   * @param {object} options
   * @param {HTMLElement} options.heading   the chat's <h1>
   * @param {(session: object) => string} options.label   a session's shown name
   * @param {(session: object) => void} options.onRenamed  after a rename was stored
   * @param {(text: string) => void} options.announce
   */
  constructor({ heading, label, onRenamed, announce }) {
    this.heading = heading;
    this.label = label;
    this.onRenamed = onRenamed;
    this.announce = announce;
    this.session = null;

    this.button = document.createElement("button");
    this.button.type = "button";
    this.button.className = "button button-small rename-chat";
    this.button.textContent = "Rename";
    this.button.hidden = true;
    this.button.addEventListener("click", () => this.edit());

    this.form = document.createElement("form");
    this.form.className = "rename-form";
    this.form.hidden = true;
    this.input = document.createElement("input");
    this.input.type = "text";
    this.input.maxLength = MAX_TITLE;
    this.input.setAttribute("aria-label", "Chat name");
    const save = document.createElement("button");
    save.type = "submit";
    save.className = "button button-small button-primary";
    save.textContent = "Save";
    const cancel = document.createElement("button");
    cancel.type = "button";
    cancel.className = "button button-small";
    cancel.textContent = "Cancel";
    this.problem = document.createElement("span");
    this.problem.className = "rename-problem";
    this.problem.setAttribute("role", "alert");
    this.form.append(this.input, save, cancel, this.problem);
    this.form.addEventListener("submit", (event) => {
      event.preventDefault();
      this.save();
    });
    cancel.addEventListener("click", () => this.close());
    this.input.addEventListener("keydown", (event) => {
      if (event.key === "Escape") {
        event.stopPropagation();
        this.close();
      }
    });

    heading.after(this.button, this.form);
  }

  /** The chat now open (null: none). */
  show(session) {
    this.session = session;
    this.form.hidden = true;
    this.heading.hidden = false;
    this.button.hidden = !session;
    if (session) this.heading.textContent = this.label(session);
  }

  /** A newer copy of the open chat (its title may have been given by its first message). */
  update(session) {
    if (!session || !this.session || ref(session.id) !== ref(this.session.id)) return;
    this.session = { ...this.session, ...session };
    if (this.form.hidden) this.heading.textContent = this.label(this.session);
  }

  edit() {
    if (!this.session) return;
    this.input.value = this.session.title ?? "";
    this.problem.textContent = "";
    this.heading.hidden = true;
    this.button.hidden = true;
    this.form.hidden = false;
    this.input.focus();
    this.input.select();
  }

  close() {
    this.form.hidden = true;
    this.heading.hidden = false;
    this.button.hidden = !this.session;
    this.button.focus();
  }

  async save() {
    const session = this.session;
    if (!session) return;
    const title = this.input.value.trim();
    if (!title) {
      this.problem.textContent = "Give the chat a name.";
      return;
    }
    try {
      const renamed = await request("PATCH", `/api/sessions/${ref(session.id)}/`, {
        json: { title },
      });
      if (this.session !== session) return;
      this.session = renamed;
      this.heading.textContent = this.label(renamed);
      this.close();
      this.onRenamed(renamed);
      this.announce(`Chat renamed to ${renamed.title}.`);
    } catch (error) {
      this.problem.textContent =
        error instanceof ApiError ? error.message : "The chat could not be renamed.";
    }
  }
}
