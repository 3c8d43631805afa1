//! What the creator's library needs from the API: a title search on the list, and `PATCH` to
//! change a title after upload.

use serde_json::{Value, json};

use crate::fixtures;
use crate::helpers::TestApp;

/// Uploads the tiny fixture with a title (or none) and a file name; returns its id.
async fn upload_titled(app: &TestApp, title: Option<&str>, filename: &str) -> String {
    let bytes = tokio::fs::read(fixtures::tiny()).await.expect("fixture");
    let mut request = app
        .client
        .post(app.url("/api/v1/videos"))
        .header("Content-Type", "video/mp4")
        .header("X-Filename", filename)
        .body(bytes);
    if let Some(title) = title {
        request = request.header("X-Title", title);
    }
    let response = request.send().await.expect("upload");
    assert_eq!(response.status(), 202);
    let body: Value = response.json().await.expect("json");
    body["id"].as_str().expect("id").to_owned()
}

fn titles(page: &Value) -> Vec<&str> {
    page["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|v| v["title"].as_str().or(v["filename"].as_str()).unwrap_or(""))
        .collect()
}

async fn patch(app: &TestApp, id: &str, content_type: &str, body: String) -> (u16, Value) {
    let response = app
        .client
        .patch(app.url(&format!("/api/v1/videos/{id}")))
        .header("Content-Type", content_type)
        .body(body)
        .send()
        .await
        .expect("PATCH");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn the_list_searches_titles_ignoring_case_with_status_and_cursor() {
    let app = TestApp::spawn(&[]);
    upload_titled(&app, Some("Beach day"), "a.mp4").await;
    upload_titled(&app, Some("City night"), "b.mp4").await;
    upload_titled(&app, Some("Mountain BEACH walk"), "c.mp4").await;
    upload_titled(&app, None, "harbour-beach.mp4").await;

    let (status, page) = app.get_json("/api/v1/videos?q=beach").await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(
        titles(&page),
        ["harbour-beach.mp4", "Mountain BEACH walk", "Beach day"],
        "newest first; an untitled video is found by its file name"
    );

    let (_, first) = app.get_json("/api/v1/videos?q=BeAcH&limit=2").await;
    assert_eq!(titles(&first), ["harbour-beach.mp4", "Mountain BEACH walk"]);
    let cursor = first["next_cursor"].as_str().expect("a second page");
    let (_, second) = app
        .get_json(&format!("/api/v1/videos?q=BeAcH&limit=2&cursor={cursor}"))
        .await;
    assert_eq!(titles(&second), ["Beach day"]);
    assert!(second["next_cursor"].is_null());

    let (_, none) = app.get_json("/api/v1/videos?q=beach&status=failed").await;
    assert_eq!(titles(&none), Vec::<&str>::new());
    let (_, night) = app.get_json("/api/v1/videos?q=%20night%20").await;
    assert_eq!(titles(&night), ["City night"], "the search text is trimmed");
    let (_, all) = app.get_json("/api/v1/videos?q=").await;
    assert_eq!(titles(&all).len(), 4, "an empty search is no filter");
    // A LIKE pattern would treat `%` and `_` as wildcards; the search is a plain substring.
    let (_, literal) = app.get_json("/api/v1/videos?q=%25").await;
    assert_eq!(titles(&literal), Vec::<&str>::new());

    let (status, body) = app
        .get_json(&format!("/api/v1/videos?q={}", "x".repeat(201)))
        .await;
    assert_eq!(status, 400);
    assert_eq!(body["error"]["code"], "invalid_query");
}

#[tokio::test]
async fn a_title_is_changed_with_patch_and_bad_titles_are_refused_in_the_error_shape() {
    let app = TestApp::spawn(&[]);
    let id = upload_titled(&app, Some("Old name"), "clip.mp4").await;

    let (status, video) = patch(
        &app,
        &id,
        "application/json",
        json!({"title": "  Summer trip \u{7}"}).to_string(),
    )
    .await;
    assert_eq!(status, 200, "{video}");
    assert_eq!(video["title"], "Summer trip");
    assert_eq!(video["id"], id.as_str());
    assert_eq!(app.video(&id).await["title"], "Summer trip");
    let (_, found) = app.get_json("/api/v1/videos?q=summer").await;
    assert_eq!(titles(&found), ["Summer trip"]);

    let (status, unchanged) = patch(&app, &id, "application/json", "{}".into()).await;
    assert_eq!(
        (status, unchanged["title"].as_str()),
        (200, Some("Summer trip"))
    );

    let refused = [
        (json!({"title": "   "}).to_string(), 400, "invalid_title"),
        (
            json!({"title": "é".repeat(201)}).to_string(),
            400,
            "invalid_title",
        ),
        (json!({"title": 5}).to_string(), 400, "invalid_body"),
        (json!({"name": "x"}).to_string(), 400, "invalid_body"),
        ("{not json".into(), 400, "invalid_body"),
    ];
    for (body, want_status, code) in refused {
        let (status, error) = patch(&app, &id, "application/json", body.clone()).await;
        assert_eq!(
            (status, error["error"]["code"].as_str()),
            (want_status, Some(code)),
            "{body}"
        );
        assert!(
            error["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty())
        );
    }
    let (status, error) = patch(&app, &id, "text/plain", json!({"title": "x"}).to_string()).await;
    assert_eq!(
        (status, error["error"]["code"].as_str()),
        (415, Some("unsupported_media_type"))
    );
    assert_eq!(
        app.video(&id).await["title"],
        "Summer trip",
        "refusals change nothing"
    );

    let missing = "01900000-0000-7000-8000-000000000000";
    let (status, error) = patch(
        &app,
        missing,
        "application/json",
        json!({"title": "x"}).to_string(),
    )
    .await;
    assert_eq!(
        (status, error["error"]["code"].as_str()),
        (404, Some("not_found"))
    );

    let (_, document) = app.get_json("/api/v1/openapi.json").await;
    let operation = &document["paths"]["/api/v1/videos/{id}"]["patch"];
    assert!(
        operation["requestBody"].is_object(),
        "PATCH documented: {operation}"
    );
    assert!(
        document["components"]["schemas"]
            .get("VideoPatch")
            .is_some()
    );
    let list = document["paths"]["/api/v1/videos"]["get"]["parameters"]
        .as_array()
        .expect("list parameters");
    assert!(
        list.iter().any(|p| p["name"] == "q"),
        "q documented: {list:?}"
    );
}
