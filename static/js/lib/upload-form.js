// The upload card: choose or drop one or several files, optional title, then a queue of
// uploads, one at a time, each with its progress, pause/resume and cancel. A dropped
// connection is retried ("Connection lost — retrying…"); an upload cut short by a reload is
// listed and resumes when its file is chosen again. One plain message at the end (an error
// replaces the progress line, it never sits under it).

import { $, h, showMessage } from './dom.js';
import { displayName, formatBytes } from './format.js';
import { forgetUpload, loadTus, startUpload, unfinishedUploads } from './upload.js';

function speedMeter() {
  const samples = [];
  return (loaded) => {
    const now = performance.now();
    if (samples.length && loaded < samples.at(-1)[1]) samples.length = 0; // resumed lower
    samples.push([now, loaded]);
    while (samples.length > 2 && now - samples[0][0] > 3000) samples.shift();
    const [t0, b0] = samples[0];
    return now - t0 > 250 ? ((loaded - b0) / (now - t0)) * 1000 : null;
  };
}

/** Wires the upload card; `onUploaded(video)` runs after the server accepted a file. */
export function setUpUploadForm({ announce, onUploaded }) {
  const el = {
    form: $('upload-form'), fileInput: $('file-input'), fileName: $('file-name'), title: $('title-input'),
    button: $('upload-button'), zone: $('drop-zone'), status: $('upload-status'), queue: $('upload-queue'),
    error: $('upload-error'), done: $('upload-done'), unfinished: $('upload-unfinished'),
  };
  let chosen = [];
  const items = []; // { file, title, node, ..., handle, state: waiting|running|paused }
  let resumable = false;
  loadTus().then((tus) => { resumable = !!tus; });

  const setFiles = (files) => {
    chosen = [...(files || [])];
    const total = chosen.reduce((n, f) => n + f.size, 0);
    el.fileName.textContent = chosen.length === 1 ? `${chosen[0].name} (${formatBytes(total)})`
      : chosen.length > 1 ? `${chosen.length} files (${formatBytes(total)})` : '';
    el.button.disabled = chosen.length === 0;
    if (chosen.length) clearOutcome();
  };
  const clearOutcome = () => {
    showMessage(el.error, '');
    el.done.hidden = true;
  };

  function remove(item) {
    items.splice(items.indexOf(item), 1);
    item.node.remove();
    el.status.hidden = items.length === 0;
    if (item.state !== 'waiting') next();
  }

  function next() {
    if (items.some((i) => i.state === 'running' || i.state === 'paused')) return;
    const item = items.find((i) => i.state === 'waiting');
    if (item) run(item);
  }

  function render(item, loaded, total) {
    const pct = total > 0 ? Math.min(100, (loaded / total) * 100) : 0;
    item.bar.value = pct;
    item.bar.setAttribute('aria-valuetext', `${Math.floor(pct)}% uploaded`);
    const speed = item.speed(loaded);
    const rate = speed != null && speed > 0 ? ` · ${(speed / 1e6).toFixed(1)} MB/s` : '';
    item.text.textContent = `${formatBytes(loaded)} of ${formatBytes(total)}${rate}`;
    item.loaded = loaded;
  }

  function run(item) {
    item.state = 'running';
    item.node.dataset.state = 'running';
    item.pause.hidden = !resumable;
    item.text.textContent = 'Starting…';
    announce(`Uploading ${item.file.name}`);
    const several = items.length > 1 || item.queuedWithOthers;
    item.handle = startUpload(item.file, {
      title: item.title,
      onProgress: (loaded, total) => {
        item.node.dataset.state = item.state;
        render(item, loaded, total);
      },
      onSent: () => {
        item.text.textContent = `${formatBytes(item.file.size)} sent · the server is checking the file…`;
      },
      onRetry: (why, delay) => {
        item.node.dataset.state = 'retrying';
        const secs = Math.round(delay / 1000);
        item.text.textContent = `${why} — retrying${secs ? ` in ${secs} s` : ''}…`;
      },
      onResume: () => {
        item.text.textContent = 'Resuming where it stopped…';
        announce(`Resuming ${item.file.name}`);
        refreshUnfinished();
      },
      onDone: (video) => {
        remove(item);
        el.done.replaceChildren(`“${displayName(video)}” is uploaded and processing. `,
          h('a', { href: `/watch/${video.id}` }, 'Open its page'));
        el.done.hidden = false;
        announce('Upload finished. The video is processing.');
        onUploaded(video);
      },
      onFail: (err) => {
        remove(item);
        const which = several ? ` of “${item.file.name}”` : '';
        showMessage(el.error, `The upload${which} didn’t work: ${err.message}`);
      },
      onCancel: () => {
        remove(item);
        announce('Upload canceled');
      },
    });
  }

  function enqueue(file, title, withOthers) {
    const item = { file, title, state: 'waiting', speed: speedMeter(), loaded: 0, queuedWithOthers: withOthers };
    item.bar = h('progress', { max: '100', value: '0', 'aria-label': `Upload progress of ${file.name}` });
    item.text = h('p', { class: 'status-text' }, 'Waiting…');
    item.pause = h('button', { class: 'button small', type: 'button', hidden: true, onclick: () => togglePause(item) }, 'Pause');
    item.cancel = h('button', { class: 'button small', type: 'button', onclick: () => cancel(item) }, 'Cancel');
    item.node = h('li', { class: 'upload-item', dataset: { state: 'waiting' } },
      h('div', { class: 'upload-item-head' },
        h('span', { class: 'upload-item-name' }, `${file.name} (${formatBytes(file.size)})`),
        h('span', { class: 'upload-item-actions' }, item.pause, item.cancel)),
      item.bar, item.text);
    items.push(item);
    el.queue.append(item.node);
    el.status.hidden = false;
  }

  function togglePause(item) {
    if (item.state === 'running') {
      item.state = 'paused';
      item.handle.pause();
      item.node.dataset.state = 'paused';
      item.pause.textContent = 'Resume';
      item.text.textContent = `Paused at ${formatBytes(item.loaded)} of ${formatBytes(item.file.size)}`;
      announce(`Paused ${item.file.name}`);
    } else if (item.state === 'paused') {
      item.state = 'running';
      item.pause.textContent = 'Pause';
      item.text.textContent = 'Resuming…';
      item.handle.resume();
    }
  }

  function cancel(item) {
    if (item.state === 'waiting') {
      remove(item);
      return;
    }
    item.cancel.disabled = true;
    item.pause.disabled = true;
    item.text.textContent = 'Canceling…';
    item.handle.cancel();
  }

  function start() {
    if (!chosen.length) return;
    clearOutcome();
    const title = chosen.length === 1 ? el.title.value.trim() : '';
    for (const file of chosen) enqueue(file, title, chosen.length > 1);
    el.form.reset();
    setFiles([]);
    next();
  }

  async function refreshUnfinished() {
    const waiting = new Set(items.map((i) => i.file.name));
    const list = (await unfinishedUploads()).filter((u) => !waiting.has(u.name));
    el.unfinished.replaceChildren(...list.map((u) => h('p', {},
      `Unfinished upload: ${u.name} (${formatBytes(u.size)}). Choose the same file again to resume it. `,
      h('button', { class: 'button small', type: 'button', onclick: async () => { await forgetUpload(u); refreshUnfinished(); } }, 'Forget it'))));
    el.unfinished.hidden = list.length === 0;
  }

  bindDropZone(el.zone, el.fileInput, setFiles);
  el.fileInput.addEventListener('change', () => setFiles(el.fileInput.files));
  el.form.addEventListener('submit', (e) => { e.preventDefault(); start(); });
  window.addEventListener('beforeunload', (e) => {
    if (!items.length) return;
    e.preventDefault();
    e.returnValue = ''; // still required by some browsers to show the prompt
  });
  refreshUnfinished();
}

