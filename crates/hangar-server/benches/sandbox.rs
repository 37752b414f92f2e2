//! Sandbox start-up, command round trips and idle density, against plain fork/exec on the host.
//!
//! `cargo bench -p hangar-server --bench sandbox` uses the real backends of `hangar-sandbox`
//! with the `hangar` binary of this build as the in-sandbox supervisor, a fresh temporary
//! directory per backend for the state directory and the workspaces, and `Limits::default()`
//! (memory can be changed, see below). Everything runs in this process on a tokio runtime with
//! two worker threads, like the server. Nothing uses the network: sandboxes get no egress.
//!
//! 1. **Baseline**: `tokio::process::Command` fork/exec of `/bin/echo hi` and of `/bin/true` on
//!    the host, collected with `output()`; for reference also a bare `bwrap --unshare-all
//!    --ro-bind / / /bin/true` (new namespaces, no mounts of its own, no cgroup, no supervisor).
//! 2. **create → first output**: `backend.create(spec)`, then `exec(["/bin/echo", "hi"])` until
//!    the first stdout event (the rest of the command is drained afterwards, untimed). The time
//!    `create` alone takes (until the supervisor answers its first ping) is shown too. Each
//!    sandbox is destroyed after; destroy is timed separately.
//! 3. **Warm round trips** in one sandbox: (a) `exec(["/bin/true"])` collected to its exit (a
//!    fork/exec inside the sandbox), (b) `shell("bench", "echo hi")` in the persistent bash
//!    session, collected, (c) a bare supervisor ping. The `Sandbox` trait has no accessor for the
//!    supervisor socket, so (c) opens `SupervisorClient::new(<state dir>/<sandbox id>/sup.sock)`,
//!    the host-side layout documented in `hangar_sandbox::host`.
//! 4. **Idle density**: N sandboxes are started in concurrent batches, then, all idle, their
//!    memory is summed from their cgroups (`memory.usage_in_bytes` of every
//!    `/sys/fs/cgroup/memory/hangar/<instance>[-oci]/sb-*`) and from `/proc` (Rss and Pss of
//!    every process in those cgroups plus this process's direct children, which for the OCI
//!    backend includes each `runc run` left in the foreground outside the container's cgroup),
//!    with their CPU use over a few idle seconds and this process's own RSS and descriptors.
//!    The round trips of 3 are repeated in the same warm sandbox while the N others sit idle,
//!    and a few more sandboxes are created and destroyed. Then the N are destroyed, the round
//!    trips are measured once more with the warm sandbox alone (so that other work on the
//!    machine is not mistaken for degradation), and after destroying that one too the bench
//!    checks that no process, cgroup, state directory or runc container is left.
//!
//! Every row also shows `busy`: the cores the whole machine kept busy during that scenario, from
//! `/proc/stat`. A sequential scenario by itself keeps about one of them busy; clearly more means
//! something else was running and the row is disturbed.
//!
//! Environment (each also accepted with a `HANGAR_` prefix, as the other benches use):
//! `BENCH_BACKEND` (`bwrap`, `oci` or `both`; default both when `Oci::new` works and runc is
//! usable, else bwrap), `BENCH_BASELINE_RUNS` (200), `BENCH_CREATES` (100), `BENCH_ROUND_TRIPS`
//! (1000), `BENCH_WARMUP` (20, excluded), `BENCH_SANDBOXES` (200), `BENCH_BATCH` (10),
//! `BENCH_IDLE_SECS` (3), `BENCH_MEMORY_MIB` (memory limit per sandbox; default that of
//! `Limits::default()`). Needs root (cgroups, runc), bubblewrap and, for OCI, runc. See
//! docs/benchmarks.md, "Sandboxes".

#![expect(clippy::print_stdout, reason = "a benchmark reports its results on stdout")]

use std::collections::BTreeSet;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail, ensure};
use hangar_sandbox::bwrap::Bwrap;
use hangar_sandbox::host::HostConfig;
use hangar_sandbox::oci::Oci;
use hangar_sandbox::{Backend, ExecEvent, ExecRequest, Limits, Sandbox, SandboxSpec, SupervisorClient};

/// The `hangar` binary of this build: the supervisor inside every sandbox.
const SUPERVISOR: &str = env!("CARGO_BIN_EXE_hangar");
const MIB: u64 = 1024 * 1024;
const GIB: f64 = 1024.0 * 1024.0 * 1024.0;
const TARGET_CREATE_P50: Duration = Duration::from_millis(20);
const TARGET_ROUND_TRIP_P50: Duration = Duration::from_millis(2);
const TARGET_IDLE: usize = 200;
/// A warm round trip with the idle sandboxes around counts as degraded above this ratio.
const DEGRADED_RATIO: f64 = 1.5;
/// Clock ticks per second of `/proc/<pid>/stat` (USER_HZ).
const TICKS: f64 = 100.0;

// ---------------------------------------------------------------------------------------------
// Configuration.

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kind {
    Bwrap,
    Oci,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Self::Bwrap => "bwrap",
            Self::Oci => "oci",
        }
    }
}

struct Config {
    backends: Vec<Kind>,
    /// Why the default left OCI out, when it did.
    oci_note: Option<String>,
    baseline_runs: usize,
    creates: usize,
    round_trips: usize,
    warmup: usize,
    sandboxes: usize,
    batch: usize,
    idle: Duration,
    memory_bytes: u64,
}

