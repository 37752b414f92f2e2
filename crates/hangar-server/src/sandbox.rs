//! Wiring of `hangar-sandbox` into the server: the backend chosen by `SANDBOX_BACKEND`, limits
//! from the `CONTAINER_*`/`SANDBOX_*` settings, lifecycle and egress decisions written to the
//! audit log, and the sandbox line of `/health`.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use hangar_protocol::{ComponentHealth, HealthStatus, TenantPolicy};
use hangar_sandbox::bwrap::Bwrap;
use hangar_sandbox::egress::{Cidr, EgressAudit, EgressPolicy, SystemResolver};
use hangar_sandbox::host::{EgressSettings, HostConfig};
use hangar_sandbox::manager::{LifecycleAudit, ManagerSettings, SandboxManager};
use hangar_sandbox::oci::Oci;
use hangar_sandbox::{Backend, Limits, NetworkPolicy, Sandbox, SandboxError, SandboxSpec};
use hangar_store::{AuditEntry, Store};

use crate::config::{SandboxBackendKind, Settings};

/// Limits of a conversation's sandbox.
pub fn limits(settings: &Settings) -> Limits {
    Limits {
        memory_bytes: settings.container_memory_limit,
        pids: settings.container_pids_limit,
        cpu_millis: settings.container_cpu_quota / 100,
        tmp_bytes: settings.sandbox_tmp_size,
        workspace_bytes: settings.sandbox_disk_limit,
        max_command_timeout: Duration::from_secs(settings.container_execution_timeout),
        command_timeout: Duration::from_secs(settings.container_execution_timeout.min(120)),
        ..Limits::default()
    }
}

/// A conversation sandbox's network: none, or the tenant's egress domains through the proxy.
pub fn network(policy: &TenantPolicy) -> NetworkPolicy {
    if policy.egress_domains.is_empty() {
        NetworkPolicy::None
    } else {
        NetworkPolicy::Egress {
            domains: policy.egress_domains.clone(),
        }
    }
}

/// The rules for host-side fetches on a tenant's behalf (`WebFetch`): the same domains and
/// address checks as the sandbox's egress proxy. `None` when the tenant allows no domain.
pub fn egress_policy(settings: &Settings, policy: &TenantPolicy) -> Option<EgressPolicy> {
    (!policy.egress_domains.is_empty()).then(|| {
        EgressPolicy::new(policy.egress_domains.clone()).with_allowed_networks(allowed_networks(settings))
    })
}

/// `SANDBOX_EGRESS_ALLOWED_NETWORKS` (validated when the settings are loaded).
fn allowed_networks(settings: &Settings) -> Vec<Cidr> {
    settings
        .sandbox_egress_allowed_networks
        .iter()
        .filter_map(|c| c.parse::<Cidr>().ok())
        .collect()
}

/// Host-side configuration shared by both backends.
pub fn host_config(settings: &Settings, egress_audit: EgressAudit) -> HostConfig {
    // The running binary is the supervisor; when it cannot be found, the backend reports it.
    let supervisor = settings
        .sandbox_supervisor
        .clone()
        .unwrap_or_else(|| std::env::current_exe().unwrap_or_else(|_| PathBuf::from("/proc/self/exe")));
    let mut host = HostConfig::new(supervisor, settings.hangar_data_dir.join("sandboxes"));
    host.ro_binds = settings.sandbox_ro_binds.iter().map(PathBuf::from).collect();
    host.egress = Some(EgressSettings {
        resolver: Arc::new(SystemResolver),
        audit: egress_audit,
        allowed_networks: allowed_networks(settings),
        extra_ports: Vec::new(),
    });
    host
}

/// The configured backend, or one that explains why there is none.
pub fn backend(settings: &Settings, host: HostConfig) -> Arc<dyn Backend> {
    let built: Result<Arc<dyn Backend>, SandboxError> = match settings.sandbox_backend {
        SandboxBackendKind::Bwrap => Bwrap::new(host).map(|b| Arc::new(b) as Arc<dyn Backend>),
        SandboxBackendKind::Oci => Oci::new(host).map(|b| Arc::new(b) as Arc<dyn Backend>),
    };
    built.unwrap_or_else(|e| Arc::new(Unavailable(e.to_string())))
}

