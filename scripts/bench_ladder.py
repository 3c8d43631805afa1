"""Scenario 9 of scripts/bench: the 1080p ladder on one core, reel against the PeerTube way.

For each source (the synthetic testsrc2 clip, and a natural-looking one: a slow pan and zoom over
a photograph from Debian's plasma-workspace-wallpapers, with film grain), side by side:

- reel: the ladder ffmpeg exactly as reel ran it (argv read from /proc while a `reel serve`
  pinned to core 0 encoded the upload), re-run alone with `taskset -c 0`;
- baseline: one ffmpeg per rung, each decoding the source and scaling from it (bicubic), x264
  `veryfast` at the same bit rate, maxrate and bufsize, the audio encoded into every rung, one
  after another with `taskset -c 0` (the PeerTube way);
- real-time factor on one core: source seconds / wall seconds (and / CPU seconds, user+sys
  from wait4, which a busy shared machine disturbs less);
- SSIM (ffmpeg's `ssim`, All) of every rung against the source scaled to that rung (lanczos,
  accurate rounding, full chroma), and bytes of every rung (init + segments; reel's shared audio
  rendition listed apart).

With `--levers`, ladder variants built here (not by reel) measure what each speed lever gives.
"""
import json
import os
import re
import shutil
import statistics
import subprocess
import time

WALLPAPER = "/usr/share/wallpapers/Path/contents/images/2560x1600.jpg"
WALLPAPER_PACKAGE = "plasma-workspace-wallpapers"
# The default ladder for a 1080p source, as reel plans it: (width, height, kbps, name).
RUNGS = [(1920, 1080, 5000, "1080p"), (1280, 720, 2800, "720p"), (854, 480, 1400, "480p"),
         (640, 360, 800, "360p"), (426, 240, 400, "240p")]
HLS = ["-f", "hls", "-hls_time", "4", "-hls_playlist_type", "vod", "-hls_segment_type", "fmp4",
       "-hls_flags", "independent_segments", "-hls_fmp4_init_filename", "init.mp4"]
# Sources tagged BT.709, so reel keeps their pixels as they are (an untagged picture of 576
# lines or fewer is taken for BT.601 and converted): SSIM then compares like with like.
BT709 = ["-colorspace", "bt709", "-color_primaries", "bt709", "-color_trc", "bt709", "-color_range", "tv"]
GOP = ["-profile:v", "high", "-pix_fmt", "yuv420p", "-g", "120", "-keyint_min", "120",
       "-sc_threshold", "0", "-force_key_frames", "expr:gte(t,n_forced*4)"]


def log(*a):
    print("[bench:9]", *a, flush=True, file=__import__("sys").stderr)


# ---------------------------------------------------------------- sources

def make_testsrc(path, secs, size="1920x1080"):
    if os.path.exists(path):
        return path
    subprocess.run(["ffmpeg", "-v", "error", "-y",
                    "-f", "lavfi", "-i", f"testsrc2=size={size}:rate=30:duration={secs}",
                    "-f", "lavfi", "-i", f"sine=frequency=440:sample_rate=48000:duration={secs}",
                    "-c:v", "libx264", "-preset", "veryfast", "-pix_fmt", "yuv420p", *BT709,
                    "-c:a", "aac", "-b:a", "128k", "-shortest", "-movflags", "+faststart", path],
                   check=True)
    return path


