// Issue 9, the timeline kinds, as a viewer meets them: hls.js (the page's copy) in the real
// headless Chromium plays each ladder, served by nginx, past the point where it used to stall.
//
// Before the fix, with hls.js 1.7 and Debian's Chromium: 3 s of audio under 12 s of video
// stalled at 2.9 s (bufferStalledError); an audio track with no samples never started; a WebM
// without a declared length never became ready. Audio starting 2 s late and 20 s of audio over
// 2 s of video played here even then (the issue saw a stall at 4 s for the first; the ladder
// checks of the API specs catch both).
//
// The audio is one rendition of the master's EXT-X-MEDIA audio group, shared by video-only
// rungs: each clip with audio shows hls.js one audio track that decodes, and a two-rung ladder
// plays each rung, locked, with that sound.

import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { after, before, test } from 'node:test';

import { chromium } from 'playwright-core';

import { ensureVendor, startNginx, startReel, tempDir, upload, waitForStatus } from './helpers.mjs';

const CHROMIUM = process.env.CHROMIUM_BIN || '/usr/bin/chromium';

let work;
let reel;
let edge;
let browser;

/** Runs ffmpeg with `args` into `work/name`; returns the path. */
function ffmpeg(name, args) {
  const out = path.join(work, name);
  const result = spawnSync('ffmpeg', ['-v', 'error', '-nostdin', '-y', ...args, out], { encoding: 'utf8' });
  if (result.status !== 0) throw new Error(`ffmpeg ${name}: ${result.stderr || result.error}`);
  return out;
}

const L = ['-f', 'lavfi', '-i'];
const CODECS = ['-c:v', 'libx264', '-preset', 'ultrafast', '-c:a', 'aac'];

// Each clip, with the playback position hls.js must pass and the clip's length.
const CLIPS = [
  {
    name: 'late-audio.mp4', passes: 5, lasts: 6, audio: true,
    args: [...L, 'testsrc2=size=320x240', '-itsoffset', '2', ...L, 'sine=duration=4', '-t', '6', ...CODECS],
  },
  {
    name: 'short-audio.mp4', passes: 8, lasts: 12, audio: true,
    args: [...L, 'testsrc2=size=320x240:duration=12', ...L, 'sine=duration=3', ...CODECS],
  },
  {
    name: 'empty-audio.mp4', passes: 3, lasts: 5, audio: false,
    args: [...L, 'testsrc2=size=320x240', ...L, 'sine', '-filter_complex', '[1:a]atrim=end=0.0001[a]',
      '-map', '0:v', '-map', '[a]', '-t', '5', ...CODECS],
  },
  {
    // Length unknown: MediaRecorder-style WebM (the job used to fail "may be truncated").
    name: 'recorded.webm', passes: 3.5, lasts: 5, audio: true,
    args: [...L, 'testsrc2=size=320x240:rate=30', ...L, 'sine=sample_rate=48000', '-t', '5', '-c:v', 'libvpx',
      '-b:v', '1M', '-deadline', 'realtime', '-c:a', 'libopus', '-live', '1', '-f', 'webm'],
  },
  {
    name: 'long-audio.mp4', passes: 8, lasts: 20, audio: true,
    args: [...L, 'testsrc2=size=320x240:duration=2', ...L, 'sine=duration=20', ...CODECS],
  },
];

before(async () => {
  ensureVendor();
  work = tempDir('timeline-test');
  for (const clip of CLIPS) clip.file = ffmpeg(clip.name, clip.args);
  reel = await startReel({ mediaDir: path.join(work, 'media') });
  edge = await startNginx({ upstream: `127.0.0.1:${reel.port}`, mediaDir: reel.mediaDir });
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: [
      '--headless', '--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking',
      '--disable-component-update', '--disable-sync', '--disable-quic', '--autoplay-policy=no-user-gesture-required',
    ],
    timeout: 30_000,
  });
  // Every clip is queued at once; the tests below wait for theirs.
  for (const clip of CLIPS) clip.video = await upload(reel.url, clip.file);
});

after(async () => {
  await browser?.close().catch(() => {});
  await edge?.stop();
  await reel?.stop();
});

/**
 * Plays `/hls/{id}/master.m3u8` with the page's hls.js at double speed until `passes` seconds,
 * or until `deadlineMs` of wall time; resolves what happened.
 */
