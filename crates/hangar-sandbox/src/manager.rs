//! Sandbox lifecycle: one sandbox per conversation, reused across runs, destroyed after an idle
//! TTL or an absolute TTL by a periodic sweep, replaced when found dead, and an optional warm
//! pool of ready sandboxes for conversations that use the default policy.
//!
//! A warm sandbox is started with its own empty workspace directory. Handing it to a
//! conversation renames that directory to the conversation's workspace path: a bind mount
//! follows the directory, not its name, so the running sandbox sees the conversation's files
//! from then on. Conversations whose workspace already exists, or that need egress, limits or an
//! environment of their own, get a freshly created sandbox instead.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::Mutex;
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

struct Entry {
    sandbox: Arc<dyn Sandbox>,
    owner: String,
    created: Instant,
    last_used: Instant,
}

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
    active: Mutex<HashMap<String, Entry>>,
    warm: Mutex<Vec<Warm>>,
    stop: CancellationToken,
}

impl SandboxManager {
    pub fn new(backend: Arc<dyn Backend>, settings: ManagerSettings, audit: LifecycleAudit) -> Arc<Self> {
        Arc::new(Self {
            backend,
            settings,
            audit,
            active: Mutex::new(HashMap::new()),
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

    /// The conversation's sandbox: the running one, a warm one, or a new one.
    pub async fn acquire(&self, key: &str, spec: SandboxSpec) -> Result<Arc<dyn Sandbox>> {
        self.backend.ready()?;
        let mut active = self.active.lock().await;
        if let Some(entry) = active.get_mut(key) {
            if entry.sandbox.alive().await {
                entry.last_used = Instant::now();
                return Ok(entry.sandbox.clone());
            }
            let entry = active
                .remove(key)
                .ok_or_else(|| SandboxError::Gone(key.to_owned()))?;
            metrics::counter!(metrics_names::CRASHES).increment(1);
            self.retire(
                entry.sandbox,
                &entry.owner,
                "sandbox.crashed",
                "the supervisor stopped answering",
            )
            .await;
        }
        let owner = spec.owner.clone();
        let (sandbox, action) = match self.take_warm(&spec).await {
            Some(sandbox) => (sandbox, "sandbox.reused_warm"),
            None => (Arc::from(self.backend.create(spec).await?), "sandbox.created"),
        };
        self.record(action, sandbox.id().as_str(), &owner, "");
        let now = Instant::now();
        active.insert(
            key.to_owned(),
            Entry {
                sandbox: sandbox.clone(),
                owner,
                created: now,
                last_used: now,
            },
        );
        Ok(sandbox)
    }

    /// Destroys the conversation's sandbox now (conversation deleted, limits changed).
    pub async fn release(&self, key: &str, reason: &str) {
        let entry = self.active.lock().await.remove(key);
        if let Some(entry) = entry {
            self.retire(entry.sandbox, &entry.owner, "sandbox.destroyed", reason)
                .await;
        }
    }

    /// Sandboxes assigned to conversations, and warm ones.
    pub async fn counts(&self) -> (usize, usize) {
        (self.active.lock().await.len(), self.warm.lock().await.len())
    }

    /// Destroys everything (server shutdown).
    pub async fn shutdown(&self) {
        self.stop.cancel();
        let active: Vec<Entry> = self.active.lock().await.drain().map(|(_, e)| e).collect();
        for entry in active {
            self.retire(
                entry.sandbox,
                &entry.owner,
                "sandbox.destroyed",
                "server shutdown",
            )
            .await;
        }
        for warm in self.warm.lock().await.drain(..) {
            let _ = warm.sandbox.destroy().await;
            let _ = std::fs::remove_dir_all(&warm.workspace);
        }
    }

    /// Destroys sandboxes past their idle or absolute TTL, and warm ones past the absolute TTL.
    pub async fn sweep(&self) {
        let now = Instant::now();
        let expired: Vec<(String, Entry, &'static str)> = {
            let mut active = self.active.lock().await;
            let keys: Vec<(String, &'static str)> = active
                .iter()
                .filter_map(|(k, e)| {
                    if now.duration_since(e.created) >= self.settings.absolute_ttl {
                        Some((k.clone(), "absolute TTL reached"))
                    } else if now.duration_since(e.last_used) >= self.settings.idle_ttl {
                        Some((k.clone(), "idle TTL reached"))
                    } else {
                        None
                    }
                })
                .collect();
            keys.into_iter()
                .filter_map(|(k, why)| active.remove(&k).map(|e| (k, e, why)))
                .collect()
        };
        for (_, entry, why) in expired {
            self.retire(entry.sandbox, &entry.owner, "sandbox.destroyed", why)
                .await;
        }
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
