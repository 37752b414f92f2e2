//! Request throughput and latency of the real server over loopback HTTP.
//!
//! `cargo bench -p hangar-server --bench http` starts the application in-process (its own tokio
//! runtime with two worker threads, on a background thread), then drives it from a second
//! runtime with N concurrent HTTP/1.1 keep-alive connections, each issuing requests
//! back-to-back for a fixed time. Every latency is recorded; a response with an unexpected
//! status counts as an error. Scenarios:
//!
//! 1. `GET /health/live` — no auth, no database: the HTTP stack's own cost (the baseline);
//! 2. `GET /api/tenants/{id}` with an admin key — auth plus one indexed read;
//! 3. `POST /api/tenants` — auth, JSON validation, a write transaction with an audit row.
//!
//! SQLite always; PostgreSQL as well when `HANGAR_BENCH_POSTGRES_URL` names a database (a fresh
//! schema is created in it and dropped at the end). Traffic only ever goes to 127.0.0.1.
//!
//! Environment: `HANGAR_BENCH_SECS` (measured seconds, default 5), `HANGAR_BENCH_WARMUP_SECS`
//! (default 1, excluded), `HANGAR_BENCH_CONNECTIONS` (default 64), `HANGAR_BENCH_CLIENT_THREADS`
//! (load-generator worker threads, default 2), `HANGAR_BENCH_POSTGRES_URL`, and `DB_POOL_SIZE`
//! (passed to the server; default 8). `HANGAR_BENCH_DIAGNOSE=1` adds two SQLite-only scenarios that
//! split the GET's cost: `GET /health` (no auth, one `SELECT 1`) and an unknown `/api` path with
//! the admin key (auth and middleware, a 404, no database). `HANGAR_BENCH_RATE=<req/s>` paces the
//! connections to that total rate instead of sending back-to-back. Under each scenario a line
//! from `/proc` shows the cores used by the server, sqlx's SQLite threads, the load generator and
//! other processes. See docs/benchmarks.md.

#![expect(clippy::print_stdout, reason = "a benchmark reports its results on stdout")]

#[path = "support/server.rs"]
mod support;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use hangar_server::Llm;
use http::{Method, Request, StatusCode, header};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;

use support::{ADMIN_KEY, Sender, Server, connect};

const GET_TENANT: &str = "bench-get";
/// The target for `GET /api/tenants/{id}` on SQLite.
const TARGET_RPS: f64 = 10_000.0;
const TARGET_P99_US: u32 = 5_000;
/// Unexpected responses printed per scenario (the rest are only counted).
const SHOWN_ERRORS: usize = 5;

struct Config {
    measure: Duration,
    warmup: Duration,
    connections: usize,
    client_threads: usize,
    pool_size: Option<String>,
    diagnose: bool,
    /// Total requests per second to pace at; `None` is closed loop (back-to-back).
    rate: Option<f64>,
    postgres_url: Option<String>,
}

fn env_number<T: std::str::FromStr>(name: &str, default: T) -> Result<T> {
    match std::env::var(name) {
        Ok(raw) => raw
            .trim()
            .parse()
            .map_err(|_| anyhow!("{name}={raw:?} is not a valid number")),
        Err(_) => Ok(default),
    }
}

impl Config {
    fn from_env() -> Result<Self> {
        let measure = Duration::from_secs_f64(env_number("HANGAR_BENCH_SECS", 5.0_f64)?.max(0.1));
        let warmup = Duration::from_secs_f64(env_number("HANGAR_BENCH_WARMUP_SECS", 1.0_f64)?.max(0.0));
        let connections = env_number("HANGAR_BENCH_CONNECTIONS", 64_usize)?.max(1);
        let client_threads = env_number("HANGAR_BENCH_CLIENT_THREADS", 2_usize)?.max(1);
        let pool_size = std::env::var("DB_POOL_SIZE")
            .ok()
            .filter(|v| !v.trim().is_empty());
        let rate = match std::env::var("HANGAR_BENCH_RATE") {
            Ok(raw) if !raw.trim().is_empty() => {
                let rate: f64 = raw
                    .trim()
                    .parse()
                    .map_err(|_| anyhow!("HANGAR_BENCH_RATE={raw:?} is not a number"))?;
                if !(rate.is_finite() && rate > 0.0) {
                    bail!("HANGAR_BENCH_RATE must be positive");
                }
                Some(rate)
            }
            _ => None,
        };
        let diagnose = std::env::var("HANGAR_BENCH_DIAGNOSE").is_ok_and(|v| v == "1");
        let postgres_url = std::env::var("HANGAR_BENCH_POSTGRES_URL")
            .ok()
            .filter(|v| !v.trim().is_empty());
        Ok(Self {
            measure,
            warmup,
            connections,
            client_threads,
            pool_size,
            diagnose,
            rate,
            postgres_url,
        })
    }
}

