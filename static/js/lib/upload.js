// Sends one file to reel. With tus-js-client (vendored at /vendor/tus.min.js) the upload is
// resumable: a dropped connection is retried with growing waits, and an upload cut short by a
// reload or a closed tab resumes where it stopped when the same file is chosen again. Without
// it, the file goes as one raw POST, as before.

import { authHeaders } from './session.js';
import { API, ApiError, CONNECTION_LOST, errorFrom } from './api.js';

const UPLOADS = '/api/v1/uploads';
// Waits between attempts after a failure (reset once bytes get through again): about 3 min.
const RETRY_DELAYS = [0, 1000, 3000, 5000, 10000, 15000, 20000, 30000, 30000, 60000];
// Attempts of the final step when the server is too busy to take the video (503).
const FINISH_ATTEMPTS = 10;

let tusLoaded = null;

/** Loads /vendor/tus.min.js once; resolves window.tus, or null when it is not there. */
export function loadTus() {
  if (window.tus) return Promise.resolve(window.tus);
  tusLoaded ??= new Promise((resolve) => {
    const script = document.createElement('script');
    script.src = '/vendor/tus.min.js';
    script.onload = () => resolve(window.tus && window.tus.isSupported ? window.tus : null);
    script.onerror = () => resolve(null);
    document.head.append(script);
  });
  return tusLoaded;
}

/**
 * Starts uploading `file`. Callbacks: `onProgress(loaded, total)`, `onSent()` once every byte
 * is out (the server is checking the file), `onDone(video)`, `onFail(ApiError)`, `onCancel()`;
 * with tus also `onRetry(message, delayMs)` while a failure is retried and `onResume()` when an
 * earlier upload of this file is picked up. Exactly one of onDone, onFail and onCancel is
 * called. Returns `{ cancel, pause, resume }`.
 */
export function startUpload(file, callbacks) {
  let handle = null;
  let wanted = 'run';
  loadTus().then((tus) => {
    if (wanted === 'cancel') {
      callbacks.onCancel();
      return;
    }
    handle = tus ? tusUpload(tus, file, callbacks) : rawUpload(file, callbacks);
    if (wanted === 'pause') handle.pause();
  });
  return {
    cancel() { wanted = 'cancel'; handle?.cancel(); },
    pause() { wanted = 'pause'; handle?.pause(); },
    resume() { wanted = 'run'; handle?.resume(); },
  };
}

/** The error a tus-js-client failure stands for, in plain words. */
function tusError(err) {
  const res = err && err.originalResponse;
  if (!res) return new ApiError(CONNECTION_LOST);
  return errorFrom(res.getStatus(), res.getBody() || '', res.getHeader('Retry-After'));
}

