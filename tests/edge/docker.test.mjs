// What can be checked of the Docker set-up without a Docker engine: the
// compose file's shape and limits, the nginx template rendered with the
// compose environment and accepted by `nginx -t`, and the Dockerfile's stages,
// build command and runtime packages.

import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { describe, test } from 'node:test';

import YAML from 'yaml';

import { NGINX_DIR, REPO, listFiles, nginxConfigTest, preparePrefix, tempDir } from './helpers.mjs';

const compose = YAML.parse(fs.readFileSync(path.join(REPO, 'docker-compose.yml'), 'utf8'));
const dockerfile = fs.readFileSync(path.join(REPO, 'Dockerfile'), 'utf8');
const templateVars = spawnSync(path.join(NGINX_DIR, 'render'), ['--vars'], { encoding: 'utf8' })
  .stdout.split('\n').filter(Boolean);

/** Compose-style interpolation of `${VAR}`, `${VAR:-default}` and `${VAR-default}`. */
/** What an operator's `.env` must hold (compose refuses to start without it: `${VAR:?…}`). */
const DOT_ENV = { REEL_PLAYBACK_SECRET: 'an-operator-secret-of-at-least-32-bytes' };

function interpolate(value, env = DOT_ENV) {
  return String(value).replace(/\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?])([^}]*))?\}/g, (_, name, op, fallback) => {
    const set = Object.hasOwn(env, name);
    if (op === ':-') return set && env[name] !== '' ? env[name] : fallback;
    if (op === '-') return set ? env[name] : fallback;
    if (op === ':?' || op === '?') {
      assert.ok(set && env[name] !== '', `compose requires ${name}: ${fallback}`);
      return env[name];
    }
    return set ? env[name] : '';
  });
}

function environment(service) {
  const env = service.environment ?? {};
  const pairs = Array.isArray(env) ? env.map((e) => e.split(/=(.*)/s).slice(0, 2)) : Object.entries(env);
  return Object.fromEntries(pairs.map(([k, v]) => [k, interpolate(v ?? '')]));
}

/** Docker's byte sizes: 768m, 1g, 64M, 512k, plain bytes. */
function bytes(text) {
  const match = /^(\d+(?:\.\d+)?)\s*([bkmg]?)b?$/i.exec(String(text).trim());
  assert.ok(match, `a size: ${text}`);
  const unit = { '': 1, b: 1, k: 1024, m: 1024 ** 2, g: 1024 ** 3 }[match[2].toLowerCase()];
  return Number(match[1]) * unit;
}

/** The Dockerfile's stages: { name, from, body } (continuation lines joined). */
function stages() {
  const joined = dockerfile.replace(/\\\n/g, ' ');
  const out = [];
  for (const line of joined.split('\n')) {
    const from = /^FROM\s+(?:--platform=\S+\s+)?(\S+)(?:\s+AS\s+(\S+))?/i.exec(line.trim());
    if (from) out.push({ from: from[1], name: from[2], body: [] });
    else if (out.length && line.trim() && !line.trim().startsWith('#')) out.at(-1).body.push(line.trim());
  }
  return out;
}

function stage(name) {
  const found = stages().find((s) => s.name === name);
  assert.ok(found, `a stage named ${name}`);
  return found;
}

/** Global ARG defaults, for FROM lines like rust:${RUST_VERSION}-bookworm. */
function expandArgs(text) {
  const args = Object.fromEntries([...dockerfile.matchAll(/^ARG\s+(\w+)=(\S+)/gm)].map((m) => [m[1], m[2]]));
  return text.replace(/\$\{(\w+)\}/g, (_, name) => args[name] ?? '');
}

