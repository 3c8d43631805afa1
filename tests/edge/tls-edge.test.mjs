// TLS at the nginx edge with the pins reel publishes (docs/tls.md): nginx terminates TLS with
// a certificate, reel runs behind it with --tls-pin-cert of the same file, and curl pinned to
// what reel publishes (fetched through nginx) gets through, while a wrong pin is refused.

import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';

import { REEL_BIN, startNginx, startReel, tempDir } from './helpers.mjs';

function run(command, args) {
  const result = spawnSync(command, args, { encoding: 'utf8' });
  return { code: result.status, stdout: result.stdout.trim(), stderr: result.stderr };
}

describe('TLS at the nginx edge', () => {
  let reel;
  let nginx;
  let cert;
  let spare;
  before(async () => {
    const dir = tempDir('tls');
    cert = path.join(dir, 'edge.pem');
    const key = path.join(dir, 'edge.key');
    spare = path.join(dir, 'spare.pem');
    for (const [out, keyOut] of [[cert, key], [spare, path.join(dir, 'spare.key')]]) {
      const made = run('openssl', ['req', '-x509', '-nodes', '-days', '2', '-subj', '/CN=localhost',
        '-addext', 'subjectAltName=DNS:localhost,IP:127.0.0.1',
        '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-keyout', keyOut, '-out', out]);
      assert.equal(made.code, 0, made.stderr);
    }
    reel = await startReel({ extraArgs: ['--tls-pin-cert', cert] });
    nginx = await startNginx({ upstream: `127.0.0.1:${reel.port}`, mediaDir: reel.mediaDir, tls: { cert, key } });
  });
  after(async () => {
    await nginx?.stop();
    await reel?.stop();
  });

  test('the pin reel publishes is the key nginx serves, and curl holds both to it', () => {
    const url = nginx.url.replace('127.0.0.1', 'localhost');
    const published = run('curl', ['-sS', '--cacert', cert, `${url}/api/v1/tls/pins`]);
    assert.equal(published.code, 0, published.stderr);
    const pins = JSON.parse(published.stdout);
    assert.equal(pins.current, run(REEL_BIN, ['pin', cert]).stdout, 'reel pin of nginx\'s certificate');
    const pinned = run('curl', ['-sS', '--cacert', cert, '--pinnedpubkey', pins.curl, `${url}/healthz`]);
    assert.equal(pinned.code, 0, `pinned through nginx: ${pinned.stderr}`);
    assert.match(pinned.stdout, /"status":"ok"/);
    const wrong = run('curl', ['-sS', '--cacert', cert, '--pinnedpubkey',
      `sha256//${run(REEL_BIN, ['pin', spare]).stdout}`, `${url}/healthz`]);
    assert.equal(wrong.code, 90, 'a pin of another key is refused');
  });
});
