// Live progress of videos that are still queued or processing.
//
// One Server-Sent Events stream per video, but at most MAX_STREAMS at once: browsers allow
// six HTTP/1.1 connections per origin, and the page still needs some for the API and the
// player. Videos past that are polled. (A single change feed will replace this later.)

import { withToken } from './session.js';
import { getVideo, TERMINAL } from './api.js';
import { jobOf } from './format.js';

const MAX_STREAMS = 3;
const POLL_MS = 3000;
const RECONNECT_MS = 2000;
let streams = 0;

/**
 * Follows one video until it ends. `onUpdate(job)` gets { status, step, percent,
 * queue_position, eta_seconds } as things move; `onEnd(video)` gets the final resource
 * (ready, failed or canceled), or null when the video was deleted. Returns `stop()`.
 */
export function follow(video, { onUpdate, onEnd }) {
  let stopped = false;
  let es = null;
  let timer = null;
  let holdsSlot = false;

  const release = () => {
    if (es) es.close();
    es = null;
    if (holdsSlot) streams--;
    holdsSlot = false;
  };
  const stop = () => {
    stopped = true;
    clearTimeout(timer);
    release();
  };
  const end = (final) => {
    if (stopped) return;
    stop();
    onEnd(final);
  };

  async function poll() {
    if (stopped) return;
    try {
      const current = await getVideo(video.id);
      if (stopped) return;
      if (!current) return end(null);
      if (TERMINAL.has(current.status)) return end(current);
      onUpdate(jobOf(current));
    } catch { /* the network hiccupped: try again on the next tick */ }
    timer = setTimeout(poll, POLL_MS);
  }

  function open() {
    if (stopped) return;
    if (streams >= MAX_STREAMS) {
      timer = setTimeout(poll, POLL_MS);
      return;
    }
    streams++;
    holdsSlot = true;
    es = new EventSource(withToken(video.links.events));
    const mine = es;
    const on = (name, handler) => mine.addEventListener(name, (e) => {
      if (es !== mine) return; // a late event from a stream already left
      let data = null;
      try { data = JSON.parse(e.data); } catch { return; }
      handler(data);
    });
    on('snapshot', (v) => onUpdate(jobOf(v)));
    on('progress', onUpdate);
    on('status', (change) => onUpdate({ status: change.status }));
    on('ready', end);
    on('failed', end);
    // A canceled job has been deleted, unless it was canceled and kept: ask.
    on('canceled', () => { release(); poll(); });
    on('reconnect', () => { release(); timer = setTimeout(open, RECONNECT_MS); });
    mine.addEventListener('error', () => {
      // CONNECTING: the browser retries by itself. CLOSED: it gave up (e.g. a 404).
      if (es === mine && mine.readyState === EventSource.CLOSED) {
        release();
        poll();
      }
    });
  }

  if (TERMINAL.has(video.status)) {
    queueMicrotask(() => end(video));
  } else {
    open();
  }
  return stop;
}
