/**
 * What turns cost, on the chat page: each turn's cost beside its tokens, and
 * the user's spend this month (UTC) against their own budget, from
 * `/api/usage/` and `/api/budgets/` (DESIGN.md section 11).
 */

import { get, listAll } from "./api.js";

/** "$0.0012" for a decimal string; "" when the model has no known price. */
export function usd(value) {
  if (value === null || value === undefined || value === "") return "";
  const amount = Number(value);
  if (!Number.isFinite(amount)) return "";
  if (amount === 0) return "$0";
  return `$${amount >= 1 ? amount.toFixed(2) : amount.toPrecision(2)}`;
}

/** The parts of a turn's usage line this module adds: its cost, and a warning
 * when a `warn` budget was already used up as it started. */
export function turnCostParts(execution) {
  const usage = execution?.usage ?? {};
  const parts = [];
  const cost = usd(usage.cost_usd);
  if (cost) parts.push(cost);
  else if (usage.priced === false && (usage.input_tokens || usage.output_tokens)) {
    parts.push("cost unknown");
  }
  if (execution?.budget_warning?.length) parts.push("over budget");
  return parts;
}

function budgetLine(budget) {
  if (budget.limit_usd !== null && budget.limit_usd !== undefined) {
    return `${usd(budget.spent_usd) || "$0"} of ${usd(budget.limit_usd)}`;
  }
  return `${budget.spent_tokens} of ${budget.limit_tokens} tokens`;
}

/** The "spent this month" line under the chat's title. */
export class SpendMeter {
  constructor(container) {
    this.el = document.createElement("p");
    this.el.className = "muted spend-meter";
    this.el.id = "spend-meter";
    this.el.hidden = true;
    container?.append(this.el);
  }

  async refresh() {
    try {
      const [report, budgets] = await Promise.all([
        get("/api/usage/?group_by=user"),
        listAll("/api/budgets/"),
      ]);
      const total = report.total ?? {};
      const tokens = (total.input_tokens ?? 0) + (total.output_tokens ?? 0);
      let text = `This month: ${usd(total.cost_usd) || "$0"} · ${tokens} tokens`;
      const own = budgets.find((b) => b.scope === "user" && b.period === "month") ??
        budgets.find((b) => b.scope === "user");
      if (own) text += ` · budget (${own.period}): ${budgetLine(own)}`;
      this.el.textContent = text;
      this.el.hidden = false;
    } catch {
      this.el.hidden = true; // the figures are a courtesy; the chat works without them
    }
  }
}
