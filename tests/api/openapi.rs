//! The OpenAPI document describes what the server does (validity itself is checked by
//! `openapi-spec-validator` and schemathesis in tests/schema/run).

use std::collections::HashSet;

use crate::helpers::TestApp;

#[tokio::test]
async fn the_openapi_document_describes_what_the_server_does() {
    let app = TestApp::spawn(&[]);
    let (status, document) = app.get_json("/api/v1/openapi.json").await;
    assert_eq!(status, 200);
    let mut operation_ids = HashSet::new();
    let paths = document["paths"].as_object().expect("paths");
    for (path, item) in paths {
        for (method, operation) in item.as_object().expect("path item") {
            let id = operation["operationId"].as_str().expect("operationId");
            assert!(operation_ids.insert(id.to_owned()), "{id} used twice");
            for (status, response) in operation["responses"].as_object().expect("responses") {
                assert!(
                    response["description"]
                        .as_str()
                        .is_some_and(|d| !d.is_empty()),
                    "{method} {path} {status} has a description"
                );
            }
        }
    }
    let source = &document["paths"]["/api/v1/videos/{id}/source"];
    assert!(source.get("get").is_some() && source.get("head").is_some());
    let upload = &document["paths"]["/api/v1/videos"]["post"];
    let body = &upload["requestBody"]["content"];
    let form = &body["multipart/form-data"]["schema"]["$ref"];
    assert_eq!(form, "#/components/schemas/UploadForm");
    let form = &document["components"]["schemas"]["UploadForm"]["properties"];
    assert_eq!(form["file"]["format"], "binary");
    assert!(form.get("title").is_some());
    for raw in ["video/*", "application/octet-stream"] {
        let schema = &body[raw]["schema"]["$ref"];
        let name = schema
            .as_str()
            .expect("ref")
            .rsplit('/')
            .next()
            .unwrap_or("");
        assert_eq!(
            document["components"]["schemas"][name]["format"], "binary",
            "{raw} is binary"
        );
    }
    for status in ["202", "400", "408", "413", "415", "503", "507"] {
        assert!(upload["responses"].get(status).is_some(), "upload {status}");
    }
    let limit = document["paths"]["/api/v1/videos"]["get"]["parameters"]
        .as_array()
        .expect("parameters")
        .iter()
        .find(|p| p["name"] == "limit")
        .expect("limit")["schema"]
        .clone();
    assert_eq!(
        (limit["minimum"].as_u64(), limit["maximum"].as_u64()),
        (Some(1), Some(100))
    );
    let progress = &document["components"]["schemas"]["ProgressUpdate"]["properties"];
    assert!(
        progress.get("at").is_some(),
        "progress events document `at`"
    );
}