describe('docker-compose.yml', () => {
  const { reel, nginx } = compose.services ?? {};

  test('has the app and the edge, built from this Dockerfile', () => {
    assert.ok(reel && nginx, 'services reel and nginx');
    assert.equal(reel.build.target, 'reel');
    assert.equal(nginx.build.target, 'edge');
    assert.ok(stage('edge').from.startsWith('nginx:'), 'the edge is the official nginx image');
  });

  test('both mount one named media volume; nginx read-only', () => {
    assert.ok(compose.volumes && 'media' in compose.volumes, 'a named volume `media`');
    assert.ok(reel.volumes.includes('media:/media'), `reel mounts it read-write: ${reel.volumes}`);
    assert.ok(nginx.volumes.includes('media:/media:ro'), `nginx mounts it read-only: ${nginx.volumes}`);
    assert.equal(environment(nginx).REEL_MEDIA_DIR, '/media');
    assert.ok(/^VOLUME\s+\["?\/media"?\]/m.test(dockerfile), 'the reel image declares /media');
  });

  test('only nginx is published; it waits for a healthy reel', () => {
    assert.equal(reel.ports, undefined, 'reel is not published');
    assert.ok(nginx.ports.some((p) => interpolate(p).endsWith(':8080')), `nginx publishes 8080: ${nginx.ports}`);
    assert.equal(nginx.depends_on.reel.condition, 'service_healthy');
    for (const [name, service] of Object.entries({ reel, nginx })) {
      assert.equal(service.restart, 'unless-stopped', `${name} restarts`);
      assert.ok(Array.isArray(service.healthcheck?.test) && service.healthcheck.test[0] === 'CMD', `${name} healthcheck`);
    }
    assert.deepEqual(reel.healthcheck.test.slice(1, 3), ['curl', '-fsS']);
    assert.match(reel.healthcheck.test.at(-1), /:8080\/healthz$/);
    assert.equal(nginx.healthcheck.test[1], 'wget', 'busybox wget is in the alpine image');
  });

  test('limits fit a 1-core / 1 GB box', () => {
    const reelMem = bytes(reel.mem_limit);
    const nginxMem = bytes(nginx.mem_limit);
    assert.ok(Number(reel.cpus) > 0 && Number(reel.cpus) <= 1, `reel cpus ${reel.cpus}`);
    assert.ok(Number(nginx.cpus) > 0 && Number(nginx.cpus) <= 1, `nginx cpus ${nginx.cpus}`);
    assert.ok(reelMem >= 512 * 1024 ** 2, 'room for ffmpeg (~400 MiB peak on a 1080p ladder) and reel');
    assert.ok(nginxMem <= 128 * 1024 ** 2, 'nginx needs little');
    assert.ok(reelMem + nginxMem <= 900 * 1024 ** 2, 'at least ~100 MiB left for the kernel, dockerd and sshd');
    assert.equal(environment(reel).REEL_ENCODERS, '1');
    for (const service of [reel, nginx]) assert.ok(service.pids_limit > 0 && service.logging?.options?.['max-size']);
  });

  test('nginx and reel get the same upload limit, in a form both read', () => {
    const reelLimit = environment(reel).REEL_MAX_UPLOAD_BYTES;
    assert.equal(environment(nginx).REEL_MAX_UPLOAD_BYTES, reelLimit);
    assert.match(reelLimit, /^\d+[kmg]?$/i);
    assert.equal(environment(reel).REEL_ACCEL_REDIRECT, 'true');
  });

  test('the nginx environment defines every template variable, and the envsubst filter lets them through', () => {
    const env = environment(nginx);
    const filter = new RegExp(env.NGINX_ENVSUBST_FILTER);
    assert.ok(templateVars.length >= 5, `template variables: ${templateVars}`);
    for (const name of templateVars) {
      assert.ok(env[name], `${name} is set for nginx`);
      assert.match(name, filter, `${name} passes NGINX_ENVSUBST_FILTER`);
    }
    assert.match(env.NGINX_RESOLVER, /^127\.0\.0\.11\b/, 'Docker’s embedded DNS');
    assert.equal(env.REEL_UPSTREAM, 'reel:8080');
    // The edge image bakes the same static path in.
    assert.ok(stage('edge').body.some((l) => l.includes(env.REEL_STATIC_DIR)), 'the page is where nginx looks');
  });

  test('the template rendered with the compose environment passes `nginx -t`', () => {
    const env = environment(nginx);
    const media = tempDir('compose-media');
    const layout = preparePrefix({
      ...Object.fromEntries(templateVars.map((name) => [name, env[name]])),
      // Container paths, moved to this machine.
      REEL_MEDIA_DIR: media,
      REEL_STATIC_DIR: path.join(REPO, 'static'),
    });
    const rendered = fs.readFileSync(path.join(layout.prefix, 'conf', 'reel.conf'), 'utf8');
    assert.doesNotMatch(rendered, /\$\{[A-Z_]+\}/, 'nothing left unsubstituted');
    assert.match(rendered, /^\s*set \$reel_upstream reel:8080;/m);
    assert.match(rendered, /^\s*resolver 127\.0\.0\.11 valid=10s ipv6=off;/m);
    assert.match(rendered, /^\s*listen 8080 default_server;/m);
    assert.match(rendered, /^\s*client_max_body_size 4g;/m);
    const result = nginxConfigTest(layout);
    assert.ok(result.ok, result.output);
    assert.match(result.output, /test is successful/);
  });
});

