"""Scenario 8 of scripts/bench: reel scaled out on PostgreSQL, on this one machine.

Per worker count k in 1, 2, 3 (a fresh database and media volume each):
  - two API nodes (`reel serve --encoders 0`) and k workers (`reel work --encoders 1`), each
    process naming itself to PostgreSQL (`application_name`) so its connections can be counted;
  - claim latency: single short jobs uploaded one at a time to idle workers, from the 202 to the
    first tool process (the probe) and to the ladder's ffmpeg appearing under some worker;
  - throughput: N short jobs uploaded at once, wall time from the first 202 to the last `ready`;
  - progress lag: every job followed over SSE on the *other* API node, receipt time minus the
    `at` its worker stamped (both clocks are this machine's);
  - PostgreSQL connections per process, sampled from pg_stat_activity while busy (max).

The box has 2 cores: with 3 workers, three ffmpeg processes share them, so throughput stops
growing past 2 workers; claim latency and lag are what the extra workers must not make worse.
Python 3 standard library only, plus psql from the PostgreSQL package.
"""
import glob
import json
import os
import subprocess
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def psql():
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/psql"))
    return found[-1] if found else "psql"


class Cluster:
    """REEL_TEST_POSTGRES_URL when the test command already runs a cluster, else our own."""

    def __init__(self):
        self.dir = None
        self.url = os.environ.get("REEL_TEST_POSTGRES_URL")
        if self.url:
            return
        out = subprocess.run([os.path.join(ROOT, "scripts", "pg-cluster"), "start"],
                             capture_output=True, text=True, check=True).stdout
        env = dict(line[len("export "):].split("=", 1) for line in out.splitlines()
                   if line.startswith("export "))
        self.url, self.dir = env["REEL_TEST_POSTGRES_URL"], env["REEL_TEST_PGDIR"]

    def sql(self, statement, db_url=None):
        out = subprocess.run([psql(), db_url or self.url, "-Atqc", statement],
                             capture_output=True, text=True, check=True)
        return out.stdout

    def database(self, name):
        self.sql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        self.sql(f"CREATE DATABASE {name}")
        return self.url.rsplit("/", 1)[0] + "/" + name

    def stop(self):
        if self.dir:
            subprocess.run([os.path.join(ROOT, "scripts", "pg-cluster"), "stop", self.dir])


def named(url, name):
    return f"{url}?application_name={name}"


def tool_processes(worker_pids, b):
    """(pid, argv0 basename) of every tool process under the workers right now."""
    out = []
    for wpid in worker_pids:
        for pid in b.descendants(wpid):
            argv = b.cmdline(pid)
            if argv:
                out.append((pid, os.path.basename(argv[0])))
    return out


def watch_tools(worker_pids, b, seen_before, deadline):
    """Polls (1 ms) until an ffmpeg not in seen_before appears; returns (t_first_tool, t_ffmpeg)
    as wall-clock times of first observation, None for what never appeared."""
    t_tool = t_ffmpeg = None
    while time.time() < deadline and t_ffmpeg is None:
        now = time.time()
        for pid, name in tool_processes(worker_pids, b):
            if pid in seen_before:
                continue
            t_tool = t_tool or now
            if name.startswith("ffmpeg"):
                t_ffmpeg = now
        time.sleep(0.001)
    return t_tool, t_ffmpeg


def follow(reel, vid, b, lags, out):
    """SSE on `reel` until a terminal event; appends receipt - `at` (s) of every progress."""
    c = reel.conn()
    c.request("GET", f"/api/v1/videos/{vid}/events", headers={"Accept": "text/event-stream"})
    r = c.getresponse()
    event = None
    while True:
        line = r.fp.readline()
        if not line:
            break
        now = time.time()
        line = line.decode().rstrip("\r\n")
        if line.startswith("event:"):
            event = line[6:].strip()
        elif line.startswith("data:") and event == "progress":
            at = b.published_at(line[5:].strip())
            if at is not None:
                lags.append(now - at)
        elif line.startswith("data:") and event == "snapshot":
            try:
                status = json.loads(line[5:]).get("status")
            except ValueError:
                status = None
            if status in ("ready", "failed", "canceled"):
                out[vid] = (now, status)
                break
        elif line == "" and event in ("ready", "failed", "canceled"):
            out[vid] = (now, event)
            break
    c.close()


def upload(reel, path):
    t0 = time.time()
    code, secs, j = reel.upload(path)
    if code != 202:
        raise RuntimeError(f"upload answered {code}: {j}")
    return t0 + secs, j["id"]


def sample_connections(cluster, db, stop, peaks):
    while not stop.is_set():
        try:
            rows = cluster.sql("SELECT application_name, count(*) FROM pg_stat_activity "
                               f"WHERE datname = '{db}' GROUP BY application_name")
            for row in rows.splitlines():
                name, n = row.rsplit("|", 1)
                peaks[name] = max(peaks.get(name, 0), int(n))
        except subprocess.CalledProcessError:
            pass
        stop.wait(0.5)


