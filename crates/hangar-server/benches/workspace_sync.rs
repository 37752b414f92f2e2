//! What keeping a conversation's workspace in step with its manifest costs: the sync after a run
//! and the materialisation before one, for 1,000 files / 100 MiB, against a plain directory walk
//! that hashes every file (what a sync without the scan index would have to do).
//!
//! `cargo bench -p hangar-server --bench workspace_sync` opens a `SqlStore` on a SQLite file in a
//! fresh temporary directory, creates a model, a tenant and a conversation with the store API,
//! writes 1,000 files of mixed sizes (three of 12, 9 and 6 MiB, which go up in parts, and 997
//! from a few bytes to a few hundred KiB; 100 MiB in all, deterministic pseudo-random content)
//! into the conversation's directory, and drives `hangar_server::workspace::Workspaces` directly
//! (no HTTP), on a tokio runtime with two workers as in the server. For each blob backend:
//!
//! - **baseline** (same run): a plain recursive walk with `lstat`, and the same walk reading and
//!   SHA-256-hashing every file;
//! - **first sync**: everything hashed, uploaded and recorded (one run);
//! - **no-change sync**: nothing touched since the last sync; must upload nothing and record no
//!   version (checked, and the bench exits non-zero otherwise), with the objects in the blob store
//!   counted before and after;
//! - **one-file-changed sync**: one file of about the median size rewritten with new content of
//!   the same size (a different file each time);
//! - **materialise, warm node**: `materialise` on the directory that is already up to date;
//! - **materialise, fresh node**: another node's view: an empty directory, no scan index, the same
//!   store and blobs; every file downloaded, checked and written (the first one is compared with
//!   the original byte for byte, by hash).
//!
//! The files are written, then the bench waits out the scan index's 2-second racy window, so the
//! no-change syncs measure the steady state (a sync soon after a write re-hashes the files written
//! within 2 s of the previous scan; the one-file-changed rows show that as `hashed` = 2). All of
//! it runs with a warm page cache.
//!
//! Backends (`HANGAR_BENCH_BACKENDS`, default `local,s3`): `local` is a directory in the temporary
//! directory; `s3` is the S3-compatible server at `TEST_S3_URL` (it must be on 127.0.0.1 or
//! localhost), or else a `moto_server -H 127.0.0.1 -p 5056` (`HANGAR_BENCH_S3_PORT`) the bench
//! starts when it is on `PATH` and stops at the end; without either, S3 is skipped with the
//! reason. A bucket of its own is created, reached with static test credentials only; the bench
//! re-executes itself with `AWS_EC2_METADATA_DISABLED=true` unless that is already set.
//!
//! Environment: `HANGAR_BENCH_NO_CHANGE_RUNS` (20, after 1 unmeasured), `HANGAR_BENCH_CHANGED_RUNS`
//! (5), `HANGAR_BENCH_FRESH_RUNS` (3), `HANGAR_BENCH_BASELINE_RUNS` (5). Nothing but 127.0.0.1 is
//! contacted. See docs/benchmarks.md, "Workspace sync".

#![expect(clippy::print_stdout, reason = "a benchmark reports its results on stdout")]

use std::collections::BTreeMap;
use std::fs;
use std::io::Read;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use hangar_protocol::{ModelCreate, Price, ProviderKind, TenantCreate, TenantId};
use hangar_server::workspace::{Workspaces, scan};
use hangar_store::{
    Actor, BlobStore, ModelStore, NewConversation, S3Config, S3Credentials, SqlStore, Store, StoreOptions,
    TenantStore, WorkspaceId,
};
use sha2::{Digest, Sha256};
use uuid::Uuid;

const MIB: u64 = 1024 * 1024;
const FILES: usize = 1000;
const TOTAL_BYTES: u64 = 100 * MIB;
/// Files large enough to be uploaded in parts (`hangar_store::PART_SIZE` is 8 MiB).
const LARGE: [u64; 3] = [12 * MIB, 9 * MIB, 6 * MIB];
const TARGET_NO_CHANGE: Duration = Duration::from_millis(50);
/// The scan index's racy window (2 s, `workspace::scan`) and a margin.
const RACY_WAIT: Duration = Duration::from_millis(2_100);
const S3_READY_TIMEOUT: Duration = Duration::from_secs(30);