function bindDropZone(zone, input, setFiles) {
  let depth = 0; // dragenter/leave fire for every child element
  const setActive = (on) => zone.classList.toggle('is-dragging', on);
  zone.addEventListener('dragenter', (e) => { e.preventDefault(); depth++; setActive(true); });
  zone.addEventListener('dragleave', () => { depth = Math.max(0, depth - 1); if (!depth) setActive(false); });
  zone.addEventListener('dragover', (e) => { e.preventDefault(); e.dataTransfer.dropEffect = 'copy'; });
  zone.addEventListener('drop', (e) => {
    e.preventDefault();
    depth = 0;
    setActive(false);
    const dropped = e.dataTransfer.files;
    if (!dropped.length) return;
    try { input.files = dropped; } catch { /* older browsers: the files are kept anyway */ }
    setFiles(dropped);
  });
  zone.addEventListener('click', (e) => {
    if (e.target === zone || e.target.tagName === 'P') input.click();
  });
  // A file dropped beside the zone would otherwise make the browser navigate away to it.
  for (const type of ['dragover', 'drop']) {
    window.addEventListener(type, (e) => {
      if (zone.contains(e.target)) return;
      e.preventDefault();
      if (e.dataTransfer) e.dataTransfer.dropEffect = 'none';
    });
  }
}