/// `HANGAR_<name>` or `<name>`, whichever is set (non-empty) first.
fn env_raw(name: &str) -> Option<(String, String)> {
    [format!("HANGAR_{name}"), name.to_owned()]
        .into_iter()
        .find_map(|var| {
            std::env::var(&var)
                .ok()
                .filter(|v| !v.trim().is_empty())
                .map(|v| (var, v.trim().to_owned()))
        })
}

fn env_usize(name: &str, default: usize) -> Result<usize> {
    match env_raw(name) {
        Some((var, raw)) => raw
            .parse()
            .map_err(|_| anyhow!("{var}={raw:?} is not a whole number")),
        None => Ok(default),
    }
}

impl Config {
    fn from_env() -> Result<Self> {
        let (backends, oci_note) = match env_raw("BENCH_BACKEND") {
            Some((var, raw)) => match raw.to_ascii_lowercase().as_str() {
                "bwrap" => (vec![Kind::Bwrap], None),
                "oci" => (vec![Kind::Oci], None),
                "both" => (vec![Kind::Bwrap, Kind::Oci], None),
                _ => bail!("{var}={raw:?}: expected bwrap, oci or both"),
            },
            None => match oci_usable() {
                Ok(()) => (vec![Kind::Bwrap, Kind::Oci], None),
                Err(why) => (vec![Kind::Bwrap], Some(why)),
            },
        };
        let default_memory = Limits::default().memory_bytes / MIB;
        let memory_mib = u64::try_from(env_usize("BENCH_MEMORY_MIB", usize::try_from(default_memory)?)?)?;
        Ok(Self {
            backends,
            oci_note,
            baseline_runs: env_usize("BENCH_BASELINE_RUNS", 200)?.max(1),
            creates: env_usize("BENCH_CREATES", 100)?.max(1),
            round_trips: env_usize("BENCH_ROUND_TRIPS", 1000)?.max(1),
            warmup: env_usize("BENCH_WARMUP", 20)?,
            sandboxes: env_usize("BENCH_SANDBOXES", 200)?,
            batch: env_usize("BENCH_BATCH", 10)?.max(1),
            idle: Duration::from_secs(u64::try_from(env_usize("BENCH_IDLE_SECS", 3)?)?.max(1)),
            memory_bytes: memory_mib.max(16) * MIB,
        })
    }
}

/// Whether the OCI backend can run here: `Oci::new` on a scratch directory, then `ready()`.
fn oci_usable() -> std::result::Result<(), String> {
    let dir = tempfile::tempdir().map_err(|e| format!("tempdir: {e}"))?;
    let oci = Oci::new(HostConfig::new(SUPERVISOR, dir.path().join("state"))).map_err(|e| e.to_string())?;
    oci.ready().map_err(|e| e.to_string())
}

// ---------------------------------------------------------------------------------------------
// Statistics.

#[derive(Clone, Copy, Default)]
struct Stat {
    n: usize,
    p50: Duration,
    p99: Duration,
    max: Duration,
    /// Cores the whole machine kept busy meanwhile (a sequential scenario alone uses about one;
    /// more means other work was running).
    busy: f64,
}

