"""Scenario 10 of scripts/bench, the worker's source: how a worker should read a source that
lives in the bucket. The same tools reel runs on a job, on the scenario's source put into moto:

- download: one GET of the whole object (what reel does: `fetch_source`, one streamed GET into
  the job's folder; curl here), then ffprobe and ffmpeg on the local file;
- presigned: ffprobe and ffmpeg reading a presigned GET URL directly (ffmpeg's http protocol,
  its default options: no reconnect).

"The tools reel runs" are: the probe (ffprobe `-show_format -show_streams`, ffprobe over the
packets of the last 15 s, ffmpeg `idet` over the first 200 pictures: `src/transcode/probe/`),
then the poster ffmpeg and the ladder ffmpeg side by side, with the argv reel ran them with
(read from /proc during the scenario's folder job; only the input and the output folder are
changed). Each figure: wall, CPU user+sys of the tools (curl included), CPU of moto serving
the bytes, and the GET requests moto logged for the source (each seek over HTTP is one).

A moov-at-end copy of the source (`-c copy`, no faststart: what phones write) is read through
a presigned URL too. Failure modes, run once on the ladder ffmpeg through a relay that resets
the connection after a third of the file: ffmpeg's defaults, ffmpeg with `-reconnect`, and
`-reconnect` against a URL that expired before the reconnect (the relay answers S3's 403).
"""
import json
import os
import re
import socket
import struct
import subprocess
import threading
import time

MOTO_PYTHON = None  # set by measure()
SIGN = r"""
import sys, boto3, botocore.config
endpoint, key, ttl = sys.argv[1], sys.argv[2], int(sys.argv[3])
s3 = boto3.client("s3", endpoint_url=endpoint, aws_access_key_id="bench",
                  aws_secret_access_key="bench-secret", region_name="us-east-1",
                  config=botocore.config.Config(signature_version="s3v4"))
print(s3.generate_presigned_url("get_object", Params={"Bucket": "bench", "Key": key}, ExpiresIn=ttl))
"""
RECONNECT = ["-reconnect", "1", "-reconnect_streamed", "1", "-reconnect_on_network_error", "1",
             "-reconnect_delay_max", "4"]
# How long a stalled read is watched before it counts as hung (10 s in --smoke).
STALL_BOUND = 30
EXPIRED_BODY = (b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>AccessDenied</Code>'
                b"<Message>Request has expired</Message></Error>")
EXPIRED = (b"HTTP/1.1 403 Forbidden\r\nContent-Type: application/xml\r\nConnection: close\r\n"
           b"Content-Length: %d\r\n\r\n" % len(EXPIRED_BODY)) + EXPIRED_BODY


