/**
 * The open session's background and scheduled runs: turns nobody typed in
 * this page (`POST /api/agents/{id}/runs/`, a schedule's fire or `run-now`,
 * which carry no `client_message_id`). They stream into the conversation
 * like any turn, since they are turns of the session; this panel lists them
 * with their live status, and a click scrolls to the run's message.
 *
 * Hooks: `show(executions)` when a session opens (its executions as the API
 * lists them), `apply(execution)` for every execution frame.
 */

const LIVE = new Set(["queued", "running", "awaiting_approval"]);

function isBackgroundRun(execution) {
  return !execution.client_message_id && !execution.parent;
}

export class RunsPanel {
  constructor(container) {
    this.runs = new Map(); // execution id -> execution
    this.el = document.createElement("details");
    this.el.className = "runs-panel";
    this.el.id = "runs-panel";
    this.el.hidden = true;
    this.summary = document.createElement("summary");
    this.list = document.createElement("ul");
    this.list.className = "runs-list";
    this.list.setAttribute("aria-label", "Background and scheduled runs");
    this.el.append(this.summary, this.list);
    container?.append(this.el);
  }

  show(executions) {
    this.runs.clear();
    for (const execution of executions ?? []) {
      if (isBackgroundRun(execution)) this.runs.set(execution.id, execution);
    }
    this.render();
  }

  apply(execution) {
    if (!execution || !isBackgroundRun(execution)) return;
    this.runs.set(execution.id, { ...this.runs.get(execution.id), ...execution });
    this.render();
  }

  render() {
    const runs = [...this.runs.values()].sort((a, b) =>
      String(b.created_at).localeCompare(String(a.created_at)),
    );
    this.el.hidden = runs.length === 0;
    const live = runs.filter((run) => LIVE.has(run.status)).length;
    this.summary.textContent =
      `Background runs (${runs.length})` + (live ? ` · ${live} running` : "");
    this.list.replaceChildren(...runs.map((run) => this.item(run)));
  }

  item(run) {
    const li = document.createElement("li");
    li.className = "runs-item";
    li.dataset.execution = run.id;
    li.dataset.status = run.status;
    const status = document.createElement("span");
    status.className = `runs-status status-${run.status}`;
    status.textContent = run.status.replace("_", " ");
    const input = document.createElement("button");
    input.type = "button";
    input.className = "runs-input button-link";
    input.textContent = (run.input || "").split("\n")[0].slice(0, 80) || "(no input)";
    input.title = run.created_at ? new Date(run.created_at).toLocaleString() : "";
    input.addEventListener("click", () => {
      document
        .querySelector(`[data-execution="${CSS.escape(run.id)}"]:not(.runs-item)`)
        ?.scrollIntoView({ behavior: "smooth", block: "center" });
    });
    li.append(status, " ", input);
    return li;
  }
}
