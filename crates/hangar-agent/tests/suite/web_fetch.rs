//! `WebFetch` against a local server: what it returns, and every way it refuses.
//!
//! Test names resolve through a [`StaticResolver`]; the allowed ones lead to the server on
//! 127.0.0.1. Names leading to private or metadata addresses must be refused before any
//! connection, so no packet ever leaves loopback.

use std::convert::Infallible;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use hangar_agent::tools::{ToolRegistry, WebFetch, WebFetchLimits, builtin};
use hangar_agent::{RunState, Tool, ToolContext, ToolError};
use hangar_sandbox::egress::{EgressPolicy, StaticResolver};
use hangar_sandbox::hostfs::WorkspaceDir;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use super::support::NoSandbox;

const PAGE: &str = r#"<!doctype html>
<html><head><title>Docs</title><style>body { color: red }</style>
<script>alert("hi")</script></head>
<body>
<h1>Getting started</h1>
<p>Install the <b>tool</b> first. See <a href="/guide">the guide</a> or
<a href="http://other.example.test/x">elsewhere</a>.</p>
<ul><li>first item</li><li>second item</li></ul>
<script>document.write("injected")</script>
</body></html>"#;

/// Every request's path and `Host` header, in order.
type Hits = Arc<Mutex<Vec<(String, String)>>>;

/// The local server: answers by path and records every request.
struct Server {
    port: u16,
    hits: Hits,
}

impl Server {
    async fn start() -> Self {
        let hits = Hits::default();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let app = Router::new().fallback(serve).with_state(Arc::clone(&hits));
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self { port, hits }
    }

    fn paths(&self) -> Vec<String> {
        self.hits
            .lock()
            .unwrap()
            .iter()
            .map(|(path, _)| path.clone())
            .collect()
    }

    fn url(&self, host: &str, path: &str) -> String {
        format!("http://{host}:{}{path}", self.port)
    }
}

