// Plays a ready video's HLS ladder: the browser's own HLS where it has it, else hls.js
// (loaded only then). Either way the rung on screen is read from the size of the decoded
// picture, so the quality menu shows the same thing with both.

const HLS_TYPE = 'application/vnd.apple.mpegurl';
let hlsJs = null;

/** Loads /vendor/hls.min.js once; resolves window.Hls, or null when it is not there. */
function loadHlsJs() {
  if (window.Hls) return Promise.resolve(window.Hls);
  hlsJs ??= new Promise((resolve) => {
    const script = document.createElement('script');
    script.src = '/vendor/hls.min.js';
    script.onload = () => resolve(window.Hls || null);
    script.onerror = () => resolve(null);
    document.head.append(script);
  });
  return hlsJs;
}

/** The rung whose picture size is nearest to `width`×`height`; null before the first frame. */
export function renditionOnScreen(renditions, width, height) {
  if (!width || !height) return null;
  let best = null;
  let bestScore = Infinity;
  for (const rendition of renditions) {
    const score = Math.abs(rendition.width - width) + Math.abs(rendition.height - height);
    if (score < bestScore) { best = rendition; bestScore = score; }
  }
  return best;
}

/**
 * The rungs of a multivariant playlist `text` read from `masterUrl`, ascending, shaped like the
 * resource's renditions: name (the rung's folder), width, height, bandwidth and playlist (the
 * rung's own multivariant playlist beside the master, `<name>.m3u8`, which keeps the audio
 * group; signed like the master).
 */
export function renditionsOfMaster(text, masterUrl) {
  const base = new URL(masterUrl, location.href);
  const lines = text.split(/\r?\n/).map((line) => line.trim());
  const rungs = [];
  lines.forEach((line, i) => {
    if (!line.startsWith('#EXT-X-STREAM-INF:')) return;
    const uri = lines.slice(i + 1).find((next) => next && !next.startsWith('#'));
    if (!uri) return;
    const attributes = {};
    for (const [, name, value] of line.slice(18).matchAll(/([A-Z0-9-]+)=("[^"]*"|[^,]*)/g)) attributes[name] = value.replace(/^"|"$/g, '');
    const [width, height] = (attributes.RESOLUTION || '0x0').split('x').map(Number);
    const name = new URL(uri, base).pathname.split('/').at(-2);
    const playlist = new URL(`${name}.m3u8`, base);
    playlist.search = base.search;
    rungs.push({ name, width, height, bandwidth: Number(attributes.BANDWIDTH) || 0, playlist: `${playlist.pathname}${playlist.search}` });
  });
  return rungs.sort((a, b) => a.bandwidth - b.bandwidth);
}

/** The rungs a master playlist lists; none when it cannot be read. */
async function readRenditions(master) {
  try {
    const response = await fetch(master);
    return response.ok ? renditionsOfMaster(await response.text(), master) : [];
  } catch {
    return [];
  }
}

/**
 * Starts `video` (a ready resource, or a processing one whose ladder grows) in the <video> element `media`. `onRendition(rung|null)`
 * runs whenever the picture's size changes; `onError(message)` when playback cannot go on.
 * Resolves { mode: 'native' | 'hls.js', renditions, setRenditions(list), select(index),
 * onScreen(), destroy() } (`select(-1)` is automatic), or null when this browser cannot play
 * HLS at all. A growing ladder's resource lists no renditions yet: they are read from its
 * master playlist, and `setRenditions` takes the finished ladder's once it is ready.
 */
export async function attachPlayer(media, video, { onRendition = () => {}, onError }) {
  let renditions = video.renditions || [];
  const master = new URL(video.links.playlist, location.href).href;
  const listed = renditions.length ? Promise.resolve(renditions) : readRenditions(master);
  const rungs = {
    get renditions() { return renditions; },
    setRenditions(list) { if (list && list.length) renditions = list; },
  };
  const onScreen = () => renditionOnScreen(renditions, media.videoWidth, media.videoHeight);
  const report = () => onRendition(onScreen());
  if (video.links.poster) media.poster = video.links.poster;
  media.addEventListener('resize', report);
  media.addEventListener('loadedmetadata', report);

  // A ladder still growing is an EVENT playlist, which players start near its end unless told.
  const growing = video.status === 'processing';
  if (growing) {
    media.addEventListener('loadedmetadata', () => { if (media.currentTime > 0) media.currentTime = 0; }, { once: true });
  }
  if (media.canPlayType(HLS_TYPE)) {
    media.addEventListener('error', () => onError('This video could not be played. Please reload the page.'));
    media.src = master;
    renditions = await listed;
    return Object.defineProperties({
      mode: 'native',
      onScreen,
      select: (index) => switchNative(media, index < 0 ? master : new URL(renditions[index].playlist, master).href),
      destroy: () => { media.removeAttribute('src'); media.load(); },
    }, Object.getOwnPropertyDescriptors(rungs));
  }

  const Hls = await loadHlsJs();
  if (!Hls || !Hls.isSupported()) {
    onError('This browser can’t play this video. A recent Firefox, Chrome, Edge or Safari can.');
    return null;
  }
  const hls = new Hls(growing ? { startPosition: 0 } : {});
  hls.on(Hls.Events.ERROR, (_event, data) => {
    if (!data.fatal) return;
    // The two recoverable cases per the hls.js docs; anything else is final.
    if (data.type === Hls.ErrorTypes.NETWORK_ERROR) hls.startLoad();
    else if (data.type === Hls.ErrorTypes.MEDIA_ERROR) hls.recoverMediaError();
    else onError('Playback failed. Please reload the page.');
  });
  hls.loadSource(master);
  hls.attachMedia(media);
  renditions = await listed;
  return Object.defineProperties({
    mode: 'hls.js',
    onScreen,
    // currentLevel switches now (flushing the buffer), so the choice shows at once.
    select: (index) => { hls.currentLevel = index < 0 ? -1 : levelOf(hls, renditions[index]); },
    destroy: () => hls.destroy(),
  }, Object.getOwnPropertyDescriptors(rungs));
}

/** hls.js drops levels it cannot decode, so its indices are matched by size, then bit rate. */
function levelOf(hls, rendition) {
  const bySize = hls.levels.findIndex((l) => l.width === rendition.width && l.height === rendition.height);
  if (bySize >= 0) return bySize;
  return hls.levels.findIndex((l) => l.bitrate === rendition.bandwidth);
}

/** Native HLS has no level API: play another playlist from the same time instead. */
function switchNative(media, url) {
  if (media.currentSrc === url) return;
  const time = media.currentTime;
  const resume = !media.paused;
  media.src = url;
  // currentTime can only be restored once the new source knows its duration.
  media.addEventListener('loadedmetadata', () => {
    if (time) media.currentTime = time;
    if (resume) media.play().catch(() => {});
  }, { once: true });
}
