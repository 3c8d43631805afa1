//! A video's history: each kind carries the facts the contract names, downloads are recorded
//! with their range, and the pages follow `next_cursor` to the same events, oldest first.

use std::time::Duration;

use serde_json::Value;

use crate::fixtures;
use crate::helpers::{TestApp, wait_until};

fn events<'a>(items: &'a [Value], kind: &str) -> Vec<&'a Value> {
    items.iter().filter(|e| e["kind"] == kind).collect()
}

#[tokio::test]
async fn each_event_carries_its_facts_downloads_their_range_and_pages_follow_the_cursor() {
    let app = TestApp::spawn(&[]);
    let clip = fixtures::tiny();
    let size = std::fs::metadata(&clip).expect("clip").len();
    let id = app.upload_id(&clip).await;
    app.wait_for(&id, "ready").await;
    let source = app.url(&format!("/api/v1/videos/{id}/source"));
    let part = app
        .client
        .get(&source)
        .header("Range", "bytes=0-99")
        .send()
        .await
        .expect("range");
    assert_eq!(part.status(), 206);
    assert_eq!(part.bytes().await.expect("body").len(), 100);
    let whole = app.client.get(&source).send().await.expect("whole");
    assert_eq!(whole.bytes().await.expect("body").len() as u64, size);

    let path = format!("/api/v1/videos/{id}/history");
    let mut all = Vec::new();
    wait_until(
        "both downloads in the history",
        Duration::from_secs(10),
        async || {
            let (_, history) = app.get_json(&path).await;
            all = history["items"].as_array().cloned().unwrap_or_default();
            events(&all, "downloaded").len() == 2
        },
    )
    .await;

    let uploaded = events(&all, "uploaded")[0];
    assert_eq!(uploaded["data"]["bytes"], size, "{uploaded}");
    assert_eq!(uploaded["data"]["protocol"], "raw", "{uploaded}");
    assert!(uploaded["data"]["content_type"].is_string(), "{uploaded}");
    assert!(
        uploaded["data"]["upload_seconds"]
            .as_f64()
            .is_some_and(|s| s >= 0.0)
    );
    let processing = events(&all, "processing")[0];
    assert_eq!(processing["data"]["attempt"], 1, "{processing}");
    assert!(
        processing["data"]["worker"]
            .as_str()
            .is_some_and(|w| !w.is_empty())
    );
    let ready = events(&all, "ready")[0];
    assert!(
        ready["data"]["renditions"]
            .as_array()
            .is_some_and(|r| !r.is_empty()),
        "{ready}"
    );
    assert!(
        ready["data"]["encode_seconds"]
            .as_f64()
            .is_some_and(|s| s > 0.0)
    );
    let downloads = events(&all, "downloaded");
    assert_eq!(
        (
            &downloads[0]["data"]["bytes"],
            &downloads[0]["data"]["range"]
        ),
        (&Value::from(100), &Value::from("bytes=0-99")),
        "{downloads:?}"
    );
    assert_eq!(downloads[1]["data"]["bytes"], size, "{downloads:?}");
    assert!(downloads[1]["data"]["range"].is_null(), "{downloads:?}");
    for event in &all {
        assert_eq!(event["video"], id.as_str());
        assert!(
            event["at"].as_str().is_some_and(|at| at.ends_with('Z')),
            "{event}"
        );
    }

    // Two at a time, following the cursor: the same events, in strictly increasing `seq`.
    let mut paged = Vec::new();
    let mut after = 0;
    loop {
        let (status, page) = app.get_json(&format!("{path}?after={after}&limit=2")).await;
        assert_eq!(status, 200, "{page}");
        let items = page["items"].as_array().expect("items");
        assert!(items.len() <= 2);
        paged.extend(items.iter().cloned());
        match page["next_cursor"].as_str() {
            Some(cursor) => after = cursor.parse().expect("cursor is a seq"),
            None => break,
        }
        assert!(paged.len() <= all.len(), "the cursor runs past the end");
    }
    assert_eq!(paged, all);
    let seqs: Vec<i64> = all
        .iter()
        .map(|e| e["seq"].as_i64().expect("seq"))
        .collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{seqs:?}");
    for (query, code) in [("limit=0", 400), ("limit=1001", 400), ("after=x", 400)] {
        assert_eq!(
            app.get_json(&format!("{path}?{query}")).await.0,
            code,
            "{query}"
        );
    }
}
