// The watch page: the player sized to the video, the quality menu, the title (editable),
// date, duration, and the share and manage actions.

import { withToken } from './lib/session.js';
import { deleteVideo, getVideo, setTitle } from './lib/api.js';
import { $, announcer, flash, h, showMessage } from './lib/dom.js';
import { setUpDeleteDialog } from './lib/delete-dialog.js';
import { aspectRatio, displayName, formatBytes, formatDate, formatDuration, resolutionLabel } from './lib/format.js';
import { attachPlayer } from './lib/player.js';
import { setUpQuality } from './lib/quality.js';
import { copyText, embedCode } from './lib/share.js';
import { createStage, failedText, notFound, showProgressUntilDone, stoppedText } from './lib/stage.js';
import { loadStoryboard, setUpSeekBar } from './lib/storyboard.js';
import { setUpTitleEditor } from './lib/title-edit.js';

const id = decodeURIComponent(location.pathname.split('/')[2] || '');
const el = {
  player: $('player'), details: $('details'), title: $('video-title'), meta: $('video-meta'),
  quality: $('quality'), qualitySelect: $('quality-select'), qualityNow: $('quality-now'),
  playerError: $('player-error'), download: $('download'), copyLink: $('copy-link'),
  copyEmbed: $('copy-embed'), copyHls: $('copy-hls'), shareStatus: $('share-status'),
  manualLabel: $('manual-copy-label'), manual: $('manual-copy'), remove: $('delete'),
  scrubber: $('scrubber'), seek: $('seek'), seekPreview: $('seek-preview'), seekThumb: $('seek-thumb'),
  seekTime: $('seek-time'),
};
const announce = announcer($('announce'));
const stage = createStage({
  stage: $('stage'), media: el.player, message: $('stage-message'), text: $('stage-text'), progress: $('stage-progress'),
});
let video = null;
let shareTimer = null;
/** The attached player, its seek bar and its quality menu, once there are. */
let playing = null;
let seekBar = null;
let quality = null;
/** Set once a growing ladder went away under the player: nothing plays any more. */
let stopped = false;

/** Shows what is known about the video beside the player. */
function render(next) {
  video = next;
  const name = displayName(video);
  document.title = `${name} · reel`;
  el.title.textContent = name;
  const parts = [`Uploaded ${formatDate(video.created_at)}`];
  if (video.source) parts.push(formatDuration(video.source.duration), resolutionLabel(video), formatBytes(video.source.size));
  // Each part stays on one line; the line breaks between them.
  el.meta.replaceChildren(...parts.filter(Boolean).flatMap((part, i) => [i ? ' · ' : '', h('span', {}, part)]));
  el.download.href = withToken(video.links.source);
  const ready = video.status === 'ready';
  el.copyEmbed.hidden = !ready;
  el.copyHls.hidden = !ready;
  stage.fit(video);
  el.details.hidden = false;
}

async function play(ready) {
  stage.showPlayer();
  const player = await attachPlayer(el.player, ready, {
    onRendition: (rendition) => quality && quality.show(rendition),
    onError: (message) => showMessage(el.playerError, message),
  });
  if (!player) return;
  if (stopped) {
    // The ladder went away while the player was being attached.
    player.destroy();
    return;
  }
  playing = player;
  el.player.dataset.mode = player.mode;
  // The seek bar under the player, with storyboard thumbnails once the track has loaded.
  const bar = setUpSeekBar(
    { box: el.scrubber, seek: el.seek, preview: el.seekPreview, thumb: el.seekThumb, time: el.seekTime },
    el.player,
    { duration: ready.source && ready.source.duration },
  );
  seekBar = bar;
  loadStoryboard(ready.links.storyboard).then(bar.setCues);
  quality = setUpQuality({ box: el.quality, select: el.qualitySelect, now: el.qualityNow }, player);
  quality.show(player.onScreen());
}

function follow(unfinished) {
  let started = false;
  const playable = (growing) => {
    started = true;
    render(growing);
    announce('You can watch the video while it is still being processed.');
    play(growing);
  };
  showProgressUntilDone(unfinished, stage, (final) => {
    if (started && (!final || final.status !== 'ready')) {
      // Its partial ladder is gone: say why instead of a stalled player, and take away the
      // controls of what can no longer play.
      stopped = true;
      if (playing) playing.destroy();
      playing = null;
      quality = null;
      el.quality.hidden = true;
      el.scrubber.hidden = true;
      if (final) render(final);
      stage.say(stoppedText(final));
      return;
    }
    if (!final) {
      el.details.hidden = true;
      stage.say(notFound(true));
      return;
    }
    render(final);
    if (final.status === 'ready') {
      announce('The video is ready to play.');
      // A player already on the growing ladder goes on into the finished one; the quality
      // menu takes its renditions (measured rates) and the seek bar its storyboard, which
      // only a finished ladder has.
      if (!started) play(final);
      else {
        if (playing) playing.setRenditions(final.renditions);
        if (quality) quality.refresh();
        if (seekBar) loadStoryboard(final.links.storyboard).then(seekBar.setCues);
      }
    } else {
      stage.say(final.status === 'failed' ? failedText(final) : 'Processing of this video was canceled.');
    }
  }, playable);
}

async function share(kind) {
  const origin = location.origin;
  const text = {
    link: `${origin}/watch/${video.id}`,
    embed: embedCode(`${origin}/embed/${video.id}`, displayName(video), aspectRatio(video)),
    // A path on this server, or an absolute URL when a CDN serves the media.
    hls: new URL(video.links.playlist, location.href).href,
  }[kind];
  const what = { link: 'Link', embed: 'Embed code', hls: 'HLS link' }[kind];
  const copied = await copyText(text);
  el.manual.value = text;
  el.manual.hidden = copied;
  el.manualLabel.hidden = copied;
  el.shareStatus.textContent = copied ? `${what} copied.` : `Your browser didn’t let the page copy. Select the ${what.toLowerCase()} below and copy it.`;
  clearTimeout(shareTimer);
  if (copied) shareTimer = setTimeout(() => { el.shareStatus.textContent = ''; }, 5000); // no stale "copied"
  else el.manual.select();
}

function setUpActions() {
  el.copyLink.addEventListener('click', () => share('link'));
  el.copyEmbed.addEventListener('click', () => share('embed'));
  el.copyHls.addEventListener('click', () => share('hls'));
  setUpTitleEditor({
    current: () => displayName(video),
    save: (title) => setTitle(video.id, title),
    onSaved: (changed) => render({ ...video, title: changed.title, updated_at: changed.updated_at }),
    announce,
  });
  setUpDeleteDialog({
    button: el.remove,
    name: () => displayName(video),
    remove: () => deleteVideo(video.id),
    onDeleted: () => {
      flash.set(`Deleted “${displayName(video)}”.`);
      location.assign('/');
    },
  });
}

async function main() {
  stage.say('Loading…');
  let found;
  try {
    found = await getVideo(id);
  } catch (err) {
    stage.say([`Couldn’t load this video. ${err.message} `, h('a', { href: location.href }, 'Try again')]);
    return;
  }
  if (!found) {
    document.title = 'Video not found · reel';
    stage.say(notFound(true));
    return;
  }
  render(found);
  setUpActions();
  if (found.status === 'ready') play(found);
  else if (found.status === 'failed') stage.say(failedText(found));
  else if (found.status === 'canceled') stage.say('Processing of this video was canceled.');
  else follow(found);
}

main();
