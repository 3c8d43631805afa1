// The seek bar under the player, with a thumbnail of the moment under the pointer (or under
// the thumb while dragging) from the video's storyboard: a WebVTT track whose cues name a
// sprite sheet and a rectangle in it (`storyboard/sprite_0.jpg#xywh=0,0,160,90`).

import { formatDuration, spokenDuration } from './format.js';

/** "hh:mm:ss.ttt" or "mm:ss.ttt" → seconds. */
function seconds(stamp) {
  return stamp.trim().split(':').reduce((total, part) => total * 60 + Number(part), 0);
}

/**
 * The cues of a storyboard track, sorted by start: { start, end, url, x, y, w, h }, the sheet's
 * URL resolved against `base` (the track's own URL). Cues it cannot read are skipped.
 */
export function parseStoryboard(text, base) {
  const cues = [];
  const lines = text.split(/\r?\n/);
  for (let i = 0; i < lines.length; i += 1) {
    const timing = lines[i].split('-->');
    if (timing.length !== 2) continue;
    const [ref, fragment] = (lines[i + 1] || '').trim().split('#xywh=');
    const box = (fragment || '').split(',').map(Number);
    const [start, end] = timing.map((t) => seconds(t.split(/\s/).filter(Boolean)[0] || ''));
    if (!ref || box.length !== 4 || box.some((n) => !Number.isFinite(n)) || !(end > start)) continue;
    const [x, y, w, h] = box;
    cues.push({ start, end, url: new URL(ref, base).href, x, y, w, h });
    i += 1;
  }
  return cues.sort((a, b) => a.start - b.start);
}

/** The cue showing at `time` (the last one past the end), or null. */
export function cueAt(cues, time) {
  let low = 0;
  let high = cues.length - 1;
  if (high < 0) return null;
  if (time >= cues[high].start) return cues[high];
  while (low < high) {
    const mid = (low + high + 1) >> 1;
    if (cues[mid].start <= time) low = mid;
    else high = mid - 1;
  }
  return cues[low];
}

/** Fetches and reads the track at `url`; resolves [] when there is none. */
export async function loadStoryboard(url) {
  if (!url) return [];
  try {
    const response = await fetch(url);
    if (!response.ok) return [];
    const absolute = new URL(url, location.href).href;
    const cues = parseStoryboard(await response.text(), absolute);
    // The sheets are few and small: fetch them now, so the first hover shows at once.
    for (const sheet of new Set(cues.map((c) => c.url))) new Image().src = sheet;
    return cues;
  } catch {
    return [];
  }
}

/**
 * Wires the seek bar `els.seek` (an <input type="range">) to `media`, with the preview
 * `els.preview` (holding `els.thumb` and `els.time`) shown over it while the pointer hovers
 * or the thumb is dragged. `cues` may arrive later through the returned `setCues`.
 */
export function setUpSeekBar(els, media, { duration: fallback = 0 } = {}) {
  const { box, seek, preview, thumb, time } = els;
  let cues = [];
  let dragging = false;
  const duration = () => (Number.isFinite(media.duration) && media.duration > 0 ? media.duration : fallback);

  function syncRange() {
    seek.max = String(duration());
    if (!dragging) seek.value = String(media.currentTime || 0);
    seek.setAttribute('aria-valuetext', `${spokenDuration(Number(seek.value))} of ${spokenDuration(duration())}`);
  }

  /** Shows the preview for `at` seconds, centred over `clientX` within the bar. */
  function show(at, clientX) {
    const rect = seek.getBoundingClientRect();
    const cue = cueAt(cues, at);
    time.textContent = formatDuration(at);
    thumb.hidden = !cue;
    if (cue) {
      thumb.style.width = `${cue.w}px`;
      thumb.style.height = `${cue.h}px`;
      thumb.style.backgroundImage = `url("${cue.url}")`;
      thumb.style.backgroundPosition = `-${cue.x}px -${cue.y}px`;
      thumb.dataset.sheet = cue.url;
      thumb.dataset.xywh = `${cue.x},${cue.y},${cue.w},${cue.h}`;
    }
    preview.hidden = false;
    const half = preview.offsetWidth / 2;
    const left = Math.min(Math.max(clientX - rect.left, half), Math.max(rect.width - half, half));
    preview.style.left = `${left}px`;
    preview.dataset.time = at.toFixed(3);
  }

  const hide = () => { if (!dragging) preview.hidden = true; };
  const timeAt = (clientX) => {
    const rect = seek.getBoundingClientRect();
    const fraction = rect.width ? Math.min(Math.max((clientX - rect.left) / rect.width, 0), 1) : 0;
    return fraction * duration();
  };
  /** Where the range's thumb is now, in client coordinates. */
  const thumbX = () => {
    const rect = seek.getBoundingClientRect();
    const d = duration();
    return rect.left + (d ? (Number(seek.value) / d) * rect.width : 0);
  };

  seek.addEventListener('pointermove', (event) => { if (!dragging) show(timeAt(event.clientX), event.clientX); });
  seek.addEventListener('pointerleave', hide);
  seek.addEventListener('pointerdown', () => { dragging = true; });
  seek.addEventListener('input', () => show(Number(seek.value), thumbX()));
  seek.addEventListener('change', () => {
    dragging = false;
    media.currentTime = Number(seek.value);
    preview.hidden = true;
  });
  seek.addEventListener('blur', () => { dragging = false; preview.hidden = true; });
  for (const event of ['timeupdate', 'durationchange', 'loadedmetadata', 'seeked']) media.addEventListener(event, syncRange);
  syncRange();
  box.hidden = false;
  return {
    setCues: (next) => {
      cues = next;
      box.dataset.thumbnails = String(cues.length);
    },
  };
}