// ---------------------------------------------------------------------------------------------
// Requests.

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Live,
    /// Diagnostic: `GET /health` — no auth, one `SELECT 1` on the read pool.
    Health,
    /// Diagnostic: an unknown `/api` path with the admin key — auth, then 404, no database.
    AuthOnly,
    GetTenant,
    CreateTenant,
}

struct Scenario {
    name: String,
    kind: Kind,
    expected: StatusCode,
}

fn build_request(addr: SocketAddr, kind: Kind, task: usize, n: u64) -> Result<Request<Full<Bytes>>> {
    let host = addr.to_string();
    let request = match kind {
        Kind::Live => Request::get("/health/live")
            .header(header::HOST, host)
            .body(Full::default())?,
        Kind::Health => Request::get("/health")
            .header(header::HOST, host)
            .body(Full::default())?,
        Kind::AuthOnly => Request::get("/api/bench-no-such-route")
            .header(header::HOST, host)
            .header("x-api-key", ADMIN_KEY)
            .body(Full::default())?,
        Kind::GetTenant => Request::get(format!("/api/tenants/{GET_TENANT}"))
            .header(header::HOST, host)
            .header("x-api-key", ADMIN_KEY)
            .body(Full::default())?,
        Kind::CreateTenant => create_request(&host, &format!("b-{task}-{n}"))?,
    };
    Ok(request)
}

fn create_request(host: &str, tenant_id: &str) -> Result<Request<Full<Bytes>>> {
    let body = serde_json::to_vec(&serde_json::json!({ "tenant_id": tenant_id, "system_prompt": "bench" }))?;
    Ok(Request::builder()
        .method(Method::POST)
        .uri("/api/tenants")
        .header(header::HOST, host)
        .header("x-api-key", ADMIN_KEY)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Full::new(Bytes::from(body)))?)
}

/// Sends one request and returns its status and body.
async fn send(sender: &mut Sender, request: Request<Full<Bytes>>) -> Result<(StatusCode, Bytes)> {
    sender.ready().await?;
    let response = sender.send_request(request).await?;
    let status = response.status();
    let body = response.into_body().collect().await?.to_bytes();
    Ok((status, body))
}

// ---------------------------------------------------------------------------------------------
// The load generator.

#[derive(Default)]
struct TaskResult {
    /// Microseconds, for responses completed inside the measured window.
    latencies: Vec<u32>,
    errors: u64,
    shown: Vec<String>,
    failure: Option<String>,
}

