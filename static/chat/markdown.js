/**
 * Markdown of model answers, rendered so that nothing in it can run.
 *
 * Two independent layers: marked is told to print raw HTML as text (so a
 * `<script>` in an answer shows up as the characters "<script>"), and the
 * resulting HTML goes through DOMPurify with a short allow-list of elements
 * and attributes and only http(s)/mailto links. The page's
 * Content-Security-Policy forbids inline script as a third line of defence.
 * Images are shown as links: an answer cannot make the browser fetch anything.
 */

import { Marked } from "../vendor/marked.esm.js";
import DOMPurify from "../vendor/purify.es.js";

const HTML_ESCAPES = {
  "&": "&amp;",
  "<": "&lt;",
  ">": "&gt;",
  '"': "&quot;",
  "'": "&#39;",
};

export function escapeHtml(text) {
  return String(text).replace(/[&<>"']/g, (char) => HTML_ESCAPES[char]);
}

const ALLOWED_TAGS = [
  "a", "b", "blockquote", "br", "code", "del", "em", "h1", "h2", "h3", "h4",
  "h5", "h6", "hr", "i", "li", "ol", "p", "pre", "s", "strong", "sub", "sup",
  "table", "tbody", "td", "th", "thead", "tr", "ul",
];
const ALLOWED_ATTR = ["href", "title", "class", "start", "align"];
const SAFE_URL = /^(?:https?:|mailto:)/i;

const markdown = new Marked({ gfm: true, breaks: true, async: false });
markdown.use({
  renderer: {
    html({ text }) {
      return escapeHtml(text);
    },
    image({ href, title, text }) {
      const label = escapeHtml(text || title || href || "image");
      return `<a href="${escapeHtml(href ?? "")}">${label}</a>`;
    },
  },
});

const purifier = DOMPurify(window);
purifier.addHook("afterSanitizeAttributes", (node) => {
  if (node.tagName === "A") {
    if (node.hasAttribute("href")) {
      node.setAttribute("target", "_blank");
      node.setAttribute("rel", "noopener noreferrer nofollow");
    }
  }
});

const PURIFY_CONFIG = {
  ALLOWED_TAGS,
  ALLOWED_ATTR,
  ALLOWED_URI_REGEXP: SAFE_URL,
  ALLOW_DATA_ATTR: false,
  RETURN_DOM_FRAGMENT: true,
};

/** Safe DOM for `text` read as Markdown. */
export function renderMarkdown(text) {
  const html = markdown.parse(String(text ?? ""));
  return purifier.sanitize(html, PURIFY_CONFIG);
}
