//! The client's country from a GeoIP database (a tiny `.mmdb` made by the PyPI `mmdb-writer`,
//! the format MaxMind and DB-IP ship), with `X-Forwarded-For` believed only from trusted proxies.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

use crate::fixtures;
use crate::helpers::TestApp;

/// Writes a country database: 81.2.69.0/24 is GB, 127.0.0.0/8 is AQ, and 203.0.113.0/24 has
/// only a registered country, JP.
pub fn write_mmdb(dir: &Path) -> PathBuf {
    let path = dir.join("countries.mmdb");
    let script = r#"
import sys
from mmdb_writer import MMDBWriter
from netaddr import IPSet
w = MMDBWriter(ip_version=6, database_type="GeoLite2-Country", ipv4_compatible=True)
w.insert_network(IPSet(["81.2.69.0/24"]), {"country": {"iso_code": "GB"}})
w.insert_network(IPSet(["127.0.0.0/8"]), {"country": {"iso_code": "AQ"}})
w.insert_network(IPSet(["203.0.113.0/24"]), {"registered_country": {"iso_code": "JP"}})
w.to_db_file(sys.argv[1])
"#;
    let python_path = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/python");
    let output = Command::new("python3")
        .args(["-c", script])
        .arg(&path)
        .env("PYTHONPATH", python_path)
        .output()
        .expect("python3");
    assert!(
        output.status.success(),
        "mmdb-writer (scripts/install-deps test installs it into target/python): {}",
        String::from_utf8_lossy(&output.stderr)
    );
    path
}

async fn upload_from(app: &TestApp, forwarded: Option<&str>) -> Value {
    let bytes = tokio::fs::read(fixtures::tiny()).await.expect("fixture");
    let mut request = app
        .client
        .post(app.url("/api/v1/videos"))
        .header("Content-Type", "video/mp4");
    if let Some(chain) = forwarded {
        request = request.header("X-Forwarded-For", chain);
    }
    let response = request.body(bytes).send().await.expect("upload");
    assert_eq!(response.status(), 202);
    response.json().await.expect("json")
}

async fn uploaded_country(app: &TestApp, video: &Value) -> String {
    let id = video["id"].as_str().expect("id");
    let (_, history) = app.get_json(&format!("/api/v1/videos/{id}/history")).await;
    history["items"][0]["data"]["country"]
        .as_str()
        .expect("country in `uploaded`")
        .to_owned()
}

#[tokio::test]
async fn countries_come_from_the_database_and_forwarded_for_only_through_trusted_proxies() {
    let dir = tempfile::tempdir().expect("dir");
    let db = write_mmdb(dir.path());
    let db = db.to_str().expect("path");
    let behind_proxy = TestApp::spawn(&[
        "--geoip-db",
        db,
        "--trusted-proxies",
        "127.0.0.1/32",
        "--property",
        "country=$.request.country",
    ]);
    let cases = [
        (Some("81.2.69.160"), "GB"),
        // A client's own entry left of what the proxy appended is not believed.
        (Some("81.2.69.1, 203.0.113.5"), "JP"),
        (Some("198.51.100.1"), "XX"),
        (None, "AQ"),
    ];
    for (forwarded, expected) in cases {
        let video = upload_from(&behind_proxy, forwarded).await;
        assert_eq!(video["properties"]["country"], expected, "{forwarded:?}");
        assert_eq!(uploaded_country(&behind_proxy, &video).await, expected);
    }

    // No trusted proxy: X-Forwarded-For is the client's own claim; the peer is looked up.
    let direct = TestApp::spawn(&["--geoip-db", db]);
    let video = upload_from(&direct, Some("81.2.69.160")).await;
    assert_eq!(uploaded_country(&direct, &video).await, "AQ");
    let series = r#"reel_uploads_by_country_total{country="AQ",content_type="video/mp4",outcome="accepted"}"#;
    assert_eq!(direct.metric(series).await, 1.0);
}

#[test]
fn a_database_that_cannot_be_read_stops_start_up() {
    let dir = tempfile::tempdir().expect("dir");
    let bogus = dir.path().join("bogus.mmdb");
    std::fs::write(&bogus, b"not a database").expect("write");
    let output = Command::new(env!("CARGO_BIN_EXE_reel"))
        .args(["serve", "--listen", "127.0.0.1:0", "--media-dir"])
        .arg(dir.path().join("media"))
        .arg("--geoip-db")
        .arg(&bogus)
        .output()
        .expect("reel");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("GeoIP database"), "{stderr}");
}
