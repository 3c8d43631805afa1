// The upload card: choose or drop a file, optional title, upload with progress, and one
// plain message at the end (an error replaces the progress line, it never sits under it).

import { $, h, showMessage } from './dom.js';
import { displayName, formatBytes } from './format.js';
import { startUpload } from './upload.js';

function speedMeter() {
  const samples = [];
  return (loaded) => {
    const now = performance.now();
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
    button: $('upload-button'), cancel: $('cancel-upload'), zone: $('drop-zone'),
    status: $('upload-status'), progress: $('upload-progress'), text: $('upload-text'),
    error: $('upload-error'), done: $('upload-done'),
  };
  let file = null;
  let upload = null;

  const setFile = (chosen) => {
    file = chosen || null;
    el.fileName.textContent = file ? `${file.name} (${formatBytes(file.size)})` : '';
    el.button.disabled = !file || !!upload;
    if (file) clearOutcome();
  };
  const clearOutcome = () => {
    showMessage(el.error, '');
    el.done.hidden = true;
  };
  const endUpload = () => {
    upload = null;
    el.cancel.hidden = true;
    el.status.hidden = true;
    el.progress.value = 0;
    el.text.textContent = '';
    el.button.disabled = !file;
  };

  const render = (loaded, total, speed) => {
    const pct = total > 0 ? Math.min(100, (loaded / total) * 100) : 0;
    el.progress.value = pct;
    el.progress.setAttribute('aria-valuetext', `${Math.floor(pct)}% uploaded`);
    const rate = speed != null ? ` · ${(speed / 1e6).toFixed(1)} MB/s` : '';
    el.text.textContent = `${formatBytes(loaded)} of ${formatBytes(total)}${rate}`;
  };

  function start() {
    if (!file || upload) return;
    clearOutcome();
    const sending = file;
    const speed = speedMeter();
    el.status.hidden = false;
    el.cancel.hidden = false;
    el.button.disabled = true;
    announce(`Uploading ${sending.name}`);
    upload = startUpload(sending, {
      title: el.title.value.trim(),
      onProgress: (loaded, total) => render(loaded, total, speed(loaded)),
      onSent: () => {
        render(sending.size, sending.size, null);
        el.text.textContent = `${formatBytes(sending.size)} sent · the server is checking the file…`;
      },
      onDone: (video) => {
        endUpload();
        el.form.reset();
        setFile(null);
        el.done.replaceChildren(`“${displayName(video)}” is uploaded and processing. `,
          h('a', { href: `/watch/${video.id}` }, 'Open its page'));
        el.done.hidden = false;
        announce('Upload finished. The video is processing.');
        onUploaded(video);
      },
      onFail: (err) => {
        endUpload();
        showMessage(el.error, `The upload didn’t work: ${err.message}`);
      },
      onCancel: () => {
        endUpload();
        announce('Upload canceled');
      },
    });
  }

  bindDropZone(el.zone, el.fileInput, setFile);
  el.fileInput.addEventListener('change', () => setFile(el.fileInput.files[0]));
  el.form.addEventListener('submit', (e) => { e.preventDefault(); start(); });
  el.cancel.addEventListener('click', () => upload && upload.cancel());
  window.addEventListener('beforeunload', (e) => {
    if (!upload) return;
    e.preventDefault();
    e.returnValue = ''; // still required by some browsers to show the prompt
  });
}

function bindDropZone(zone, input, setFile) {
  let depth = 0; // dragenter/leave fire for every child element
  const setActive = (on) => zone.classList.toggle('is-dragging', on);
  zone.addEventListener('dragenter', (e) => { e.preventDefault(); depth++; setActive(true); });
  zone.addEventListener('dragleave', () => { depth = Math.max(0, depth - 1); if (!depth) setActive(false); });
  zone.addEventListener('dragover', (e) => { e.preventDefault(); e.dataTransfer.dropEffect = 'copy'; });
  zone.addEventListener('drop', (e) => {
    e.preventDefault();
    depth = 0;
    setActive(false);
    const dropped = e.dataTransfer.files[0];
    if (!dropped) return;
    try { input.files = e.dataTransfer.files; } catch { /* older browsers: the file is kept anyway */ }
    setFile(dropped);
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
