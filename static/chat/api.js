/**
 * REST calls of the chat page.
 *
 * Same-origin requests authenticated by the Django session cookie; unsafe
 * methods carry the CSRF token of the page. Failures become `ApiError`s whose
 * message is fit to show to a person.
 */

const SAFE_METHODS = new Set(["GET", "HEAD", "OPTIONS"]);

const PLAIN_STATUS = {
  400: "The server did not accept that.",
  401: "You are signed out. Sign in again to continue.",
  403: "You are not allowed to do that.",
  404: "That no longer exists.",
  409: "That conflicts with something already in progress.",
  413: "That file is too large to upload.",
  429: "Too many requests. Wait a moment and try again.",
  503: "The server is busy. Try again in a moment.",
};

export class ApiError extends Error {
  constructor(status, code, message, details = {}) {
    super(message);
    this.name = "ApiError";
    this.status = status;
    this.code = code;
    this.details = details;
  }
}

function csrfToken() {
  return document.querySelector('meta[name="csrf-token"]')?.content ?? "";
}

/** Paths only: `next` links are absolute, and a TLS proxy may make them http://. */
function samePath(url) {
  const parsed = new URL(url, window.location.href);
  return parsed.pathname + parsed.search;
}

export async function request(method, url, { json, form } = {}) {
  const headers = { Accept: "application/json" };
  let body;
  if (json !== undefined) {
    headers["Content-Type"] = "application/json";
    body = JSON.stringify(json);
  } else if (form !== undefined) {
    body = form; // the browser writes the multipart boundary itself
  }
  if (!SAFE_METHODS.has(method)) headers["X-CSRFToken"] = csrfToken();

  let response;
  try {
    response = await fetch(samePath(url), {
      method,
      headers,
      body,
      credentials: "same-origin",
    });
  } catch {
    throw new ApiError(
      0,
      "network_error",
      "The server could not be reached. Check the connection and try again.",
    );
  }
  const data =
    response.status === 204 ? null : await response.json().catch(() => null);
  if (!response.ok) {
    const error = data?.error ?? {};
    const message =
      error.message ||
      PLAIN_STATUS[response.status] ||
      `The server answered ${response.status}.`;
    throw new ApiError(
      response.status,
      error.code ?? `http_${response.status}`,
      message,
      error.details ?? {},
    );
  }
  return data;
}

export const get = (url) => request("GET", url);
export const post = (url, json) => request("POST", url, { json });

/** Every object of a list endpoint, following `next` links. */
export async function listAll(url) {
  const out = [];
  let next = url;
  for (let page = 0; next && page < 200; page += 1) {
    const data = await get(next);
    if (Array.isArray(data)) return out.concat(data);
    out.push(...(data?.results ?? []));
    next = data?.next ?? null;
  }
  return out;
}

/** Id of a related object, whether the API nests it or gives its id. */
export function ref(value) {
  if (value === null || value === undefined) return null;
  return String(typeof value === "object" ? value.id : value);
}

export function uploadArtifact(sessionId, file) {
  const form = new FormData();
  form.append("file", file, file.name);
  form.append("name", file.name);
  return request("POST", `/api/sessions/${sessionId}/artifacts/`, { form });
}
