//! Resumable uploads when things break: reel killed mid-upload, a client that goes silent, and
//! connections cut by a proxy under the `reel upload` command-line client.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::fixtures;
use crate::helpers::TestApp;
use crate::tus::{created, head, header, offset_of, patch};

const MIB: usize = 1024 * 1024;

/// An MP4 header (so the upload is sniffed as a video) followed by `size` pseudo-random bytes.
fn blob(size: usize) -> Vec<u8> {
    let mut data = std::fs::read(fixtures::tiny()).expect("fixture")[..64].to_vec();
    let mut state = 0x2545_f491_4f6c_dd1d_u64;
    while data.len() < size {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        data.extend_from_slice(&state.to_le_bytes());
    }
    data.truncate(size);
    data
}

pub type Sender = tokio::sync::mpsc::Sender<Result<Vec<u8>, std::io::Error>>;

/// A `PATCH` whose body the test feeds through the returned sender.
pub fn streaming_patch(
    app: &TestApp,
    url: &str,
    offset: u64,
) -> (
    Sender,
    tokio::task::JoinHandle<reqwest::Result<reqwest::Response>>,
) {
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    let body = reqwest::Body::wrap_stream(tokio_stream::wrappers::ReceiverStream::new(rx));
    let request = app
        .client
        .patch(url)
        .header("Tus-Resumable", "1.0.0")
        .header("Upload-Offset", offset.to_string())
        .header("Content-Type", "application/offset+octet-stream")
        .body(body)
        .send();
    (tx, tokio::spawn(request))
}

pub async fn send_in_mib(tx: &Sender, data: &[u8]) {
    for chunk in data.chunks(MIB) {
        tx.send(Ok(chunk.to_vec()))
            .await
            .expect("the server reads the body");
    }
}

/// Polls `HEAD` until the offset reaches `at_least`; returns it.
pub async fn wait_for_offset(app: &TestApp, url: &str, at_least: u64, within: Duration) -> u64 {
    let started = Instant::now();
    loop {
        let offset = offset_of(app, url).await;
        if offset >= at_least {
            return offset;
        }
        assert!(
            started.elapsed() < within,
            "the offset stayed at {offset}, below {at_least}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn after_kill_9_mid_upload_head_reports_bytes_on_disk_and_the_upload_resumes_byte_identical()
{
    let mut app = TestApp::spawn(&[]);
    let data = blob(72 * MIB);
    let url = created(&app, data.len() as u64).await;
    let (tx, request) = streaming_patch(&app, &url, 0);
    // Every 64 MiB (or 5 s) a request records what it has made durable, before it ends.
    send_in_mib(&tx, &data[..65 * MIB]).await;
    let recorded = wait_for_offset(&app, &url, 64 * MIB as u64, Duration::from_secs(30)).await;
    send_in_mib(&tx, &data[65 * MIB..66 * MIB]).await;
    app.crash();
    drop((tx, request));

    let media = app.media.clone();
    let app = TestApp::spawn_in(&media, &[], Vec::new());
    let url = url.replacen(url.split("/api/").next().expect("base"), &app.base, 1);
    let offset = offset_of(&app, &url).await;
    assert!(
        (recorded..=66 * MIB as u64).contains(&offset),
        "HEAD after the crash says {offset}, recorded before it {recorded}"
    );
    let name = url.rsplit('/').next().expect("id");
    let on_disk = std::fs::read(media.join("uploads").join(name)).expect("partial file");
    assert!(
        on_disk.len() as u64 >= offset,
        "every reported byte is on disk"
    );
    assert!(on_disk[..offset as usize] == data[..offset as usize]);

    // On SQLite the restarted server takes the dead process's lock at once; on a shared
    // database another node may hold it, so the lock is taken once its lease runs out (423 with
    // Retry-After until then).
    let started = std::time::Instant::now();
    let rest = loop {
        let rest = patch(&app, &url, offset, data[offset as usize..].to_vec(), &[])
            .await
            .expect("PATCH");
        if rest.status() != 423 || started.elapsed() > std::time::Duration::from_secs(40) {
            break rest;
        }
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    };
    assert_eq!(rest.status(), 204);
    let video = header(&rest, "x-reel-video").expect("the video").to_owned();
    let id = video.rsplit('/').next().expect("id");
    let source = std::fs::read(media.join("sources").join(id)).expect("source");
    assert!(
        source == data,
        "the source is byte-identical after the crash"
    );
}

#[tokio::test]
async fn a_client_gone_silent_keeps_its_bytes_and_its_next_request_takes_over() {
    let app = TestApp::spawn(&[]);
    let data = blob(3 * MIB);
    let url = created(&app, data.len() as u64).await;
    let (tx, silent) = streaming_patch(&app, &url, 0);
    send_in_mib(&tx, &data[..MIB]).await;
    // The silent request records its bytes within 5 s, without holding on to the upload.
    let offset = wait_for_offset(&app, &url, MIB as u64, Duration::from_secs(10)).await;
    assert_eq!(offset, MIB as u64);
    let early = patch(&app, &url, offset, data[MIB..].to_vec(), &[])
        .await
        .expect("PATCH");
    assert_eq!(
        early.status(),
        423,
        "while its lease runs, the upload stays locked"
    );

    let started = Instant::now();
    let taken = loop {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let response = patch(&app, &url, offset, data[MIB..].to_vec(), &[])
            .await
            .expect("PATCH");
        if response.status() != 423 || started.elapsed() > Duration::from_secs(30) {
            break response;
        }
    };
    assert_eq!(taken.status(), 204, "a new request takes over a silent one");
    assert!(started.elapsed() < Duration::from_secs(20));
    let video = header(&taken, "x-reel-video")
        .expect("the video")
        .to_owned();
    // The silent request wakes up to find it lost the upload, and writes nothing.
    let _ = tx.send(Ok(vec![0; 1000])).await;
    drop(tx);
    let late = silent.await.expect("join");
    assert!(late.is_err() || late.is_ok_and(|r| r.status() != 204));
    let id = video.rsplit('/').next().expect("id");
    let source = std::fs::read(app.media.join("sources").join(id)).expect("source");
    assert!(source == data);
    assert_eq!(head(&app, &url).await.status(), 200);
}

/// A TCP proxy that cuts the first `cuts` connections once they have carried `after` bytes from
/// the client: what a phone losing its network does to an upload.
struct CuttingProxy {
    addr: SocketAddr,
    cuts_left: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl CuttingProxy {
    async fn start(upstream: SocketAddr, after: usize, cuts: usize) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let cuts_left = Arc::new(AtomicUsize::new(cuts));
        let left = cuts_left.clone();
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let left = left.clone();
                tokio::spawn(async move {
                    if let Ok(server) = TcpStream::connect(upstream).await {
                        relay(client, server, after, &left).await;
                    }
                });
            }
        });
        Self {
            addr,
            cuts_left,
            task,
        }
    }
}

