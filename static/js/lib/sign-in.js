// The sign-in panel: shown when the server asks for a token (auth is on), hidden otherwise.
// The token is pasted (from the operator's `reel token`, or an identity service) and kept in
// this browser only; "Sign out" forgets it.

import { $ } from './dom.js';
import { onSessionChange, signIn, signOut, token } from './session.js';

/** Wires the panel and the header's sign-out button; `onChange` reloads what the page shows. */
export function setUpSignIn({ onChange }) {
  const panel = $('sign-in');
  const form = $('sign-in-form');
  const input = $('token-input');
  const out = $('sign-out');
  const show = (needed) => {
    panel.hidden = !needed;
    out.hidden = !token();
    if (needed) input.focus();
  };
  form.addEventListener('submit', (event) => {
    event.preventDefault();
    if (!input.value.trim()) return;
    signIn(input.value);
    input.value = '';
    show(false);
    onChange();
  });
  out.addEventListener('click', () => {
    signOut();
    onChange();
  });
  onSessionChange((change) => show(Boolean(change && change.needed)));
  show(false);
}