def make_natural(path, secs):
    """A slow pan and zoom over a forest photograph with temporal film grain, 1080p30, x264 at
    about 20 Mbit/s (a phone's rate), pink noise for sound. Installs the wallpaper package
    when it is missing and we may (root); returns None when the photograph cannot be had."""
    if os.path.exists(path):
        return path
    if not os.path.exists(WALLPAPER) and os.geteuid() == 0 and shutil.which("apt-get"):
        log(f"installing {WALLPAPER_PACKAGE} for the natural source")
        subprocess.run(["apt-get", "install", "-y", "-qq", WALLPAPER_PACKAGE],
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    if not os.path.exists(WALLPAPER):
        return None
    frames = int(secs * 30)
    graph = (f"[0:v]crop=2560:1440,scale=5120:2880,"
             f"zoompan=z='1+0.2*on/{frames}':x='(iw-iw/zoom)*on/{frames}':y='(ih-ih/zoom)/2'"
             f":d=1:s=1920x1080:fps=30,noise=alls=8:allf=t,format=yuv420p[v]")
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-loop", "1", "-framerate", "30", "-i", WALLPAPER,
                    "-f", "lavfi", "-i", "anoisesrc=color=pink:amplitude=0.05:sample_rate=48000",
                    "-filter_complex", graph, "-map", "[v]", "-map", "1:a", "-t", str(secs),
                    "-c:v", "libx264", "-preset", "veryfast", "-crf", "20", "-maxrate", "20M", *BT709,
                    "-bufsize", "40M", "-c:a", "aac", "-b:a", "128k", "-movflags", "+faststart", path],
                   check=True)
    return path


def duration(path):
    out = subprocess.run(["ffprobe", "-v", "error", "-show_entries", "format=duration", "-of", "csv=p=0",
                          path], capture_output=True, text=True).stdout
    return float(out.strip())


def picture_size(path):
    out = subprocess.run(["ffprobe", "-v", "error", "-select_streams", "v:0", "-show_entries",
                          "stream=width,height", "-of", "json", path], capture_output=True, text=True).stdout
    stream = next(s for s in json.loads(out)["streams"] if s.get("width"))
    return stream["width"], stream["height"]


def rungs_for(path):
    """The default ladder's rungs that fit the source's height (reel never upscales), at the
    source's aspect."""
    width, height = picture_size(path)
    return [(round(width * h / height / 2) * 2, h, kbps, name) for (_, h, kbps, name) in RUNGS if h <= height]


# ---------------------------------------------------------------- commands

def peertube_commands(src, out, rungs=RUNGS, preset="veryfast"):
    """The baseline: one ffmpeg per rung, scaled from the source, audio in every rung."""
    cmds = []
    for (w, h, kbps, name) in rungs:
        g = (f"[0:v:0]fps=30,scale={w}:{h}:flags=bicubic,setsar=1,format=yuv420p[v0];"
             f"[0:a:0]aresample=48000[a0]")
        d = os.path.join(out, name)
        os.makedirs(d, exist_ok=True)
        cmds.append(["ffmpeg", "-nostats", "-y", "-i", src, "-filter_complex", g,
                     "-map", "[v0]", "-b:v:0", f"{kbps}k", "-maxrate:v:0", f"{kbps * 11 // 10}k",
                     "-bufsize:v:0", f"{kbps * 3 // 2}k", "-map", "[a0]",
                     "-c:v", "libx264", "-preset", preset] + GOP +
                    ["-c:a", "aac", "-b:a", "128k"] + HLS +
                    ["-var_stream_map", f"v:0,a:0,name:{name}",
                     "-hls_segment_filename", os.path.join(out, "%v", "seg_%05d.m4s"),
                     os.path.join(out, "%v", "index.m3u8")])
    return cmds


