// Clickable links in chat text: http(s) URLs become <a target="_blank" rel="noopener
// noreferrer"> elements, everything else stays text. Built with DOM nodes only (text nodes
// and anchors whose href is a parsed URL), never markup, so a message can never inject HTML;
// other schemes (javascript:, data:, file:) are never links.

// A URL candidate: the scheme and everything up to whitespace or a character that cannot
// end a link in prose. Trailing punctuation is trimmed below.
const CANDIDATE = /\bhttps?:\/\/[^\s<>"'`]+/gi;
const TRAILING = '.,;:!?]}\'"*_~';

/** Trim punctuation that ends the sentence rather than the URL, keeping balanced ')'. */
function trimEnd(text) {
  let out = text;
  while (out.length > 0) {
    const ch = out[out.length - 1];
    const unbalanced = ch === ')' && count(out, '(') < count(out, ')');
    if (!TRAILING.includes(ch) && !unbalanced) break;
    out = out.slice(0, -1);
  }
  return out;
}

function count(text, ch) {
  return text.split(ch).length - 1;
}

/** The URL `text` names when it is an absolute http: or https: URL; else null. */
export function safeHttpUrl(text) {
  let url;
  try {
    url = new URL(text);
  } catch {
    return null;
  }
  return url.protocol === 'http:' || url.protocol === 'https:' ? url : null;
}

/**
 * The nodes that show `text` with its http(s) URLs as links: an array of Text and
 * HTMLAnchorElement nodes (append them to an element).
 */
export function linkifyNodes(text) {
  const nodes = [];
  let last = 0;
  for (const match of text.matchAll(CANDIDATE)) {
    const raw = trimEnd(match[0]);
    const url = raw ? safeHttpUrl(raw) : null;
    if (!url) continue;
    const start = match.index;
    if (start > last) nodes.push(document.createTextNode(text.slice(last, start)));
    const a = document.createElement('a');
    a.href = url.href;
    a.target = '_blank';
    a.rel = 'noopener noreferrer';
    a.className = 'msg-link';
    a.textContent = raw;
    nodes.push(a);
    last = start + raw.length;
  }
  if (last < text.length) nodes.push(document.createTextNode(text.slice(last)));
  return nodes;
}