def cpu_of(pid):
    """utime + stime of a running process, seconds."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


def run(argv, nice=10, stderr=subprocess.DEVNULL):
    """Starts argv niced (as reel runs its tools); returns the Popen."""
    return subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=stderr, preexec_fn=lambda: os.nice(nice))


def reap(proc):
    """Waits for proc; returns (exit status, CPU user+sys s)."""
    _, status, ru = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    return proc.returncode, ru.ru_utime + ru.ru_stime


def probe(src):
    """reel's probe of src (a path or URL): describe, the tail's packets, idet. Returns CPU s."""
    out = subprocess.run(["ffprobe", "-v", "error", "-print_format", "json", "-show_format",
                          "-show_streams", src], capture_output=True, text=True)
    cpu = 0.0
    try:
        fmt = json.loads(out.stdout)["format"]
        tail = float(fmt.get("start_time", 0)) + float(fmt["duration"]) - 15.0
    except (ValueError, KeyError):
        tail = 1.0e9
    for argv in (["ffprobe", "-v", "error", "-read_intervals", f"{max(tail, 0.0):.3f}%",
                  "-show_entries", "packet=stream_index,pts_time,dts_time,duration_time",
                  "-of", "csv=p=0", src],
                 ["ffmpeg", "-nostdin", "-hide_banner", "-v", "info", "-i", src, "-map", "0:v:0",
                  "-vf", "idet=intl_thres=1.5", "-frames:v", "200", "-an", "-sn", "-dn", "-f", "null",
                  "-"]):
        cpu += reap(run(argv))[1]
    return cpu


def with_input(argv, src, extra=()):
    """argv with its `-i` input replaced by src, `extra` input options before it."""
    i = argv.index("-i")
    return argv[:i] + list(extra) + ["-i", src] + argv[i + 2:]


def encode(ladder, poster, src, out, retarget, extra=(), stderr=subprocess.DEVNULL):
    """The ladder and the poster side by side, as reel runs them. Returns (ladder exit, CPU s)."""
    procs = [run(retarget(with_input(ladder, src, extra), out), stderr=stderr)]
    if poster:
        procs.append(run(with_input(poster, src, extra)[:-1] + [os.path.join(out, "poster.jpg")]))
    results = [reap(p) for p in procs]
    return results[0][0], sum(r[1] for r in results)


def moto_gets(log_path, offset, key):
    """GET requests for key that moto logged after byte `offset` of its log."""
    with open(log_path, "rb") as f:
        f.seek(offset)
        # werkzeug colours some lines (206 answers): no anchor on the opening quote.
        return len(re.findall(rb"GET /bench/" + re.escape(key.encode()) + rb"[? ]", f.read()))


def presign(endpoint, key, ttl=3600):
    out = subprocess.run([MOTO_PYTHON, "-c", SIGN, endpoint, key, str(ttl)], capture_output=True,
                         text=True, check=True)
    return out.stdout.strip()


def access(mode, key, local_src, ctx, out):
    """One read of the source, download or presigned; returns a dict of figures or None."""
    log_offset = os.path.getsize(ctx["moto_log"])
    moto_cpu = cpu_of(ctx["moto_pid"])
    url = presign(ctx["endpoint"], key)
    t0 = time.time()
    cpu = 0.0
    fetch = None
    src = url
    if mode == "download":
        src = os.path.join(out, "source")
        status, cpu = reap(subprocess.Popen(["curl", "-sS", "-f", "-o", src, url]))
        fetch = time.time() - t0
        if status != 0 or os.path.getsize(src) != os.path.getsize(local_src):
            return None
    t1 = time.time()
    cpu += probe(src)
    t2 = time.time()
    status, encode_cpu = encode(ctx["ladder"], ctx["poster"], src, os.path.join(out, "ladder"),
                                ctx["retarget"])
    t3 = time.time()
    moto_after = cpu_of(ctx["moto_pid"])
    if status != 0:
        return None
    return {"wall": t3 - t0, "fetch": fetch, "probe": t2 - t1, "encode": t3 - t2,
            "cpu": cpu + encode_cpu, "gets": moto_gets(ctx["moto_log"], log_offset, key),
            "moto_cpu": (moto_after - moto_cpu) if moto_cpu is not None and moto_after else None}


def moov_at_end(path):
    """True when the top-level moov box comes after mdat."""
    order = []
    with open(path, "rb") as f:
        while True:
            head = f.read(8)
            if len(head) < 8:
                break
            size, kind = struct.unpack(">I4s", head)
            if size == 1:
                size = struct.unpack(">Q", f.read(8))[0] - 8
            order.append(kind)
            if size < 8:
                break
            f.seek(size - 8, 1)
    return b"moov" in order and b"mdat" in order and order.index(b"moov") > order.index(b"mdat")


class Relay(threading.Thread):
    """A TCP relay to moto that breaks the first connection once `cut_after` bytes in all went to
    the client: `reset` (RST, as a dropped connection) or `stall` (stops forwarding, keeps the
    connection open, as a silently lost one). With `expire`, connections made after the break
    are answered S3's 403 for an expired URL."""

    def __init__(self, port, cut_after, mode="reset", expire=False):
        super().__init__(daemon=True)
        self.port, self.cut_after, self.mode, self.expire = port, cut_after, mode, expire
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.sock.settimeout(0.2)
        self.addr = self.sock.getsockname()
        self.sent, self.cut_at, self.connections, self.refused = 0, None, 0, 0
        self.lock = threading.Lock()
        self.stopped = threading.Event()

    def run(self):
        while not self.stopped.is_set():
            try:
                client, _ = self.sock.accept()
            except OSError:
                continue
            threading.Thread(target=self.serve, args=(client,), daemon=True).start()
        self.sock.close()

    def serve(self, client):
        with self.lock:
            self.connections += 1
            refuse = self.cut_at is not None and self.expire
        if refuse:
            head = b""
            while b"\r\n\r\n" not in head:
                chunk = client.recv(4096)
                if not chunk:
                    break
                head += chunk
            client.sendall(EXPIRED)
            client.close()
            with self.lock:
                self.refused += 1
            return
        up = socket.create_connection(("127.0.0.1", self.port))
        threading.Thread(target=self.pump, args=(client, up), daemon=True).start()
        try:
            while True:
                data = up.recv(65536)
                if not data:
                    break
                with self.lock:
                    cut = self.cut_at is None and self.sent + len(data) >= self.cut_after
                    if cut:
                        self.cut_at = time.time()
                    else:
                        self.sent += len(data)
                if cut and self.mode == "stall":
                    self.stopped.wait()
                    break
                if cut:
                    # RST on close; the read shutdown wakes the pump's recv so the close is final.
                    client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    client.shutdown(socket.SHUT_RD)
                    break
                client.sendall(data)
        except OSError:
            pass
        for s in (client, up):
            try:
                s.close()
            except OSError:
                pass

    @staticmethod
    def pump(client, up):
        try:
            while True:
                data = client.recv(65536)
                if not data:
                    break
                up.sendall(data)
        except OSError:
            pass

    def stop(self):
        self.stopped.set()
        self.join()


