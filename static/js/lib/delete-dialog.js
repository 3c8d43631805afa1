// "Delete this video?" in a modal dialog: Escape or "Keep it" cancels, and an error stays in
// the dialog so the choice can be made again.

import { $, showMessage } from './dom.js';

/** `remove()` deletes (or throws a readable Error); `onDeleted()` runs after it worked. */
export function setUpDeleteDialog({ button, name, remove, onDeleted }) {
  const dialog = $('delete-dialog');
  const confirmButton = $('delete-confirm');
  const error = $('delete-error');

  button.addEventListener('click', () => {
    $('delete-text').textContent = `“${name()}”, its stream and the original file will be removed. This can’t be undone.`;
    showMessage(error, '');
    confirmButton.disabled = false;
    dialog.showModal();
  });
  dialog.addEventListener('close', () => button.focus());
  dialog.querySelector('form').addEventListener('submit', async (e) => {
    if (e.submitter !== confirmButton) return; // "Keep it" closes the dialog by itself
    e.preventDefault();
    confirmButton.disabled = true;
    try {
      await remove();
      onDeleted();
    } catch (err) {
      showMessage(error, `The video wasn’t deleted: ${err.message}`);
      confirmButton.disabled = false;
    }
  });
}