/// Nearest-rank percentile of sorted values.
fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = (p * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn stat(mut samples: Vec<Duration>) -> Stat {
    samples.sort_unstable();
    Stat {
        n: samples.len(),
        p50: percentile(&samples, 0.50),
        p99: percentile(&samples, 0.99),
        max: samples.last().copied().unwrap_or_default(),
        busy: 0.0,
    }
}

/// Machine-wide busy cores between `ticks` (from [`machine_ticks`]) and now.
fn busy_since(ticks: u64, since: Instant) -> f64 {
    machine_ticks().saturating_sub(ticks) as f64 / TICKS / since.elapsed().as_secs_f64().max(1e-3)
}

fn ms(d: Duration) -> String {
    format!("{:.3}", d.as_secs_f64() * 1000.0)
}

fn ratio(a: Duration, b: Duration) -> f64 {
    if b.is_zero() {
        0.0
    } else {
        a.as_secs_f64() / b.as_secs_f64()
    }
}

fn header() {
    println!(
        "{:<50} {:>6} {:>9} {:>9} {:>9} {:>5}  {:<22}",
        "scenario", "n", "p50 ms", "p99 ms", "max ms", "busy", "p50 vs baseline"
    );
}

/// One table line; `baseline` is (name, p50) of what to compare the p50 with.
fn row(name: &str, s: &Stat, baseline: Option<(&str, Duration)>) {
    let versus = match baseline {
        Some((what, p50)) => format!("{:>7.1}x {what}", ratio(s.p50, p50)),
        None => String::new(),
    };
    println!(
        "{name:<50} {:>6} {:>9} {:>9} {:>9} {:>5.2}  {versus}",
        s.n,
        ms(s.p50),
        ms(s.p99),
        ms(s.max),
        s.busy
    );
}

/// Runs `op` `warmup` times unmeasured, then `n` times measured.
async fn time_n<F, Fut>(n: usize, warmup: usize, mut op: F) -> Result<Stat>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<()>>,
{
    for _ in 0..warmup {
        op().await?;
    }
    let mut samples = Vec::with_capacity(n);
    let (ticks, since) = (machine_ticks(), Instant::now());
    for _ in 0..n {
        let started = Instant::now();
        op().await?;
        samples.push(started.elapsed());
    }
    Ok(Stat {
        busy: busy_since(ticks, since),
        ..stat(samples)
    })
}

// ---------------------------------------------------------------------------------------------
// Operations.

async fn host_command(program: &str, args: &[&str]) -> Result<()> {
    let output = tokio::process::Command::new(program).args(args).output().await?;
    ensure!(output.status.success(), "{program} failed: {}", output.status);
    Ok(())
}

/// `exec(["/bin/echo", "hi"])` until its first stdout event; returns when that came, relative to
/// `started`, then drains the command to its exit.
async fn first_output(sandbox: &dyn Sandbox, started: Instant) -> Result<Duration> {
    let mut handle = sandbox.exec(ExecRequest::new(["/bin/echo", "hi"])).await?;
    let first = loop {
        match handle.next().await? {
            Some(ExecEvent::Stdout(_)) => break started.elapsed(),
            Some(_) => {}
            None => bail!("echo ended without output: {:?}", handle.exit()),
        }
    };
    while handle.next().await?.is_some() {}
    let exit = handle.exit().cloned().unwrap_or_default();
    ensure!(exit.success(), "echo failed in the sandbox: {exit:?}");
    Ok(first)
}

async fn exec_true(sandbox: &dyn Sandbox) -> Result<()> {
    let outcome = sandbox
        .exec(ExecRequest::new(["/bin/true"]))
        .await?
        .collect()
        .await?;
    ensure!(
        outcome.exit.success(),
        "/bin/true failed in the sandbox: {:?}",
        outcome.exit
    );
    Ok(())
}

async fn shell_echo(sandbox: &dyn Sandbox) -> Result<()> {
    let outcome = sandbox.shell("bench", "echo hi", None).await?.collect().await?;
    ensure!(
        outcome.exit.success() && outcome.stdout == b"hi\n",
        "shell `echo hi` gave {:?} / {:?}",
        outcome.stdout_text(),
        outcome.exit
    );
    Ok(())
}

/// The three warm round trips in one sandbox.
struct Warm {
    exec: Stat,
    shell: Stat,
    ping: Stat,
}

async fn warm_round_trips(sandbox: &dyn Sandbox, client: &SupervisorClient, config: &Config) -> Result<Warm> {
    let (n, warmup) = (config.round_trips, config.warmup);
    let exec = time_n(n, warmup, move || exec_true(sandbox))
        .await
        .context("warm exec")?;
    let shell = time_n(n, warmup.max(1), move || shell_echo(sandbox))
        .await
        .context("warm shell")?;
    let ping = time_n(n, warmup, move || async move {
        client.ping().await?;
        Ok::<(), anyhow::Error>(())
    })
    .await
    .context("warm ping")?;
    Ok(Warm { exec, shell, ping })
}

// ---------------------------------------------------------------------------------------------
// One backend.

/// Every sandbox this bench has running, so that every exit path can destroy them.
#[derive(Default)]
struct Fleet {
    sandboxes: Vec<Box<dyn Sandbox>>,
}

/// Destroys all of `sandboxes`, `batch` at a time; returns the wall time and the failures.
async fn destroy_many(sandboxes: Vec<Box<dyn Sandbox>>, batch: usize) -> (Duration, Vec<String>) {
    let started = Instant::now();
    let mut failures = Vec::new();
    let mut rest = sandboxes.into_iter().peekable();
    while rest.peek().is_some() {
        let chunk: Vec<_> = rest.by_ref().take(batch).collect();
        let outcomes = futures::future::join_all(chunk.iter().map(|s| s.destroy())).await;
        for (sandbox, outcome) in chunk.iter().zip(outcomes) {
            if let Err(e) = outcome {
                failures.push(format!("{}: {e}", sandbox.id()));
            }
        }
    }
    (started.elapsed(), failures)
}

struct Bench<'a> {
    kind: Kind,
    config: &'a Config,
    backend: Arc<dyn Backend>,
    state: PathBuf,
    workspaces: PathBuf,
    instance: String,
    counter: AtomicUsize,
}