def rung_playlists(ladder_dir):
    """The video rungs' media playlists below a ladder folder."""
    return [os.path.join(root, "index.m3u8") for root, _, files in os.walk(ladder_dir)
            if "index.m3u8" in files and os.path.basename(root) != "audio"]


def extinf_total(ladder_dir):
    """Seconds the shortest rung playlist lists, or None when there is none."""
    totals = []
    for path in rung_playlists(ladder_dir):
        with open(path) as f:
            totals.append(sum(float(x) for x in re.findall(r"#EXTINF:([0-9.]+)", f.read())))
    return min(totals) if totals else None


def frozen_seconds(ladder_dir, listed):
    """Seconds of a rung's video that freezedetect finds frozen (1 s or longer). The test
    source never stands still, so frozen pictures are padding: the graph clones the last picture
    up to the probed length when the input ends early."""
    playlists = rung_playlists(ladder_dir)
    if not playlists:
        return None
    # A killed encode leaves its EVENT playlist open, which ffmpeg would follow as live forever:
    # read a closed copy next to it.
    closed = os.path.join(os.path.dirname(playlists[0]), "closed.m3u8")
    with open(playlists[0]) as f:
        text = f.read()
    with open(closed, "w") as f:
        f.write(text if "#EXT-X-ENDLIST" in text else text.rstrip("\n") + "\n#EXT-X-ENDLIST\n")
    try:
        out = subprocess.run(["ffmpeg", "-hide_banner", "-nostdin", "-i", closed, "-map", "0:v:0",
                              "-vf", "freezedetect=d=1", "-f", "null", "-"], capture_output=True,
                             text=True, timeout=600)
    except subprocess.TimeoutExpired:
        return None
    starts = [float(x) for x in re.findall(r"freeze_start: ([0-9.]+)", out.stderr)]
    lengths = [float(x) for x in re.findall(r"freeze_duration: ([0-9.]+)", out.stderr)]
    frozen = sum(lengths)
    if len(starts) > len(lengths):  # frozen up to the end
        frozen += max(0.0, listed - starts[-1])
    return frozen


