// Resumable uploads with two tus clients written by others: tus-js-client (npm) and tuspy
// (PyPI, with sha1 checksums), straight to reel and through the project's nginx, and
// tus-js-client through a proxy that cuts its connection mid-upload. Each upload must become
// a video whose source is the file, byte for byte.

import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, test } from 'node:test';

import { REPO, getJson, makeClip, request, startNginx, startReel, tempDir, waitForStatus } from './helpers.mjs';
import { makeBigClip, sameSource, startProxy, tusUpload, videoId } from './tus-helpers.mjs';

const PYTHON = process.env.REEL_PYTHON || path.join(REPO, '.venv', 'bin', 'python');

let work;
let reel;
let edge;
let clip;
let big;

before(async () => {
  work = tempDir('tus');
  clip = makeClip(work, { seconds: 3 });
  big = makeBigClip(work, { mib: 4, seconds: 4 });
  reel = await startReel({ mediaDir: path.join(work, 'media') });
  edge = await startNginx({ upstream: `127.0.0.1:${reel.port}`, mediaDir: reel.mediaDir });
});

after(async () => {
  await edge?.stop();
  await reel?.stop();
});

/** Waits for the video an upload became and checks it against the file. */
async function becameTheFile(video, file, title) {
  assert.ok(video, 'the last answer names the video (X-Reel-Video)');
  const done = await waitForStatus(reel.url, await getJson(`${reel.url}${video}`));
  assert.equal(done.status, 'ready', JSON.stringify(done.error));
  assert.equal(done.title, title);
  assert.equal(done.filename, path.basename(file));
  assert.ok(sameSource(reel.mediaDir, videoId(video), file), 'the source is the file, byte for byte');
}

test('OPTIONS, creation and HEAD pass through nginx with their tus headers', async () => {
  const options = await request(`${edge.url}/api/v1/uploads`, { method: 'OPTIONS' });
  assert.equal(options.status, 204);
  assert.equal(options.headers['tus-version'], '1.0.0');
  assert.equal(options.headers['tus-max-size'], String(50 * 1024 * 1024));
  assert.match(options.headers['tus-extension'], /creation-with-upload/);
  const created = await request(`${edge.url}/api/v1/uploads`, {
    method: 'POST', headers: { 'Tus-Resumable': '1.0.0', 'Upload-Length': '1000' },
  });
  assert.equal(created.status, 201);
  assert.match(created.headers.location, /^\/api\/v1\/uploads\/[0-9a-f-]{36}$/);
  const head = await request(`${edge.url}${created.headers.location}`, { method: 'HEAD', headers: { 'Tus-Resumable': '1.0.0' } });
  assert.equal(head.status, 200);
  assert.equal(head.headers['upload-offset'], '0');
  assert.equal(head.headers['upload-length'], '1000');
  // Over the limit, nginx refuses the PATCH itself, in reel's error shape.
  const tooBig = await request(`${edge.url}/api/v1/uploads/${'0'.repeat(8)}-0000-7000-8000-000000000000`, {
    method: 'PATCH',
    headers: { 'Tus-Resumable': '1.0.0', 'Upload-Offset': '0', 'Content-Type': 'application/offset+octet-stream', 'Content-Length': String(60 * 1024 * 1024) },
  }).catch((err) => ({ status: 0, err }));
  assert.ok([0, 413].includes(tooBig.status), `status ${tooBig.status}`);
});

for (const [where, base, chunkSize] of [['straight to reel', () => reel.url, undefined], ['through nginx, in 256 KiB chunks', () => edge.url, 256 * 1024]]) {
  test(`tus-js-client uploads ${where}`, { timeout: 90_000 }, async () => {
    const title = `tus-js-client ${where}`;
    const { video } = await tusUpload(base(), clip, { chunkSize, metadata: { title } });
    await becameTheFile(video, clip, title);
  });

  test(`tuspy uploads ${where}, with sha1 checksums`, { timeout: 90_000 }, async () => {
    assert.ok(fs.existsSync(PYTHON), `${PYTHON} is missing: run scripts/install-deps test`);
    const title = `tuspy ${where}`;
    const result = spawnSync(PYTHON, [path.join(REPO, 'tests', 'edge', 'tus_upload.py'),
      `${base()}/api/v1/uploads`, clip, String(chunkSize ?? 200 * 1024), title], { encoding: 'utf8', timeout: 60_000 });
    assert.equal(result.status, 0, result.stderr);
    const { offset, video } = JSON.parse(result.stdout);
    assert.equal(offset, fs.statSync(clip).size);
    await becameTheFile(video, clip, title);
  });
}

test('tus-js-client resumes through a connection cut twice mid-upload, through nginx', { timeout: 90_000 }, async () => {
  const proxy = await startProxy(`127.0.0.1:${edge.port}`, { cutAfter: 1024 * 1024, cuts: 2 });
  try {
    const retries = [];
    const { video } = await tusUpload(proxy.url, big, {
      metadata: { title: 'Cut twice' },
      onRetry: (err) => retries.push(err.message),
    });
    assert.equal(proxy.stats.cuts, 2);
    assert.ok(retries.length >= 2, `retried after each cut: ${retries}`);
    const size = fs.statSync(big).size;
    assert.ok(proxy.stats.bytesUp < size * 1.2, `resumed, never started over: ${proxy.stats.bytesUp} bytes for ${size}`);
    await becameTheFile(video, big, 'Cut twice');
  } finally {
    await proxy.close();
  }
});