describe('Dockerfile', () => {
  test('builds reel with `cargo build --release --locked` on rust:1.95-bookworm, cross-compiling to amd64 and arm64', () => {
    const build = stage('build');
    assert.equal(expandArgs(build.from), 'rust:1.95-bookworm');
    const cargo = build.body.join('\n').match(/cargo build [^;&\n]*/g) ?? [];
    assert.equal(cargo.length, 1, `one cargo build: ${cargo}`);
    assert.match(cargo[0], /^cargo build --release --locked\b/);
    assert.match(dockerfile, /FROM --platform=\$BUILDPLATFORM rust:/);
    assert.match(dockerfile, /amd64\)\s+triple=x86_64-unknown-linux-gnu/);
    assert.match(dockerfile, /arm64\)\s+triple=aarch64-unknown-linux-gnu/);
    // The toolchain is at least what Cargo.toml asks for.
    const wanted = /^rust-version\s*=\s*"(\d+)\.(\d+)/m.exec(fs.readFileSync(path.join(REPO, 'Cargo.toml'), 'utf8'));
    const [, major, minor] = /rust:(\d+)\.(\d+)/.exec(expandArgs(build.from));
    if (wanted) assert.ok(Number(major) * 1000 + Number(minor) >= Number(wanted[1]) * 1000 + Number(wanted[2]));
  });

  test('the build command is the one the scripts build and test with', (t) => {
    const scripts = ['scripts/test', 'scripts/run'].map((f) => path.join(REPO, f)).filter((f) => fs.existsSync(f));
    if (!scripts.length) {
      t.skip('scripts/test and scripts/run are not there yet');
      return;
    }
    const ours = /cargo build --release --locked/.exec(dockerfile)?.[0];
    const commands = scripts.flatMap((f) => fs.readFileSync(f, 'utf8').match(/cargo (?:build|test|clippy)\b[^\n;&|]*/g) ?? []);
    assert.ok(commands.length > 0, 'the scripts run cargo');
    const releaseBuilds = commands.filter((c) => c.startsWith('cargo build') && c.includes('--release'));
    for (const command of releaseBuilds) assert.equal(command.trim(), ours, 'the same release build as the image');
    for (const command of commands) assert.match(command, /--locked\b/, `Cargo.lock is respected: ${command}`);
    t.diagnostic(`scripts: ${commands.join(' | ')}; Dockerfile: ${ours}`);
  });

  test('the build stage copies everything the crate reads at compile time', () => {
    const copies = stage('build').body.filter((l) => /^COPY\s/.test(l));
    const copied = copies.filter((l) => !l.includes('--from=')).flatMap((l) => l.split(/\s+/).slice(1, -1));
    // The web stage's static/ (with hls.js) lands where the crate embeds it from.
    const copiedFromWeb = copies.filter((l) => /^COPY --from=web \/web\/static\/ \.\/static\/$/.test(l)).map(() => 'static/');
    assert.deepEqual(copiedFromWeb, ['static/'], 'the build stage gets the page to embed');
    for (const needed of ['Cargo.toml', 'Cargo.lock', 'build.rs', 'migrations/', 'src/']) {
      assert.ok(copied.includes(needed), `COPY ${needed}`);
    }
    for (const file of listFiles(path.join(REPO, 'src')).filter((f) => f.endsWith('.rs'))) {
      const text = fs.readFileSync(file, 'utf8');
      for (const [, arg] of text.matchAll(/(?:(?:include_str|include_bytes|migrate)!\(|#\[folder =)\s*"([^"]+)"/g)) {
        const resolved = arg.startsWith('./') ? arg.slice(2) : path.relative(REPO, path.resolve(path.dirname(file), arg));
        const sources = [...copied, ...copiedFromWeb];
        assert.ok(sources.some((c) => resolved.startsWith(c.replace(/\/$/, ''))), `${path.relative(REPO, file)} reads ${arg}`);
      }
    }
  });

  test('the runtime is debian:bookworm-slim with ffmpeg, ca-certificates and curl, as a non-root user', () => {
    const runtime = stage('reel');
    assert.equal(runtime.from, 'debian:bookworm-slim');
    assert.equal(stages().at(-1).name, 'reel', 'the default target is the app');
    const install = runtime.body.join(' ').match(/apt-get install ([^;&]*)/)?.[1] ?? '';
    assert.match(install, /--no-install-recommends/);
    const packages = install.split(/\s+/).filter((w) => w && !w.startsWith('-'));
    for (const pkg of ['ffmpeg', 'ca-certificates', 'curl']) assert.ok(packages.includes(pkg), `installs ${pkg}: ${packages}`);
    assert.ok(runtime.body.includes('USER reel'));
    const env = runtime.body.join(' ');
    for (const pair of ['REEL_LISTEN=0.0.0.0:8080', 'REEL_MEDIA_DIR=/media', 'REEL_ACCEL_REDIRECT=true']) {
      assert.ok(env.includes(pair), pair);
    }
    assert.match(env, /HEALTHCHECK .* CMD curl -fsS .*\/healthz/);
    assert.match(env, /COPY --from=build \/reel \/usr\/local\/bin\/reel/);
  });

  test('the page in both images includes hls.js from npm ci', () => {
    const web = stage('web');
    assert.ok(web.body.some((l) => /npm ci\b/.test(l)), 'npm ci');
    assert.ok(web.body.some((l) => l.includes('node_modules/hls.js/dist/hls.min.js static/vendor/hls.min.js')));
    // nginx serves it from disk; reel has it built in (the build stage copies it).
    for (const name of ['build', 'edge']) {
      assert.ok(stage(name).body.some((l) => /^COPY --from=web \/web\/static\//.test(l)), `${name} gets the page`);
    }
    assert.ok(!stage('reel').body.some((l) => l.includes('REEL_STATIC_DIR')), 'reel serves its built-in page');
    const lock = JSON.parse(fs.readFileSync(path.join(REPO, 'package-lock.json'), 'utf8'));
    assert.ok(lock.packages['node_modules/hls.js'], 'hls.js is locked');
  });

  test('nginx workers run with reel’s uid, so they can read what reel writes', () => {
    const uid = /^ARG REEL_UID=(\d+)$/m.exec(dockerfile)?.[1];
    assert.ok(uid, 'one REEL_UID for both images');
    assert.ok(stage('edge').body.some((l) => /adduser .*-u "\$REEL_UID"/.test(l)));
    assert.ok(stage('edge').body.some((l) => l.includes("sed -i 's/^user .*;/user reel;/' /etc/nginx/nginx.conf")));
    assert.ok(stage('reel').body.some((l) => /useradd .*--uid "\$REEL_UID"/.test(l)));
    assert.ok(stage('edge').body.some((l) => l.startsWith('COPY nginx/reel.conf.template /etc/nginx/templates/')));
  });

  test('.dockerignore keeps host builds out and the sources in', () => {
    const ignored = fs.readFileSync(path.join(REPO, '.dockerignore'), 'utf8')
      .split('\n').map((l) => l.trim()).filter((l) => l && !l.startsWith('#'));
    for (const entry of ['target/', 'node_modules/', 'static/vendor/', 'media/', '.git']) {
      assert.ok(ignored.includes(entry), `ignores ${entry}`);
    }
    const needed = ['Cargo.toml', 'Cargo.lock', 'build.rs', 'src', 'migrations', 'static', 'nginx',
      'package.json', 'package-lock.json'];
    for (const pattern of ignored) {
      const plain = pattern.replace(/\/$/, '');
      for (const path of needed) assert.ok(!(path === plain || path.startsWith(`${plain}/`)), `${pattern} would drop ${path}`);
    }
  });
});

describe('the monitoring profile', () => {
  const { prometheus, grafana, reel, nginx } = compose.services ?? {};

  test('starts Prometheus and Grafana only when asked, with the repo\'s files', () => {
    for (const [name, service] of Object.entries({ prometheus, grafana })) {
      assert.deepEqual(service?.profiles, ['monitoring'], `${name} is in the monitoring profile only`);
      assert.equal(service.restart, 'unless-stopped');
    }
    assert.equal(reel.profiles, undefined, 'reel runs without the profile');
    assert.equal(nginx.profiles, undefined, 'nginx runs without the profile');
    const mounts = [...prometheus.volumes, ...grafana.volumes].filter((v) => v.startsWith('./'));
    for (const mount of mounts) {
      const [source, , mode] = mount.split(':');
      assert.ok(fs.existsSync(path.join(REPO, source)), `${source} exists`);
      assert.equal(mode, 'ro', `${source} is mounted read-only`);
    }
    assert.ok(prometheus.command.includes('--config.file=/etc/prometheus/prometheus.yml'));
    assert.ok(compose.volumes && 'prometheus' in compose.volumes && 'grafana' in compose.volumes);
  });

  test('Prometheus scrapes reel; Grafana gets it as the datasource the dashboard names', () => {
    const scrape = YAML.parse(fs.readFileSync(path.join(REPO, 'monitoring/prometheus/prometheus.yml'), 'utf8'));
    const job = scrape.scrape_configs.find((j) => j.job_name === 'reel');
    assert.deepEqual(job.static_configs[0].targets, ['reel:8080'], 'the compose service and port of reel');
    const sources = YAML.parse(fs.readFileSync(
      path.join(REPO, 'monitoring/grafana/provisioning/datasources/prometheus.yml'), 'utf8'));
    const source = sources.datasources[0];
    assert.equal(source.url, 'http://prometheus:9090');
    const providers = YAML.parse(fs.readFileSync(
      path.join(REPO, 'monitoring/grafana/provisioning/dashboards/reel.yml'), 'utf8'));
    const mounted = grafana.volumes.find((v) => v.startsWith('./monitoring/grafana/dashboards:'));
    assert.equal(mounted.split(':')[1], providers.providers[0].options.path, 'the provider reads the mounted folder');
    const dashboard = JSON.parse(fs.readFileSync(path.join(REPO, 'monitoring/grafana/dashboards/reel.json'), 'utf8'));
    for (const panel of dashboard.panels) {
      assert.equal(panel.datasource.uid, source.uid, `${panel.title} uses the provisioned datasource`);
    }
  });
});
