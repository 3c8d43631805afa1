// Editing the title in place on the watch page: Edit → a field with Save and Cancel
// (Enter saves, Escape cancels); the server's answer is what is shown afterwards.

import { $, showMessage } from './dom.js';

/**
 * `current()` gives the title to start from; `save(title)` resolves the changed video or
 * throws an Error whose message a person can read; `onSaved(video)` shows it.
 */
export function setUpTitleEditor({ current, save, onSaved, announce }) {
  const el = {
    view: $('title-view'), edit: $('edit-title'), form: $('title-form'), field: $('title-field'),
    cancel: $('title-cancel'), error: $('title-error'),
  };
  let saving = false;

  const open = () => {
    el.field.value = current();
    showMessage(el.error, '');
    el.view.hidden = true;
    el.form.hidden = false;
    el.field.focus();
    el.field.select();
  };
  const close = () => {
    el.form.hidden = true;
    el.view.hidden = false;
    el.edit.focus();
  };

  el.edit.addEventListener('click', open);
  el.cancel.addEventListener('click', close);
  el.form.addEventListener('keydown', (e) => {
    if (e.key === 'Escape') { e.preventDefault(); close(); }
  });
  el.form.addEventListener('submit', async (e) => {
    e.preventDefault();
    if (saving) return;
    const title = el.field.value.trim();
    if (!title) {
      showMessage(el.error, 'The title can’t be empty.');
      el.field.focus();
      return;
    }
    saving = true;
    el.form.setAttribute('aria-busy', 'true');
    try {
      const video = await save(title);
      onSaved(video);
      close();
      announce('Title saved.');
    } catch (err) {
      showMessage(el.error, `The title wasn’t saved: ${err.message}`);
      el.field.focus();
    } finally {
      saving = false;
      el.form.removeAttribute('aria-busy');
    }
  });
}
