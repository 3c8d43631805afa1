// The proxy side of the edge: reel's address is re-resolved while nginx runs
// (a restarted app container with a new IP is found without a reload), an
// app that is down gets a JSON 503, and client-sent internal headers never
// reach the app while the app's own tell-tale headers never reach clients.

import assert from 'node:assert/strict';
import dgram from 'node:dgram';
import http from 'node:http';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';

import { freePort, makeClip, request, startNginx, startReel, tempDir, upload } from './helpers.mjs';

/**
 * A real (tiny) DNS server on the loopback: answers A queries from `records`, NXDOMAIN
 * for other names. It stands in for Docker's embedded DNS at 127.0.0.11.
 */
async function startDns(records) {
  const socket = dgram.createSocket('udp4');
  const queries = [];
  socket.on('message', (msg, peer) => {
    if (msg.length < 17) return;
    let offset = 12;
    const labels = [];
    while (offset < msg.length && msg[offset] !== 0) {
      const length = msg[offset];
      labels.push(msg.subarray(offset + 1, offset + 1 + length).toString('ascii'));
      offset += length + 1;
    }
    offset += 1;
    const type = msg.readUInt16BE(offset);
    offset += 4; // type, class
    const name = labels.join('.').toLowerCase();
    queries.push({ name, type, at: Date.now() });
    const address = records.get(name);
    const header = Buffer.alloc(12);
    msg.copy(header, 0, 0, 2); // id
    const recursionDesired = msg.readUInt16BE(2) & 0x0100;
    const rcode = address ? 0 : 3;
    header.writeUInt16BE(0x8000 | 0x0400 | recursionDesired | 0x0080 | rcode, 2);
    header.writeUInt16BE(1, 4);
    let answer = Buffer.alloc(0);
    if (address && type === 1) {
      answer = Buffer.alloc(16);
      answer.writeUInt16BE(0xc00c, 0); // name: pointer to the question
      answer.writeUInt16BE(1, 2); // A
      answer.writeUInt16BE(1, 4); // IN
      answer.writeUInt32BE(1, 6); // TTL 1 s
      answer.writeUInt16BE(4, 10);
      Buffer.from(address.split('.').map(Number)).copy(answer, 12);
      header.writeUInt16BE(1, 6);
    }
    socket.send(Buffer.concat([header, msg.subarray(12, offset), answer]), peer.port, peer.address);
  });
  await new Promise((resolve) => socket.bind(0, '127.0.0.1', resolve));
  return { port: socket.address().port, queries, close: () => new Promise((r) => socket.close(r)) };
}

async function until(what, check, timeoutMs = 10_000) {
  const deadline = Date.now() + timeoutMs;
  let last;
  for (;;) {
    last = await check();
    if (last.ok) return last;
    if (Date.now() > deadline) throw new Error(`${what}: still ${JSON.stringify(last.seen)} after ${timeoutMs} ms`);
    await sleep(100);
  }
}

describe('re-resolving the app', () => {
  const records = new Map();
  let dns;
  let edge;
  let first;
  let second;
  let work;
  let port;

  before(async () => {
    work = tempDir('proxy-test');
    dns = await startDns(records);
    port = await freePort('127.0.0.1');
    edge = await startNginx({
      upstream: `reel.test:${port}`,
      mediaDir: path.join(work, 'unused-media'),
      vars: { NGINX_RESOLVER: `127.0.0.1:${dns.port} valid=1s` },
    });
  });

  after(async () => {
    await edge?.stop();
    await first?.stop();
    await second?.stop();
    await dns?.close();
  });

  test('nginx starts before the name resolves, then follows the app to a new address without a reload', async () => {
    // No record yet (an app container that is not up): nginx runs, and says so in JSON.
    const down = await request(`${edge.url}/api/v1/videos`);
    assert.equal(down.status, 502);
    assert.match(down.headers['content-type'], /^application\/json/);
    assert.equal(JSON.parse(down.body).error.code, 'upstream_unavailable');
    assert.ok(Number(down.headers['retry-after']) > 0);

    // The app comes up at 127.0.0.1.
    first = await startReel({ host: '127.0.0.1', port, mediaDir: path.join(work, 'media-a') });
    records.set('reel.test', '127.0.0.1');
    await upload(first.url, makeClip(work, { seconds: 2 }));
    await until('nginx reaching the first app', async () => {
      const res = await request(`${edge.url}/api/v1/videos`);
      const items = res.status === 200 ? JSON.parse(res.body).items.length : null;
      return { ok: items === 1, seen: { status: res.status, items } };
    });

    // The app is replaced by one at another address; the old address refuses connections.
    await first.stop();
    const gone = await request(`${edge.url}/api/v1/videos`);
    assert.equal(gone.status, 502, 'the old address is down');
    second = await startReel({ host: '127.0.0.2', port, mediaDir: path.join(work, 'media-b') });
    records.set('reel.test', '127.0.0.2');
    const queriesBefore = dns.queries.length;
    await until('nginx reaching the new app', async () => {
      const res = await request(`${edge.url}/api/v1/videos`);
      const items = res.status === 200 ? JSON.parse(res.body).items.length : null;
      return { ok: items === 0, seen: { status: res.status, items } };
    });
    assert.ok(dns.queries.length > queriesBefore, 'nginx asked the resolver again');
    assert.ok(dns.queries.every((q) => q.name === 'reel.test' && q.type === 1), 'A queries only (ipv6=off)');
    assert.equal(edge.child.exitCode, null, 'the same nginx process all along');
  });
});