impl Bench<'_> {
    fn spec(&self) -> SandboxSpec {
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        let mut spec = SandboxSpec::new(format!("bench/{n}"), self.workspaces.join(n.to_string()));
        spec.limits.memory_bytes = self.config.memory_bytes;
        spec
    }

    fn client(&self, sandbox: &dyn Sandbox) -> SupervisorClient {
        SupervisorClient::new(self.state.join(sandbox.id().as_str()).join("sup.sock"))
    }

    fn label(&self, what: &str) -> String {
        format!("[{}] {what}", self.kind.name())
    }

    /// `count` sandboxes created, asked for their first output and destroyed, one after another.
    async fn create_cycle(&self, fleet: &mut Fleet, count: usize, warmup: usize) -> Result<Cycle> {
        let (mut create, mut first, mut destroy) = (Vec::new(), Vec::new(), Vec::new());
        let (mut ticks, mut since) = (machine_ticks(), Instant::now());
        for i in 0..warmup + count {
            if i == warmup {
                (ticks, since) = (machine_ticks(), Instant::now());
            }
            let spec = self.spec();
            let started = Instant::now();
            let sandbox = self.backend.create(spec).await.context("create")?;
            let created = started.elapsed();
            fleet.sandboxes.push(sandbox);
            let sandbox = fleet.sandboxes.last().ok_or_else(|| anyhow!("fleet is empty"))?;
            let output = first_output(sandbox.as_ref(), started)
                .await
                .context("first output")?;
            let sandbox = fleet.sandboxes.pop().ok_or_else(|| anyhow!("fleet is empty"))?;
            let destroy_started = Instant::now();
            sandbox.destroy().await.context("destroy")?;
            if i >= warmup {
                create.push(created);
                first.push(output);
                destroy.push(destroy_started.elapsed());
            }
        }
        let busy = busy_since(ticks, since);
        Ok(Cycle {
            create: Stat { busy, ..stat(create) },
            first: Stat { busy, ..stat(first) },
            destroy: Stat {
                busy,
                ..stat(destroy)
            },
        })
    }

    async fn run(&self, fleet: &mut Fleet, base: &Baseline) -> Result<Report> {
        let config = self.config;
        let mut report = Report {
            kind: self.kind,
            ..Report::default()
        };
        let echo = Some(("host echo", base.echo.p50));
        let truth = Some(("host true", base.truth.p50));

        // 2. Cold start.
        let cycle = self
            .create_cycle(fleet, config.creates, config.warmup.min(5))
            .await?;
        row(
            &self.label("create() until the supervisor answers"),
            &cycle.create,
            echo,
        );
        row(
            &self.label("create → first output of echo hi"),
            &cycle.first,
            echo,
        );
        row(
            &self.label("  destroy (not included above)"),
            &cycle.destroy,
            None,
        );
        report.cold = Some(cycle);

        // 3. Warm round trips in one sandbox; it stays for the density comparison.
        let warm = self
            .backend
            .create(self.spec())
            .await
            .context("create the warm sandbox")?;
        fleet.sandboxes.push(warm);
        let warm = fleet
            .sandboxes
            .last()
            .ok_or_else(|| anyhow!("fleet is empty"))?
            .as_ref();
        let client = self.client(warm);
        let single = warm_round_trips(warm, &client, config).await?;
        row(
            &self.label("warm exec /bin/true (1 sandbox)"),
            &single.exec,
            truth,
        );
        row(
            &self.label("warm shell `echo hi` (1 sandbox)"),
            &single.shell,
            truth,
        );
        row(
            &self.label("warm supervisor ping (1 sandbox)"),
            &single.ping,
            truth,
        );
        report.single = Some(single);

        // 4. Idle density.
        if config.sandboxes > 0 {
            report.density = Some(self.density(fleet, base).await?);
        }
        Ok(report)
    }

    async fn density(&self, fleet: &mut Fleet, base: &Baseline) -> Result<Density> {
        let config = self.config;
        let fds_before = count_entries(Path::new("/proc/self/fd"));
        let rss_before = self_rss();
        let first = fleet.sandboxes.len();
        let mut creates = Vec::new();
        let started = Instant::now();
        let ticks = machine_ticks();
        let mut failure = None;
        while fleet.sandboxes.len() - first < config.sandboxes && failure.is_none() {
            let k = config
                .batch
                .min(config.sandboxes - (fleet.sandboxes.len() - first));
            let specs: Vec<SandboxSpec> = (0..k).map(|_| self.spec()).collect();
            let outcomes = futures::future::join_all(specs.into_iter().map(|spec| {
                let backend = self.backend.clone();
                async move {
                    let started = Instant::now();
                    let outcome = backend.create(spec).await;
                    (started.elapsed(), outcome)
                }
            }))
            .await;
            for (took, outcome) in outcomes {
                match outcome {
                    Ok(sandbox) => {
                        fleet.sandboxes.push(sandbox);
                        creates.push(took);
                    }
                    Err(e) => {
                        failure.get_or_insert_with(|| format!("{e}"));
                    }
                }
            }
        }
        let fill = started.elapsed();
        let created = fleet.sandboxes.len() - first;
        let creates = Stat {
            busy: busy_since(ticks, started),
            ..stat(creates)
        };
        println!();
        println!(
            "[{}] idle density: {created} of {} sandboxes started in {:.1} s (batches of {}){}",
            self.kind.name(),
            config.sandboxes,
            fill.as_secs_f64(),
            config.batch,
            match &failure {
                Some(e) => format!(" — stopped at the first failure: {e}"),
                None => String::new(),
            }
        );
        row(
            &self.label(&format!("create(), {} at a time", config.batch)),
            &creates,
            None,
        );

        // Let start-up work settle, then sample memory and idle CPU.
        tokio::time::sleep(Duration::from_secs(1)).await;
        let idle_total = created + 1;
        let memory = cgroup_memory(&self.instance, self.kind);
        let processes = sandbox_processes(&self.instance);
        let process_memory = process_memory(&processes);
        let cpu_before = cpu_nanos(&processes);
        let machine_before = machine_ticks();
        tokio::time::sleep(config.idle).await;
        let cpu_after = cpu_nanos(&processes);
        let machine_after = machine_ticks();
        let idle_cores = cpu_after.saturating_sub(cpu_before) as f64 / 1e9 / config.idle.as_secs_f64();
        let machine_cores =
            machine_after.saturating_sub(machine_before) as f64 / TICKS / config.idle.as_secs_f64();
        let rss_after = self_rss();
        let fds_after = count_entries(Path::new("/proc/self/fd"));
        let per = |bytes: u64, n: usize| bytes as f64 / n.max(1) as f64 / MIB as f64;
        let per_gib = |bytes: u64, n: usize| {
            if bytes == 0 {
                0.0
            } else {
                GIB * n as f64 / bytes as f64
            }
        };
        println!(
            "[{}] with {idle_total} idle sandboxes (memory limit {} MiB each):",
            self.kind.name(),
            config.memory_bytes / MIB
        );
        println!(
            "    cgroups ({}): memory.usage_in_bytes {:.1} MiB total = {:.2} MiB per sandbox → {:.0} sandboxes/GiB \
             (of which kmem {:.1} MiB, rss {:.1} MiB, cache {:.1} MiB)",
            memory.cgroups,
            memory.usage as f64 / MIB as f64,
            per(memory.usage, memory.cgroups),
            per_gib(memory.usage, memory.cgroups),
            memory.kmem as f64 / MIB as f64,
            memory.rss as f64 / MIB as f64,
            memory.cache as f64 / MIB as f64,
        );
        println!(
            "    processes ({} in the cgroups or children of this process, {} unreadable): Rss {:.1} MiB, \
             Pss {:.1} MiB = {:.2} MiB per sandbox → {:.0} sandboxes/GiB",
            processes.len(),
            process_memory.unreadable,
            process_memory.rss as f64 / MIB as f64,
            process_memory.pss as f64 / MIB as f64,
            per(process_memory.pss, idle_total),
            per_gib(process_memory.pss, idle_total),
        );
        println!(
            "    this process (the would-be server): RSS {:+.1} MiB, {:+} file descriptors for {created} sandboxes",
            (rss_after as f64 - rss_before as f64) / MIB as f64,
            i64::try_from(fds_after).unwrap_or(0) - i64::try_from(fds_before).unwrap_or(0),
        );
        println!(
            "    idle CPU over {:.0} s (schedstat): sandboxes {:.4} cores in total = {:.0} us/s each; whole machine \
             {:.2} of {} cores busy",
            config.idle.as_secs_f64(),
            idle_cores,
            idle_cores * 1e6 / idle_total as f64,
            machine_cores,
            cores()
        );

        let warm = first
            .checked_sub(1)
            .and_then(|i| fleet.sandboxes.get(i))
            .ok_or_else(|| anyhow!("the warm sandbox is gone"))?
            .as_ref();
        let client = self.client(warm);
        let busy = warm_round_trips(warm, &client, config).await?;
        let truth = Some(("host true", base.truth.p50));
        row(
            &self.label(&format!("warm exec /bin/true ({idle_total} sandboxes)")),
            &busy.exec,
            truth,
        );
        row(
            &self.label(&format!("warm shell `echo hi` ({idle_total} sandboxes)")),
            &busy.shell,
            truth,
        );
        row(
            &self.label(&format!("warm supervisor ping ({idle_total} sandboxes)")),
            &busy.ping,
            truth,
        );
        let extra = (config.creates / 5).max(5);
        let cycle = self.create_cycle(fleet, extra, 1).await?;
        let echo = Some(("host echo", base.echo.p50));
        row(
            &self.label(&format!("create → first output ({idle_total} sandboxes)")),
            &cycle.first,
            echo,
        );

        let idle: Vec<Box<dyn Sandbox>> = fleet.sandboxes.drain(first..).collect();
        let (destroy_time, failures) = destroy_many(idle, config.batch).await;
        println!(
            "[{}] destroyed {created} sandboxes in {:.1} s ({} at a time){}",
            self.kind.name(),
            destroy_time.as_secs_f64(),
            config.batch,
            if failures.is_empty() {
                String::new()
            } else {
                format!("; failures: {}", failures.join("; "))
            }
        );
        // The same sandbox alone again, to tell degradation from other work on the machine.
        let warm = first
            .checked_sub(1)
            .and_then(|i| fleet.sandboxes.get(i))
            .ok_or_else(|| anyhow!("the warm sandbox is gone"))?
            .as_ref();
        let again = warm_round_trips(warm, &client, config).await?;
        row(
            &self.label("warm exec /bin/true (1 sandbox again)"),
            &again.exec,
            truth,
        );
        row(
            &self.label("warm shell `echo hi` (1 sandbox again)"),
            &again.shell,
            truth,
        );
        row(
            &self.label("warm supervisor ping (1 sandbox again)"),
            &again.ping,
            truth,
        );
        Ok(Density {
            requested: config.sandboxes,
            created,
            failure,
            pss_per_gib: per_gib(process_memory.pss, idle_total),
            cgroup_per_gib: per_gib(memory.usage, memory.cgroups),
            idle_cores,
            busy,
            again,
            cold: cycle,
        })
    }
}