async function play(id, passes, deadlineMs) {
  const context = await browser.newContext();
  const page = await context.newPage();
  const problems = [];
  page.on('pageerror', (err) => problems.push(`page error: ${err.message}`));
  await page.goto(`${edge.url}/`, { waitUntil: 'load' });
  // The page loads hls.js only where the browser has no HLS of its own: load the page's copy.
  if (!(await page.evaluate(() => Boolean(window.Hls)))) {
    await page.addScriptTag({ url: '/vendor/hls.min.js' });
  }
  const outcome = await page.evaluate(async ({ src, passes, deadlineMs }) => {
    if (!window.Hls || !window.Hls.isSupported()) return { error: 'hls.js is not supported here' };
    const video = document.createElement('video');
    video.muted = true;
    document.body.append(video);
    const hls = new window.Hls();
    const errors = [];
    hls.on(window.Hls.Events.ERROR, (_, data) => errors.push(`${data.fatal ? 'fatal ' : ''}${data.details}`));
    hls.loadSource(src);
    hls.attachMedia(video);
    await new Promise((resolve) => hls.on(window.Hls.Events.MANIFEST_PARSED, resolve));
    video.playbackRate = 2;
    const played = await video.play().then(() => 'playing', (err) => `play() rejected: ${err.message}`);
    const started = performance.now();
    while (video.currentTime < passes && !video.ended && performance.now() - started < deadlineMs) {
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    const buffered = [];
    for (let i = 0; i < video.buffered.length; i += 1) {
      buffered.push([video.buffered.start(i).toFixed(2), video.buffered.end(i).toFixed(2)]);
    }
    return {
      played, currentTime: video.currentTime, ended: video.ended, duration: video.duration,
      buffered, errors, audioTracks: hls.audioTracks.length, levels: hls.levels.length,
      audioBytes: video.webkitAudioDecodedByteCount,
    };
  }, { src: `/hls/${id}/master.m3u8`, passes, deadlineMs });
  await context.close();
  return { ...outcome, problems };
}

for (const clip of CLIPS) {
  test(`hls.js plays ${clip.name} past ${clip.passes} s of ${clip.lasts} s`, { timeout: 120_000 }, async (t) => {
    const video = await waitForStatus(reel.url, clip.video, 90_000);
    assert.equal(video.status, 'ready', JSON.stringify(video.error));
    assert.ok(Math.abs(video.source.duration - clip.lasts) < 0.3, `source.duration ${video.source.duration}`);
    const outcome = await play(video.id, clip.passes, 25_000);
    t.diagnostic(JSON.stringify(outcome));
    assert.equal(outcome.played, 'playing');
    assert.ok(
      outcome.currentTime >= clip.passes,
      `playback stopped at ${outcome.currentTime.toFixed(2)} s (buffered ${JSON.stringify(outcome.buffered)}, errors ${outcome.errors.join(', ')})`,
    );
    assert.ok(Math.abs(outcome.duration - clip.lasts) < 0.5, `the player sees ${outcome.duration} s`);
    assert.deepEqual(outcome.errors.filter((e) => e.startsWith('fatal')), []);
    assert.deepEqual(outcome.problems, []);
    // The audio is one rendition of the master's audio group, and it plays.
    assert.equal(outcome.audioTracks, clip.audio ? 1 : 0, 'audio renditions');
    if (clip.audio) assert.ok(outcome.audioBytes > 0, 'audio was decoded');
  });
}

test('hls.js plays every rung of a ladder with the one audio rendition', { timeout: 120_000 }, async (t) => {
  const file = ffmpeg('two-rungs.mp4', [...L, 'testsrc2=size=640x360:rate=30:duration=6', ...L, 'sine=duration=6', ...CODECS]);
  const video = await waitForStatus(reel.url, await upload(reel.url, file), 90_000);
  assert.equal(video.status, 'ready', JSON.stringify(video.error));
  assert.equal(video.renditions.length, 2);
  const context = await browser.newContext();
  const page = await context.newPage();
  await page.goto(`${edge.url}/`, { waitUntil: 'load' });
  if (!(await page.evaluate(() => Boolean(window.Hls)))) await page.addScriptTag({ url: '/vendor/hls.min.js' });
  const rungs = await page.evaluate(async (src) => {
    const out = [];
    for (let level = 0; level < 2; level += 1) {
      const media = document.createElement('video');
      media.muted = true;
      document.body.append(media);
      const hls = new window.Hls({ startLevel: level, capLevelToPlayerSize: false });
      const errors = [];
      hls.on(window.Hls.Events.ERROR, (_, data) => errors.push(`${data.fatal ? 'fatal ' : ''}${data.details}`));
      hls.loadSource(src);
      hls.attachMedia(media);
      await new Promise((resolve) => hls.on(window.Hls.Events.MANIFEST_PARSED, resolve));
      hls.currentLevel = level; // no automatic switching
      const played = await media.play().then(() => 'playing', (err) => err.message);
      const started = performance.now();
      while (media.currentTime < 2 && performance.now() - started < 15_000) await new Promise((r) => setTimeout(r, 100));
      out.push({
        level, played, currentTime: media.currentTime, height: media.videoHeight, levelHeight: hls.levels[level].height,
        audioTracks: hls.audioTracks.length, audioBytes: media.webkitAudioDecodedByteCount,
        audioCodec: hls.levels[level].audioCodec, errors,
      });
      hls.destroy();
      media.remove();
    }
    return out;
  }, `/hls/${video.id}/master.m3u8`);
  await context.close();
  t.diagnostic(JSON.stringify(rungs));
  for (const rung of rungs) {
    assert.equal(rung.played, 'playing');
    assert.ok(rung.currentTime >= 2, `level ${rung.level} stopped at ${rung.currentTime}`);
    assert.equal(rung.height, rung.levelHeight, `level ${rung.level} is on screen`);
    assert.equal(rung.audioTracks, 1);
    assert.match(rung.audioCodec || '', /^mp4a\.40\.2$/);
    assert.ok(rung.audioBytes > 0, `level ${rung.level} plays with sound`);
    assert.deepEqual(rung.errors.filter((e) => e.startsWith('fatal')), []);
  }
  assert.deepEqual(rungs.map((r) => r.height), [240, 360]);
});