async fn serve(State(hits): State<Hits>, request: Request) -> Response {
    let path = request.uri().path().to_owned();
    let host = request
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    hits.lock().unwrap().push((path.clone(), host.clone()));
    let port = host
        .rsplit_once(':')
        .map(|(_, port)| port.to_owned())
        .unwrap_or_default();
    let typed = |content_type: &str, body: Body| ([(header::CONTENT_TYPE, content_type.to_owned())], body);
    let redirect =
        |status: StatusCode, location: String| (status, [(header::LOCATION, location)]).into_response();
    match path.as_str() {
        "/page" => typed("text/html; charset=utf-8", PAGE.into()).into_response(),
        "/plain" => typed("text/plain", "hello plain".into()).into_response(),
        "/json" => typed("application/json", r#"{"a": [1, 2]}"#.into()).into_response(),
        "/image" => typed("image/png", Body::from(&b"\x89PNG\r\n\x1a\n\0\0"[..])).into_response(),
        "/bare-text" => Response::new(Body::from("no type here")),
        "/bare-binary" => Response::new(Body::from(&b"\x7fELF\x02\x01\0\0\0"[..])),
        "/host" => typed("text/plain", host.into()).into_response(),
        "/long" => typed("text/plain", "x".repeat(250).into()).into_response(),
        "/big" => typed("text/plain", "y".repeat(4096).into()).into_response(),
        "/endless" => {
            let chunks = futures::stream::repeat_with(|| Ok::<_, Infallible>(Bytes::from(vec![b'z'; 1024])));
            typed("text/plain", Body::from_stream(chunks)).into_response()
        }
        "/slow" => {
            tokio::time::sleep(Duration::from_secs(60)).await;
            typed("text/plain", "too late".into()).into_response()
        }
        "/missing" => (StatusCode::NOT_FOUND, "no").into_response(),
        "/redirect" => redirect(StatusCode::FOUND, "/page".into()),
        "/redirect-other" => redirect(
            StatusCode::MOVED_PERMANENTLY,
            format!("http://other.example.test:{port}/plain"),
        ),
        "/redirect-evil" => redirect(
            StatusCode::FOUND,
            format!("http://evil.example.test:{port}/plain"),
        ),
        "/redirect-private" => redirect(
            StatusCode::FOUND,
            format!("http://internal.example.test:{port}/plain"),
        ),
        "/redirect-metadata" => redirect(
            StatusCode::TEMPORARY_REDIRECT,
            "http://169.254.169.254/latest/meta-data/".into(),
        ),
        "/redirect-ftp" => redirect(StatusCode::FOUND, "ftp://docs.example.test/file".into()),
        "/redirect-userinfo" => redirect(
            StatusCode::FOUND,
            format!("http://user:hunter2@docs.example.test:{port}/plain"),
        ),
        _ => match path.strip_prefix("/chain/").and_then(|n| n.parse::<u32>().ok()) {
            Some(0) => typed("text/plain", "end of chain".into()).into_response(),
            Some(n) => redirect(StatusCode::SEE_OTHER, format!("/chain/{}", n - 1)),
            None => (StatusCode::NOT_FOUND, "unknown").into_response(),
        },
    }
}

fn ip(text: &str) -> IpAddr {
    text.parse().unwrap()
}

/// `docs`, `other` and `evil` lead to loopback (`evil` is not allowed); `internal`,
/// `metadata` and `mixed` lead (partly) to addresses that must never be connected to.
fn tool(server: &Server, limits: WebFetchLimits) -> WebFetch {
    let policy = EgressPolicy::new(
        [
            "docs.example.test",
            "other.example.test",
            "internal.example.test",
            "metadata.example.test",
            "mixed.example.test",
        ]
        .map(String::from)
        .to_vec(),
    )
    .with_ports(vec![server.port])
    .with_allowed_networks(vec!["127.0.0.1/32".parse().unwrap()]);
    let resolver = StaticResolver::new([
        ("docs.example.test", vec![ip("127.0.0.1")]),
        ("other.example.test", vec![ip("127.0.0.1")]),
        ("evil.example.test", vec![ip("127.0.0.1")]),
        ("internal.example.test", vec![ip("10.0.0.1")]),
        ("metadata.example.test", vec![ip("169.254.169.254")]),
        ("mixed.example.test", vec![ip("127.0.0.1"), ip("10.0.0.1")]),
    ]);
    WebFetch::new(policy, Arc::new(resolver)).with_limits(limits)
}

struct Fixture {
    _tmp: tempfile::TempDir,
    ctx: ToolContext,
    server: Server,
}

impl Fixture {
    async fn new() -> Self {
        let tmp = tempfile::tempdir().unwrap();
        let workspace = Arc::new(WorkspaceDir::open(tmp.path()).unwrap());
        let ctx = ToolContext::new(
            workspace,
            Arc::new(NoSandbox),
            Arc::new(RunState::default()),
            CancellationToken::new(),
        );
        Self {
            _tmp: tmp,
            ctx,
            server: Server::start().await,
        }
    }

    fn tool(&self) -> WebFetch {
        tool(&self.server, WebFetchLimits::default())
    }

    async fn call_with(&self, tool: &WebFetch, input: Value) -> Result<String, ToolError> {
        let validator = jsonschema::validator_for(&tool.input_schema()).unwrap();
        assert!(validator.is_valid(&input), "{input} does not match the schema");
        tool.call(input, &self.ctx).await.map(|out| {
            assert!(!out.is_error);
            out.text_content()
        })
    }

    async fn fetch(&self, url: &str) -> Result<String, ToolError> {
        self.call_with(&self.tool(), json!({ "url": url })).await
    }

    async fn ok(&self, url: &str) -> String {
        match self.fetch(url).await {
            Ok(text) => text,
            Err(err) => panic!("fetching {url} failed: {err:?}"),
        }
    }

    async fn refused(&self, url: &str) -> String {
        match self.fetch(url).await {
            Err(ToolError::Failed(message)) => message,
            other => panic!("fetching {url} should fail for the model, got {other:?}"),
        }
    }
}

#[tokio::test]
async fn html_becomes_readable_text() {
    let f = Fixture::new().await;
    let text = f.ok(&f.server.url("docs.example.test", "/page")).await;
    let base = f.server.url("docs.example.test", "");
    for expected in [
        format!("Source: {base}/page\nContent-Type: text/html; charset=utf-8\n\n"),
        "# Getting started".to_owned(),
        "Install the **tool** first.".to_owned(),
        format!("the guide ({base}/guide)"),
        "elsewhere (http://other.example.test/x)".to_owned(),
        "- first item\n- second item".to_owned(),
    ] {
        assert!(text.contains(&expected), "{expected:?} missing from:\n{text}");
    }
    for dropped in ["alert", "injected", "color: red"] {
        assert!(!text.contains(dropped), "{dropped:?} in:\n{text}");
    }
    assert_eq!(
        f.server.hits.lock().unwrap()[0].1,
        format!("docs.example.test:{}", f.server.port)
    );
}

#[tokio::test]
async fn text_json_and_untyped_text_come_back_as_they_are() {
    let f = Fixture::new().await;
    let text = f.ok(&f.server.url("docs.example.test", "/plain")).await;
    assert!(
        text.ends_with("Content-Type: text/plain\n\nhello plain"),
        "{text}"
    );
    let text = f.ok(&f.server.url("DOCS.example.test.", "/json")).await;
    assert!(text.ends_with("\n\n{\"a\": [1, 2]}"), "{text}");
    let text = f.ok(&f.server.url("docs.example.test", "/bare-text")).await;
    assert!(text.ends_with("Content-Type: (none)\n\nno type here"), "{text}");
    // The connection carries the name asked for.
    let text = f.ok(&f.server.url("docs.example.test", "/host")).await;
    assert!(
        text.ends_with(&format!("docs.example.test:{}", f.server.port)),
        "{text}"
    );
    // An IP literal inside an allowed network is allowed, like in the egress proxy.
    let text = f.ok(&f.server.url("127.0.0.1", "/plain")).await;
    assert!(text.ends_with("hello plain"), "{text}");
}

#[tokio::test]
async fn the_prompt_is_echoed_as_a_heading() {
    let f = Fixture::new().await;
    let url = f.server.url("docs.example.test", "/plain");
    let text = f
        .call_with(&f.tool(), json!({"url": url, "prompt": "What does it say?"}))
        .await
        .unwrap();
    assert!(
        text.starts_with("# What does it say?\n(WebFetch does not answer the prompt"),
        "{text}"
    );
    assert!(
        text.ends_with(&format!("Source: {url}\nContent-Type: text/plain\n\nhello plain")),
        "{text}"
    );
}

#[tokio::test]
async fn redirects_are_followed_within_the_policy() {
    let f = Fixture::new().await;
    let text = f.ok(&f.server.url("docs.example.test", "/redirect")).await;
    assert!(text.contains("# Getting started"), "{text}");
    assert!(text.contains("(redirected from "), "{text}");
    let text = f.ok(&f.server.url("docs.example.test", "/redirect-other")).await;
    assert!(text.ends_with("hello plain"), "{text}");
    let hosts: Vec<String> = f
        .server
        .hits
        .lock()
        .unwrap()
        .iter()
        .map(|h| h.1.clone())
        .collect();
    assert!(hosts[3].starts_with("other.example.test:"), "{hosts:?}");
    // Five redirects are followed, a sixth is not.
    let text = f.ok(&f.server.url("docs.example.test", "/chain/5")).await;
    assert!(text.ends_with("end of chain"), "{text}");
    let before = f.server.paths().len();
    let error = f.refused(&f.server.url("docs.example.test", "/chain/6")).await;
    assert!(error.contains("redirected more than 5 times"), "{error}");
    assert_eq!(f.server.paths().len() - before, 6);
}

#[tokio::test]
async fn redirects_out_of_the_policy_are_refused() {
    let f = Fixture::new().await;
    let cases = [
        ("/redirect-evil", "evil.example.test is not an allowed domain"),
        (
            "/redirect-private",
            "internal.example.test resolves to 10.0.0.1, which is private",
        ),
        (
            "/redirect-metadata",
            "IP address 169.254.169.254 is not in an allowed network",
        ),
        (
            "/redirect-ftp",
            "the ftp: scheme is not supported; use http or https",
        ),
        (
            "/redirect-userinfo",
            "URLs with a user name or password are not allowed",
        ),
    ];
    for (path, reason) in cases {
        let error = f.refused(&f.server.url("docs.example.test", path)).await;
        assert!(error.contains("refused a redirect from"), "{error}");
        assert!(error.ends_with(reason), "{path}: {error}");
        assert!(!error.contains("hunter2"), "{error}");
    }
    // Only the redirecting pages were reached: evil.example.test leads here too.
    let paths: Vec<String> = cases.iter().map(|(path, _)| path.to_string()).collect();
    assert_eq!(f.server.paths(), paths);
}

#[tokio::test]
async fn urls_out_of_the_policy_are_refused_before_connecting() {
    let f = Fixture::new().await;
    let port = f.server.port;
    let cases = [
        (
            f.server.url("evil.example.test", "/plain"),
            "evil.example.test is not an allowed domain".to_owned(),
        ),
        (
            f.server.url("internal.example.test", "/"),
            "internal.example.test resolves to 10.0.0.1, which is private".to_owned(),
        ),
        (
            f.server.url("metadata.example.test", "/latest/meta-data/"),
            "metadata.example.test resolves to 169.254.169.254, which is link-local".to_owned(),
        ),
        (
            f.server.url("mixed.example.test", "/plain"),
            "mixed.example.test resolves to 10.0.0.1, which is private".to_owned(),
        ),
        (
            "http://docs.example.test/plain".to_owned(),
            "port 80 is not allowed".to_owned(),
        ),
        (
            format!("http://docs.example.test:{}/", port ^ 1),
            format!("port {} is not allowed", port ^ 1),
        ),
        (
            format!("http://10.0.0.1:{port}/"),
            "IP address 10.0.0.1 is not in an allowed network".to_owned(),
        ),
        (
            format!("http://[::1]:{port}/"),
            "IP address ::1 is not in an allowed network".to_owned(),
        ),
        (
            "ftp://docs.example.test/file".to_owned(),
            "the ftp: scheme is not supported; use http or https".to_owned(),
        ),
        (
            "file:///etc/passwd".to_owned(),
            "the file: scheme is not supported; use http or https".to_owned(),
        ),
        (
            format!("http://user:hunter2@docs.example.test:{port}/plain"),
            "URLs with a user name or password are not allowed".to_owned(),
        ),
        (
            format!("http://user@docs.example.test:{port}/plain"),
            "URLs with a user name or password are not allowed".to_owned(),
        ),
    ];
    for (url, reason) in &cases {
        let started = Instant::now();
        let error = f.refused(url).await;
        assert!(error.starts_with("WebFetch refused "), "{url}: {error}");
        assert!(error.ends_with(reason.as_str()), "{url}: {error}");
        assert!(!error.contains("hunter2"), "{error}");
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "{url} took {:?}",
            started.elapsed()
        );
    }
    assert_eq!(
        f.server.paths(),
        Vec::<String>::new(),
        "a refused URL reached the server"
    );
    let error = f.refused("not a url").await;
    assert!(error.starts_with("invalid URL"), "{error}");
}

