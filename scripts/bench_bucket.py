"""Scenario 10 of scripts/bench: media in an S3-compatible bucket (moto's server, installed by
scripts/install-deps test into target/moto).

- the big blob uploaded through reel (--storage s3://…, streamed in as a multipart upload)
  vs the same file put with boto3 (its default multipart upload, 8 MiB parts, 10 threads) into
  the same server, and reel's VmRSS growth meanwhile (bound: 8 MiB parts x 5 = 40 MiB);
- the same blob through tus-js-client (one PATCH: its bytes become 8 MiB chunk objects, then
  the last request streams them into the source) vs the plain upload, and reel's VmRSS growth;
- the job of the scenario's source (1080p, 30 s; tiny in --smoke) from upload to ready with the
  bucket vs the local folder: the difference is the source's download and the ladder's upload;
- the ladder's publish alone, bucket vs folder: reel's `reel_ladder_publish_seconds{store}`
  (staging the files, then the commit with the ready row) read from /metrics around each job,
  and the ladder ffmpeg's exit to `ready` seen from outside (/proc samples every 50 ms, status
  polls every 100 ms);
- the worker's source, download vs a presigned URL (scripts/bench_bucket_source.py), and a
  reel on the bucket whose fetch has its connection reset a third of the way in.

moto is a Python server: its own speed, not the network's, bounds both sides of the first
comparison, so the ratio says what reel adds, not what a real bucket would do.
"""
import http.client
import os
import re
import subprocess
import time

import bench_bucket_source

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MOTO_BIN = os.path.join(ROOT, "target", "moto", "bin")
BUCKET = "bench"
AUTH = ("AWS4-HMAC-SHA256 Credential=bench/20260101/us-east-1/s3/aws4_request, "
        "SignedHeaders=host, Signature=0")

# boto3 (a dependency of moto, in the same venv): upload_file does a multipart upload.
BOTO_PUT = r"""
import sys, boto3
endpoint, path, key = sys.argv[1:4]
s3 = boto3.client("s3", endpoint_url=endpoint, aws_access_key_id="bench",
                  aws_secret_access_key="bench-secret", region_name="us-east-1")
s3.upload_file(path, "bench", key)
"""


def start_moto(work):
    log_path = os.path.join(work, "moto.log")
    log = open(log_path, "wb")
    proc = subprocess.Popen([os.path.join(MOTO_BIN, "moto_server"), "-H", "127.0.0.1", "-p", "0"],
                            stdout=log, stderr=subprocess.STDOUT)
    deadline = time.time() + 30
    while time.time() < deadline:
        with open(log_path, errors="replace") as f:
            found = re.search(r"Running on (http://127\.0\.0\.1:(\d+))", f.read())
        if found:
            return proc, found.group(1), int(found.group(2))
        if proc.poll() is not None:
            break
        time.sleep(0.05)
    proc.kill()
    raise RuntimeError("moto_server did not start: " + open(log_path).read()[-2000:])


def request(port, method, path):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    conn.request(method, path, headers={"Authorization": AUTH})
    response = conn.getresponse()
    body = response.read()
    conn.close()
    return response.status, body