fn main() -> ExitCode {
    // Static credentials are used, but nothing should even try the instance-metadata endpoint.
    // `set_var` is unsafe (and `unsafe` is denied here), so the bench runs again with it set.
    if std::env::var("AWS_EC2_METADATA_DISABLED").as_deref() != Ok("true") {
        return reexec();
    }
    match run() {
        Ok(failures) if failures.is_empty() => ExitCode::SUCCESS,
        Ok(failures) => {
            println!();
            for failure in failures {
                println!("FAILED: {failure}");
            }
            ExitCode::FAILURE
        }
        Err(err) => {
            println!("workspace sync benchmark failed: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn reexec() -> ExitCode {
    let status = std::env::current_exe().and_then(|exe| {
        Command::new(exe)
            .args(std::env::args_os().skip(1))
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .status()
    });
    match status {
        Ok(status) if status.success() => ExitCode::SUCCESS,
        Ok(_) => ExitCode::FAILURE,
        Err(err) => {
            println!("could not re-run the bench with AWS_EC2_METADATA_DISABLED=true: {err}");
            ExitCode::FAILURE
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Configuration.

#[derive(Clone, Copy, PartialEq, Eq)]
enum Backend {
    Local,
    S3,
}

struct Config {
    backends: Vec<Backend>,
    no_change_runs: usize,
    changed_runs: usize,
    fresh_runs: usize,
    baseline_runs: usize,
    s3_port: u16,
}

fn env_usize(name: &str, default: usize) -> Result<usize> {
    match std::env::var(name) {
        Ok(raw) if !raw.trim().is_empty() => raw
            .trim()
            .parse()
            .map_err(|_| anyhow!("{name}={raw:?} is not a whole number")),
        _ => Ok(default),
    }
}

impl Config {
    fn from_env() -> Result<Self> {
        let backends = match std::env::var("HANGAR_BENCH_BACKENDS") {
            Ok(raw) if !raw.trim().is_empty() => raw
                .split(',')
                .map(|name| match name.trim() {
                    "local" => Ok(Backend::Local),
                    "s3" => Ok(Backend::S3),
                    other => Err(anyhow!(
                        "HANGAR_BENCH_BACKENDS: unknown backend {other:?} (local, s3)"
                    )),
                })
                .collect::<Result<_>>()?,
            _ => vec![Backend::Local, Backend::S3],
        };
        Ok(Self {
            backends,
            no_change_runs: env_usize("HANGAR_BENCH_NO_CHANGE_RUNS", 20)?.max(1),
            changed_runs: env_usize("HANGAR_BENCH_CHANGED_RUNS", 5)?.max(1),
            fresh_runs: env_usize("HANGAR_BENCH_FRESH_RUNS", 3)?.max(1),
            baseline_runs: env_usize("HANGAR_BENCH_BASELINE_RUNS", 5)?.max(1),
            s3_port: u16::try_from(env_usize("HANGAR_BENCH_S3_PORT", 5056)?)?,
        })
    }
}

// ---------------------------------------------------------------------------------------------
// The files.

/// xorshift64*: fast, deterministic, good enough for incompressible test content.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        Self(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }

    fn fill(&mut self, buffer: &mut [u8]) {
        for chunk in buffer.chunks_mut(8) {
            let bytes = self.next().to_le_bytes();
            chunk.copy_from_slice(&bytes[..chunk.len()]);
        }
    }
}

/// The workspace: (relative path, size), 1,000 files, 100 MiB in all.
fn plan() -> Vec<(String, u64)> {
    const EXTENSIONS: [&str; 6] = ["py", "txt", "json", "csv", "md", "bin"];
    let mut rng = Rng::new(42);
    let small = FILES - LARGE.len();
    let budget = TOTAL_BYTES - LARGE.iter().sum::<u64>();
    // Skewed: most files small, a few hundred KiB at most.
    let weights: Vec<f64> = (0..small).map(|_| rng.unit().powi(4) + 1e-4).collect();
    let sum: f64 = weights.iter().sum();
    let mut sizes: Vec<u64> = weights
        .iter()
        .map(|w| ((w / sum) * budget as f64) as u64)
        .collect();
    let short = budget - sizes.iter().sum::<u64>();
    if let Some(largest) = sizes.iter_mut().max() {
        *largest += short;
    }
    let mut files: Vec<(String, u64)> = LARGE
        .iter()
        .enumerate()
        .map(|(i, &size)| (format!("data/large-{i}.bin"), size))
        .collect();
    files.extend(sizes.into_iter().enumerate().map(|(i, size)| {
        let ext = EXTENSIONS[i % EXTENSIONS.len()];
        (format!("src/pkg{}/mod{}/file{i:04}.{ext}", i % 8, i % 5), size)
    }));
    files
}

fn write_file(root: &Path, path: &str, size: u64, seed: u64) -> Result<()> {
    let target = root.join(path);
    if let Some(parent) = target.parent() {
        fs::create_dir_all(parent)?;
    }
    let mut content = vec![0; usize::try_from(size)?];
    Rng::new(seed).fill(&mut content);
    fs::write(&target, content).with_context(|| format!("writing {}", target.display()))
}

// ---------------------------------------------------------------------------------------------
// The baseline: a plain walk, with and without hashing every file.

fn walk(dir: &Path, out: &mut Vec<(PathBuf, u64)>) -> std::io::Result<()> {
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let metadata = fs::symlink_metadata(entry.path())?;
        if metadata.is_dir() {
            walk(&entry.path(), out)?;
        } else if metadata.is_file() {
            out.push((entry.path(), metadata.len()));
        }
    }
    Ok(())
}

/// Every file under `root`, by relative path, with its SHA-256.
fn walk_and_hash(root: &Path) -> Result<BTreeMap<String, String>> {
    let mut files = Vec::new();
    walk(root, &mut files)?;
    let mut buffer = vec![0; 256 * 1024];
    let mut hashes = BTreeMap::new();
    for (path, _) in files {
        let mut file = fs::File::open(&path)?;
        let mut hasher = Sha256::new();
        loop {
            let n = file.read(&mut buffer)?;
            if n == 0 {
                break;
            }
            hasher.update(&buffer[..n]);
        }
        let relative = path.strip_prefix(root)?.to_string_lossy().into_owned();
        hashes.insert(relative, hex::encode(hasher.finalize()));
    }
    Ok(hashes)
}

// ---------------------------------------------------------------------------------------------
// Statistics and output.

/// The counts of a `SyncStats` (whose type the crate does not export) for [`Row::did`].
macro_rules! did {
    ($stats:expr) => {
        [$stats.hashed, $stats.uploaded, $stats.versions, $stats.downloaded]
    };
}

/// One row of the table: timings and what each run did (min–max over the runs).
struct Row {
    label: &'static str,
    times: Vec<Duration>,
    hashed: Vec<usize>,
    uploaded: Vec<usize>,
    versions: Vec<usize>,
    downloaded: Vec<usize>,
    objects_added: Option<usize>,
}

impl Row {
    fn new(label: &'static str) -> Self {
        Self {
            label,
            times: Vec::new(),
            hashed: Vec::new(),
            uploaded: Vec::new(),
            versions: Vec::new(),
            downloaded: Vec::new(),
            objects_added: None,
        }
    }

    /// What one run did (`SyncStats` counts, see [`did!`]).
    fn did(&mut self, [hashed, uploaded, versions, downloaded]: [usize; 4]) {
        self.hashed.push(hashed);
        self.uploaded.push(uploaded);
        self.versions.push(versions);
        self.downloaded.push(downloaded);
    }

    fn median(&self) -> Duration {
        percentile(&self.times, 0.5)
    }

    fn p95(&self) -> Duration {
        percentile(&self.times, 0.95)
    }
}

/// Nearest rank.
fn percentile(times: &[Duration], q: f64) -> Duration {
    let mut sorted = times.to_vec();
    sorted.sort();
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len().max(1));
    sorted.get(rank - 1).copied().unwrap_or_default()
}

fn range(values: &[usize]) -> String {
    match (values.iter().min(), values.iter().max()) {
        (Some(min), Some(max)) if min == max => min.to_string(),
        (Some(min), Some(max)) => format!("{min}–{max}"),
        _ => "–".to_owned(),
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn print_table(rows: &[&Row]) {
    println!(
        "    {:<42} {:>4} {:>10} {:>10} {:>7} {:>8} {:>8} {:>10} {:>8}",
        "", "runs", "median ms", "p95 ms", "hashed", "uploaded", "versions", "downloaded", "objects+"
    );
    for row in rows {
        println!(
            "    {:<42} {:>4} {:>10.2} {:>10.2} {:>7} {:>8} {:>8} {:>10} {:>8}",
            row.label,
            row.times.len(),
            ms(row.median()),
            ms(row.p95()),
            range(&row.hashed),
            range(&row.uploaded),
            range(&row.versions),
            range(&row.downloaded),
            row.objects_added
                .map_or_else(|| "–".to_owned(), |n| n.to_string()),
        );
    }
}

// ---------------------------------------------------------------------------------------------
// S3: an S3-compatible server on 127.0.0.1, given or started here.

struct S3Server {
    url: String,
    child: Option<Child>,
}

impl Drop for S3Server {
    fn drop(&mut self) {
        if let Some(child) = &mut self.child {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The server to use, or why S3 is skipped.
fn s3_server(port: u16, log: &Path) -> Result<std::result::Result<S3Server, String>> {
    if let Ok(url) = std::env::var("TEST_S3_URL")
        && !url.trim().is_empty()
    {
        let url = url.trim().trim_end_matches('/').to_owned();
        let parsed = reqwest::Url::parse(&url).with_context(|| format!("TEST_S3_URL={url:?}"))?;
        if !matches!(parsed.host_str(), Some("127.0.0.1" | "localhost")) {
            return Ok(Err(format!(
                "TEST_S3_URL={url} is not on 127.0.0.1; this bench contacts nothing else"
            )));
        }
        return Ok(Ok(S3Server { url, child: None }));
    }
    let Some(program) = std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .map(|dir| dir.join("moto_server"))
        .find(|path| path.is_file())
    else {
        return Ok(Err(
            "TEST_S3_URL is not set and moto_server is not on PATH (pip install 'moto[server]')".to_owned(),
        ));
    };
    let addr = format!("127.0.0.1:{port}");
    if TcpStream::connect(&addr).is_ok() {
        return Ok(Err(format!(
            "something already listens on {addr}; set TEST_S3_URL to use it, or HANGAR_BENCH_S3_PORT"
        )));
    }
    let output = fs::File::create(log)?;
    let child = Command::new(&program)
        .args(["-H", "127.0.0.1", "-p", &port.to_string()])
        .stdin(Stdio::null())
        .stdout(output.try_clone()?)
        .stderr(output)
        .spawn()
        .with_context(|| format!("starting {}", program.display()))?;
    let mut server = S3Server {
        url: format!("http://{addr}"),
        child: Some(child),
    };
    let started = Instant::now();
    loop {
        if TcpStream::connect(&addr).is_ok() {
            return Ok(Ok(server));
        }
        if let Some(child) = &mut server.child
            && let Some(status) = child.try_wait()?
        {
            bail!(
                "moto_server exited ({status}) before answering; log: {}",
                log.display()
            );
        }
        if started.elapsed() > S3_READY_TIMEOUT {
            bail!(
                "moto_server did not answer on {addr} within {S3_READY_TIMEOUT:?}; log: {}",
                log.display()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A fresh bucket on the server, reached with static test credentials only.
async fn s3_blobs(http: &reqwest::Client, url: &str, bucket: &str) -> Result<BlobStore> {
    let response = http
        .put(format!("{url}/{bucket}"))
        .send()
        .await
        .with_context(|| format!("creating bucket {bucket} on {url}"))?;
    if !response.status().is_success() {
        bail!("creating bucket {bucket} on {url}: {}", response.status());
    }
    Ok(BlobStore::s3(&S3Config {
        bucket: bucket.to_owned(),
        region: "us-east-1".to_owned(),
        endpoint: Some(url.to_owned()),
        path_style: true,
        allow_http: true,
        credentials: S3Credentials::Static {
            access_key_id: "test".to_owned(),
            secret_access_key: "test".to_owned(),
            session_token: None,
        },
    })?)
}

/// Where the blobs are, to count the objects in it independently of `SyncStats`.
enum Objects {
    Dir(PathBuf),
    Bucket {
        http: reqwest::Client,
        url: String,
        bucket: String,
    },
}

impl Objects {
    async fn count(&self) -> Result<usize> {
        match self {
            Self::Dir(dir) => {
                let mut files = Vec::new();
                walk(dir, &mut files)?;
                Ok(files.len())
            }
            Self::Bucket { http, url, bucket } => {
                // ListObjectsV2, a page of up to 1,000 keys at a time (moto needs no signature).
                let mut count = 0;
                let mut token: Option<String> = None;
                loop {
                    let mut list = reqwest::Url::parse(&format!("{url}/{bucket}"))?;
                    list.query_pairs_mut().append_pair("list-type", "2");
                    if let Some(token) = &token {
                        list.query_pairs_mut().append_pair("continuation-token", token);
                    }
                    let body = http.get(list).send().await?.error_for_status()?.text().await?;
                    count += body.matches("<Key>").count();
                    token = body
                        .split_once("<NextContinuationToken>")
                        .and_then(|(_, rest)| rest.split_once("</NextContinuationToken>"))
                        .map(|(token, _)| token.to_owned());
                    if token.is_none() {
                        return Ok(count);
                    }
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The run.

struct Setup {
    store: Arc<dyn Store>,
    tenant: TenantId,
}

async fn setup(db: &Path) -> Result<Setup> {
    let url = format!("sqlite://{}", db.display());
    let store = SqlStore::connect(&url, &StoreOptions::default()).await?;
    store.migrate().await?;
    let actor = Actor::new("admin:bench", None);
    store
        .create_model(
            &actor,
            &ModelCreate {
                model_id: "bench-model".parse()?,
                display_name: "Bench".to_owned(),
                provider: ProviderKind::Bedrock,
                bedrock_model_id: "provider.bench-v1:0".to_owned(),
                model_region: None,
                base_url: None,
                api_key_env: None,
                fallback_model_ids: Vec::new(),
                input_token_price: Price::ZERO,
                output_token_price: Price::ZERO,
                cache_creation_5m_price: Price::ZERO,
                cache_creation_1h_price: Price::ZERO,
                cache_read_price: Price::ZERO,
                context_window: 200_000,
                max_output_tokens: 64_000,
                supports_extended_context: false,
                extended_context_window: None,
            },
        )
        .await?;
    let tenant: TenantId = "bench".parse()?;
    store
        .create_tenant(
            &actor,
            &TenantCreate {
                tenant_id: tenant.clone(),
                system_prompt: None,
                model_id: Some("bench-model".parse()?),
                policy: Default::default(),
            },
        )
        .await?;
    Ok(Setup {
        store: Arc::new(store),
        tenant,
    })
}

/// One backend's rows.
struct Outcome {
    name: &'static str,
    walk_only: Row,
    walk_hash: Row,
    first: Row,
    no_change: Row,
    /// The no-change sync's steps, timed separately.
    parts: [Row; 3],
    changed: Row,
    warm: Row,
    fresh: Row,
}

impl Outcome {
    fn print(&self) {
        println!();
        println!("  [{}]", self.name);
        print_table(&[
            &self.walk_only,
            &self.walk_hash,
            &self.first,
            &self.no_change,
            &self.parts[0],
            &self.parts[1],
            &self.parts[2],
            &self.changed,
            &self.warm,
            &self.fresh,
        ]);
        let mib = TOTAL_BYTES as f64 / MIB as f64;
        let (sync, hash, stat) = (
            self.no_change.median(),
            self.walk_hash.median(),
            self.walk_only.median(),
        );
        println!(
            "    no-change sync / baseline walk + SHA-256 (medians): {:.2} / {:.2} ms = {:.4} ({:.0}× faster)",
            ms(sync),
            ms(hash),
            sync.as_secs_f64() / hash.as_secs_f64(),
            hash.as_secs_f64() / sync.as_secs_f64(),
        );
        println!(
            "    no-change sync / baseline walk + lstat (medians):   {:.2} / {:.2} ms = {:.1}",
            ms(sync),
            ms(stat),
            sync.as_secs_f64() / stat.as_secs_f64(),
        );
        println!(
            "    throughput: baseline hash {:.0} MiB/s, first sync {:.0} MiB/s, fresh materialise {:.0} MiB/s",
            mib / hash.as_secs_f64(),
            mib / self.first.median().as_secs_f64(),
            mib / self.fresh.median().as_secs_f64(),
        );
        println!(
            "    no-change syncs: {} uploads and {} new versions in {} runs, {} objects added to the blob store",
            self.no_change.uploaded.iter().sum::<usize>(),
            self.no_change.versions.iter().sum::<usize>(),
            self.no_change.times.len(),
            self.no_change.objects_added.unwrap_or_default(),
        );
        println!(
            "    target: no-change sync of 1,000 files ≤ {} ms: {} (p95 {:.2} ms, median {:.2} ms)",
            TARGET_NO_CHANGE.as_millis(),
            if self.no_change.p95() <= TARGET_NO_CHANGE {
                "PASS"
            } else {
                "FAIL"
            },
            ms(self.no_change.p95()),
            ms(sync),
        );
    }
}

async fn bench_backend(
    config: &Config,
    setup: &Setup,
    name: &'static str,
    root: &Path,
    blobs: BlobStore,
    objects: &Objects,
    failures: &mut Vec<String>,
) -> Result<Outcome> {
    let tenant = &setup.tenant;
    let conversation = setup
        .store
        .create_conversation(&NewConversation {
            tenant_id: tenant.clone(),
            user_id: "bench-user".to_owned(),
            model_id: "bench-model".parse()?,
            workspace_enabled: true,
        })
        .await?
        .conversation_id;
    let workspace: WorkspaceId = setup.store.workspace_for(tenant, conversation).await?;
    let workspaces = Workspaces::new(
        setup.store.clone(),
        blobs.clone(),
        root.join("workspaces"),
        root.join("index"),
    );
    let dir = workspaces.open(tenant, conversation).await?;
    let path = workspaces.dir(tenant, conversation);
    let files = plan();
    for (i, (file, size)) in files.iter().enumerate() {
        write_file(&path, file, *size, i as u64)?;
    }
    tokio::time::sleep(RACY_WAIT).await;

    let mut check = |ok: bool, what: String| {
        if !ok {
            failures.push(format!("{name}: {what}"));
        }
    };

    // Baselines.
    let mut walk_only = Row::new("baseline: walk + lstat, no hashing");
    let mut walk_hash = Row::new("baseline: walk + SHA-256 of every file");
    for _ in 0..config.baseline_runs {
        let started = Instant::now();
        let mut found = Vec::new();
        walk(&path, &mut found)?;
        walk_only.times.push(started.elapsed());
        check(
            found.len() == FILES,
            format!("the walk found {} files", found.len()),
        );
        let started = Instant::now();
        let hashed = walk_and_hash(&path)?;
        walk_hash.times.push(started.elapsed());
        walk_hash.hashed.push(hashed.len());
    }

    // First sync.
    let mut first = Row::new("first sync (hash, upload, record all)");
    let before = objects.count().await?;
    let started = Instant::now();
    let (stats, _) = workspaces
        .sync(tenant, conversation, workspace, &dir, Uuid::now_v7())
        .await?;
    first.times.push(started.elapsed());
    let added = objects.count().await?.saturating_sub(before);
    check(
        stats.uploaded == FILES && stats.versions == FILES && added == FILES,
        format!(
            "first sync: {} uploaded, {} versions, {added} objects added (expected {FILES} each)",
            stats.uploaded, stats.versions
        ),
    );
    first.did(did!(stats));
    first.objects_added = Some(added);

    // No-change syncs (one unmeasured first).
    let mut no_change = Row::new("no-change sync");
    let before = objects.count().await?;
    for run in 0..=config.no_change_runs {
        let started = Instant::now();
        let (stats, _) = workspaces
            .sync(tenant, conversation, workspace, &dir, Uuid::now_v7())
            .await?;
        let elapsed = started.elapsed();
        check(
            stats.uploaded == 0 && stats.versions == 0,
            format!(
                "no-change sync {run}: {} uploaded, {} versions (expected 0 and 0)",
                stats.uploaded, stats.versions
            ),
        );
        if run > 0 {
            no_change.times.push(elapsed);
            no_change.did(did!(stats));
        }
    }
    let added = objects.count().await?.saturating_sub(before);
    check(
        added == 0,
        format!("no-change syncs added {added} objects to the blob store"),
    );
    no_change.objects_added = Some(added);

    // Where a no-change sync's time goes: the same three steps, timed one by one.
    let mut part_scan = Row::new("  of which: scan (walk, index load + save)");
    let mut part_files = Row::new("  of which: manifest read (store.files)");
    let mut part_snapshot = Row::new("  of which: snapshot insert");
    let index_path = root.join("breakdown-index.json");
    for run in 0..=config.no_change_runs {
        let started = Instant::now();
        let mut index = scan::Index::load(&index_path);
        let found = scan::scan(&dir, &mut index)?;
        index.save(&index_path)?;
        let scanned = started.elapsed();
        let started = Instant::now();
        let manifest = setup.store.files(workspace, None).await?;
        let read = started.elapsed();
        let started = Instant::now();
        setup.store.snapshot(workspace, Uuid::now_v7()).await?;
        let snapshot = started.elapsed();
        check(
            manifest.len() == FILES,
            format!("manifest has {} files", manifest.len()),
        );
        if run > 0 {
            part_scan.times.push(scanned);
            part_scan.hashed.push(found.hashed);
            part_files.times.push(read);
            part_snapshot.times.push(snapshot);
        }
    }

    // Warm materialise: nothing to do.
    let mut warm = Row::new("materialise, warm node (nothing to do)");
    for _ in 0..config.no_change_runs {
        let started = Instant::now();
        let stats = workspaces
            .materialise(tenant, conversation, workspace, &dir)
            .await?;
        warm.times.push(started.elapsed());
        check(
            stats.downloaded == 0 && stats.removed == 0,
            format!("warm materialise downloaded {} files", stats.downloaded),
        );
        warm.did(did!(stats));
    }

    // One file changed: a different file of about the median size each time, same size.
    let mut by_size: Vec<usize> = (LARGE.len()..files.len()).collect();
    by_size.sort_by_key(|&i| files[i].1);
    let middle = by_size.len() / 2;
    let mut changed = Row::new("one-file-changed sync");
    let before = objects.count().await?;
    for run in 0..config.changed_runs {
        let i = by_size[(middle + run) % by_size.len()];
        let (file, size) = &files[i];
        write_file(&path, file, *size, 1_000_000 + i as u64)?;
        let started = Instant::now();
        let (stats, _) = workspaces
            .sync(tenant, conversation, workspace, &dir, Uuid::now_v7())
            .await?;
        changed.times.push(started.elapsed());
        check(
            stats.uploaded == 1 && stats.versions == 1,
            format!(
                "one-file-changed sync {run}: {} uploaded, {} versions (expected 1 and 1)",
                stats.uploaded, stats.versions
            ),
        );
        changed.did(did!(stats));
    }
    let added = objects.count().await?.saturating_sub(before);
    check(
        added == config.changed_runs,
        format!(
            "one-file-changed syncs added {added} objects (expected {})",
            config.changed_runs
        ),
    );
    changed.objects_added = Some(added);
    let expected = walk_and_hash(&path)?;

    // Another node: an empty directory and no index, the same store and blobs.
    let mut fresh = Row::new("materialise, fresh node (download all)");
    for run in 0..config.fresh_runs {
        let node = root.join(format!("node-{run}"));
        let other = Workspaces::new(
            setup.store.clone(),
            blobs.clone(),
            node.join("workspaces"),
            node.join("index"),
        );
        let started = Instant::now();
        let fresh_dir = other.open(tenant, conversation).await?;
        let stats = other
            .materialise(tenant, conversation, workspace, &fresh_dir)
            .await?;
        fresh.times.push(started.elapsed());
        check(
            stats.downloaded == FILES,
            format!(
                "fresh materialise downloaded {} files (expected {FILES})",
                stats.downloaded
            ),
        );
        fresh.did(did!(stats));
        if run == 0 {
            let got = walk_and_hash(&other.dir(tenant, conversation))?;
            check(
                got == expected,
                "the fresh node's files differ from the original".to_owned(),
            );
        }
        drop(fresh_dir);
        fs::remove_dir_all(&node)?;
    }
    Ok(Outcome {
        name,
        walk_only,
        walk_hash,
        first,
        no_change,
        parts: [part_scan, part_files, part_snapshot],
        changed,
        warm,
        fresh,
    })
}

fn run() -> Result<Vec<String>> {
    let config = Config::from_env()?;
    let tmp = tempfile::tempdir()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    println!("hangar workspace sync benchmark");
    println!(
        "  machine: {} cores; {FILES} files, {:.1} MiB (largest {} MiB), SQLite manifest, warm page cache",
        std::thread::available_parallelism().map_or(0, usize::from),
        TOTAL_BYTES as f64 / MIB as f64,
        LARGE[0] / MIB,
    );
    let mut failures = Vec::new();
    let mut outcomes = Vec::new();
    runtime.block_on(async {
        let setup = setup(&tmp.path().join("hangar.db")).await?;
        let http = reqwest::Client::builder().no_proxy().build()?;
        for backend in &config.backends {
            let outcome = match backend {
                Backend::Local => {
                    let root = tmp.path().join("local");
                    let blobs_dir = root.join("blobs");
                    let blobs = BlobStore::local(&blobs_dir)?;
                    let objects = Objects::Dir(blobs_dir);
                    bench_backend(&config, &setup, "local", &root, blobs, &objects, &mut failures).await?
                }
                Backend::S3 => {
                    let server = match s3_server(config.s3_port, &tmp.path().join("moto.log"))? {
                        Ok(server) => server,
                        Err(why) => {
                            println!("  S3 skipped: {why}");
                            continue;
                        }
                    };
                    let bucket = format!("hangar-bench-{}", Uuid::new_v4().simple());
                    let blobs = s3_blobs(&http, &server.url, &bucket).await?;
                    let objects = Objects::Bucket {
                        http: http.clone(),
                        url: server.url.clone(),
                        bucket,
                    };
                    println!(
                        "  S3: {} ({})",
                        server.url,
                        if server.child.is_some() {
                            "moto_server started by the bench"
                        } else {
                            "TEST_S3_URL"
                        }
                    );
                    let outcome = bench_backend(
                        &config,
                        &setup,
                        "s3",
                        &tmp.path().join("s3"),
                        blobs,
                        &objects,
                        &mut failures,
                    )
                    .await;
                    drop(server);
                    outcome?
                }
            };
            outcome.print();
            outcomes.push(outcome);
        }
        Ok::<_, anyhow::Error>(())
    })?;
    println!();
    let pass = !outcomes.is_empty() && outcomes.iter().all(|o| o.no_change.p95() <= TARGET_NO_CHANGE);
    let detail: Vec<String> = outcomes
        .iter()
        .map(|o| format!("{} p95 {:.2} ms", o.name, ms(o.no_change.p95())))
        .collect();
    println!(
        "no-change sync of 1,000 files ≤ {} ms: {} ({})",
        TARGET_NO_CHANGE.as_millis(),
        if pass { "PASS" } else { "FAIL" },
        detail.join(", ")
    );
    Ok(failures)
}
