//! The dashboard against a real Prometheus (Debian's `prometheus`) scraping a running reel:
//! after uploads "from" three countries, every query of monitoring/grafana/dashboards/reel.json
//! (panels and template variables) runs against Prometheus' HTTP API and returns the series its
//! panel is about. A renamed metric or label breaks this spec, not a panel in production.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};

use crate::fixtures;
use crate::helpers::{TestApp, wait_until};

const COUNTRIES: [&str; 3] = ["DE", "FR", "JP"];
const DEADLINE: Duration = Duration::from_secs(60);

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

/// A Prometheus on a free loopback port, scraping `target` every second with the repo's
/// scrape config; killed on drop.
struct Prometheus {
    child: Child,
    base: String,
    client: reqwest::Client,
    _dir: tempfile::TempDir,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Prometheus {
    fn start(target: &str) -> Prometheus {
        let dir = tempfile::tempdir().expect("dir");
        let config = std::fs::read_to_string(repo("monitoring/prometheus/prometheus.yml"))
            .expect("the repo's scrape config");
        assert!(config.contains("reel:8080") && config.contains("scrape_interval: 15s"));
        let config = config
            .replace("reel:8080", target)
            .replace("scrape_interval: 15s", "scrape_interval: 1s");
        let config_path = dir.path().join("prometheus.yml");
        std::fs::write(&config_path, config).expect("write config");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let log = std::fs::File::create(dir.path().join("prometheus.log")).expect("log");
        let child = Command::new("prometheus")
            .arg(format!("--config.file={}", config_path.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("Debian's prometheus (scripts/install-deps test installs it)");
        Prometheus {
            child,
            base: format!("http://127.0.0.1:{port}"),
            client: reqwest::Client::new(),
            _dir: dir,
        }
    }

    /// An instant query's answer (`None` while Prometheus is not up yet).
    async fn answer(&self, promql: &str) -> Option<Value> {
        let response = self
            .client
            .get(format!("{}/api/v1/query", self.base))
            .query(&[("query", promql)])
            .send()
            .await
            .ok()?;
        response.json().await.ok()
    }

    /// An instant query's result vector; panics on an error answer.
    async fn query(&self, promql: &str) -> Vec<Value> {
        let body = self
            .answer(promql)
            .await
            .unwrap_or_else(|| panic!("Prometheus did not answer {promql}"));
        assert_eq!(body["status"], "success", "{promql}: {body}");
        body["data"]["result"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    /// The value of a query that returns one number, if it does.
    async fn scalar(&self, promql: &str) -> Option<f64> {
        let body = self.answer(promql).await?;
        body["data"]["result"][0]["value"][1].as_str()?.parse().ok()
    }
}

async fn upload_from(app: &TestApp, country: &str) {
    let bytes = tokio::fs::read(fixtures::tiny()).await.expect("fixture");
    let response = app
        .client
        .post(app.url("/api/v1/videos"))
        .header("Content-Type", "video/mp4")
        .header("X-Country", country)
        .body(bytes)
        .send()
        .await
        .expect("upload");
    assert_eq!(response.status(), 202, "upload from {country}");
}

/// Every accepted upload of every country is in Prometheus at `count`.
async fn scraped(prometheus: &Prometheus, count: f64) {
    wait_until("Prometheus to scrape the uploads", DEADLINE, async || {
        let mut all = true;
        for country in COUNTRIES {
            let promql = format!(
                r#"sum(reel_uploads_by_country_total{{country="{country}",outcome="accepted"}})"#
            );
            all &= prometheus.scalar(&promql).await == Some(count);
        }
        all
    })
    .await;
}

/// A panel's expression with Grafana's variables as the dashboard would send them.
fn expand(expr: &str) -> String {
    expr.replace("$__rate_interval", "1m")
        .replace("$__range", "10m")
        .replace("$country", ".*")
}

/// The labels a query groups by (`by (le, country)` gives `le` and `country`).
fn grouped_by(expr: &str) -> BTreeSet<String> {
    expr.split("by (")
        .skip(1)
        .filter_map(|rest| rest.split(')').next())
        .flat_map(|labels| labels.split(','))
        .map(|label| label.trim().to_owned())
        .filter(|label| !label.is_empty() && label != "le")
        .collect()
}

#[tokio::test]
async fn every_dashboard_query_returns_its_series_from_a_real_prometheus() {
    let app = TestApp::spawn(&[
        "--country-header",
        "X-Country",
        "--trusted-proxies",
        "127.0.0.1/32",
        "--webhook-allow-private",
        "--webhook-backoff-base-ms",
        "100",
    ]);
    // A webhook whose receiver is down, so circuit states exist.
    let created = app
        .client
        .post(app.url("/api/v1/webhooks"))
        .json(&json!({"url": "http://127.0.0.1:9/hook"}))
        .send()
        .await
        .expect("webhook");
    assert_eq!(created.status(), 201);
    let target = app.base.trim_start_matches("http://").to_owned();
    let prometheus = Prometheus::start(&target);
    wait_until("Prometheus to scrape reel", DEADLINE, async || {
        prometheus.scalar(r#"up{job="reel"}"#).await == Some(1.0)
    })
    .await;

    // Two rounds, so rates and quantiles see an increase, not only a new series.
    for country in COUNTRIES {
        upload_from(&app, country).await;
    }
    scraped(&prometheus, 1.0).await;
    for country in COUNTRIES {
        upload_from(&app, country).await;
    }
    scraped(&prometheus, 2.0).await;
    wait_until("the jobs to finish and be scraped", DEADLINE, async || {
        prometheus
            .scalar(r#"sum(reel_jobs_total{outcome="ready"})"#)
            .await
            .is_some_and(|n| n >= 6.0)
    })
    .await;

    let dashboard: Value = serde_json::from_str(
        &std::fs::read_to_string(repo("monitoring/grafana/dashboards/reel.json"))
            .expect("dashboard"),
    )
    .expect("dashboard JSON");
    let panels = dashboard["panels"].as_array().expect("panels");
    let mut titles = Vec::new();
    for panel in panels {
        let title = panel["title"].as_str().expect("title");
        titles.push(title.to_owned());
        assert_eq!(panel["datasource"]["uid"], "reel-prometheus", "{title}");
        let targets = panel["targets"].as_array().expect("targets");
        assert!(!targets.is_empty(), "{title} has no query");
        for target in targets {
            let expr = target["expr"].as_str().expect("expr");
            let result = prometheus.query(&expand(expr)).await;
            assert!(!result.is_empty(), "{title}: `{expr}` returned nothing");
            for label in grouped_by(expr) {
                assert!(
                    result.iter().all(|s| s["metric"][&label].is_string()),
                    "{title}: every series of `{expr}` has `{label}`: {result:?}"
                );
            }
            let values: Vec<f64> = result
                .iter()
                .filter_map(|s| s["value"][1].as_str()?.parse().ok())
                .collect();
            assert!(
                values.iter().any(|v| v.is_finite()),
                "{title}: `{expr}` has no number: {result:?}"
            );
            if grouped_by(expr).contains("country") {
                let countries: BTreeSet<&str> = result
                    .iter()
                    .filter_map(|s| s["metric"]["country"].as_str())
                    .collect();
                for country in COUNTRIES {
                    assert!(
                        countries.contains(country),
                        "{title}: {country} in {countries:?}"
                    );
                }
            }
        }
    }
    for wanted in [
        "Uploads by country",
        "Top 30 countries",
        "Content types",
        "Content length distribution",
        "Upload latency by country (p50, p90, p99)",
        "Queue depth",
        "Busy encoders",
        "Job outcomes",
        "Webhook circuits",
    ] {
        assert!(
            titles.iter().any(|t| t == wanted),
            "panel {wanted:?} in {titles:?}"
        );
    }

    // Template variables: `label_values(metric, label)` as Grafana asks Prometheus for them.
    for variable in dashboard["templating"]["list"]
        .as_array()
        .expect("variables")
    {
        let query = variable["query"]["query"].as_str().expect("variable query");
        let inner = query
            .strip_prefix("label_values(")
            .and_then(|q| q.strip_suffix(')'))
            .expect("label_values(metric, label)");
        let (metric, label) = inner.split_once(',').expect("metric, label");
        let answer: Value = prometheus
            .client
            .get(format!(
                "{}/api/v1/label/{}/values",
                prometheus.base,
                label.trim()
            ))
            .query(&[("match[]", metric.trim())])
            .send()
            .await
            .expect("label values")
            .json()
            .await
            .expect("json");
        let values: BTreeSet<&str> = answer["data"]
            .as_array()
            .expect("values")
            .iter()
            .filter_map(Value::as_str)
            .collect();
        for country in COUNTRIES {
            assert!(
                values.contains(country),
                "${}: {values:?}",
                variable["name"]
            );
        }
    }

    // The provisioned datasource is the one every panel names.
    let datasource = std::fs::read_to_string(repo(
        "monitoring/grafana/provisioning/datasources/prometheus.yml",
    ))
    .expect("datasource");
    assert!(datasource.contains("uid: reel-prometheus"));
}
