// Delegated work in the chat log (DESIGN.md section 10).
//
// A child execution's first stored event is a `state` event whose
// `metadata.delegation` says where it hangs: the delegating tool call
// (`tool_call_id`) or the workflow step (`step`). Its block, a collapsible
// <details class="delegation">, goes right after that tool call (or, for a
// step, at the end of its parent's log), and every later event of the child
// goes inside it, live and when the history is read again after a reload,
// so both build the same page from the same events.

function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

export class Delegation {
  constructor() {
    this.bodies = new Map(); // child execution id -> element its events go in
  }

  /** Where a run's events go: its block's body, or null for a turn's root. */
  containerFor(executionId) {
    return (executionId && this.bodies.get(executionId)) || null;
  }

  /** Whether the event opens a child's block. */
  static opens(event) {
    const placed = event?.metadata?.delegation;
    return event?.kind === "state" && placed !== null && typeof placed === "object";
  }

  /**
   * Builds the block of a child from its delegation event and places it.
   * @param {object} event  the child's `state` event
   * @param {Map<string, HTMLElement>} tools  tool call id -> tool block
   * @param {HTMLElement} log  the conversation's log (a root's container)
   */
  open(event, tools, log) {
    const placed = event.metadata.delegation;
    const executionId = String(event.execution ?? "");
    const block = el("details", "delegation");
    block.open = true;
    block.dataset.execution = executionId;
    block.dataset.depth = String(placed.depth ?? 1);
    const summary = el("summary", "delegation-summary");
    if (placed.step) {
      summary.append(el("span", "delegation-label", "Step"));
      summary.append(el("strong", "delegation-step", String(placed.step)));
      summary.append(el("span", "delegation-agent", String(placed.agent_name ?? "")));
    } else {
      summary.append(el("span", "delegation-label", "Delegated to"));
      summary.append(el("strong", "delegation-agent", String(placed.agent_name ?? "an agent")));
    }
    block.append(summary);
    block.append(el("p", "delegation-task", event.content ?? ""));
    const body = el("div", "delegation-body");
    block.append(body);
    this.bodies.set(executionId, body);

    const call = placed.tool_call_id ? tools.get(placed.tool_call_id) : null;
    if (call?.isConnected) {
      call.after(block);
    } else {
      (this.containerFor(String(placed.parent ?? "")) ?? log).append(block);
    }
    return block;
  }
}