async fn drive(
    addr: SocketAddr,
    kind: Kind,
    expected: StatusCode,
    task: usize,
    window: (Instant, Instant),
    pace: Option<(Duration, Duration)>,
) -> TaskResult {
    let (measure_from, end) = window;
    let mut result = TaskResult {
        latencies: Vec::with_capacity(1 << 15),
        ..TaskResult::default()
    };
    let (mut sender, driver) = match connect(addr).await {
        Ok(pair) => pair,
        Err(err) => {
            result.errors += 1;
            result.failure = Some(format!("connect: {err:#}"));
            return result;
        }
    };
    let mut n = 0_u64;
    // Paced mode: this connection's requests are due every `interval`, starting after `offset`
    // (the connections are staggered across one interval so the total rate is smooth).
    let mut due = pace.map(|(_, offset)| Instant::now() + offset);
    loop {
        let request = match build_request(addr, kind, task, n) {
            Ok(request) => request,
            Err(err) => {
                result.errors += 1;
                result.failure = Some(format!("request: {err:#}"));
                break;
            }
        };
        n += 1;
        if let (Some(at), Some((interval, _))) = (due.as_mut(), pace) {
            if *at >= end {
                break;
            }
            tokio::time::sleep_until((*at).into()).await;
            *at += interval;
        }
        // Latency is measured from the actual send (tokio timers have 1 ms resolution, so
        // measuring from the due time would add timer slack to every sample).
        let started = Instant::now();
        if started >= end {
            break;
        }
        let outcome = send(&mut sender, request).await;
        let finished = Instant::now();
        let measured = finished >= measure_from && finished < end;
        match outcome {
            Ok((status, body)) => {
                if measured {
                    let micros = finished.duration_since(started).as_micros();
                    result.latencies.push(u32::try_from(micros).unwrap_or(u32::MAX));
                }
                if status != expected {
                    result.errors += 1;
                    if result.shown.len() < SHOWN_ERRORS {
                        let text = String::from_utf8_lossy(&body[..body.len().min(300)]).into_owned();
                        result.shown.push(format!("{status}: {text}"));
                    }
                }
            }
            Err(err) => {
                result.errors += 1;
                result.failure = Some(format!("transport: {err:#}"));
                break;
            }
        }
    }
    drop(sender);
    let _ = driver.await;
    result
}

/// CPU time (clock ticks) of the machine and of this process's threads, from `/proc` (Linux
/// only), to see where the cores went during a scenario and whether anything else was running.
#[derive(Clone, Copy, Default)]
struct CpuSample {
    machine: u64,
    process: u64,
    server: u64,
    sqlite: u64,
    client: u64,
    /// Context switches (voluntary and involuntary) of all this process's threads.
    switches: u64,
}

/// `utime + stime` from a `/proc/.../stat` line.
fn stat_ticks(stat: &str) -> Option<u64> {
    let after = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = after.split_whitespace().collect();
    Some(fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?)
}

fn cpu_sample() -> Option<CpuSample> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let line = stat.lines().next()?.strip_prefix("cpu ")?;
    let v: Vec<u64> = line.split_whitespace().filter_map(|x| x.parse().ok()).collect();
    // user nice system idle iowait irq softirq steal
    let machine = v.first()? + v.get(1)? + v.get(2)? + v.get(5)? + v.get(6)? + v.get(7)?;
    let process = stat_ticks(&std::fs::read_to_string("/proc/self/stat").ok()?)?;
    let mut sample = CpuSample {
        machine,
        process,
        ..CpuSample::default()
    };
    for entry in std::fs::read_dir("/proc/self/task").ok()?.flatten() {
        let path = entry.path();
        let (Ok(name), Ok(stat)) = (
            std::fs::read_to_string(path.join("comm")),
            std::fs::read_to_string(path.join("stat")),
        ) else {
            continue;
        };
        let ticks = stat_ticks(&stat).unwrap_or(0);
        let status = std::fs::read_to_string(path.join("status")).unwrap_or_default();
        sample.switches += status
            .lines()
            .filter(|l| l.contains("ctxt_switches:"))
            .filter_map(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
            .sum::<u64>();
        if name.starts_with("hangar-server") {
            sample.server += ticks;
        } else if name.starts_with("sqlx-sqlite") {
            sample.sqlite += ticks;
        } else if name.starts_with("bench-client") {
            sample.client += ticks;
        }
    }
    Some(sample)
}

/// Cores used between two samples (clock ticks at the usual USER_HZ of 100).
fn cpu_line(before: CpuSample, after: CpuSample, seconds: f64, requests: usize) -> String {
    let cores = |a: u64, b: u64| b.saturating_sub(a) as f64 / 100.0 / seconds;
    let other = cores(before.machine, after.machine) - cores(before.process, after.process);
    let (server, sqlite) = (
        cores(before.server, after.server),
        cores(before.sqlite, after.sqlite),
    );
    let per_request = |cores: f64| cores * seconds * 1e6 / requests.max(1) as f64;
    format!(
        "cores busy: server {server:.2}, sqlite threads {sqlite:.2}, load generator {:.2}, other processes \
         {:.2} | per request: {:.0} us server + {:.0} us sqlite CPU, {:.1} context switches",
        cores(before.client, after.client),
        other.max(0.0),
        per_request(server),
        per_request(sqlite),
        after.switches.saturating_sub(before.switches) as f64 / requests.max(1) as f64
    )
}

