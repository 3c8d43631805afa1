// nginx's bucket variant (nginx/reel-bucket.conf.template) in front of a reel whose media is
// in a real S3-compatible server (moto, installed by scripts/install-deps test): /hls/ goes
// through the cache (a miss, then hits, Range answered from the cache), source downloads are
// streamed with Range, and a delete leaves the bucket empty.

import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, test } from 'node:test';

import { bucketFlags, bucketKeys as keysIn, createBucket, startMoto } from './bucket-helpers.mjs';
import {
  REPO, makeClip, request, startNginx, startReel, stopProcess, tempDir, upload, waitForStatus,
} from './helpers.mjs';

const BUCKET = 'edge-bucket';

let work;
let s3;
let endpoint;
let reel;
let edge;
let clip;

const bucketKeys = () => keysIn(endpoint, BUCKET);

before(async () => {
  work = tempDir('bucket-edge');
  clip = makeClip(work, { seconds: 4 });
  s3 = await startMoto(work);
  endpoint = s3.url;
  await createBucket(endpoint, BUCKET);
  reel = await startReel({
    mediaDir: path.join(work, 'media'),
    // Asked for, and left aside for a bucket: nginx has no route to it.
    accelRedirect: true,
    extraArgs: bucketFlags(endpoint, BUCKET, 'edge'),
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

test('HLS comes through the cache, downloads stream with Range, a delete empties the bucket', async () => {
  const video = await waitForStatus(edge.url, await upload(edge.url, clip));
  assert.equal(video.status, 'ready', JSON.stringify(video.error));

  const master = await request(`${edge.url}/hls/${video.id}/master.m3u8`);
  assert.equal(master.status, 200);
  assert.equal(master.headers['x-cache-status'], 'MISS');
  assert.equal(master.headers['cache-control'], 'public, max-age=10');
  const again = await request(`${edge.url}/hls/${video.id}/master.m3u8`);
  assert.equal(again.headers['x-cache-status'], 'HIT');
  assert.deepEqual(again.body, master.body);

  const rung = master.body.toString().split('\n').find((l) => l && !l.startsWith('#'));
  const rungDir = path.posix.dirname(rung);
  const playlist = await request(`${edge.url}/hls/${video.id}/${rung}`);
  assert.equal(playlist.status, 200);
  const segment = playlist.body.toString().split('\n').find((l) => l.endsWith('.m4s'));
  const url = `${edge.url}/hls/${video.id}/${rungDir}/${segment}`;
  const first = await request(url);
  assert.equal(first.status, 200);
  assert.equal(first.headers['x-cache-status'], 'MISS');
  assert.equal(first.headers['cache-control'], 'public, max-age=31536000, immutable');
  const hit = await request(url);
  assert.equal(hit.headers['x-cache-status'], 'HIT');
  assert.deepEqual(hit.body, first.body);
  const ranged = await request(url, { headers: { Range: 'bytes=0-99' } });
  assert.equal(ranged.status, 206);
  assert.equal(ranged.headers['x-cache-status'], 'HIT');
  assert.deepEqual(ranged.body, first.body.subarray(0, 100));
  assert.equal((await request(`${edge.url}/hls/${video.id}/no-such.m4s`)).status, 404);

  const original = fs.readFileSync(clip);
  const source = await request(`${edge.url}/api/v1/videos/${video.id}/source`, { headers: { Range: 'bytes=10-109' } });
  assert.equal(source.status, 206);
  assert.equal(source.headers['x-accel-redirect'], undefined);
  assert.deepEqual(source.body, original.subarray(10, 110));
  const whole = await request(`${edge.url}/api/v1/videos/${video.id}/source`);
  assert.deepEqual(whole.body, original);

  assert.ok((await bucketKeys()).includes(`edge/sources/${video.id}`));
  const deleted = await request(`${edge.url}/api/v1/videos/${video.id}`, { method: 'DELETE' });
  assert.equal(deleted.status, 204);
  assert.deepEqual(await bucketKeys(), []);
});
