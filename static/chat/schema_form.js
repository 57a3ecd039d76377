/**
 * A form built from a JSON Schema: the config form of a tool kind, from the
 * `config_schema` the registry (`GET /api/tools/`) gives for it.
 *
 * Public surface:
 *   new SchemaForm(schema, value, { idPrefix })
 *     .element          the fields, ready to append inside a <form>
 *     .read()           {value, problems}: the config to send, and what could not be read
 *     .showErrors(map)  messages by property name ("" for the form as a whole)
 *     .clearErrors()
 *   toolConfigErrors(messages)  server messages of one tool's `config` -> map for showErrors
 *
 * Covered: strings (enums as a select), integers and numbers, booleans, arrays
 * of strings (one per line), `anyOf` with null (left empty = null), and
 * anything else as a JSON text box. A field left empty is not sent, so the
 * server's default applies (shown as the field's placeholder). What the user
 * typed is never cleared by an error, local or from the server.
 */

const NULL_TYPE = (branch) => branch?.type === "null";

function resolve(schema, root) {
  const ref = schema?.$ref;
  if (typeof ref !== "string" || !ref.startsWith("#/")) return schema ?? {};
  let node = root;
  for (const part of ref.slice(2).split("/")) node = node?.[part];
  return node ?? {};
}

/** The property's shape, with a nullable `anyOf` unwrapped to its one other branch. */
function shapeOf(property, root) {
  const resolved = resolve(property, root);
  const branches = Array.isArray(resolved.anyOf) ? resolved.anyOf : null;
  if (branches) {
    const others = branches.filter((branch) => !NULL_TYPE(branch));
    if (others.length === 1) {
      return { ...resolve(others[0], root), ...withoutAnyOf(resolved), nullable: true };
    }
    return { ...resolved, kind: "json" };
  }
  return resolved;
}

function withoutAnyOf(schema) {
  const copy = { ...schema };
  delete copy.anyOf;
  return copy;
}

function kindOf(shape) {
  if (shape.kind) return shape.kind;
  if (Array.isArray(shape.enum)) return "enum";
  if (shape.type === "string") return "string";
  if (shape.type === "integer" || shape.type === "number") return "number";
  if (shape.type === "boolean") return "boolean";
  if (shape.type === "array" && resolve(shape.items ?? {}, {}).type === "string") return "lines";
  return "json";
}

function describeDefault(value) {
  if (value === undefined || value === null) return "";
  return typeof value === "object" ? JSON.stringify(value) : String(value);
}

export class SchemaForm {
  constructor(schema, value = {}, { idPrefix = "config" } = {}) {
    this.schema = schema ?? {};
    this.fields = new Map(); // property -> {kind, shape, input, error, wrapper}
    this.element = document.createElement("div");
    this.element.className = "schema-form";
    this.formError = document.createElement("p");
    this.formError.className = "field-error schema-form-error";
    this.formError.hidden = true;
    this.formError.setAttribute("role", "alert");
    this.element.append(this.formError);

    const required = new Set(this.schema.required ?? []);
    const properties = this.schema.properties ?? {};
    for (const [name, property] of Object.entries(properties)) {
      const shape = shapeOf(property, this.schema);
      const field = this.buildField(name, shape, required.has(name), value?.[name], `${idPrefix}-${name}`);
      this.fields.set(name, field);
      this.element.append(field.wrapper);
    }
    if (!this.fields.size) {
      const none = document.createElement("p");
      none.className = "muted schema-form-none";
      none.textContent = "This tool has no settings.";
      this.element.append(none);
    }
  }