def lever_ladder(src, out, cascade=True, audio_once=True, scaler="bicubic", presets=None,
                 x264=None, crf=None, decode=()):
    """A one-process ladder with the levers set; `presets` is one x264 preset per rung
    (top first), default veryfast everywhere."""
    n = len(RUNGS)
    presets = presets or ["veryfast"] * n
    g = "[0:v:0]fps=30"
    if cascade:
        g += "[s0]"
        for i, (w, h, _, _) in enumerate(RUNGS):
            nxt = f",split=2[v{i}][s{i + 1}]" if i < n - 1 else f"[v{i}]"
            g += f";[s{i}]scale={w}:{h}:flags={scaler},setsar=1,format=yuv420p{nxt}"
    else:
        g += f",split={n}" + "".join(f"[s{i}]" for i in range(n))
        for i, (w, h, _, _) in enumerate(RUNGS):
            g += f";[s{i}]scale={w}:{h}:flags={scaler},setsar=1,format=yuv420p[v{i}]"
    g += ";[0:a:0]aresample=48000"
    g += "[a0]" if audio_once else f",asplit={n}" + "".join(f"[a{i}]" for i in range(n))
    args = ["ffmpeg", "-nostats", "-y", *decode, "-i", src, "-filter_complex", g]
    vsm = []
    for i, (w, h, kbps, name) in enumerate(RUNGS):
        args += ["-map", f"[v{i}]", f"-preset:v:{i}", presets[i]]
        args += [f"-crf:v:{i}", str(crf)] if crf is not None else [f"-b:v:{i}", f"{kbps}k"]
        args += [f"-maxrate:v:{i}", f"{kbps * 11 // 10}k", f"-bufsize:v:{i}", f"{kbps * 3 // 2}k"]
        if x264:
            args += [f"-x264-params:v:{i}", x264[i] if isinstance(x264, list) else x264]
        if audio_once:
            vsm.append(f"v:{i},agroup:audio,name:{name}")
        else:
            args += ["-map", f"[a{i}]"]
            vsm.append(f"v:{i},a:{i},name:{name}")
    if audio_once:
        args += ["-map", "[a0]"]
        vsm.append("a:0,agroup:audio,name:audio")
    args += ["-c:v", "libx264"] + GOP + ["-c:a", "aac", "-b:a", "128k"] + HLS
    args += ["-var_stream_map", " ".join(vsm), "-hls_segment_filename",
             os.path.join(out, "%v", "seg_%05d.m4s"), os.path.join(out, "%v", "index.m3u8")]
    return [args]


# ---------------------------------------------------------------- measuring

