// The embed page: only the player (or a few words while there is nothing to play).

import { getVideo } from './lib/api.js';
import { $ } from './lib/dom.js';
import { displayName } from './lib/format.js';
import { attachPlayer } from './lib/player.js';
import { createStage, failedText, notFound, showProgressUntilDone, stoppedText } from './lib/stage.js';

const id = decodeURIComponent(location.pathname.split('/')[2] || '');
const player = $('player');
const stage = createStage({ media: player, message: $('stage-message'), text: $('stage-text'), progress: $('stage-progress') });

async function play(video) {
  document.title = `${displayName(video)} · reel`;
  player.setAttribute('aria-label', displayName(video));
  stage.showPlayer();
  const attached = await attachPlayer(player, video, { onError: (message) => stage.say(message) });
  if (attached) player.dataset.mode = attached.mode;
  return attached;
}

async function main() {
  let video;
  try {
    video = await getVideo(id);
  } catch (err) {
    stage.say(`This video can’t be loaded right now. ${err.message}`);
    return;
  }
  if (!video) return stage.say(notFound(false));
  document.title = `${displayName(video)} · reel`;
  if (video.status === 'ready') return play(video);
  if (video.status === 'failed') return stage.say(failedText(video));
  if (video.status === 'canceled') return stage.say('This video is not available.');
  // Played while it encodes once it can be; a player already on it goes on when it is ready.
  let growing = null;
  showProgressUntilDone(video, stage, async (final) => {
    if (growing && final && final.status === 'ready') return;
    if (growing) {
      (await growing)?.destroy();
      stage.say(stoppedText(final));
    } else if (!final) stage.say(notFound(false));
    else if (final.status === 'ready') play(final);
    else stage.say(final.status === 'failed' ? failedText(final) : 'This video is not available.');
  }, (playable) => { growing = play(playable); });
  return undefined;
}

main();
