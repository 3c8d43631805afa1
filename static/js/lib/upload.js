// Sends one file to reel as a raw body, with progress. Resumable (tus) uploads can take this
// module's place: the form only needs start(), cancel() and the three callbacks.

import { API, ApiError, CONNECTION_LOST, errorFrom } from './api.js';

/**
 * Starts uploading `file`. Callbacks: `onProgress(loaded, total)`, `onSent()` once every byte
 * is out (the server is checking the file), `onDone(video)`, `onFail(ApiError)`, `onCancel()`.
 * Exactly one of onDone, onFail and onCancel is called. Returns `{ cancel }`.
 */
export function startUpload(file, { title, onProgress, onSent, onDone, onFail, onCancel }) {
  const xhr = new XMLHttpRequest();
  xhr.open('POST', API);
  xhr.setRequestHeader('Content-Type', file.type || 'application/octet-stream');
  xhr.setRequestHeader('Accept', 'application/json');
  xhr.setRequestHeader('X-Filename', encodeURIComponent(file.name));
  if (title) xhr.setRequestHeader('X-Title', encodeURIComponent(title));

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
  return { cancel: () => xhr.abort() };
}
