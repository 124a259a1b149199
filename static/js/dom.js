// Small DOM helpers shared by the views: an element builder and a keyed list update.
// Text is only ever set with textContent (never markup).

/** A small element builder: `class`, `text`, `hidden`, `on<event>` and plain attributes. */
export function h(tag, attrs = {}, children = []) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null) continue;
    if (k === 'class') node.className = v;
    else if (k === 'text') node.textContent = v;
    else if (k === 'hidden') node.hidden = Boolean(v);
    else if (k.startsWith('on')) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, String(v));
  }
  node.append(...children);
  return node;
}

/**
 * Make `list`'s children one element per item, in order, reusing elements by key so that
 * keyboard focus survives updates. `make(item)` builds a new element, `update(el, item)`
 * refreshes one. When the focused element is removed, `fallback` gets the focus.
 */
export function syncList(list, items, key, make, update, fallback) {
  const old = new Map([...list.children].map((child) => [child.dataset.key, child]));
  const focused = document.activeElement;
  let lostFocus = false;
  const keep = new Set();
  let cursor = list.firstElementChild;
  for (const item of items) {
    const k = key(item);
    keep.add(k);
    let child = old.get(k);
    if (!child) {
      child = make(item);
      child.dataset.key = k;
    }
    update(child, item);
    if (child !== cursor) list.insertBefore(child, cursor);
    else cursor = cursor.nextElementSibling;
  }
  for (const [k, child] of old) {
    if (keep.has(k)) continue;
    if (focused && child.contains(focused)) lostFocus = true;
    child.remove();
  }
  if (lostFocus && fallback) fallback.focus();
}

/** Show `text` in an error element (hidden when empty), always as text, never as markup. */
export function showError(el, text) {
  el.textContent = text || '';
  el.hidden = !text;
}

/** Disable a form's buttons (and mark it aria-busy) while `work` runs; returns its result. */
export async function busy(form, work) {
  const buttons = [...form.querySelectorAll('button')];
  for (const b of buttons) b.disabled = true;
  form.setAttribute('aria-busy', 'true');
  try {
    return await work();
  } finally {
    for (const b of buttons) b.disabled = false;
    form.removeAttribute('aria-busy');
  }
}