  buildField(name, shape, required, current, id) {
    const kind = kindOf(shape);
    const wrapper = document.createElement("div");
    wrapper.className = `field schema-field schema-field-${kind}`;
    wrapper.dataset.property = name;
    const label = document.createElement("label");
    label.htmlFor = id;
    label.textContent = `${shape.title ?? name}${required ? " (required)" : ""}`;
    const help = document.createElement("p");
    help.className = "field-help";
    help.id = `${id}-help`;
    const hints = [shape.description ?? ""];
    const fallback = describeDefault(shape.default);

    let input;
    if (kind === "enum") {
      input = document.createElement("select");
      if (!required) input.append(new Option(fallback ? `Default (${fallback})` : "Not set", ""));
      for (const option of shape.enum) input.append(new Option(String(option), String(option)));
      input.value = current === undefined || current === null ? "" : String(current);
    } else if (kind === "boolean") {
      input = document.createElement("input");
      input.type = "checkbox";
      input.checked = Boolean(current ?? shape.default);
    } else if (kind === "lines" || kind === "json") {
      input = document.createElement("textarea");
      input.rows = kind === "json" ? 4 : 3;
      input.spellcheck = false;
      if (kind === "lines") {
        hints.push("One per line.");
        input.value = Array.isArray(current) ? current.join("\n") : "";
      } else {
        hints.push("JSON.");
        input.value = current === undefined || current === null ? "" : JSON.stringify(current, null, 2);
      }
      if (fallback) input.placeholder = fallback;
    } else {
      input = document.createElement("input");
      if (kind === "number") {
        input.type = "number";
        input.inputMode = shape.type === "integer" ? "numeric" : "decimal";
        input.step = shape.type === "integer" ? "1" : "any";
        if (shape.minimum !== undefined) input.min = String(shape.minimum);
        if (shape.maximum !== undefined) input.max = String(shape.maximum);
        const low = shape.exclusiveMinimum !== undefined ? `more than ${shape.exclusiveMinimum}` : null;
        if (low) hints.push(`Must be ${low}.`);
      } else {
        input.type = shape.format === "uri" ? "url" : "text";
        if (shape.maxLength !== undefined) input.maxLength = shape.maxLength;
        if (shape.format === "uuid") hints.push("An id.");
      }
      input.value = current === undefined || current === null ? "" : String(current);
      if (fallback) input.placeholder = fallback;
    }
    input.id = id;
    input.name = name;
    if (required && kind !== "boolean") input.required = true;
    help.textContent = hints.filter(Boolean).join(" ");
    const error = document.createElement("p");
    error.className = "field-error";
    error.id = `${id}-error`;
    error.hidden = true;
    input.setAttribute("aria-describedby", `${help.id} ${error.id}`);

    if (kind === "boolean") {
      wrapper.classList.add("field-check");
      label.prepend(input, " ");
      wrapper.append(label, help, error);
    } else {
      wrapper.append(label, input, help, error);
    }
    return { kind, shape, input, error, wrapper };
  }

  /** The config to send: properties left empty are omitted; unreadable ones become problems. */
  read() {
    const value = {};
    const problems = {};
    for (const [name, { kind, shape, input }] of this.fields) {
      if (kind === "boolean") {
        if (input.checked !== Boolean(shape.default)) value[name] = input.checked;
        continue;
      }
      if (kind === "number" && input.validity.badInput) {
        problems[name] = "Enter a number.";
        continue;
      }
      const text = input.value;
      if (!text.trim()) continue;
      if (kind === "number") {
        value[name] = Number(text);
      } else if (kind === "lines") {
        value[name] = text.split("\n").map((line) => line.trim()).filter(Boolean);
      } else if (kind === "json") {
        try {
          value[name] = JSON.parse(text);
        } catch {
          problems[name] = "This is not valid JSON.";
        }
      } else {
        value[name] = text;
      }
    }
    return { value, problems };
  }

  clearErrors() {
    this.formError.hidden = true;
    this.formError.textContent = "";
    for (const { error, input, wrapper } of this.fields.values()) {
      error.hidden = true;
      error.textContent = "";
      input.removeAttribute("aria-invalid");
      wrapper.classList.remove("field-invalid");
    }
  }

  /** Shows messages next to their fields; a message for no known field goes on top. */
  showErrors(messages) {
    this.clearErrors();
    let first = null;
    for (const [name, message] of Object.entries(messages ?? {})) {
      const field = this.fields.get(name);
      if (!field) {
        this.formError.textContent = [this.formError.textContent, message].filter(Boolean).join(" ");
        this.formError.hidden = false;
        continue;
      }
      field.error.textContent = message;
      field.error.hidden = false;
      field.input.setAttribute("aria-invalid", "true");
      field.wrapper.classList.add("field-invalid");
      first ??= field.input;
    }
    return first;
  }
}

const CONFIG_MESSAGE = /^Invalid config for tool '[^']*': ([^:]+): (.*)$/s;

/** `["Invalid config for tool 'x': max_entries: Input should be ..."]` -> {max_entries: "Input should be ..."}. */
export function toolConfigErrors(messages) {
  const out = {};
  for (const message of [messages ?? []].flat()) {
    const match = CONFIG_MESSAGE.exec(String(message));
    const property = match ? match[1].split(".")[0].trim() : "";
    const text = match ? match[2] : String(message);
    out[property] = out[property] ? `${out[property]} ${text}` : text;
  }
  return out;
}