struct Cycle {
    create: Stat,
    first: Stat,
    destroy: Stat,
}

struct Density {
    requested: usize,
    created: usize,
    failure: Option<String>,
    pss_per_gib: f64,
    cgroup_per_gib: f64,
    idle_cores: f64,
    busy: Warm,
    /// The warm sandbox alone again after the others were destroyed.
    again: Warm,
    cold: Cycle,
}

struct Report {
    kind: Kind,
    cold: Option<Cycle>,
    single: Option<Warm>,
    density: Option<Density>,
    clean: Option<Clean>,
}

impl Default for Report {
    fn default() -> Self {
        Self {
            kind: Kind::Bwrap,
            cold: None,
            single: None,
            density: None,
            clean: None,
        }
    }
}

async fn run_backend(kind: Kind, config: &Config, base: &Baseline) -> Result<Report> {
    let dir = tempfile::tempdir()?;
    let host = HostConfig::new(SUPERVISOR, dir.path().join("state"));
    let instance = host.instance();
    let state = host.state_dir.clone();
    let backend: Arc<dyn Backend> = match kind {
        Kind::Bwrap => Arc::new(Bwrap::new(host)?),
        Kind::Oci => Arc::new(Oci::new(host)?),
    };
    backend
        .ready()
        .with_context(|| format!("the {} backend cannot run here", kind.name()))?;
    let bench = Bench {
        kind,
        config,
        backend,
        state: state.clone(),
        workspaces: dir.path().join("workspaces"),
        instance: instance.clone(),
        counter: AtomicUsize::new(0),
    };
    let mut fleet = Fleet::default();
    let outcome = bench.run(&mut fleet, base).await;
    // Whatever happened, nothing may stay running.
    let (_, failures) = destroy_many(std::mem::take(&mut fleet.sandboxes), config.batch).await;
    for failure in failures {
        eprintln!("destroy failed: {failure}");
    }
    let clean = verify_clean(kind, &instance, &state).await;
    println!(
        "[{}] after destroying everything: {}",
        kind.name(),
        clean.describe()
    );
    let mut report = outcome?;
    report.clean = Some(clean);
    Ok(report)
}

