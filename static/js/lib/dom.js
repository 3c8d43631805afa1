// Small DOM helpers shared by every page.

/** The element with this id. */
export const $ = (id) => document.getElementById(id);

/**
 * Makes an element: `h('a', { href, class: 'x', onclick }, 'text', child)`.
 * `null`, `false` and `undefined` props and children are skipped.
 */
export function h(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (value == null || value === false) continue;
    if (key === 'class') node.className = value;
    else if (key === 'dataset') Object.assign(node.dataset, value);
    else if (key.startsWith('on')) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value === true ? '' : value);
  }
  node.append(...children.flat().filter((c) => c != null && c !== false));
  return node;
}

/** Shows `text` in `node`, or hides the node when there is nothing to say. */
export function showMessage(node, text) {
  node.textContent = text || '';
  node.hidden = !text;
}

/** Says `text` through a polite live region (cleared first, so a repeat is read again). */
export function announcer(node) {
  return (text) => {
    node.textContent = '';
    setTimeout(() => { node.textContent = text; }, 50);
  };
}

/** A one-off message for the next page (e.g. "Deleted …" after leaving a deleted video). */
export const flash = {
  set(text) {
    try { sessionStorage.setItem('reel.flash', text); } catch { /* storage disabled */ }
  },
  take() {
    try {
      const text = sessionStorage.getItem('reel.flash');
      sessionStorage.removeItem('reel.flash');
      return text;
    } catch {
      return null;
    }
  },
};
