// How numbers, times and videos are written on the page.

export const STATUS_LABELS = {
  queued: 'Queued', processing: 'Processing', ready: 'Ready', failed: 'Failed', canceled: 'Canceled',
};

const STEP_LABELS = {
  queued: 'Waiting in queue', probing: 'Reading the file', encoding: 'Encoding', publishing: 'Publishing',
};

/** The name a person gave the video, else its file name. */
export const displayName = (video) => video.title || video.filename || 'Untitled video';

/** 1234567 → "1.2 MB" (decimal units, as file managers show). */
export function formatBytes(n) {
  if (typeof n !== 'number' || !Number.isFinite(n)) return '';
  const units = ['B', 'kB', 'MB', 'GB', 'TB'];
  let i = 0;
  while (n >= 1000 && i < units.length - 1) { n /= 1000; i++; }
  return i === 0 ? `${n} B` : `${n.toFixed(1)} ${units[i]}`;
}

/** Seconds → "0:04", "12:30", "1:02:03". */
export function formatDuration(seconds) {
  if (typeof seconds !== 'number' || !Number.isFinite(seconds) || seconds < 0) return '';
  const total = Math.round(seconds);
  const h = Math.floor(total / 3600);
  const m = Math.floor((total % 3600) / 60);
  const s = String(total % 60).padStart(2, '0');
  return h ? `${h}:${String(m).padStart(2, '0')}:${s}` : `${m}:${s}`;
}

/** Seconds → "4 seconds", "2 minutes 5 seconds": for screen readers next to formatDuration. */
export function spokenDuration(seconds) {
  if (typeof seconds !== 'number' || !Number.isFinite(seconds)) return '';
  const total = Math.round(seconds);
  const parts = [[Math.floor(total / 3600), 'hour'], [Math.floor((total % 3600) / 60), 'minute'], [total % 60, 'second']];
  const said = parts.filter(([n]) => n > 0).map(([n, unit]) => `${n} ${unit}${n === 1 ? '' : 's'}`);
  return said.length ? said.join(' ') : '0 seconds';
}

export function formatDate(iso) {
  const date = new Date(iso);
  return Number.isNaN(date.getTime()) ? '' : date.toLocaleDateString(undefined, { dateStyle: 'medium' });
}

export function formatEta(s) {
  if (typeof s !== 'number' || !Number.isFinite(s) || s < 0) return '';
  if (s < 60) return `about ${Math.max(1, Math.round(s))} s left`;
  const min = Math.round(s / 60);
  return min < 60 ? `about ${min} min left` : `about ${Math.floor(min / 60)} h ${min % 60} min left`;
}

/** The best rung's name ("720p"), else the source's size ("640×360"), else "". */
export function resolutionLabel(video) {
  const top = (video.renditions || []).at(-1);
  if (top) return top.name;
  return video.source ? `${video.source.width}×${video.source.height}` : '';
}

/** Width ÷ height of the picture as shown, or null while unknown. */
export function aspectRatio(video) {
  const top = (video.renditions || []).at(-1);
  const size = top || video.source;
  return size && size.width > 0 && size.height > 0 ? size.width / size.height : null;
}

/**
 * One line about a job that is not finished: "Encoding · 45% · about 3 s left",
 * "Waiting in queue · #2". `job` has status, step, percent, queue_position, eta_seconds.
 */
export function progressText(job) {
  if (job.status === 'queued') {
    return job.queue_position ? `Waiting in queue · #${job.queue_position}` : 'Waiting in queue';
  }
  const parts = [STEP_LABELS[job.step] || 'Processing', `${Math.floor(job.percent || 0)}%`];
  const eta = formatEta(job.eta_seconds);
  if (eta) parts.push(eta);
  return parts.join(' · ');
}

/** A job's state from a video resource, in the shape progress events have. */
export function jobOf(video) {
  return {
    status: video.status,
    step: video.step,
    percent: (video.progress || 0) * 100,
    queue_position: video.queue_position,
    eta_seconds: null,
  };
}