def timed_commands(cmds):
    """Runs the commands one after another on core 0; returns (wall s, CPU s)."""
    wall, cpu = 0.0, 0.0
    for argv in cmds:
        t = time.time()
        p = subprocess.Popen(["taskset", "-c", "0"] + argv, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
        _, status, ru = os.wait4(p.pid, 0)
        wall += time.time() - t
        cpu += ru.ru_utime + ru.ru_stime
        if status != 0:
            raise RuntimeError("ffmpeg failed: " + " ".join(argv)[:300])
    return wall, cpu


def find_playlist(root, name):
    """The rung's media playlist under root (a one-process ladder writes root/<name>/, a
    per-rung run root/<name>/<name>/)."""
    for d in (os.path.join(root, name), os.path.join(root, name, name)):
        if os.path.exists(os.path.join(d, "index.m3u8")):
            return d
    return None


def folder_bytes(d):
    return sum(os.path.getsize(os.path.join(d, f)) for f in os.listdir(d) if f.endswith((".m4s", ".mp4")))


def ssim(playlist, src):
    """SSIM (All) of a rung against the source scaled to the rung's own size, first frame with
    first frame (the ssim filter pairs frames by timestamp, and a muxer may shift a rung's
    start by its B-frame delay)."""
    w, h = picture_size(playlist)
    p = subprocess.run(["ffmpeg", "-nostats", "-i", playlist, "-i", src, "-lavfi",
                        f"[1:v]fps=30,setpts=PTS-STARTPTS,scale={w}:{h}:flags=lanczos+accurate_rnd"
                        f"+full_chroma_int,format=yuv420p[ref];[0:v]setpts=PTS-STARTPTS,format=yuv420p[out];"
                        f"[out][ref]ssim",
                        "-f", "null", "-"], capture_output=True, text=True)
    m = re.search(r"SSIM .*All:([0-9.]+)", p.stderr)
    return float(m.group(1)) if m else None


def quality(root, src, rungs=RUNGS):
    """{rung: (SSIM, bytes)} of a finished ladder, and the shared audio's bytes (or None)."""
    out = {}
    for (_, _, _, name) in rungs:
        d = find_playlist(root, name)
        out[name] = (ssim(os.path.join(d, "index.m3u8"), src), folder_bytes(d)) if d else (None, None)
    audio = os.path.join(root, "audio")
    return out, (folder_bytes(audio) if os.path.isdir(audio) else None)


def measure(name, build, src, work, runs):
    """Median wall and CPU of `runs` runs of build(src, out), then quality of the last output."""
    walls, cpus = [], []
    out = os.path.join(work, "lever-" + re.sub(r"\W+", "-", name))
    for _ in range(runs):
        shutil.rmtree(out, ignore_errors=True)
        os.makedirs(out)
        w, c = timed_commands(build(src, out))
        walls.append(w)
        cpus.append(c)
    q, audio = quality(out, src)
    shutil.rmtree(out, ignore_errors=True)
    return {"wall": statistics.median(walls), "cpu": statistics.median(cpus), "walls": walls,
            "cpus": cpus, "rungs": q, "audio": audio}


# The levers, one at a time from today's ladder, then together. Each entry: (name, kwargs).
LEVERS = [
    ("today: split from the source, audio per rung", dict(cascade=False, audio_once=False)),
    ("audio once", dict(cascade=False, audio_once=True)),
    ("cascade scaling", dict(cascade=True, audio_once=False)),
    ("cascade + audio once", dict()),
    ("+ bilinear scaler", dict(scaler="bilinear")),
    ("+ area scaler", dict(scaler="area")),
    ("+ x264 threads=1:lookahead-threads=1", dict(x264="threads=1:lookahead-threads=1")),
    ("+ x264 sliced-threads", dict(x264="sliced-threads=1")),
    ("+ rc-lookahead=5 on every rung", dict(x264="rc-lookahead=5")),
    ("+ superfast on 1080p", dict(presets=["superfast"] + ["veryfast"] * 4)),
    ("+ superfast on 1080p and 720p", dict(presets=["superfast", "superfast"] + ["veryfast"] * 3)),
    ("+ superfast on 1080p, faster below 720p",
     dict(presets=["superfast", "veryfast", "faster", "faster", "faster"])),
    ("+ capped CRF 23 (maxrate/bufsize kept)", dict(crf=23)),
    ("+ decoder skips the loop filter", dict(decode=["-skip_loop_filter", "all"])),
    ("+ partitions=none on every rung", dict(x264="partitions=none")),
    ("+ me=dia:subme=1 on every rung", dict(x264="me=dia:subme=1")),
    ("+ partitions=none, me=dia:subme=1 on 1080p",
     dict(x264=["partitions=none:me=dia:subme=1"] + ["partitions=none"] * 4)),
    ("+ aq-mode=0", dict(x264="aq-mode=0")),
]


# ---------------------------------------------------------------- the scenario

def scenario(cfg, R, work, Reel, Sampler, retarget):
    """9: reel's one-process ladder vs one ffmpeg per rung, pinned to one core."""
    secs = 1 if cfg.smoke else cfg.ladder_secs
    inputs = os.path.join(work, "inputs")
    # The smoke run only keeps the scenario from rotting: a 1 s 320x240 clip, one rung.
    size = "320x240" if cfg.smoke else "1920x1080"
    sources = [("testsrc2", make_testsrc(os.path.join(inputs, f"ladder_testsrc2_{size}_{secs}s.mp4"),
                                         secs, size))]
    if not cfg.smoke:
        natural = make_natural(os.path.join(inputs, f"ladder_natural_{secs}s.mp4"), secs)
        if natural:
            sources.append(("natural", natural))
        else:
            R.note(f"scenario 9: no {WALLPAPER} (package {WALLPAPER_PACKAGE}); natural source skipped")
    for label, src in sources:
        length = duration(src)
        rungs = rungs_for(src)
        reel = Reel(work, f"ladder-{label}", ["--encoders", "1"], taskset=0)
        try:
            samp = Sampler(reel.pid, media_dir=reel.media)
            samp.start()
            code, _, j = reel.upload(src)
            t0 = time.time()
            assert code == 202, (code, j)
            status = reel.wait_terminal(j["id"], 3600)
            job_wall = time.time() - t0
            samp.stop()
        finally:
            reel.stop()
        ladders = [e for e in samp.ffmpeg.values() if "-filter_complex" in e["argv"]]
        if status != "ready" or not ladders:
            R.note(f"scenario 9 ({label}): job ended {status}; ladder seen: {bool(ladders)}")
            R.failed = True
            continue
        argv = ladders[0]["argv"]
        mine, base = {"wall": [], "cpu": []}, {"wall": [], "cpu": []}
        out_reel, out_base = os.path.join(work, f"l8-reel-{label}"), os.path.join(work, f"l8-base-{label}")
        for run in range(cfg.runs):
            for d in (out_reel, out_base):
                shutil.rmtree(d, ignore_errors=True)
                os.makedirs(d)
            w, c = timed_commands([retarget(argv, out_reel)])
            mine["wall"].append(w)
            mine["cpu"].append(c)
            w, c = timed_commands(peertube_commands(src, out_base, rungs))
            base["wall"].append(w)
            base["cpu"].append(c)
            log(f"{label} run {run}: reel {mine['wall'][-1]:.1f}s wall {mine['cpu'][-1]:.1f}s cpu; "
                f"per rung {base['wall'][-1]:.1f}s wall {base['cpu'][-1]:.1f}s cpu")
        q_reel, audio = quality(out_reel, src, rungs)
        q_base, _ = quality(out_base, src, rungs)
        cfg.ladder_quality = getattr(cfg, "ladder_quality", {})
        cfg.ladder_quality[label] = q_base
        scen = f"9 one-core ladder, {label}"
        rw, bw = length / statistics.median(mine["wall"]), length / statistics.median(base["wall"])
        rc, bc = length / statistics.median(mine["cpu"]), length / statistics.median(base["cpu"])
        R.add(scen, f"real-time factor on core 0, wall ({length:.1f} s source; runs "
              f"{', '.join(f'{length / x:.2f}' for x in mine['wall'])} vs "
              f"{', '.join(f'{length / x:.2f}' for x in base['wall'])})", rw, bw, "x",
              ratio=rw / bw, target="reel >= 1.0x")
        R.add(scen, "  real-time factor, source seconds / CPU seconds (user+sys)", rc, bc, "x", ratio=rc / bc)
        R.add(scen, "  reel job on core 0: 202 -> ready (s)", job_wall, None, "s")
        for (_, _, _, name) in rungs:
            (sr, br), (sb, bb) = q_reel[name], q_base[name]
            R.add(scen, f"  SSIM {name} (reel - baseline in the ratio column)", sr, sb,
                  ratio=(sr - sb if sr is not None and sb is not None else None), target="diff >= -0.005")
            played = br + (audio or 0) if br is not None else None
            R.add(scen, f"  bytes {name}: reel video + shared audio vs baseline rung", played, bb, "B",
                  ratio=(played / bb if played and bb else None), target="<= 1.0")
        total_reel = sum(q_reel[n][1] or 0 for n in q_reel) + (audio or 0)
        total_base = sum(q_base[n][1] or 0 for n in q_base)
        R.add(scen, "  bytes of the whole ladder (reel: audio once)", total_reel, total_base, "B",
              ratio=total_reel / total_base if total_base else None)
        shutil.rmtree(out_reel, ignore_errors=True)
        shutil.rmtree(out_base, ignore_errors=True)
        if cfg.levers and not cfg.smoke:
            levers(cfg, R, work, label, src, length, q_base)


def levers(cfg, R, work, label, src, length, q_base):
    rows = []
    for name, kwargs in LEVERS:
        r = measure(name, lambda s, o, kw=kwargs: lever_ladder(s, o, **kw), src, work, cfg.runs)
        diffs = [r["rungs"][n][0] - q_base[n][0] for n in q_base if r["rungs"][n][0] is not None]
        size = sum(v[1] or 0 for v in r["rungs"].values()) + (r["audio"] or 0)
        base_size = sum(v[1] or 0 for v in q_base.values())
        rows.append([name, f"{length / r['cpu']:.3f}", f"{length / r['wall']:.3f}",
                     f"{min(diffs):+.4f}" if diffs else "?",
                     " / ".join(f"{r['rungs'][n][0]:.4f}" for n in q_base),
                     f"{size / base_size:.3f}" if base_size else "?"])
        log(f"lever {label}: {rows[-1]}")
    R.tables.append((f"9 levers, {label} ({length:.1f} s, median of {cfg.runs}; baseline SSIM "
                     + " / ".join(f"{q_base[n][0]:.4f}" for n in q_base) + ")",
                     ["lever", "RT (CPU)", "RT (wall)", "worst SSIM vs baseline",
                      "SSIM 1080p / 720p / 480p / 360p / 240p", "bytes vs baseline"], rows))