def one_deployment(cfg, R, work, b, cluster, k):
    db = f"bench_scale_{k}"
    url = cluster.database(db)
    media = os.path.join(work, f"scale{k}")
    procs = []
    try:
        api = [b.Reel(work, f"scale{k}-api{i}", ["--encoders", "0", "--database-url",
                                                 named(url, f"api{i}")], media=media)
               for i in (1, 2)]
        procs += api
        workers = [b.Reel(work, f"scale{k}-work{i}", ["--encoders", "1", "--database-url",
                                                      named(url, f"work{i}")],
                          role="work", media=media)
                   for i in range(1, k + 1)]
        procs += workers
        worker_pids = [w.pid for w in workers]
        time.sleep(1.0)  # every worker is idle, listening for wake-ups

        # Claim latency on idle workers, one job at a time.
        to_tool, to_ffmpeg = [], []
        for _ in range(cfg.scale_probes):
            seen = {pid for pid, _ in tool_processes(worker_pids, b)}
            box = {}
            watcher = threading.Thread(target=lambda: box.update(
                t=watch_tools(worker_pids, b, seen, time.time() + 60)))
            watcher.start()
            t202, vid = upload(api[0], cfg.scale_tiny)
            watcher.join()
            t_tool, t_ffmpeg = box["t"]
            if t_tool is not None:
                to_tool.append((t_tool - t202) * 1000)
            if t_ffmpeg is not None:
                to_ffmpeg.append((t_ffmpeg - t202) * 1000)
            if api[1].wait_terminal(vid, 120) != "ready":
                R.note(f"scenario 8 ({k} workers): a probe job did not become ready")
        if len(to_ffmpeg) < cfg.scale_probes:
            R.note(f"scenario 8 ({k} workers): ffmpeg seen for {len(to_ffmpeg)} of "
                   f"{cfg.scale_probes} probe jobs")

        # Throughput and progress lag: N jobs at once, followed on the other API node.
        stop, peaks = threading.Event(), {}
        sampler = threading.Thread(target=sample_connections, args=(cluster, db, stop, peaks))
        sampler.start()
        lags, ends, followers = [], {}, []
        t_first = None
        for _ in range(cfg.scale_jobs):
            t202, vid = upload(api[0], cfg.scale_src)
            t_first = t_first or t202
            f = threading.Thread(target=follow, args=(api[1], vid, b, lags, ends))
            f.start()
            followers.append(f)
        for f in followers:
            f.join(900)
        stop.set()
        sampler.join()
        ready = [t for t, status in ends.values() if status == "ready"]
        if len(ready) < cfg.scale_jobs:
            R.note(f"scenario 8 ({k} workers): {len(ready)} of {cfg.scale_jobs} jobs ready")
            R.failed = True
        wall = max(ready) - t_first if ready else None
        lag_ms = [x * 1000 for x in lags]
        return {
            "wall": wall, "per_min": cfg.scale_jobs / wall * 60 if wall else None,
            "tool": to_tool, "ffmpeg": to_ffmpeg, "lag": lag_ms,
            "api_conns": max([peaks.get(f"api{i}", 0) for i in (1, 2)], default=None),
            "work_conns": max([peaks.get(f"work{i}", 0) for i in range(1, k + 1)], default=None),
        }
    finally:
        for p in procs:
            p.stop()
        cluster.sql(f"DROP DATABASE IF EXISTS {db} WITH (FORCE)")


def run(cfg, R, work, b):
    inputs = os.path.join(work, "inputs")
    cfg.scale_tiny = os.path.join(inputs, "scale_tiny_320x180_1s.mp4")
    b.make_clip(cfg.scale_tiny, 320, 180, 1)
    if cfg.smoke:
        cfg.scale_probes, cfg.scale_jobs = 2, 3
        cfg.scale_src = os.path.join(inputs, "scale_320x180_4s.mp4")
        b.make_clip(cfg.scale_src, 320, 180, 4)
    else:
        cfg.scale_probes, cfg.scale_jobs = 10, 12
        cfg.scale_src = os.path.join(inputs, "scale_640x360_8s.mp4")
        b.make_clip(cfg.scale_src, 640, 360, 8)
    cluster = Cluster()
    try:
        results = {k: one_deployment(cfg, R, work, b, cluster, k) for k in (1, 2, 3)}
    finally:
        cluster.stop()
    scen = "8 scale-out (PostgreSQL)"
    base = results[1]["per_min"]
    for k, r in results.items():
        def add(metric, value, unit="", **kw):
            R.add(scen, f"{k} worker(s): {metric}", value, None, unit, **kw)
        add(f"{cfg.scale_jobs} jobs, first 202 -> last ready (s)", r["wall"], "s")
        add("jobs per minute", r["per_min"],
            ratio=(r["per_min"] / base) if base and r["per_min"] else None,
            target="ratio to 1 worker grows up to 2 (2 cores)" if k > 1 else None)
        for what, key in (("probe", "tool"), ("ffmpeg", "ffmpeg")):
            for p in (50, 99):
                add(f"claim latency 202 -> {what} starts, p{p} over {len(r[key])} (ms)",
                    b.pct(r[key], p), "ms")
        for p in (50, 99):
            add(f"progress lag worker -> SSE on the other API node, p{p} over "
                f"{len(r['lag'])} events (ms)", b.pct(r["lag"], p), "ms")
        add("PostgreSQL connections, max of one API node", r["api_conns"])
        add("PostgreSQL connections, max of one worker", r["work_conns"])