#[tokio::test]
async fn unsupported_content_and_errors_are_reported() {
    let f = Fixture::new().await;
    let error = f.refused(&f.server.url("docs.example.test", "/image")).await;
    assert!(
        error.ends_with(
            "/image returned content of type image/png, which is not supported: WebFetch returns only \
             HTML, text, JSON and XML"
        ),
        "{error}"
    );
    let error = f
        .refused(&f.server.url("docs.example.test", "/bare-binary"))
        .await;
    assert!(
        error.contains("returned no content type, and its content does not look like text"),
        "{error}"
    );
    let error = f.refused(&f.server.url("docs.example.test", "/missing")).await;
    assert!(error.ends_with("answered HTTP 404 Not Found"), "{error}");
}

#[tokio::test]
async fn large_bodies_are_refused_and_long_text_is_cut() {
    let f = Fixture::new().await;
    let limits = WebFetchLimits {
        max_body_bytes: 64 * 1024,
        max_output_chars: 100,
        ..WebFetchLimits::default()
    };
    let small = tool(&f.server, limits);
    let big = f.server.url("docs.example.test", "/big");
    let text = f.call_with(&small, json!({ "url": big })).await.unwrap();
    assert!(
        text.ends_with("[… 3996 more characters of 4096 were cut: the text is longer than 100 characters.]"),
        "{text}"
    );
    let tiny = tool(
        &f.server,
        WebFetchLimits {
            max_body_bytes: 1024,
            ..limits
        },
    );
    let error = f
        .call_with(&tiny, json!({ "url": big }))
        .await
        .unwrap_err()
        .to_string();
    assert!(
        error.ends_with("is larger than 1024 bytes, the most WebFetch reads"),
        "{error}"
    );
    // A body that never ends is read only up to the limit.
    let started = Instant::now();
    let endless = f.server.url("docs.example.test", "/endless");
    let error = f
        .call_with(&small, json!({ "url": endless }))
        .await
        .unwrap_err()
        .to_string();
    assert!(
        error.ends_with("is larger than 65536 bytes, the most WebFetch reads"),
        "{error}"
    );
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[tokio::test]
async fn slow_servers_time_out_and_cancellation_stops_the_fetch() {
    let f = Fixture::new().await;
    let slow = f.server.url("docs.example.test", "/slow");
    let impatient = tool(
        &f.server,
        WebFetchLimits {
            timeout: Duration::from_millis(300),
            ..WebFetchLimits::default()
        },
    );
    let error = f
        .call_with(&impatient, json!({ "url": slow }))
        .await
        .unwrap_err()
        .to_string();
    assert!(error.contains("took longer than 0.3 seconds"), "{error}");

    let cancel = f.ctx.cancel.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(200)).await;
        cancel.cancel();
    });
    let started = Instant::now();
    let result = f.fetch(&slow).await;
    assert!(matches!(result, Err(ToolError::Cancelled)), "{result:?}");
    assert!(started.elapsed() < Duration::from_secs(5));
    // Already cancelled: nothing is fetched.
    let before = f.server.paths().len();
    let result = f.fetch(&f.server.url("docs.example.test", "/plain")).await;
    assert!(matches!(result, Err(ToolError::Cancelled)), "{result:?}");
    assert_eq!(f.server.paths().len(), before);
}

#[tokio::test]
async fn it_is_read_only_and_not_a_builtin() {
    let f = Fixture::new().await;
    let tool = f.tool();
    assert!(tool.read_only());
    assert_eq!(tool.name(), "WebFetch");
    assert!(
        tool.description()
            .contains("docs.example.test, other.example.test")
    );
    assert!(builtin().iter().all(|t| t.name() != "WebFetch"));
    let registry = ToolRegistry::new([Arc::new(tool) as Arc<dyn Tool>]).unwrap();
    assert!(registry.read_only("WebFetch"));
    let error = registry
        .validate("WebFetch", &json!({"prompt": "x"}))
        .unwrap_err();
    assert!(error.contains("url"), "{error}");
}