describe('headers between client and app', () => {
  let upstream;
  let edge;
  const seen = [];

  before(async () => {
    // Records what nginx forwards; answers with the headers an app framework might leak.
    upstream = http.createServer((req, res) => {
      seen.push({ url: req.url, headers: req.headers, httpVersion: req.httpVersion });
      res.writeHead(200, {
        'Content-Type': 'application/json',
        'X-Powered-By': 'SomeFramework/1.2',
        'X-Runtime': '0.012',
        Server: 'reel/0.1.0 (secret)',
      });
      res.end('{"items":[]}');
    });
    await new Promise((resolve) => upstream.listen(0, '127.0.0.1', resolve));
    edge = await startNginx({
      upstream: `127.0.0.1:${upstream.address().port}`,
      mediaDir: tempDir('proxy-headers-media'),
    });
  });

  after(async () => {
    await edge?.stop();
    await new Promise((resolve) => (upstream ? upstream.close(resolve) : resolve()));
  });

  test('internal and spoofable request headers are replaced or dropped', async () => {
    const res = await request(`${edge.url}/api/v1/videos?limit=1`, {
      headers: {
        'X-Accel-Redirect': '/_sources/anything',
        'X-Accel-Buffering': 'yes',
        'X-Accel-Limit-Rate': '1',
        'X-Sendfile': '/etc/passwd',
        'X-Forwarded-For': '203.0.113.9',
        'X-Forwarded-Host': 'evil.example',
        'X-Forwarded-Proto': 'https',
        'X-Real-IP': '203.0.113.9',
        Forwarded: 'for=203.0.113.9',
        Proxy: 'http://evil.example:3128',
        'Keep-Alive': 'timeout=600',
        TE: 'trailers',
        Upgrade: 'h2c',
      },
    });
    assert.equal(res.status, 200);
    const got = seen.at(-1);
    assert.equal(got.url, '/api/v1/videos?limit=1');
    assert.equal(got.httpVersion, '1.1');
    for (const name of ['x-accel-redirect', 'x-accel-buffering', 'x-accel-limit-rate', 'x-sendfile', 'forwarded',
      'proxy', 'keep-alive', 'te', 'upgrade']) {
      assert.equal(got.headers[name], undefined, `${name} is not passed on`);
    }
    assert.equal(got.headers['x-forwarded-for'], '127.0.0.1');
    assert.equal(got.headers['x-real-ip'], '127.0.0.1');
    assert.equal(got.headers['x-forwarded-proto'], 'http');
    assert.equal(got.headers['x-forwarded-host'], '127.0.0.1');
    assert.equal(got.headers['x-forwarded-port'], String(edge.port));
    assert.equal(got.headers.host, '127.0.0.1', 'Host is the normalised $host, without the port');
    assert.notEqual(got.headers.connection, 'close', 'HTTP/1.1 to the app without forcing close');
  });

  test('the app’s Server and X-Powered-By details do not reach clients', async () => {
    const res = await request(`${edge.url}/api/v1/videos`);
    assert.equal(res.status, 200);
    assert.equal(res.headers['x-powered-by'], undefined);
    assert.equal(res.headers['x-runtime'], undefined);
    assert.equal(res.headers.server, 'nginx', 'no version either (server_tokens off)');
  });

  test('requests other than uploads are capped small', async () => {
    const body = Buffer.alloc(128 * 1024, 1);
    const res = await request(`${edge.url}/api/v1/videos/some-id`, {
      method: 'DELETE', headers: { 'Content-Type': 'application/octet-stream' }, body,
    });
    assert.equal(res.status, 413);
    assert.equal(JSON.parse(res.body).error.code, 'payload_too_large');
  });
});