struct Summary {
    name: String,
    rps: f64,
    count: usize,
    p50: u32,
    p90: u32,
    p99: u32,
    max: u32,
    errors: u64,
}

/// Nearest-rank percentile of sorted values.
fn percentile(sorted: &[u32], p: f64) -> u32 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = (p * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn ms(micros: u32) -> String {
    format!("{:.2}", f64::from(micros) / 1000.0)
}

fn run_scenario(
    client: &tokio::runtime::Runtime,
    config: &Config,
    addr: SocketAddr,
    scenario: &Scenario,
) -> Summary {
    let results = client.block_on(async {
        let start = Instant::now();
        let window = (start + config.warmup, start + config.warmup + config.measure);
        let tasks: Vec<_> = (0..config.connections)
            .map(|task| {
                let pace = config.rate.map(|rate| {
                    let interval = Duration::from_secs_f64(config.connections as f64 / rate);
                    (
                        interval,
                        interval.mul_f64(task as f64 / config.connections as f64),
                    )
                });
                tokio::spawn(drive(addr, scenario.kind, scenario.expected, task, window, pace))
            })
            .collect();
        // CPU use over the measured window only.
        let cpu = tokio::spawn(async move {
            tokio::time::sleep_until(window.0.into()).await;
            let before = cpu_sample();
            tokio::time::sleep_until(window.1.into()).await;
            before.zip(cpu_sample())
        });
        let mut results = Vec::with_capacity(tasks.len());
        for task in tasks {
            match task.await {
                Ok(result) => results.push(result),
                Err(err) => results.push(TaskResult {
                    errors: 1,
                    failure: Some(format!("task: {err}")),
                    ..TaskResult::default()
                }),
            }
        }
        (results, cpu.await.ok().flatten())
    });
    let (results, cpu) = results;
    let mut latencies = Vec::with_capacity(results.iter().map(|r| r.latencies.len()).sum());
    let mut errors = 0;
    let mut shown = Vec::new();
    let mut failures = Vec::new();
    for result in results {
        latencies.extend_from_slice(&result.latencies);
        errors += result.errors;
        shown.extend(result.shown);
        failures.extend(result.failure);
    }
    latencies.sort_unstable();
    let summary = Summary {
        name: scenario.name.clone(),
        rps: latencies.len() as f64 / config.measure.as_secs_f64(),
        count: latencies.len(),
        p50: percentile(&latencies, 0.50),
        p90: percentile(&latencies, 0.90),
        p99: percentile(&latencies, 0.99),
        max: latencies.last().copied().unwrap_or(0),
        errors,
    };
    println!(
        "{:<34} {:>10.0} {:>9} {:>8} {:>8} {:>8} {:>8} {:>7}",
        summary.name,
        summary.rps,
        summary.count,
        ms(summary.p50),
        ms(summary.p90),
        ms(summary.p99),
        ms(summary.max),
        summary.errors
    );
    if let Some((before, after)) = cpu {
        println!(
            "    {}",
            cpu_line(before, after, config.measure.as_secs_f64(), summary.count)
        );
    }
    if errors > 0 || !failures.is_empty() {
        println!(
            "!!! {}: {errors} ERRORS (expected {} every time); first ones:",
            scenario.name, scenario.expected
        );
        for line in shown.iter().take(SHOWN_ERRORS) {
            println!("!!!     {line}");
        }
        for (i, failure) in failures.iter().enumerate() {
            if i == SHOWN_ERRORS {
                println!(
                    "!!!     … and {} more connection failures",
                    failures.len() - SHOWN_ERRORS
                );
                break;
            }
            println!("!!!     connection failed: {failure}");
        }
    }
    summary
}

// ---------------------------------------------------------------------------------------------
// Backends.

/// Creates the tenant that the GET scenario reads.
fn seed(client: &tokio::runtime::Runtime, addr: SocketAddr) -> Result<()> {
    client.block_on(async {
        let (mut sender, driver) = connect(addr).await?;
        let (status, body) = send(&mut sender, create_request(&addr.to_string(), GET_TENANT)?).await?;
        if status != StatusCode::CREATED {
            bail!(
                "seeding tenant {GET_TENANT} answered {status}: {}",
                String::from_utf8_lossy(&body)
            );
        }
        drop(sender);
        let _ = driver.await;
        Ok(())
    })
}

/// A fresh schema in the PostgreSQL database, and a URL whose connections use it.
fn postgres_schema(client: &tokio::runtime::Runtime, base: &str) -> Result<(String, String)> {
    use sqlx::Connection;
    sqlx::any::install_default_drivers();
    let schema = format!("bench_{}", uuid::Uuid::new_v4().simple());
    client.block_on(async {
        let mut conn = sqlx::AnyConnection::connect(base)
            .await
            .context("connect to HANGAR_BENCH_POSTGRES_URL")?;
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {schema}")))
            .execute(&mut conn)
            .await?;
        conn.close().await?;
        anyhow::Ok(())
    })?;
    let sep = if base.contains('?') { '&' } else { '?' };
    Ok((format!("{base}{sep}options=-c%20search_path%3D{schema}"), schema))
}

fn drop_postgres_schema(client: &tokio::runtime::Runtime, base: &str, schema: &str) -> Result<()> {
    use sqlx::Connection;
    client.block_on(async {
        let mut conn = sqlx::AnyConnection::connect(base).await?;
        sqlx::query(sqlx::AssertSqlSafe(format!("DROP SCHEMA {schema} CASCADE")))
            .execute(&mut conn)
            .await?;
        conn.close().await?;
        anyhow::Ok(())
    })
}

/// Runs the scenarios against one backend; the baseline only when asked.
fn run_backend(
    client: &tokio::runtime::Runtime,
    config: &Config,
    backend: &str,
    database_url: Option<&str>,
    with_baseline: bool,
) -> Result<Vec<Summary>> {
    let dir = tempfile::tempdir()?;
    // No URL: a SQLite file in a fresh temporary directory.
    let database_url = match database_url {
        Some(url) => url.to_owned(),
        None => format!("sqlite://{}/bench.db", dir.path().display()),
    };
    let vars = config
        .pool_size
        .iter()
        .map(|size| ("DB_POOL_SIZE", size.clone()))
        .collect();
    // The benchmark never calls a model; the providers are built from settings as in `serve`.
    let server = Server::start(dir.path(), &database_url, vars, false, Llm::from_settings)?;
    let addr = server.addr;
    let outcome = (|| {
        seed(client, addr)?;
        let mut scenarios = Vec::new();
        if with_baseline {
            scenarios.push(Scenario {
                name: "baseline GET /health/live".into(),
                kind: Kind::Live,
                expected: StatusCode::OK,
            });
        }
        if with_baseline && config.diagnose {
            scenarios.push(Scenario {
                name: "diag GET /health (SELECT 1)".into(),
                kind: Kind::Health,
                expected: StatusCode::OK,
            });
            scenarios.push(Scenario {
                name: "diag GET /api/<none> (auth, 404)".into(),
                kind: Kind::AuthOnly,
                expected: StatusCode::NOT_FOUND,
            });
        }
        scenarios.push(Scenario {
            name: format!("[{backend}] GET /api/tenants/{{id}}"),
            kind: Kind::GetTenant,
            expected: StatusCode::OK,
        });
        scenarios.push(Scenario {
            name: format!("[{backend}] POST /api/tenants"),
            kind: Kind::CreateTenant,
            expected: StatusCode::CREATED,
        });
        Ok(scenarios
            .iter()
            .map(|s| run_scenario(client, config, addr, s))
            .collect())
    })();
    server.stop()?;
    outcome
}

fn main() -> Result<()> {
    // `cargo bench` passes `--bench`; any filter argument is ignored (there are only three scenarios).
    let config = Config::from_env()?;
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    println!("hangar HTTP benchmark");
    println!(
        "  machine: {cores} cores | server: 2 tokio workers | load generator: {} tokio workers (same machine)",
        config.client_threads
    );
    println!(
        "  {} keep-alive HTTP/1.1 connections | {:.1} s measured after {:.1} s warm-up | DB_POOL_SIZE={}",
        config.connections,
        config.measure.as_secs_f64(),
        config.warmup.as_secs_f64(),
        config.pool_size.as_deref().unwrap_or("8 (default)")
    );
    println!(
        "  load: {}",
        match config.rate {
            None =>
                "closed loop (each connection sends its next request as soon as the last one is answered)"
                    .to_owned(),
            Some(rate) => format!("paced at {rate:.0} requests/s in total (latency measured from each send)"),
        }
    );
    let loadavg = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!(
        "  load average before start: {} (other work on the machine distorts the numbers)",
        loadavg.split_whitespace().take(3).collect::<Vec<_>>().join(" ")
    );
    println!(
        "  target: >= {TARGET_RPS:.0} GET /api/tenants/{{id}}/s with p99 < {} ms at 64 connections (SQLite)",
        ms(TARGET_P99_US)
    );
    println!(
        "  postgres: {}",
        if config.postgres_url.is_some() {
            "HANGAR_BENCH_POSTGRES_URL set"
        } else {
            "skipped (set HANGAR_BENCH_POSTGRES_URL)"
        }
    );
    println!();
    println!(
        "{:<34} {:>10} {:>9} {:>8} {:>8} {:>8} {:>8} {:>7}",
        "scenario", "req/s", "requests", "p50 ms", "p90 ms", "p99 ms", "max ms", "errors"
    );

    let client = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(config.client_threads)
        .thread_name("bench-client")
        .enable_all()
        .build()?;

    let mut summaries = run_backend(&client, &config, "sqlite", None, true)?;
    if let Some(base) = config.postgres_url.clone() {
        let (url, schema) = postgres_schema(&client, &base)?;
        let outcome = run_backend(&client, &config, "postgres", Some(&url), false);
        let dropped = drop_postgres_schema(&client, &base, &schema);
        summaries.extend(outcome?);
        dropped?;
    }

    println!();
    let baseline = summaries.first().map_or(0.0, |s| s.rps);
    println!("throughput relative to the baseline ({baseline:.0} req/s):");
    for summary in &summaries {
        let ratio = if baseline > 0.0 {
            summary.rps / baseline
        } else {
            0.0
        };
        println!("  {:<34} {ratio:>6.2}x", summary.name);
    }

    println!();
    let get = summaries
        .iter()
        .find(|s| s.name == "[sqlite] GET /api/tenants/{id}");
    match get {
        Some(get) => {
            // Paced runs cannot exceed their rate: there, sustaining (98 % of) a rate at or above
            // the target counts as reaching it.
            let enough = match config.rate {
                None => get.rps >= TARGET_RPS,
                Some(rate) => rate >= TARGET_RPS && get.rps >= 0.98 * rate,
            };
            let met = enough && get.p99 < TARGET_P99_US && get.errors == 0;
            println!(
                "target (SQLite GET >= {TARGET_RPS:.0}/s, p99 < {} ms): {} — measured {:.0}/s, p99 {} ms{}",
                ms(TARGET_P99_US),
                if met { "MET" } else { "NOT MET" },
                get.rps,
                ms(get.p99),
                match (config.connections == 64, config.rate.is_some()) {
                    (true, false) => "",
                    (true, true) => " (paced run)",
                    (false, _) => " (note: not at 64 connections)",
                }
            );
        }
        None => println!("target: no SQLite GET measurement"),
    }

    let errors: u64 = summaries.iter().map(|s| s.errors).sum();
    if errors > 0 {
        println!();
        println!(
            "!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!"
        );
        println!("!!! THIS RUN HAD {errors} ERRORS: the numbers above are not valid measurements.");
        println!(
            "!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!"
        );
        bail!("{errors} requests failed");
    }
    Ok(())
}