impl Drop for CuttingProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn relay(client: TcpStream, server: TcpStream, after: usize, cuts_left: &AtomicUsize) {
    let (mut client_read, mut client_write) = client.into_split();
    let (mut server_read, mut server_write) = server.into_split();
    let upstream = async {
        let mut buffer = vec![0u8; 16 * 1024];
        let mut carried = 0;
        loop {
            let n = match client_read.read(&mut buffer).await {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            let cut = carried + n >= after
                && cuts_left
                    .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                    .is_ok();
            if cut {
                // Forward up to the cut, then drop both sides.
                let _ = server_write.write_all(&buffer[..after - carried]).await;
                return;
            }
            carried += n;
            if server_write.write_all(&buffer[..n]).await.is_err() {
                return;
            }
        }
    };
    let downstream = async {
        let _ = tokio::io::copy(&mut server_read, &mut client_write).await;
    };
    tokio::select! {
        _ = upstream => {}
        _ = downstream => {}
    }
}

#[tokio::test]
async fn the_cli_uploads_through_cut_connections_and_follows_to_ready() {
    let app = TestApp::spawn(&[]);
    let upstream: SocketAddr = app
        .base
        .trim_start_matches("http://")
        .parse()
        .expect("addr");
    let proxy = CuttingProxy::start(upstream, 300_000, 2).await;
    let state = tempfile::tempdir().expect("state dir");
    let file = fixtures::standard();
    let run = tokio::process::Command::new(env!("CARGO_BIN_EXE_reel"))
        .args(["upload", "--follow", "--json", "--title", "Cut twice"])
        .args(["--server", &format!("http://{}", proxy.addr)])
        .arg(&file)
        .env("XDG_STATE_HOME", state.path())
        .kill_on_drop(true)
        .output();
    let cli = tokio::time::timeout(Duration::from_secs(120), run)
        .await
        .expect("reel upload finished within 2 min")
        .expect("run reel");
    let stdout = String::from_utf8_lossy(&cli.stdout);
    let lines: Vec<serde_json::Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).expect("one JSON object per line"))
        .collect();
    assert_eq!(
        cli.status.code(),
        Some(0),
        "stdout: {stdout}\nstderr: {}",
        String::from_utf8_lossy(&cli.stderr)
    );
    assert_eq!(
        proxy.cuts_left.load(Ordering::SeqCst),
        0,
        "both cuts happened"
    );
    let retries = lines.iter().filter(|l| l["event"] == "retry").count();
    let resumes: Vec<u64> = lines
        .iter()
        .filter(|l| l["event"] == "resume")
        .filter_map(|l| l["offset"].as_u64())
        .collect();
    assert_eq!(retries, 2, "{stdout}");
    assert_eq!(resumes.len(), 2, "{stdout}");
    assert!(
        resumes[0] > 0 && resumes[1] > resumes[0],
        "it resumed, never restarted: {resumes:?}"
    );
    let ready = lines.last().expect("a last line");
    assert_eq!(ready["event"], "ready", "{stdout}");
    let id = ready["id"].as_str().expect("id");
    assert!(
        ready["playlist"]
            .as_str()
            .is_some_and(|p| p.ends_with(&format!("/hls/{id}/master.m3u8")))
    );
    let source = std::fs::read(app.media.join("sources").join(id)).expect("source");
    assert!(
        source == std::fs::read(&file).expect("fixture"),
        "byte-identical"
    );
    assert_eq!(app.video(id).await["title"], "Cut twice");
    let remembered =
        std::fs::read_to_string(state.path().join("reel/uploads.json")).unwrap_or_default();
    assert!(
        !remembered.contains("/api/v1/uploads/"),
        "a finished upload is forgotten"
    );
}