/// The server's sandbox manager, auditing into `store`.
pub fn manager(settings: &Settings, store: Arc<dyn Store>) -> Arc<SandboxManager> {
    let egress_store = store.clone();
    let egress_audit: EgressAudit = Arc::new(move |decision| {
        let entry = AuditEntry {
            actor: "sandbox".to_owned(),
            request_id: None,
            tenant_id: None,
            action: "sandbox.egress".to_owned(),
            resource_type: Some("host".to_owned()),
            resource_id: Some(format!("{}:{}", decision.host, decision.port)),
            outcome: if decision.allowed { "success" } else { "denied" }.to_owned(),
            details: serde_json::json!({ "reason": decision.reason, "method": decision.method,
                "address": decision.address.map(|a| a.to_string()) }),
        };
        spawn_audit(egress_store.clone(), entry);
    });
    let host = host_config(settings, egress_audit);
    let lifecycle: LifecycleAudit = Arc::new(move |event| {
        let entry = AuditEntry {
            actor: "system".to_owned(),
            request_id: None,
            tenant_id: event.owner.split_once('/').map(|(tenant, _)| tenant.to_owned()),
            action: event.action.to_owned(),
            resource_type: Some("sandbox".to_owned()),
            resource_id: Some(event.sandbox),
            outcome: "success".to_owned(),
            details: serde_json::json!({ "owner": event.owner, "reason": event.reason }),
        };
        spawn_audit(store.clone(), entry);
    });
    let manager_settings = ManagerSettings {
        idle_ttl: Duration::from_secs(settings.container_inactive_ttl),
        absolute_ttl: Duration::from_secs(settings.container_absolute_ttl),
        sweep_interval: Duration::from_secs(settings.container_gc_interval),
        warm_min: settings.warm_pool_min_size,
        warm_max: settings.warm_pool_max_size,
        warm_dir: settings.hangar_data_dir.join("workspaces").join(".warm"),
        default_limits: limits(settings),
    };
    SandboxManager::new(backend(settings, host), manager_settings, lifecycle)
}

fn spawn_audit(store: Arc<dyn Store>, entry: AuditEntry) {
    if let Ok(handle) = tokio::runtime::Handle::try_current() {
        handle.spawn(async move {
            if let Err(e) = store.record_audit(&entry).await {
                tracing::warn!(error = %e, action = %entry.action, "could not write a sandbox audit record");
            }
        });
    }
}

/// The sandbox line of `/health`: degraded, not down, when the backend cannot run — the API
/// still serves everything that needs no sandbox.
pub fn health(manager: &SandboxManager) -> ComponentHealth {
    let backend = manager.backend();
    match backend.ready() {
        Ok(()) => ComponentHealth {
            status: HealthStatus::Healthy,
            message: format!("{} ready", backend.name()),
            latency_ms: None,
        },
        Err(e) => ComponentHealth {
            status: HealthStatus::Degraded,
            message: e.to_string(),
            latency_ms: None,
        },
    }
}

/// Stands in for a backend that could not even be set up.
struct Unavailable(String);

impl Unavailable {
    fn error(&self) -> SandboxError {
        SandboxError::Unavailable {
            reason: self.0.clone(),
            fix: "run `hangar sandbox check` for what the host is missing".to_owned(),
        }
    }
}

#[async_trait]
impl Backend for Unavailable {
    fn name(&self) -> &'static str {
        "unavailable"
    }

    fn ready(&self) -> hangar_sandbox::Result<()> {
        Err(self.error())
    }

    async fn create(&self, _spec: SandboxSpec) -> hangar_sandbox::Result<Box<dyn Sandbox>> {
        Err(self.error())
    }

    async fn reap_leftovers(&self) -> hangar_sandbox::Result<usize> {
        Ok(0)
    }
}