def rss_kib(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def publish_metric(reel, store):
    """(sum s, count) of reel_ladder_publish_seconds{store} from /metrics ((0, 0) before the
    first publish), or None when /metrics does not answer."""
    status, body = reel.get("/metrics")
    if status != 200:
        return None
    found = []
    for part in ("sum", "count"):
        m = re.search(rf'^reel_ladder_publish_seconds_{part}{{store="{store}"}} (\S+)$',
                      body.decode(errors="replace"), re.M)
        found.append(float(m.group(1)) if m else 0.0)
    return tuple(found)


def job(reel, src, store, Sampler):
    """One job, upload to ready, then deletes the video. Returns None unless ready, else a dict:
    seconds (upload to ready), publish (reel's own timing of the publish), exit_to_ready (the
    ladder ffmpeg's exit to ready, from outside), ladder and poster (argv as reel ran them)."""
    before = publish_metric(reel, store)
    samp = Sampler(reel.pid, media_dir=reel.media)
    samp.start()
    t = time.time()
    code, _, body = reel.upload(src)
    status = reel.wait_terminal(body["id"], 1800) if code == 202 else None
    t_ready = time.time()
    samp.stop()
    after = publish_metric(reel, store)
    if code == 202:
        conn = reel.conn()
        conn.request("DELETE", f"/api/v1/videos/{body['id']}")
        conn.getresponse().read()
        conn.close()
    if status != "ready":
        return None
    ffmpegs = list(samp.ffmpeg.values())
    ladders = [e for e in ffmpegs if "-filter_complex" in e["argv"]]
    posters = [e for e in ffmpegs if "-ss" in e["argv"] and "-filter_complex" not in e["argv"]]
    one_more = before is not None and after is not None and after[1] == before[1] + 1
    return {"seconds": t_ready - t,
            "publish": after[0] - before[0] if one_more else None,
            "exit_to_ready": t_ready - ladders[0]["last_seen"] if ladders else None,
            "ladder": ladders[0]["argv"] if ladders else None,
            "poster": posters[0]["argv"] if posters else None}


def put_object(endpoint, key, path):
    subprocess.run([os.path.join(MOTO_BIN, "python"), "-c", BOTO_PUT, endpoint, path, key],
                   check=True, capture_output=True)


def broken_fetch(cfg, R, work, Reel, flags, port, mode):
    """A reel whose bucket connection breaks once (`reset` or `stall`, see
    bench_bucket_source.Relay) a third of the way into the source's download: what the download
    way does about a lost connection. Its request time-out is 5 s, to keep the stall short."""
    relay = bench_bucket_source.Relay(port, os.path.getsize(cfg.src) // 3, mode=mode)
    relay.start()
    at = flags.index("--s3-endpoint") + 1
    flags = flags[:at] + [f"http://127.0.0.1:{relay.addr[1]}"] + flags[at + 1:]
    flags[flags.index("--storage") + 1] = f"s3://{BUCKET}/{mode}"
    reel = Reel(work, f"bucket-{mode}", flags + ["--s3-timeout-secs", "5"])
    try:
        t = time.time()
        code, _, body = reel.upload(cfg.src)
        status = reel.wait_terminal(body["id"], 1800) if code == 202 else f"upload {code}"
        secs = time.time() - t
        if code == 202:
            conn = reel.conn()
            conn.request("DELETE", f"/api/v1/videos/{body['id']}")
            conn.getresponse().read()
            conn.close()
    finally:
        reel.stop()
        relay.stop()
    with open(reel.logpath, errors="replace") as f:
        log = f.read()
    resumed = log.count("Encountered error while reading response body")
    requeued = log.count("back to the queue")
    R.note(f"scenario 10 source, download (reel itself), connection {mode} a third of the way into "
           f"the fetch ({mode} {'done' if relay.cut_at else 'NOT done'}): job {status} {secs:.1f} s "
           f"after the upload began; the GET resumed from the break {resumed} time(s) "
           f"(object_store, same ETag), the job requeued {requeued} time(s)")


def delete_video(reel, video):
    conn = reel.conn()
    conn.request("DELETE", f"/api/v1/videos/{video}")
    conn.getresponse().read()
    conn.close()


def tus_upload(reel, blob, tus_js):
    """tus-js-client into `reel`; returns (seconds, video id or None)."""
    t = time.time()
    out = subprocess.run(["node", "--input-type=module", "-e", tus_js,
                          f"http://{reel.addr}/api/v1/uploads", blob],
                         capture_output=True, text=True, cwd=ROOT)
    secs = time.time() - t
    video = None
    for line in out.stdout.splitlines():
        if line.startswith("{") and '"video"' in line:
            found = re.search(r'"video":"([^"]+)"', line)
            video = found.group(1).rstrip("/").split("/")[-1] if found else None
    return secs, video


def scenario(cfg, R, work, Reel, Sampler, median, retarget, tus_js):
    """10: media in a bucket: upload vs boto3, reel's RSS, the job and its publish vs the local
    folder, the worker's source (download vs presigned URL)."""
    if not os.path.exists(os.path.join(MOTO_BIN, "moto_server")):
        R.note("scenario 10: moto_server is missing (scripts/install-deps test installs it)")
        return
    moto, endpoint, port = start_moto(work)
    reels = []
    try:
        status, _ = request(port, "PUT", f"/{BUCKET}")
        if status != 200:
            raise RuntimeError(f"cannot create the bench bucket: {status}")
        flags = ["--encoders", "1", "--storage", f"s3://{BUCKET}/reel", "--s3-endpoint", endpoint,
                 "--aws-access-key-id", "bench", "--aws-secret-access-key", "bench-secret",
                 "--max-upload-bytes", "8GiB"]
        bucket = Reel(work, "bucket", flags)
        reels.append(bucket)
        res = {"reel": [], "boto3": [], "rss": [], "tus": [], "tus_rss": []}
        for run in range(cfg.runs):
            before = rss_kib(bucket.pid)
            samp = Sampler(bucket.pid, tree=False)
            samp.start()
            code, secs, body = bucket.upload(cfg.blob)
            samp.stop()
            if code != 202:
                R.note(f"scenario 10: upload into the bucket answered {code}: {body}")
                continue
            res["reel"].append(secs)
            if samp.peak_self is not None and before is not None:
                res["rss"].append((samp.peak_self - before) / 1024)
            delete_video(bucket, body["id"])
            before = rss_kib(bucket.pid)
            samp = Sampler(bucket.pid, tree=False)
            samp.start()
            secs, video = tus_upload(bucket, cfg.blob, tus_js)
            samp.stop()
            if video is None:
                R.note("scenario 10: the tus upload into the bucket did not become a video")
            else:
                res["tus"].append(secs)
                if samp.peak_self is not None and before is not None:
                    res["tus_rss"].append((samp.peak_self - before) / 1024)
                delete_video(bucket, video)
            t = time.time()
            put = subprocess.run([os.path.join(MOTO_BIN, "python"), "-c", BOTO_PUT, endpoint,
                                  cfg.blob, f"plain/{run}"], capture_output=True, text=True)
            if put.returncode == 0:
                res["boto3"].append(time.time() - t)
                request(port, "DELETE", f"/{BUCKET}/plain/{run}")
            else:
                R.note(f"scenario 10: boto3 upload failed: {put.stderr[-500:]}")
        size_mib = os.path.getsize(cfg.blob) // (1024 * 1024)
        r, b = median(res["reel"]), median(res["boto3"])
        R.add("10 bucket", f"{size_mib} MiB upload: reel into the bucket vs boto3 put (s)", r, b, "s",
              ratio=(r / b if r and b else None), target="ratio <= 1.5")
        R.add("10 bucket", "  reel VmRSS growth during the upload (MiB)", median(res["rss"]), None,
              "MiB", target="<= 64 MiB")
        tus = median(res["tus"])
        R.add("10 bucket", f"{size_mib} MiB via tus-js-client into the bucket (chunk objects, then "
              "the filing) vs the plain upload (s)", tus, r, "s",
              ratio=(tus / r if tus and r else None))
        R.add("10 bucket", "  reel VmRSS growth during the tus upload (MiB)", median(res["tus_rss"]),
              None, "MiB", target="<= 64 MiB")

        folder = Reel(work, "bucket-folder", ["--encoders", "1"])
        reels.append(folder)
        jobs = {"bucket": [], "folder": []}
        for _ in range(cfg.runs):
            for store, reel in (("bucket", bucket), ("folder", folder)):
                done = job(reel, cfg.src, store, Sampler)
                if done is None:
                    R.note(f"scenario 10: a job on the {store} did not become ready")
                jobs[store].append(done)

        def fig(store, field):
            return median([j[field] for j in jobs[store] if j and j[field] is not None])

        for metric, field in (("job upload to ready: bucket vs local folder (s)", "seconds"),
                              ("ladder publish, stage + commit (reel_ladder_publish_seconds): "
                               "bucket vs folder (s)", "publish"),
                              ("  ladder ffmpeg exit -> ready, from outside (+-0.15 s): "
                               "bucket vs folder (s)", "exit_to_ready")):
            b, f = fig("bucket", field), fig("folder", field)
            R.add("10 bucket", metric, b, f, "s", ratio=(b / f if b and f else None))

        argv = next((j for j in jobs["folder"] if j and j["ladder"]), None)
        if argv is None:
            R.note("scenario 10: reel's ladder ffmpeg was not seen in /proc: source access not measured")
        else:
            ctx = {"endpoint": endpoint, "moto_port": port, "moto_pid": moto.pid,
                   "moto_log": os.path.join(work, "moto.log"), "ladder": argv["ladder"],
                   "poster": argv["poster"], "retarget": retarget,
                   "python": os.path.join(MOTO_BIN, "python"),
                   "upload": lambda key, path: put_object(endpoint, key, path)}
            if argv["poster"] is None:
                R.note("scenario 10: reel's poster ffmpeg was not seen in /proc: measured without it")
            bench_bucket_source.measure(cfg, R, work, ctx, median)
            for key in ("access/faststart.mp4", "access/moov-at-end.mp4"):
                request(port, "DELETE", f"/{BUCKET}/{key}")
        for mode in ("reset", "stall"):
            broken_fetch(cfg, R, work, Reel, flags, port, mode)
        status, listing = request(port, "GET", f"/{BUCKET}?list-type=2")
        left = re.findall(rb"<Key>([^<]*)</Key>", listing) if status == 200 else []
        if left:
            R.note(f"scenario 10: the bucket still holds {len(left)} objects after the deletes")
    finally:
        for reel in reels:
            reel.stop()
        moto.terminate()
        try:
            moto.wait(10)
        except subprocess.TimeoutExpired:
            moto.kill()