// ---------------------------------------------------------------------------------------------
// Memory, CPU and leftovers, from /proc and /sys/fs/cgroup.

const CGROUP_ROOT: &str = "/sys/fs/cgroup";

/// The cgroup directories of this instance, relative to a hierarchy's root: `hangar/<instance>`
/// (host-made, bwrap) and `hangar/<instance>-oci` (made by runc).
fn instance_dirs(instance: &str) -> [String; 2] {
    [format!("hangar/{instance}"), format!("hangar/{instance}-oci")]
}

#[derive(Default)]
struct CgroupMemory {
    cgroups: usize,
    usage: u64,
    kmem: u64,
    rss: u64,
    cache: u64,
}

fn read_u64(path: &Path) -> u64 {
    std::fs::read_to_string(path)
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0)
}

fn sandbox_dirs(parent: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(parent) else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("sb-") && e.path().is_dir())
        .map(|e| e.path())
        .collect()
}

fn cgroup_memory(instance: &str, kind: Kind) -> CgroupMemory {
    let [host_made, runc_made] = instance_dirs(instance);
    let relative = match kind {
        Kind::Bwrap => host_made,
        Kind::Oci => runc_made,
    };
    let mut total = CgroupMemory::default();
    for dir in sandbox_dirs(&Path::new(CGROUP_ROOT).join("memory").join(relative)) {
        total.cgroups += 1;
        total.usage += read_u64(&dir.join("memory.usage_in_bytes"));
        total.kmem += read_u64(&dir.join("memory.kmem.usage_in_bytes"));
        let stat = std::fs::read_to_string(dir.join("memory.stat")).unwrap_or_default();
        for line in stat.lines() {
            let mut parts = line.split_whitespace();
            let (Some(key), Some(value)) = (parts.next(), parts.next().and_then(|v| v.parse::<u64>().ok()))
            else {
                continue;
            };
            match key {
                "rss" => total.rss += value,
                "cache" => total.cache += value,
                _ => {}
            }
        }
    }
    total
}

fn pids() -> Vec<i32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_string_lossy().parse().ok())
        .collect()
}

/// Fields after the command name of `/proc/<pid>/stat` (field 3, the state, is index 0).
fn stat_fields(pid: i32) -> Option<Vec<String>> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    Some(
        stat.rsplit_once(')')?
            .1
            .split_whitespace()
            .map(str::to_owned)
            .collect(),
    )
}

/// Processes of this instance's sandboxes: members of their cgroups, and this process's direct
/// children (bwrap's outer process is in the cgroup; `runc run` is not).
fn sandbox_processes(instance: &str) -> BTreeSet<i32> {
    let me = i32::try_from(std::process::id()).unwrap_or(0);
    let [host_made, runc_made] = instance_dirs(instance);
    let (host_made, runc_made) = (format!("/{host_made}/"), format!("/{runc_made}/"));
    pids()
        .into_iter()
        .filter(|&pid| {
            let cgroups = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap_or_default();
            let member = cgroups.contains(&host_made) || cgroups.contains(&runc_made);
            let child = stat_fields(pid).and_then(|f| f.get(1)?.parse::<i32>().ok()) == Some(me);
            member || child
        })
        .collect()
}

/// `pid comm state ppid cgroup`, for the leftovers report.
fn describe_process(pid: i32) -> String {
    let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
    let fields = stat_fields(pid).unwrap_or_default();
    let cgroups = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap_or_default();
    let memory = cgroups.lines().find(|l| l.contains(":memory:")).unwrap_or("");
    format!(
        "pid {pid} {} state {} ppid {} {memory}",
        comm.trim(),
        fields.first().map_or("?", String::as_str),
        fields.get(1).map_or("?", String::as_str)
    )
}

#[derive(Default)]
struct ProcessMemory {
    rss: u64,
    pss: u64,
    unreadable: usize,
}

fn process_memory(processes: &BTreeSet<i32>) -> ProcessMemory {
    let mut total = ProcessMemory::default();
    for pid in processes {
        let Ok(rollup) = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")) else {
            total.unreadable += 1;
            continue;
        };
        let field = |name: &str| -> u64 {
            rollup
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|rest| rest.split_whitespace().next()?.parse::<u64>().ok())
                .unwrap_or(0)
                * 1024
        };
        total.rss += field("Rss:");
        total.pss += field("Pss:");
    }
    total
}

/// Nanoseconds on a CPU of all threads of the processes, from `/proc/<pid>/task/*/schedstat`.
/// (utime/stime are sampled at clock ticks, which overcharges processes woken by timers.)
fn cpu_nanos(processes: &BTreeSet<i32>) -> u64 {
    let mut total = 0;
    for pid in processes {
        let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
            continue;
        };
        for task in tasks.flatten() {
            let text = std::fs::read_to_string(task.path().join("schedstat")).unwrap_or_default();
            total += text
                .split_whitespace()
                .next()
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0);
        }
    }
    total
}

