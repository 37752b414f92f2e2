//! Sandbox lifecycle: one sandbox per conversation, reused across runs, destroyed after an idle
//! TTL or an absolute TTL by a periodic sweep, replaced when found dead or when the
//! conversation's spec changed (a tenant's egress domains or limits), and an optional warm pool
//! of ready sandboxes for conversations that use the default policy.
//!
//! Each conversation has its own slot with its own lock, so one conversation's sandbox starting
//! never holds up another's; at most [`MAX_PARALLEL_CREATES`] start at once.
//!
//! A warm sandbox is started with its own empty workspace directory. Handing it to a
//! conversation renames that directory to the conversation's workspace path: a bind mount
//! follows the directory, not its name, so the running sandbox sees the conversation's files
//! from then on. Conversations whose workspace already exists, or that need egress, limits or an
//! environment of their own, get a freshly created sandbox instead.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::{Mutex, Semaphore};
use tokio_util::sync::CancellationToken;

use crate::error::{Result, SandboxError};
use crate::spec::{Limits, NetworkPolicy, SandboxSpec};
use crate::{Backend, Sandbox, metrics_names};

/// Lifecycle settings.
#[derive(Debug, Clone)]
pub struct ManagerSettings {
    pub idle_ttl: Duration,
    pub absolute_ttl: Duration,
    pub sweep_interval: Duration,
    pub warm_min: usize,
    pub warm_max: usize,
    /// Where warm sandboxes keep their (empty) workspaces until assigned. Must be on the same
    /// filesystem as the conversations' workspaces.
    pub warm_dir: PathBuf,
    /// Limits of warm sandboxes; a conversation asking for other limits gets a cold one.
    pub default_limits: Limits,
}

/// What happened to a sandbox, for the audit log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LifecycleEvent {
    /// `sandbox.created`, `sandbox.reused_warm`, `sandbox.destroyed`, `sandbox.crashed`.
    pub action: &'static str,
    pub sandbox: String,
    pub owner: String,
    pub reason: String,
}

pub type LifecycleAudit = Arc<dyn Fn(LifecycleEvent) + Send + Sync>;

/// Sandboxes starting at the same time, at most (each is a handful of processes and mounts).
pub const MAX_PARALLEL_CREATES: usize = 16;

struct Entry {
    sandbox: Arc<dyn Sandbox>,
    owner: String,
    shape: Shape,
    created: Instant,
    last_used: Instant,
}

/// What a sandbox was started with that only a new sandbox can change.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Shape {
    workspace: PathBuf,
    limits: Limits,
    network: NetworkPolicy,
    env: BTreeMap<String, String>,
}

impl Shape {
    fn of(spec: &SandboxSpec) -> Self {
        Self {
            workspace: spec.workspace.clone(),
            limits: spec.limits.clone(),
            network: spec.network.clone(),
            env: spec.env.clone(),
        }
    }

    /// Why a sandbox of this shape cannot serve `wanted`, if it cannot.
    fn mismatch(&self, wanted: &Self) -> Option<&'static str> {
        if self.network != wanted.network {
            Some("the conversation's egress policy changed")
        } else if self.limits != wanted.limits {
            Some("the conversation's limits changed")
        } else if self.env != wanted.env {
            Some("the conversation's environment changed")
        } else if self.workspace != wanted.workspace {
            Some("the conversation's workspace moved")
        } else {
            None
        }
    }
}

/// One conversation's place in the manager; its lock serialises that conversation only.
type Slot = Arc<Mutex<Option<Entry>>>;

struct Warm {
    sandbox: Arc<dyn Sandbox>,
    workspace: PathBuf,
    created: Instant,
}

/// Owns every sandbox of this server.
pub struct SandboxManager {
    backend: Arc<dyn Backend>,
    settings: ManagerSettings,
    audit: LifecycleAudit,
    slots: Mutex<HashMap<String, Slot>>,
    /// Slots holding a sandbox.
    assigned: AtomicUsize,
    creates: Semaphore,
    warm: Mutex<Vec<Warm>>,
    stop: CancellationToken,
}

