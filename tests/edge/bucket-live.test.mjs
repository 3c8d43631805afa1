// Watch while it encodes, with media in a bucket, behind nginx's bucket variant
// (nginx/reel-bucket.conf.template): while a 40 s upload encodes, the growing ladder's
// playlists come through the edge `no-cache` and are never kept in its cache (every request
// reaches reel, so a player sees each new segment), its segments are immutable and cached;
// once ready, the finished playlists are cached as usual, and a delete empties the bucket.

import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';

import { bucketFlags, bucketKeys, createBucket, startMoto } from './bucket-helpers.mjs';
import {
  REPO, getJson, makeClip, request, startNginx, startReel, stopProcess, tempDir, upload, waitForStatus,
} from './helpers.mjs';

const BUCKET = 'edge-live';

let work;
let s3;
let reel;
let edge;
let clip;

before(async () => {
  work = tempDir('bucket-live-edge');
  clip = makeClip(work, { seconds: 40, name: 'long-walk.mp4' });
  s3 = await startMoto(work);
  await createBucket(s3.url, BUCKET);
  // A slower preset than the specs' default, so the ladder is still encoding while we look.
  reel = await startReel({
    mediaDir: path.join(work, 'media'),
    preset: 'medium',
    extraArgs: [...bucketFlags(s3.url, BUCKET, 'live'), '--segment-seconds', '2'],
  });
  process.env.REEL_NGINX_TEMPLATE = path.join(REPO, 'nginx', 'reel-bucket.conf.template');
  const cache = path.join(work, 'cache');
  fs.mkdirSync(cache);
  edge = await startNginx({
    upstream: `127.0.0.1:${reel.port}`,
    mediaDir: reel.mediaDir,
    vars: { NGINX_CACHE_DIR: cache, NGINX_CACHE_MAX_SIZE: '100m' },
  });
});

after(async () => {
  await edge?.stop();
  await reel?.stop();
  if (s3) await stopProcess(s3.child, 'SIGTERM', 3000);
});

async function waitPlayable(video, timeoutMs = 90_000) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const current = await getJson(`${edge.url}${video.links.self}`);
    if (current.playable_at) return current;
    assert.ok(Date.now() < deadline, `never playable: ${JSON.stringify(current)}`);
    await sleep(200);
  }
}

const segments = (text) => text.split('\n').filter((l) => l.endsWith('.m4s'));

test('a growing ladder in a bucket is never cached at the edge; its segments are', async () => {
  const video = await upload(edge.url, clip);
  const playable = await waitPlayable(video);
  assert.equal(playable.status, 'processing');

  const masterUrl = `${edge.url}/hls/${video.id}/master.m3u8`;
  const master = await request(masterUrl);
  assert.equal(master.status, 200);
  assert.equal(master.headers['cache-control'], 'no-cache');
  assert.equal(master.headers['x-cache-status'], 'MISS');
  const rung = master.body.toString().split('\n').find((l) => l && !l.startsWith('#'));
  const rungUrl = `${edge.url}/hls/${video.id}/${rung}`;
  const first = await request(rungUrl);
  assert.equal(first.status, 200);
  assert.match(first.body.toString(), /#EXT-X-PLAYLIST-TYPE:EVENT/);
  assert.doesNotMatch(first.body.toString(), /#EXT-X-ENDLIST/);
  assert.equal(first.headers['cache-control'], 'no-cache');
  // Asked again, both come from reel again (a cached copy would be a HIT).
  assert.equal((await request(masterUrl)).headers['x-cache-status'], 'MISS');
  assert.equal((await request(rungUrl)).headers['x-cache-status'], 'MISS');

  const segment = `${edge.url}/hls/${video.id}/${path.posix.dirname(rung)}/${segments(first.body.toString())[0]}`;
  const cold = await request(segment);
  assert.equal(cold.status, 200);
  assert.match(cold.headers['cache-control'], /immutable/);
  assert.equal((await request(segment)).headers['x-cache-status'], 'HIT');

  // The playlist grows through the edge while it encodes.
  const deadline = Date.now() + 60_000;
  let later = first;
  while (segments(later.body.toString()).length <= segments(first.body.toString()).length) {
    assert.ok(Date.now() < deadline, 'the rung playlist grew through the edge');
    await sleep(500);
    later = await request(rungUrl);
  }
  assert.equal((await getJson(`${edge.url}${video.links.self}`)).status, 'processing', 'looked while it encoded');

  const ready = await waitForStatus(edge.url, video, 240_000);
  assert.equal(ready.status, 'ready', JSON.stringify(ready.error));
  const done = await request(rungUrl);
  assert.match(done.body.toString(), /#EXT-X-ENDLIST/);
  assert.equal(done.headers['cache-control'], 'public, max-age=10');
  assert.equal((await request(rungUrl)).headers['x-cache-status'], 'HIT');
  const finished = await request(masterUrl);
  assert.equal(finished.headers['cache-control'], 'public, max-age=10');
  assert.ok(!(await bucketKeys(s3.url, BUCKET)).some((k) => k.endsWith('/.growing')), 'no marker left');

  const deleted = await request(`${edge.url}/api/v1/videos/${video.id}`, { method: 'DELETE' });
  assert.equal(deleted.status, 204);
  assert.deepEqual(await bucketKeys(s3.url, BUCKET), []);
});