function tusUpload(tus, file, { title, onProgress, onSent, onDone, onFail, onCancel, onRetry = () => {}, onResume = () => {} }) {
  let video = null; // X-Reel-Video of the last answer that named it
  let ended = false;
  let sentAll = false;
  const end = (fn) => (...args) => { if (!ended) { ended = true; fn(...args); } };
  const done = end(onDone);
  const fail = end(onFail);
  const canceled = end(onCancel);

  const upload = new tus.Upload(file, {
    endpoint: new URL(UPLOADS, window.location.href).href,
    retryDelays: RETRY_DELAYS,
    headers: authHeaders(),
    removeFingerprintOnSuccess: true,
    metadata: {
      filename: file.name,
      filetype: file.type || 'application/octet-stream',
      ...(title ? { title } : {}),
    },
    onProgress(sent, total) {
      onProgress(sent, total);
      if (sent === total && !sentAll) {
        sentAll = true;
        onSent();
      }
    },
    onShouldRetry(err, attempt) {
      const status = err.originalResponse ? err.originalResponse.getStatus() : 0;
      const retry = (!status || status >= 500 || [408, 409, 423, 429].includes(status)) && navigator.onLine !== false;
      if (retry) {
        sentAll = false;
        // 409 and 423 come from a reconnection (the server was still finishing the old one).
        const why = status >= 500 ? tusError(err).message : 'Connection lost';
        onRetry(why, RETRY_DELAYS[attempt] || 0);
      }
      return retry;
    },
    onAfterResponse(req, res) {
      const named = res.getHeader('X-Reel-Video');
      if (named) video = named;
    },
    onError: (err) => {
      const status = err && err.originalResponse ? err.originalResponse.getStatus() : 0;
      // Refused for good (not a video, too large): nothing to resume after a reload.
      if (status >= 400 && status < 500) forgetHere();
      fail(tusError(err));
    },
    onSuccess: () => finish(),
  });

  function forgetHere() {
    const storage = tus.defaultOptions.urlStorage;
    Promise.resolve(upload.options.fingerprint(file, upload.options))
      .then((print) => storage.findUploadsByFingerprint(print))
      .then((stored) => Promise.all(stored.map((u) => storage.removeUpload(u.urlStorageKey))))
      .catch(() => {});
  }

  // The answer to the last byte names the video. When that step was refused (503: the queue is
  // full) tus-js-client sees every byte there and calls it a success: ask again, as told.
  async function finish() {
    for (let attempt = 1; !video && attempt <= FINISH_ATTEMPTS && !ended; attempt++) {
      let res;
      try {
        res = await fetch(upload.url, {
          method: 'PATCH',
          headers: { ...authHeaders(), 'Tus-Resumable': '1.0.0', 'Upload-Offset': String(file.size), 'Content-Type': 'application/offset+octet-stream' },
        });
      } catch {
        onRetry('Connection lost', 3000);
        await new Promise((r) => setTimeout(r, 3000));
        continue;
      }
      if (res.ok) {
        video = res.headers.get('X-Reel-Video');
        break;
      }
      const err = errorFrom(res.status, await res.text(), res.headers.get('Retry-After'));
      if (res.status !== 503 || attempt === FINISH_ATTEMPTS) return fail(err);
      const wait = Math.min(60, Number(res.headers.get('Retry-After')) || 10) * 1000;
      onRetry(err.message, wait);
      await new Promise((r) => setTimeout(r, wait));
    }
    if (ended) return undefined;
    if (!video) return fail(new ApiError('The server did not say which video this became. Please check your videos.'));
    try {
      const res = await fetch(video, { headers: { ...authHeaders(), Accept: 'application/json' } });
      if (!res.ok) return fail(errorFrom(res.status, await res.text(), null));
      return done(await res.json());
    } catch {
      return fail(new ApiError(CONNECTION_LOST));
    }
  }

  upload.findPreviousUploads().then((previous) => {
    if (ended) return;
    if (previous.length) {
      upload.resumeFromPreviousUpload(previous[0]);
      onResume();
    } else {
      onProgress(0, file.size);
    }
    upload.start();
  }, () => upload.start());

  return {
    cancel() {
      // Aborting with termination removes the bytes on the server too (tus termination).
      upload.abort(true).catch(() => {}).finally(() => canceled());
    },
    pause() { upload.abort(); },
    resume() { if (!ended) upload.start(); },
  };
}

/** Earlier uploads this browser did not finish: `[{ name, size, url, key }]`. */
export async function unfinishedUploads() {
  const tus = await loadTus();
  if (!tus || !tus.defaultOptions.urlStorage) return [];
  const stored = await tus.defaultOptions.urlStorage.findAllUploads();
  return stored.filter((u) => u.uploadUrl).map((u) => ({
    name: (u.metadata && u.metadata.filename) || 'a video', size: u.size, url: u.uploadUrl, key: u.urlStorageKey,
  }));
}

/** Forgets an unfinished upload here and removes its bytes on the server. */
export async function forgetUpload({ url, key }) {
  const tus = await loadTus();
  if (tus) await tus.defaultOptions.urlStorage.removeUpload(key);
  try {
    await fetch(url, { method: 'DELETE', headers: { ...authHeaders(), 'Tus-Resumable': '1.0.0' } });
  } catch { /* it expires on the server anyway */ }
}

/** The whole file as one raw POST (no tus-js-client): progress, no resuming. */
function rawUpload(file, { title, onProgress, onSent, onDone, onFail, onCancel }) {
  const xhr = new XMLHttpRequest();
  xhr.open('POST', API);
  xhr.setRequestHeader('Content-Type', file.type || 'application/octet-stream');
  xhr.setRequestHeader('Accept', 'application/json');
  xhr.setRequestHeader('X-Filename', encodeURIComponent(file.name));
  if (title) xhr.setRequestHeader('X-Title', encodeURIComponent(title));
  for (const [name, value] of Object.entries(authHeaders())) xhr.setRequestHeader(name, value);

  xhr.upload.addEventListener('progress', (e) => onProgress(e.loaded, e.lengthComputable ? e.total : file.size));
  xhr.upload.addEventListener('load', () => onSent());
  xhr.addEventListener('load', () => {
    let video = null;
    try { video = JSON.parse(xhr.responseText); } catch { /* handled below */ }
    if (xhr.status >= 200 && xhr.status < 300 && video && video.links) onDone(video);
    else onFail(errorFrom(xhr.status, xhr.responseText, xhr.getResponseHeader('Retry-After')));
  });
  // A server that refuses a body mid-stream (413, 415) may close the connection before the
  // browser has read its answer; that arrives here, not as a status.
  xhr.addEventListener('error', () => onFail(new ApiError(CONNECTION_LOST)));
  xhr.addEventListener('abort', () => onCancel());
  onProgress(0, file.size);
  xhr.send(file);
  // A raw POST cannot pause: pausing cancels, and the file has to be sent again.
  return { cancel: () => xhr.abort(), pause: () => xhr.abort(), resume: () => {} };
}