impl SandboxManager {
    pub fn new(backend: Arc<dyn Backend>, settings: ManagerSettings, audit: LifecycleAudit) -> Arc<Self> {
        Arc::new(Self {
            backend,
            settings,
            audit,
            slots: Mutex::new(HashMap::new()),
            assigned: AtomicUsize::new(0),
            creates: Semaphore::new(MAX_PARALLEL_CREATES),
            warm: Mutex::new(Vec::new()),
            stop: CancellationToken::new(),
        })
    }

    pub fn backend(&self) -> &Arc<dyn Backend> {
        &self.backend
    }

    /// Reaps leftovers of a crashed predecessor, fills the warm pool and starts the sweeper.
    pub async fn start(self: &Arc<Self>) -> Result<usize> {
        let reaped = self.backend.reap_leftovers().await?;
        let _ = std::fs::remove_dir_all(&self.settings.warm_dir);
        if self.backend.ready().is_ok() {
            self.replenish().await;
        }
        let me = Arc::downgrade(self);
        let interval = self.settings.sweep_interval;
        let stop = self.stop.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    () = stop.cancelled() => break,
                    () = tokio::time::sleep(interval) => {}
                }
                let Some(me) = me.upgrade() else { break };
                me.sweep().await;
                me.replenish().await;
            }
        });
        Ok(reaped)
    }

    /// The conversation's sandbox: the running one, a warm one, or a new one. A running one that
    /// stopped answering, or was started from a different spec, is replaced.
    pub async fn acquire(&self, key: &str, spec: SandboxSpec) -> Result<Arc<dyn Sandbox>> {
        self.backend.ready()?;
        if self.stop.is_cancelled() {
            return Err(SandboxError::Start(
                "the sandbox manager is shutting down".to_owned(),
            ));
        }
        let slot = self.slots.lock().await.entry(key.to_owned()).or_default().clone();
        let mut entry = slot.lock().await;
        let wanted = Shape::of(&spec);
        if let Some(current) = entry.as_mut() {
            let replace = match current.shape.mismatch(&wanted) {
                Some(why) => Some(("sandbox.destroyed", why)),
                None if current.sandbox.alive().await => None,
                None => {
                    metrics::counter!(metrics_names::CRASHES).increment(1);
                    Some(("sandbox.crashed", "the supervisor stopped answering"))
                }
            };
            let Some((action, why)) = replace else {
                current.last_used = Instant::now();
                return Ok(current.sandbox.clone());
            };
            if let Some(old) = self.take(&mut entry) {
                self.retire(old.sandbox, &old.owner, action, why).await;
            }
        }
        let owner = spec.owner.clone();
        let (sandbox, action) = match self.take_warm(&spec).await {
            Some(sandbox) => (sandbox, "sandbox.reused_warm"),
            None => {
                let _permit =
                    self.creates.acquire().await.map_err(|_| {
                        SandboxError::Start("the sandbox manager is shutting down".to_owned())
                    })?;
                (Arc::from(self.backend.create(spec).await?), "sandbox.created")
            }
        };
        self.record(action, sandbox.id().as_str(), &owner, "");
        let now = Instant::now();
        *entry = Some(Entry {
            sandbox: sandbox.clone(),
            owner,
            shape: wanted,
            created: now,
            last_used: now,
        });
        self.assigned.fetch_add(1, Ordering::SeqCst);
        Ok(sandbox)
    }

    /// Destroys the conversation's sandbox now (conversation deleted, limits changed).
    pub async fn release(&self, key: &str, reason: &str) {
        let slot = self.slots.lock().await.get(key).cloned();
        let Some(slot) = slot else { return };
        let mut entry = slot.lock().await;
        if let Some(old) = self.take(&mut entry) {
            self.retire(old.sandbox, &old.owner, "sandbox.destroyed", reason)
                .await;
        }
    }

    /// Sandboxes assigned to conversations, and warm ones.
    pub async fn counts(&self) -> (usize, usize) {
        (self.assigned.load(Ordering::SeqCst), self.warm.lock().await.len())
    }

    /// Destroys everything (server shutdown).
    pub async fn shutdown(&self) {
        self.stop.cancel();
        let slots: Vec<Slot> = self.slots.lock().await.drain().map(|(_, slot)| slot).collect();
        for slot in slots {
            let mut entry = slot.lock().await;
            if let Some(old) = self.take(&mut entry) {
                self.retire(old.sandbox, &old.owner, "sandbox.destroyed", "server shutdown")
                    .await;
            }
        }
        for warm in self.warm.lock().await.drain(..) {
            let _ = warm.sandbox.destroy().await;
            let _ = std::fs::remove_dir_all(&warm.workspace);
        }
    }

    /// Destroys sandboxes past their idle or absolute TTL, and warm ones past the absolute TTL.
    /// A conversation whose slot is busy (its sandbox is being acquired) is left for the next
    /// sweep; slots left empty are forgotten.
    pub async fn sweep(&self) {
        let now = Instant::now();
        let slots: Vec<Slot> = self.slots.lock().await.values().cloned().collect();
        for slot in slots {
            let Ok(mut entry) = slot.try_lock() else { continue };
            let why = match entry.as_ref() {
                Some(e) if now.duration_since(e.created) >= self.settings.absolute_ttl => {
                    "absolute TTL reached"
                }
                Some(e) if now.duration_since(e.last_used) >= self.settings.idle_ttl => "idle TTL reached",
                _ => continue,
            };
            if let Some(old) = self.take(&mut entry) {
                self.retire(old.sandbox, &old.owner, "sandbox.destroyed", why)
                    .await;
            }
        }
        // An empty slot that nobody else holds while the map is locked can be forgotten.
        self.slots.lock().await.retain(|_, slot| {
            Arc::strong_count(slot) > 1 || slot.try_lock().map_or(true, |entry| entry.is_some())
        });
        let stale: Vec<Warm> = {
            let mut warm = self.warm.lock().await;
            let (old, fresh) = warm
                .drain(..)
                .partition(|w| now.duration_since(w.created) >= self.settings.absolute_ttl);
            *warm = fresh;
            old
        };
        for warm in stale {
            let _ = warm.sandbox.destroy().await;
            let _ = std::fs::remove_dir_all(&warm.workspace);
        }
    }

    /// Empties a slot, keeping the count of assigned sandboxes.
    fn take(&self, entry: &mut Option<Entry>) -> Option<Entry> {
        let old = entry.take()?;
        self.assigned.fetch_sub(1, Ordering::SeqCst);
        Some(old)
    }

    /// Starts warm sandboxes until the pool holds `warm_min` (never more than `warm_max`).
    pub async fn replenish(&self) {
        let missing = {
            let warm = self.warm.lock().await;
            self.settings
                .warm_min
                .min(self.settings.warm_max)
                .saturating_sub(warm.len())
        };
        for _ in 0..missing {
            let workspace = self
                .settings
                .warm_dir
                .join(uuid::Uuid::new_v4().simple().to_string());
            let mut spec = SandboxSpec::new("warm-pool", &workspace);
            spec.limits = self.settings.default_limits.clone();
            match self.backend.create(spec).await {
                Ok(sandbox) => {
                    let warm = Warm {
                        sandbox: Arc::from(sandbox),
                        workspace,
                        created: Instant::now(),
                    };
                    self.warm.lock().await.push(warm);
                }
                Err(e) => {
                    tracing::warn!(error = %e, "could not start a warm sandbox");
                    let _ = std::fs::remove_dir_all(&workspace);
                    break;
                }
            }
        }
    }

    async fn take_warm(&self, spec: &SandboxSpec) -> Option<Arc<dyn Sandbox>> {
        let default_policy = spec.network == NetworkPolicy::None
            && spec.env.is_empty()
            && spec.limits == self.settings.default_limits
            && !spec.workspace.exists();
        if !default_policy {
            return None;
        }
        let warm = self.warm.lock().await.pop()?;
        if let Some(parent) = spec.workspace.parent() {
            let _ = std::fs::create_dir_all(parent);
        }
        if std::fs::rename(&warm.workspace, &spec.workspace).is_err() || !warm.sandbox.alive().await {
            let _ = warm.sandbox.destroy().await;
            let _ = std::fs::remove_dir_all(&warm.workspace);
            return None;
        }
        Some(warm.sandbox)
    }

    async fn retire(&self, sandbox: Arc<dyn Sandbox>, owner: &str, action: &'static str, reason: &str) {
        if let Err(e) = sandbox.destroy().await {
            tracing::warn!(sandbox = %sandbox.id(), error = %e, "destroying a sandbox failed");
        }
        self.record(action, sandbox.id().as_str(), owner, reason);
    }

    fn record(&self, action: &'static str, sandbox: &str, owner: &str, reason: &str) {
        tracing::info!(action, sandbox, owner, reason, "sandbox lifecycle");
        (self.audit)(LifecycleEvent {
            action,
            sandbox: sandbox.to_owned(),
            owner: owner.to_owned(),
            reason: reason.to_owned(),
        });
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex as StdMutex;

    use async_trait::async_trait;
    use tokio::sync::watch;

    use super::*;
    use crate::fake::{FakeBackend, FakeOutput};

    struct Rig {
        _dir: tempfile::TempDir,
        manager: Arc<SandboxManager>,
        events: Arc<StdMutex<Vec<LifecycleEvent>>>,
        workspaces: PathBuf,
    }

    fn settings(dir: &std::path::Path) -> ManagerSettings {
        ManagerSettings {
            idle_ttl: Duration::from_secs(3600),
            absolute_ttl: Duration::from_secs(3600),
            sweep_interval: Duration::from_secs(3600),
            warm_min: 0,
            warm_max: 0,
            warm_dir: dir.join("warm"),
            default_limits: Limits::default(),
        }
    }

    fn rig_with(
        backend: impl FnOnce(&std::path::Path) -> Arc<dyn Backend>,
        tune: impl FnOnce(&mut ManagerSettings),
    ) -> Rig {
        let dir = tempfile::tempdir().unwrap();
        let events = Arc::new(StdMutex::new(Vec::new()));
        let sink = events.clone();
        let audit: LifecycleAudit = Arc::new(move |event| sink.lock().unwrap().push(event));
        let mut settings = settings(dir.path());
        tune(&mut settings);
        let manager = SandboxManager::new(backend(dir.path()), settings, audit);
        Rig {
            workspaces: dir.path().join("ws"),
            _dir: dir,
            manager,
            events,
        }
    }

    fn fake(dir: &std::path::Path) -> Arc<dyn Backend> {
        Arc::new(FakeBackend::new(
            dir.join("sockets"),
            Arc::new(|_| FakeOutput::ok("ok")),
        ))
    }

    impl Rig {
        fn spec(&self, conversation: &str) -> SandboxSpec {
            SandboxSpec::new(format!("t/{conversation}"), self.workspaces.join(conversation))
        }

        fn actions(&self) -> Vec<(String, String)> {
            let events = self.events.lock().unwrap();
            events
                .iter()
                .map(|e| (e.action.to_owned(), e.reason.clone()))
                .collect()
        }
    }

    fn action(action: &str, reason: &str) -> (String, String) {
        (action.to_owned(), reason.to_owned())
    }

    #[tokio::test]
    async fn a_conversation_keeps_its_sandbox_until_its_spec_changes() {
        let rig = rig_with(fake, |_| {});
        let first = rig.manager.acquire("c1", rig.spec("c1")).await.unwrap();
        let again = rig.manager.acquire("c1", rig.spec("c1")).await.unwrap();
        assert_eq!(first.id(), again.id());
        let mut egress = rig.spec("c1");
        egress.network = NetworkPolicy::Egress {
            domains: vec!["example.com".to_owned()],
        };
        let replaced = rig.manager.acquire("c1", egress.clone()).await.unwrap();
        assert_ne!(replaced.id(), first.id());
        assert!(!first.alive().await, "the old sandbox still runs");
        assert!(replaced.alive().await);
        let mut limits = egress.clone();
        limits.limits.memory_bytes /= 2;
        let smaller = rig.manager.acquire("c1", limits).await.unwrap();
        assert_ne!(smaller.id(), replaced.id());
        assert_eq!(rig.manager.counts().await, (1, 0));
        assert_eq!(
            rig.actions(),
            vec![
                action("sandbox.created", ""),
                action("sandbox.destroyed", "the conversation's egress policy changed"),
                action("sandbox.created", ""),
                action("sandbox.destroyed", "the conversation's limits changed"),
                action("sandbox.created", ""),
            ]
        );
    }

    #[tokio::test]
    async fn a_dead_sandbox_is_replaced_and_counted_as_a_crash() {
        let rig = rig_with(fake, |_| {});
        let first = rig.manager.acquire("c1", rig.spec("c1")).await.unwrap();
        first.destroy().await.unwrap();
        let second = rig.manager.acquire("c1", rig.spec("c1")).await.unwrap();
        assert_ne!(first.id(), second.id());
        assert!(second.alive().await);
        assert_eq!(
            rig.actions()[1],
            action("sandbox.crashed", "the supervisor stopped answering")
        );
        assert_eq!(rig.manager.counts().await, (1, 0));
    }

    /// Creates wait until `wanted` of them are in progress at the same time.
    struct Gate {
        inner: Arc<dyn Backend>,
        in_flight: watch::Sender<usize>,
        wanted: usize,
    }

    #[async_trait]
    impl Backend for Gate {
        fn name(&self) -> &'static str {
            "gate"
        }

        fn ready(&self) -> Result<()> {
            Ok(())
        }

        async fn create(&self, spec: SandboxSpec) -> Result<Box<dyn Sandbox>> {
            self.in_flight.send_modify(|n| *n += 1);
            let mut seen = self.in_flight.subscribe();
            let _ = seen.wait_for(|n| *n >= self.wanted).await;
            self.inner.create(spec).await
        }

        async fn reap_leftovers(&self) -> Result<usize> {
            Ok(0)
        }
    }

    #[tokio::test]
    async fn one_conversation_starting_does_not_hold_up_another() {
        let rig = rig_with(
            |dir| {
                Arc::new(Gate {
                    inner: fake(dir),
                    in_flight: watch::channel(0).0,
                    wanted: 2,
                })
            },
            |_| {},
        );
        // Serialised creates would wait for each other forever.
        let both = tokio::time::timeout(Duration::from_secs(10), async {
            tokio::join!(
                rig.manager.acquire("c1", rig.spec("c1")),
                rig.manager.acquire("c2", rig.spec("c2"))
            )
        })
        .await
        .expect("the second conversation waited for the first one's sandbox");
        let (one, two) = (both.0.unwrap(), both.1.unwrap());
        assert_ne!(one.id(), two.id());
        assert_eq!(rig.manager.counts().await, (2, 0));
    }

    #[tokio::test]
    async fn concurrent_acquires_of_one_conversation_share_one_sandbox() {
        let rig = rig_with(fake, |_| {});
        let (a, b) = tokio::join!(
            rig.manager.acquire("c1", rig.spec("c1")),
            rig.manager.acquire("c1", rig.spec("c1"))
        );
        assert_eq!(a.unwrap().id(), b.unwrap().id());
        assert_eq!(rig.actions(), vec![action("sandbox.created", "")]);
    }

    #[tokio::test]
    async fn sweep_and_release_destroy_and_forget() {
        let rig = rig_with(fake, |s| s.idle_ttl = Duration::ZERO);
        let idle = rig.manager.acquire("c1", rig.spec("c1")).await.unwrap();
        rig.manager.sweep().await;
        assert!(!idle.alive().await);
        assert_eq!(rig.manager.counts().await, (0, 0));
        assert!(rig.manager.slots.lock().await.is_empty(), "an empty slot is kept");

        let rig = rig_with(fake, |_| {});
        let kept = rig.manager.acquire("c1", rig.spec("c1")).await.unwrap();
        let released = rig.manager.acquire("c2", rig.spec("c2")).await.unwrap();
        rig.manager.release("c2", "conversation deleted").await;
        rig.manager.sweep().await;
        assert!(kept.alive().await, "the sweep took a sandbox within its TTLs");
        assert!(!released.alive().await);
        assert_eq!(rig.manager.counts().await, (1, 0));
        assert_eq!(rig.manager.slots.lock().await.len(), 1);
        rig.manager.shutdown().await;
        assert!(!kept.alive().await);
        assert_eq!(rig.manager.counts().await, (0, 0));
        assert!(rig.manager.acquire("c3", rig.spec("c3")).await.is_err());
    }
}