/// Busy clock ticks of the whole machine (user nice system irq softirq steal).
fn machine_ticks() -> u64 {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let Some(line) = stat.lines().next().and_then(|l| l.strip_prefix("cpu ")) else {
        return 0;
    };
    let v: Vec<u64> = line.split_whitespace().filter_map(|x| x.parse().ok()).collect();
    [0, 1, 2, 5, 6, 7].iter().filter_map(|&i| v.get(i)).sum()
}

fn self_rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.split_whitespace().next()?.parse::<u64>().ok())
        .unwrap_or(0)
        * 1024
}

fn count_entries(dir: &Path) -> usize {
    std::fs::read_dir(dir).map(|entries| entries.count()).unwrap_or(0)
}

fn cores() -> usize {
    std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
}

/// What is left of this instance's sandboxes after destroying all of them.
#[derive(Default)]
struct Clean {
    processes: usize,
    cgroups: usize,
    state_dirs: usize,
    containers: usize,
    /// Empty per-instance cgroup parents the bench removed (the crate never removes them).
    parents_removed: usize,
    notes: Vec<String>,
}

impl Clean {
    fn ok(&self) -> bool {
        self.processes == 0 && self.cgroups == 0 && self.state_dirs == 0 && self.containers == 0
    }

    fn describe(&self) -> String {
        let mut text = format!(
            "{} — {} processes, {} sandbox cgroups, {} state directories, {} runc containers left; \
             removed {} empty hangar/<instance> cgroup parents",
            if self.ok() { "CLEAN" } else { "LEFTOVERS" },
            self.processes,
            self.cgroups,
            self.state_dirs,
            self.containers,
            self.parents_removed
        );
        for note in &self.notes {
            text.push_str("; ");
            text.push_str(note);
        }
        text
    }
}

