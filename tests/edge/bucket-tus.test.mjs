// Resumable uploads across two API nodes that share only a bucket (moto) and PostgreSQL, behind
// the project's nginx with an upstream of both: round robin, no sticky routing. tus-js-client in
// 256 KiB chunks and tuspy with sha1 checksums send PATCHes that land on both nodes in turn; each
// upload's source in the bucket is the file byte for byte, its chunk objects are gone once it is
// filed, and neither node keeps a byte of it on its own disk. Needs the throwaway cluster
// scripts/test starts (REEL_TEST_POSTGRES_URL).

import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, test } from 'node:test';

import { AUTH, bucketFlags, bucketKeys, createBucket, startMoto } from './bucket-helpers.mjs';
import {
  REPO, createDatabase, getJson, listFiles, startNginx, startReel, stopProcess, tempDir, waitForStatus,
} from './helpers.mjs';
import { makeBigClip, tusUpload, videoId } from './tus-helpers.mjs';

const ADMIN_URL = process.env.REEL_TEST_POSTGRES_URL;
const PYTHON = process.env.REEL_PYTHON || path.join(REPO, '.venv', 'bin', 'python');
const BUCKET = 'edge-tus';
const PREFIX = 'nodes';
const PATCHED = /reel_http_request_duration_seconds_count\{[^}]*route="\/api\/v1\/uploads\/\{id\}"[^}]*\} (\d+)/g;

let work;
let s3;
let nodes = [];
let edge;
let clip;

before(async () => {
  assert.ok(ADMIN_URL, 'REEL_TEST_POSTGRES_URL is set by scripts/test (scripts/pg-cluster start)');
  work = tempDir('bucket-tus');
  clip = makeBigClip(work, { mib: 3, seconds: 3 });
  s3 = await startMoto(work);
  await createBucket(s3.url, BUCKET);
  const database = createDatabase(ADMIN_URL, `edge_tus_${process.pid}_${Date.now()}`);
  const shared = ['--database-url', database, ...bucketFlags(s3.url, BUCKET, PREFIX)];
  // Each node its own media dir; one of them also encodes.
  nodes = [
    await startReel({ mediaDir: path.join(work, 'media-a'), encoders: 1, extraArgs: shared }),
    await startReel({ mediaDir: path.join(work, 'media-b'), encoders: 0, extraArgs: shared }),
  ];
  const servers = nodes.map((n) => `    server 127.0.0.1:${n.port};`).join('\n');
  edge = await startNginx({
    upstream: 'reel_api',
    mediaDir: nodes[0].mediaDir,
    extraConf: `upstream reel_api {\n${servers}\n    keepalive 8;\n}`,
  });
});

after(async () => {
  await edge?.stop();
  for (const node of nodes) await node.stop();
  if (s3) await stopProcess(s3.child, 'SIGTERM', 3000);
});

/** PATCH (and other) requests on `/api/v1/uploads/{id}` a node has answered. */
async function uploadRequests(node) {
  const text = await (await fetch(`${node.url}/metrics`)).text();
  return [...text.matchAll(PATCHED)].reduce((sum, m) => sum + Number(m[1]), 0);
}

/** The video an upload became is ready, its source is the file, and nothing else is left. */
async function filedWhole(video, file, before) {
  assert.ok(video, 'the last answer names the video (X-Reel-Video)');
  const id = videoId(video);
  const done = await waitForStatus(edge.url, await getJson(`${edge.url}${video}`));
  assert.equal(done.status, 'ready', JSON.stringify(done.error));
  const source = await fetch(`${s3.url}/${BUCKET}/${PREFIX}/sources/${id}`, { headers: { Authorization: AUTH } });
  assert.equal(source.status, 200);
  assert.ok(Buffer.from(await source.arrayBuffer()).equals(fs.readFileSync(file)), 'the source is the file, byte for byte');
  const keys = await bucketKeys(s3.url, BUCKET);
  assert.deepEqual(keys.filter((k) => k.includes('/uploads/')), [], 'no chunk object is left once filed');
  for (const [i, node] of nodes.entries()) {
    assert.ok(await uploadRequests(node) > before[i], `node ${i} answered some of the upload's requests`);
    const partial = path.join(node.mediaDir, 'uploads');
    assert.deepEqual(fs.existsSync(partial) ? listFiles(partial) : [], [], `node ${i} keeps no partial file`);
  }
}

test('tus-js-client uploads through nginx in 256 KiB chunks, its PATCHes spread over both nodes', { timeout: 120_000 }, async () => {
  const before = await Promise.all(nodes.map(uploadRequests));
  const { video } = await tusUpload(edge.url, clip, { chunkSize: 256 * 1024, metadata: { title: 'two nodes' } });
  await filedWhole(video, clip, before);
});

test('tuspy uploads through nginx with sha1 checksums, its PATCHes spread over both nodes', { timeout: 120_000 }, async () => {
  assert.ok(fs.existsSync(PYTHON), `${PYTHON} is missing: run scripts/install-deps test`);
  const before = await Promise.all(nodes.map(uploadRequests));
  const result = spawnSync(PYTHON, [path.join(REPO, 'tests', 'edge', 'tus_upload.py'),
    `${edge.url}/api/v1/uploads`, clip, String(200 * 1024), 'tuspy on two nodes'], { encoding: 'utf8', timeout: 90_000 });
  assert.equal(result.status, 0, result.stderr);
  const { offset, video } = JSON.parse(result.stdout);
  assert.equal(offset, fs.statSync(clip).size);
  await filedWhole(video, clip, before);
});
