// Private videos through the project's nginx config: nginx checks the signed link itself
// (secure_link, the same signature reel makes) and passes the signature on in playlists, so
// a player (ffmpeg here) follows the whole ladder; unsigned, tampered and expired links get 403.

import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, test } from 'node:test';

import {
  PLAYBACK_SECRET, makeClip, request, startNginx, startReel, tempDir, waitForStatus,
} from './helpers.mjs';

let work;
let reel;
let edge;
let video;

/** The signature reel makes (src/auth/playback.rs) and nginx's secure_link checks. */
function sign(id, exp) {
  return crypto.createHash('md5').update(`${exp}/hls/${id}/ ${PLAYBACK_SECRET}`).digest('base64url');
}

before(async () => {
  work = tempDir('private');
  const clip = makeClip(work, { seconds: 3 });
  reel = await startReel({ mediaDir: path.join(work, 'media') });
  edge = await startNginx({ upstream: `127.0.0.1:${reel.port}`, mediaDir: reel.mediaDir });
  const res = await fetch(`${reel.url}/api/v1/videos`, {
    method: 'POST',
    headers: { 'Content-Type': 'video/mp4', 'X-Visibility': 'private' },
    body: fs.readFileSync(clip),
  });
  assert.equal(res.status, 202, await res.clone().text());
  video = await waitForStatus(reel.url, await res.json());
  assert.equal(video.status, 'ready');
  assert.equal(video.visibility, 'private');
});

after(async () => {
  await edge?.stop();
  await reel?.stop();
});

test('nginx refuses a private ladder without a valid signed link', async () => {
  const id = video.id;
  const unsigned = await request(`${edge.url}/hls/${id}/master.m3u8`);
  assert.equal(unsigned.status, 403);
  assert.match(JSON.parse(unsigned.body.toString()).error.code, /^forbidden$/);
  const expired = 1000;
  const old = await request(`${edge.url}/hls/${id}/master.m3u8?exp=${expired}&sig=${sign(id, expired)}`);
  assert.equal(old.status, 403, 'an expired link');
  const exp = Math.floor(Date.now() / 1000) + 600;
  const forged = await request(`${edge.url}/hls/${id}/master.m3u8?exp=${exp}&sig=${sign('01a22d47-b58a-70f7-b7c6-c05a8e65a8e8', exp)}`);
  assert.equal(forged.status, 403, "another video's signature");
  const marker = await request(`${edge.url}/hls/${id}/.private`);
  assert.notEqual(marker.status, 200, 'the marker itself is never served');
});

test('a signed link plays through nginx: every playlist passes the signature on', async () => {
  const id = video.id;
  const link = video.links.playlist;
  const query = link.split('?')[1];
  const master = await request(`${edge.url}${link}`);
  assert.equal(master.status, 200);
  assert.match(master.headers['cache-control'], /private/);
  const variant = master.body.toString().split('\n').find((l) => l && !l.startsWith('#'));
  assert.ok(variant.endsWith(`?${query}`), variant);
  const media = await request(`${edge.url}/hls/${id}/${variant}`);
  assert.equal(media.status, 200);
  const text = media.body.toString();
  const map = /URI="([^"]+)"/.exec(text)?.[1] ?? '';
  assert.ok(map.endsWith(`?${query}`), `EXT-X-MAP carries the signature: ${map}`);
  const segment = text.split('\n').find((l) => l && !l.startsWith('#'));
  const rung = variant.split('/')[0];
  assert.equal((await request(`${edge.url}/hls/${id}/${rung}/${segment}`)).status, 200);
  assert.equal((await request(`${edge.url}/hls/${id}/${rung}/${segment.split('?')[0]}`)).status, 403);
  // A real player: ffmpeg reads the whole ladder through nginx from the signed master.
  const played = spawnSync('ffmpeg', ['-v', 'error', '-nostdin', '-i', `${edge.url}${link}`, '-map', '0:v:0', '-f', 'null', '-'], { encoding: 'utf8', timeout: 60_000 });
  assert.equal(played.status, 0, played.stderr);
});