async fn verify_clean(kind: Kind, instance: &str, state: &Path) -> Clean {
    let mut clean = Clean::default();
    // Processes killed a moment ago may still be exiting, and zombies handed to PID 1 wait for it
    // to reap them: wait up to 10 s, and say how many zombies there were right after destroy.
    let zombie = |pid: &i32| stat_fields(*pid).is_some_and(|f| f.first().is_some_and(|s| s == "Z"));
    let started = Instant::now();
    let mut left = sandbox_processes(instance);
    let first_zombies = left.iter().filter(|p| zombie(p)).count();
    while !left.is_empty() && started.elapsed() < Duration::from_secs(10) {
        tokio::time::sleep(Duration::from_millis(50)).await;
        left = sandbox_processes(instance);
    }
    if first_zombies > 0 {
        clean.notes.push(format!(
            "{first_zombies} zombie processes right after destroy, {} after {:.1} s",
            left.iter().filter(|p| zombie(p)).count(),
            started.elapsed().as_secs_f64()
        ));
    }
    clean.processes = left.len();
    for pid in left.iter().take(3) {
        clean.notes.push(format!("left: {}", describe_process(*pid)));
    }
    let hierarchies: Vec<PathBuf> = std::fs::read_dir(CGROUP_ROOT)
        .map(|entries| entries.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    for hierarchy in &hierarchies {
        for relative in instance_dirs(instance) {
            let dir = hierarchy.join(relative);
            let left = sandbox_dirs(&dir);
            clean.cgroups += left.len();
            if !left.is_empty() {
                clean
                    .notes
                    .push(format!("{} has {} sandbox cgroups", dir.display(), left.len()));
            } else if dir.is_dir() && std::fs::remove_dir(&dir).is_ok() {
                clean.parents_removed += 1;
            }
        }
    }
    clean.state_dirs = std::fs::read_dir(state)
        .map(|entries| {
            entries
                .flatten()
                .filter(|e| e.file_name().to_string_lossy().starts_with("sb-"))
                .count()
        })
        .unwrap_or(0);
    if kind == Kind::Oci {
        let listed = tokio::process::Command::new("runc")
            .arg("--root")
            .arg(state.join("runc"))
            .args(["list", "-q"])
            .output()
            .await;
        match listed {
            Ok(out) if out.status.success() => {
                clean.containers = String::from_utf8_lossy(&out.stdout)
                    .lines()
                    .filter(|l| !l.trim().is_empty())
                    .count();
            }
            Ok(out) => clean.notes.push(format!(
                "runc list failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            )),
            Err(e) => clean.notes.push(format!("runc list: {e}")),
        }
    }
    clean
}

// ---------------------------------------------------------------------------------------------
// Main.

struct Baseline {
    echo: Stat,
    truth: Stat,
}

fn met(ok: bool) -> &'static str {
    if ok { "MET" } else { "NOT MET" }
}

fn summary(reports: &[Report], base: &Baseline) {
    println!();
    println!("targets:");
    for report in reports {
        let name = report.kind.name();
        if let Some(cold) = &report.cold {
            let ok = cold.first.p50 <= TARGET_CREATE_P50;
            println!(
                "  [{name}] create → first output p50 ≤ {} ms: {} — {} ms ({:.0}x host fork/exec of echo, {} ms){}",
                TARGET_CREATE_P50.as_millis(),
                met(ok),
                ms(cold.first.p50),
                ratio(cold.first.p50, base.echo.p50),
                ms(base.echo.p50),
                if report.kind == Kind::Oci {
                    " (the target is for bwrap)"
                } else {
                    ""
                }
            );
        }
        if let Some(warm) = &report.single {
            println!(
                "  [{name}] warm command round trip p50 ≤ {} ms: exec /bin/true {} ({} ms), shell {} ({} ms), \
                 ping {} ms; host fork/exec of /bin/true {} ms",
                TARGET_ROUND_TRIP_P50.as_millis(),
                met(warm.exec.p50 <= TARGET_ROUND_TRIP_P50),
                ms(warm.exec.p50),
                met(warm.shell.p50 <= TARGET_ROUND_TRIP_P50),
                ms(warm.shell.p50),
                ms(warm.ping.p50),
                ms(base.truth.p50),
            );
        }
        if let (Some(density), Some(single)) = (&report.density, &report.single) {
            // Against the faster of the two measurements alone (before and after).
            let alone = |a: &Stat, b: &Stat| a.p50.min(b.p50);
            let again = &density.again;
            let exec = ratio(density.busy.exec.p50, alone(&single.exec, &again.exec));
            let ping = ratio(density.busy.ping.p50, alone(&single.ping, &again.ping));
            let shell = ratio(density.busy.shell.p50, alone(&single.shell, &again.shell));
            let degraded = exec > DEGRADED_RATIO || ping > DEGRADED_RATIO || shell > DEGRADED_RATIO;
            let enough = density.created >= TARGET_IDLE.min(density.requested) && density.failure.is_none();
            println!(
                "  [{name}] ≥ {TARGET_IDLE} idle sandboxes without degrading: {} — {} idle, ~{:.0} sandboxes/GiB by \
                 Pss ({:.0} by cgroup usage), {:.4} cores idle CPU; warm p50 with them vs alone (faster of before/after): exec {exec:.2}x, \
                 shell {shell:.2}x, ping {ping:.2}x (degraded above {DEGRADED_RATIO}x); create → first output p50 {} ms{}",
                met(enough && !degraded && density.requested >= TARGET_IDLE),
                density.created + 1,
                density.pss_per_gib,
                density.cgroup_per_gib,
                density.idle_cores,
                ms(density.cold.first.p50),
                if density.requested < TARGET_IDLE {
                    " (fewer sandboxes than the target were asked for)"
                } else {
                    ""
                }
            );
        }
        if let Some(clean) = &report.clean {
            println!(
                "  [{name}] cleanup: {}",
                if clean.ok() {
                    "CLEAN"
                } else {
                    "LEFTOVERS (see above)"
                }
            );
        }
    }
}

async fn run(config: Config) -> Result<()> {
    println!("hangar sandbox benchmark");
    let loadavg = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!(
        "  machine: {} cores, kernel {}, load average before start {} (other work distorts the numbers)",
        cores(),
        std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .unwrap_or_default()
            .trim(),
        loadavg.split_whitespace().take(3).collect::<Vec<_>>().join(" ")
    );
    println!("  supervisor: {SUPERVISOR}");
    println!(
        "  backends: {}{}",
        config
            .backends
            .iter()
            .map(|k| k.name())
            .collect::<Vec<_>>()
            .join(", "),
        match &config.oci_note {
            Some(why) => format!(" (oci skipped: {why})"),
            None => String::new(),
        }
    );
    println!(
        "  runs: baseline {} | create {} | round trips {} (+{} warm-up) | idle sandboxes {} in batches of {} | \
         memory limit {} MiB per sandbox, other limits Limits::default()",
        config.baseline_runs,
        config.creates,
        config.round_trips,
        config.warmup,
        config.sandboxes,
        config.batch,
        config.memory_bytes / MIB
    );
    println!();
    header();
    let runs = config.baseline_runs;
    let warmup = config.warmup.min(10);
    let base = Baseline {
        echo: time_n(runs, warmup, || host_command("/bin/echo", &["hi"])).await?,
        truth: time_n(runs, warmup, || host_command("/bin/true", &[])).await?,
    };
    row("host fork/exec /bin/echo hi (baseline)", &base.echo, None);
    row("host fork/exec /bin/true (baseline)", &base.truth, None);
    // For reading the start-up numbers: bubblewrap alone, with new namespaces but no mounts of
    // its own, no cgroup and no supervisor.
    if config.backends.contains(&Kind::Bwrap) {
        let bare = time_n(runs.div_ceil(4), warmup, || {
            host_command(
                "bwrap",
                &[
                    "--unshare-all",
                    "--die-with-parent",
                    "--ro-bind",
                    "/",
                    "/",
                    "/bin/true",
                ],
            )
        })
        .await
        .context("bare bwrap")?;
        row(
            "host bwrap --unshare-all --ro-bind / / /bin/true",
            &bare,
            Some(("host echo", base.echo.p50)),
        );
    }

    let mut reports = Vec::new();
    let mut failures = Vec::new();
    for &kind in &config.backends {
        println!();
        match run_backend(kind, &config, &base).await {
            Ok(report) => reports.push(report),
            Err(e) => {
                println!("[{}] FAILED: {e:#}", kind.name());
                failures.push(format!("{}: {e:#}", kind.name()));
            }
        }
    }
    summary(&reports, &base);
    let dirty = reports
        .iter()
        .filter(|r| r.clean.as_ref().is_some_and(|c| !c.ok()))
        .count();
    if !failures.is_empty() {
        bail!("backends failed: {}", failures.join("; "));
    }
    ensure!(dirty == 0, "{dirty} backends left sandboxes behind");
    Ok(())
}

fn main() -> Result<()> {
    // `cargo bench` passes `--bench`; there is nothing to filter.
    let config = Config::from_env()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("bench-sandbox")
        .enable_all()
        .build()?;
    runtime.block_on(run(config))
}