def failure_mode(case, key, local_src, seconds, ctx, work):
    """The ladder through a Relay that breaks a third of the way in; a sentence of what came of
    it. case: (slug, name, extra input options, relay mode, expire)."""
    slug, name, extra, mode, expire = case
    relay = Relay(ctx["moto_port"], os.path.getsize(local_src) // 3, mode=mode, expire=expire)
    relay.start()
    url = presign(ctx["endpoint"], key).replace(f"127.0.0.1:{ctx['moto_port']}",
                                                f"127.0.0.1:{relay.addr[1]}")
    out = os.path.join(work, f"fail-{slug}")
    os.makedirs(out, exist_ok=True)
    err_path = os.path.join(work, f"fail-{slug}.log")
    t0 = time.time()
    hung = False
    with open(err_path, "wb") as err:
        proc = run(ctx["retarget"](with_input(ctx["ladder"], url, extra), out), stderr=err)
        # Bounded: a read that never ends is a finding, not a reason to wait forever.
        while proc.poll() is None:
            if relay.cut_at is not None and time.time() - relay.cut_at > STALL_BOUND:
                hung = True
                proc.kill()
                break
            time.sleep(0.2)
        status = proc.wait()
    wall = time.time() - t0
    relay.stop()
    listed = extinf_total(out)
    frozen = frozen_seconds(out, listed) if listed else None
    with open(err_path, errors="replace") as f:
        log = f.read()
    said = [m for m in ("Stream ends prematurely", "Connection reset", "403", "Will reconnect",
                        "Error in the pull function", "Invalid data", "I/O error") if m in log]
    ended = (f"still reading {STALL_BOUND} s after the bytes stopped: killed" if hung
             else f"ladder ffmpeg exit {status} after {wall:.1f} s")
    return (f"{name}: {ended}, "
            f"{'no playlist' if listed is None else f'{listed:.1f} s of {seconds:.1f} s listed'}"
            f"{'' if frozen is None else f', {frozen:.1f} s of it frozen (freezedetect)'}; "
            f"{mode} {'done' if relay.cut_at else 'NOT done'}, {relay.connections} connection(s)"
            f"{f', {relay.refused} answered 403' if expire else ''}; ffmpeg said {said or 'nothing'}")


def measure(cfg, R, work, ctx, median):
    """Rows and notes for the worker's source. ctx: endpoint, moto_port, moto_pid, moto_log,
    ladder and poster argv (from reel), retarget, upload(key, path)."""
    global MOTO_PYTHON, STALL_BOUND
    MOTO_PYTHON = ctx["python"]
    STALL_BOUND = 10 if cfg.smoke else STALL_BOUND
    src = cfg.src
    tail = os.path.join(work, "source-moov-at-end.mp4")
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-i", src, "-map", "0", "-c", "copy", tail],
                   check=True)
    ctx["upload"]("access/faststart.mp4", src)
    ctx["upload"]("access/moov-at-end.mp4", tail)
    seconds = float(subprocess.run(["ffprobe", "-v", "error", "-show_entries", "format=duration",
                                    "-of", "csv=p=0", src], capture_output=True, text=True).stdout)
    runs = {"download": [], "presigned": [], "presigned moov at end": []}
    for run_no in range(cfg.runs):
        for label, mode, key, local in (("download", "download", "access/faststart.mp4", src),
                                        ("presigned", "presigned", "access/faststart.mp4", src),
                                        ("presigned moov at end", "presigned", "access/moov-at-end.mp4",
                                         tail)):
            out = os.path.join(work, f"access-{run_no}-{mode}")
            os.makedirs(out, exist_ok=True)
            figures = access(mode, key, local, ctx, out)
            subprocess.run(["rm", "-rf", out])
            if figures is None:
                R.note(f"scenario 10: source access '{label}' run {run_no} failed")
            runs[label].append(figures)

    def pick(label, field):
        return median([r[field] for r in runs[label] if r and r[field] is not None])

    def add(metric, field, unit, a="download", b="presigned"):
        x, y = pick(a, field), pick(b, field)
        R.add("10 bucket", metric, x, y, unit, ratio=(x / y if x and y else None))

    add("worker's source: download + local tools vs tools on a presigned URL, wall (s)", "wall", "s")
    R.add("10 bucket", "  of which the download (one GET, curl) (s)", pick("download", "fetch"), None, "s")
    add("  of which the probe (ffprobe x2, idet) (s)", "probe", "s")
    add("  of which the ladder + poster ffmpeg (s)", "encode", "s")
    add("  CPU user+sys of curl, ffprobe and ffmpeg (s)", "cpu", "s")
    add("  CPU of moto serving the source (s)", "moto_cpu", "s")
    add("  GET requests for the source", "gets", "")
    mae = "moov at end" if moov_at_end(tail) else "moov NOT at end (check the copy)"
    add(f"  presigned, {mae} vs faststart: wall (s)", "wall", "s",
        a="presigned moov at end", b="presigned")
    add(f"  presigned, {mae} vs faststart: GET requests", "gets", "",
        a="presigned moov at end", b="presigned")

    # URL expiry on moto itself, then the reset connection three ways.
    url = presign(ctx["endpoint"], "access/faststart.mp4", ttl=1)
    time.sleep(2.5)
    status = subprocess.run(["curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}", url],
                            capture_output=True, text=True).stdout
    R.note(f"scenario 10 source: moto answered {status} to a presigned GET 1.5 s past its expiry "
           f"({'it does not enforce expiry: the 403 below comes from the relay' if status == '200' else 'it enforces expiry'})")
    for case in (("defaults", "ffmpeg defaults, connection reset", (), "reset", False),
                 ("reconnect", "-reconnect 1, connection reset", RECONNECT, "reset", False),
                 ("expired", "-reconnect 1, reset after the URL expired", RECONNECT, "reset", True),
                 ("stall", "ffmpeg defaults, connection silently stalls", (), "stall", False)):
        R.note("scenario 10 source, presigned, " +
               failure_mode(case, "access/faststart.mp4", src, seconds, ctx, work))
