"""Scenario 10 of scripts/bench: media in an S3-compatible bucket (moto's server, installed by
scripts/install-deps test into target/moto).

- the big blob uploaded through reel (--storage s3://…, streamed in as a multipart upload)
  vs the same file put with boto3 (its default multipart upload, 8 MiB parts, 10 threads) into
  the same server, and reel's VmRSS growth meanwhile (bound: 8 MiB parts x 5 = 40 MiB);
- the job of the scenario's source (1080p, 30 s; tiny in --smoke) from upload to ready with the
  bucket vs the local folder: the difference is the source's download and the ladder's upload.

moto is a Python server: its own speed, not the network's, bounds both sides of the first
comparison, so the ratio says what reel adds, not what a real bucket would do.
"""
import http.client
import os
import re
import subprocess
import time

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


def job_seconds(reel, src):
    """Upload to ready (or None), then deletes the video."""
    t = time.time()
    code, _, body = reel.upload(src)
    if code != 202:
        return None
    status = reel.wait_terminal(body["id"], 1800)
    seconds = time.time() - t if status == "ready" else None
    conn = reel.conn()
    conn.request("DELETE", f"/api/v1/videos/{body['id']}")
    conn.getresponse().read()
    conn.close()
    return seconds


def scenario(cfg, R, work, Reel, Sampler, median):
    """10: media in a bucket: upload vs boto3, reel's RSS, the job vs the local folder."""
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
        res = {"reel": [], "boto3": [], "rss": []}
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
            conn = bucket.conn()
            conn.request("DELETE", f"/api/v1/videos/{body['id']}")
            conn.getresponse().read()
            conn.close()
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

        folder = Reel(work, "bucket-folder", ["--encoders", "1"])
        reels.append(folder)
        times = {"bucket": [], "folder": []}
        for _ in range(cfg.runs):
            times["bucket"].append(job_seconds(bucket, cfg.src))
            times["folder"].append(job_seconds(folder, cfg.src))
        jb, jf = median(times["bucket"]), median(times["folder"])
        R.add("10 bucket", "job upload to ready: bucket vs local folder (s)", jb, jf, "s",
              ratio=(jb / jf if jb and jf else None))
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
