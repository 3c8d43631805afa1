// Two API nodes and a worker on one PostgreSQL, behind the project's nginx config with an
// upstream of both: uploads and streams land on either node and still see each other's work.
// Needs the throwaway cluster scripts/test starts (REEL_TEST_POSTGRES_URL).

import assert from 'node:assert/strict';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';

import {
  createDatabase, getJson, listFiles, makeClip, readEvents, request, startNginx, startReel, tempDir, upload, waitForStatus,
} from './helpers.mjs';

const ADMIN_URL = process.env.REEL_TEST_POSTGRES_URL;

let work;
let nodes = [];
let worker;
let edge;
let clip;
let longClip;

before(async () => {
  assert.ok(ADMIN_URL, 'REEL_TEST_POSTGRES_URL is set by scripts/test (scripts/pg-cluster start)');
  work = tempDir('scale-out');
  clip = makeClip(work, { seconds: 3 });
  longClip = makeClip(work, { seconds: 20, name: 'long.mp4' });
  const mediaDir = path.join(work, 'media');
  const database = createDatabase(ADMIN_URL, `edge_${process.pid}_${Date.now()}`);
  const shared = ['--database-url', database, '--lease-secs', '5'];
  nodes = [
    await startReel({ mediaDir, encoders: 0, extraArgs: shared }),
    await startReel({ mediaDir, encoders: 0, extraArgs: shared }),
  ];
  worker = await startReel({ mediaDir, role: 'work', preset: 'medium', extraArgs: shared });
  const servers = nodes.map((n) => `    server 127.0.0.1:${n.port};`).join('\n');
  edge = await startNginx({
    upstream: 'reel_api',
    mediaDir,
    extraConf: `upstream reel_api {\n${servers}\n    keepalive 8;\n}`,
  });
});

after(async () => {
  await edge?.stop();
  await worker?.stop();
  for (const node of nodes) await node.stop();
});

test('uploads through nginx land on both nodes, and either node streams the other\'s job to ready', { timeout: 120_000 }, async () => {
  const videos = [];
  for (let i = 0; i < 4; i += 1) videos.push(await upload(edge.url, clip));
  // Round robin: both API nodes took uploads.
  const accepted = await Promise.all(nodes.map(async (n) => {
    const text = await (await fetch(`${n.url}/metrics`)).text();
    return /reel_uploads_total\{outcome="accepted"\} (\d+)/.exec(text)?.[1] ?? '0';
  }));
  assert.ok(accepted.every((n) => Number(n) > 0), `both nodes took uploads: ${accepted}`);
  for (const [i, video] of videos.entries()) {
    // Follow each job on a node chosen regardless of where it was uploaded.
    const stream = await readEvents(`${nodes[i % 2].url}${video.links.events}`);
    const names = stream.events.map((e) => e.event);
    assert.equal(names[0], 'snapshot');
    assert.equal(names.at(-1), 'ready', names.join(','));
    assert.equal(names.filter((n) => n === 'ready').length, 1);
  }
  for (const video of videos) {
    const master = await request(`${edge.url}/hls/${video.id}/master.m3u8`);
    assert.equal(master.status, 200, 'nginx serves the ladder from the shared volume');
  }
});

test('a delete through nginx stops the worker\'s ffmpeg and both nodes\' subscribers get canceled', { timeout: 120_000 }, async () => {
  const video = await upload(edge.url, longClip);
  const streams = nodes.map((n) => readEvents(`${n.url}${video.links.events}`));
  // Wait until the worker encodes it.
  const deadline = Date.now() + 30_000;
  for (;;) {
    const current = await getJson(`${edge.url}${video.links.self}`);
    if (current.status === 'processing' && current.step === 'encoding') break;
    assert.ok(Date.now() < deadline, `never encoding: ${current.status}`);
    await sleep(100);
  }
  const asked = Date.now();
  const deleted = await request(`${edge.url}${video.links.self}`, { method: 'DELETE' });
  assert.equal(deleted.status, 204);
  assert.ok(Date.now() - asked < 5000, `answered in ${Date.now() - asked} ms`);
  for (const stream of await Promise.all(streams)) {
    assert.equal(stream.events.at(-1).event, 'canceled', stream.events.map((e) => e.event).join(','));
  }
  const gone = await request(`${edge.url}${video.links.self}`);
  assert.equal(gone.status, 404);
  const left = listFiles(path.join(work, 'media')).filter((f) => f.includes(video.id));
  assert.deepEqual(left, [], 'no file of the deleted video is left');
  // The next job still runs: the worker is fine.
  const next = await waitForStatus(edge.url, await upload(edge.url, clip));
  assert.equal(next.status, 'ready');
});
