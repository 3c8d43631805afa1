// The player's place before there is anything to play: loading, processing with live
// progress, failed, not found. Shared by the watch page and the embed page.

import { TERMINAL } from './api.js';
import { h } from './dom.js';
import { aspectRatio, progressText } from './format.js';
import { follow } from './live.js';

/** `els`: { stage?, media, message, text, progress }. */
export function createStage(els) {
  return {
    /** Shows words (text or nodes) instead of the player, with a bar when `percent` is given. */
    say(content, percent = null) {
      els.text.replaceChildren(...[].concat(content));
      els.progress.hidden = percent == null;
      if (percent != null) {
        els.progress.value = percent;
        els.progress.setAttribute('aria-valuetext', `${Math.floor(percent)}%`);
      }
      els.message.hidden = false;
      els.media.hidden = true;
    },
    showPlayer() {
      els.message.hidden = true;
      els.media.hidden = false;
    },
    /** Sizes the stage to the video's own shape (portrait fills a phone's width). */
    fit(video) {
      const ratio = aspectRatio(video);
      if (els.stage && ratio) els.stage.style.setProperty('--ar', ratio.toFixed(4));
    },
  };
}

export function failedText(video) {
  const reason = video.error && video.error.message;
  return reason ? `We couldn’t process this video: ${reason}` : 'We couldn’t process this video.';
}

export const notFound = (withLink) => [
  'This video doesn’t exist. It may have been deleted.',
  withLink ? h('a', { href: '/' }, 'See all videos') : null,
].filter(Boolean).flatMap((part, i) => (i ? [' ', part] : [part]));

/** Why a video that was playing while it encoded stopped. */
export function stoppedText(video) {
  if (video && video.status === 'failed') return `Playback stopped. ${failedText(video)}`;
  if (video && video.status === 'canceled') return 'Playback stopped: processing of this video was canceled.';
  return 'Playback stopped: this video was deleted.';
}

/**
 * Shows an unfinished `video`'s progress on `stage` until it ends; `onEnd(final|null)` gets
 * the final resource (null when it was deleted). `onPlayable(video)`, when given, runs once if
 * the video can be watched while it still encodes; the stage then stops showing progress
 * (the player is on it). Returns stop().
 */
export function showProgressUntilDone(video, stage, onEnd, onPlayable = null) {
  const job = {};
  let playing = false;
  const update = (change) => {
    Object.assign(job, Object.fromEntries(Object.entries(change).filter(([, v]) => v !== undefined)));
    if (TERMINAL.has(job.status) || playing) return;
    const percent = Math.max(0, Math.min(100, job.percent || 0));
    stage.say(`This video is being processed. ${progressText({ ...job, percent })}`, percent);
  };
  update({ status: video.status, step: video.step, percent: (video.progress || 0) * 100, queue_position: video.queue_position });
  const playable = (v) => {
    if (playing || !onPlayable) return;
    playing = true;
    onPlayable(v);
  };
  return follow(video, { onUpdate: update, onEnd, onPlayable: playable });
}
