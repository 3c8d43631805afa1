// Shared by the edge specs of nginx's bucket variant (nginx/reel-bucket.conf.template): a real
// S3-compatible server (moto's server mode, installed by scripts/install-deps test) on a free
// port, a bucket on it, and what the bucket holds, read straight from it.

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';

import { REPO } from './helpers.mjs';

// moto checks no signature but refuses private objects to requests without one.
export const AUTH = 'AWS4-HMAC-SHA256 Credential=edge/20260101/us-east-1/s3/aws4_request, SignedHeaders=host, Signature=0';

/** Starts moto_server on a free port, logging into `dir`; resolves to `{ child, url }`. */
export async function startMoto(dir) {
  const bin = process.env.REEL_TEST_MOTO_SERVER || path.join(REPO, 'target', 'moto', 'bin', 'moto_server');
  if (!fs.existsSync(bin)) throw new Error(`${bin} is missing: run scripts/install-deps test`);
  const log = path.join(dir, 'moto.log');
  const fd = fs.openSync(log, 'a');
  const child = spawn(bin, ['-H', '127.0.0.1', '-p', '0'], { stdio: ['ignore', fd, fd], detached: true });
  fs.closeSync(fd);
  const deadline = Date.now() + 30_000;
  for (;;) {
    const found = fs.readFileSync(log, 'utf8').match(/Running on (http:\/\/127\.0\.0\.1:\d+)/);
    if (found) return { child, url: found[1] };
    if (child.exitCode !== null || Date.now() > deadline) throw new Error(`moto_server did not start:\n${fs.readFileSync(log, 'utf8')}`);
    await sleep(50);
  }
}

/** Creates `bucket` on the server at `endpoint`. */
export async function createBucket(endpoint, bucket) {
  const made = await fetch(`${endpoint}/${bucket}`, { method: 'PUT', headers: { Authorization: AUTH } });
  assert.equal(made.status, 200);
}

/** Every key in `bucket` (one listing page: the specs store far fewer than 1000). */
export async function bucketKeys(endpoint, bucket) {
  const res = await fetch(`${endpoint}/${bucket}?list-type=2`, { headers: { Authorization: AUTH } });
  assert.equal(res.status, 200);
  return [...(await res.text()).matchAll(/<Key>([^<]*)<\/Key>/g)].map((m) => m[1]);
}

/** The flags that put reel's media in `s3://bucket/prefix` on the server at `endpoint`. */
export function bucketFlags(endpoint, bucket, prefix) {
  return [
    '--storage', `s3://${bucket}/${prefix}`, '--s3-endpoint', endpoint, '--s3-timeout-secs', '5',
    '--lease-secs', '30', '--aws-access-key-id', 'edge', '--aws-secret-access-key', 'edge-secret',
  ];
}
