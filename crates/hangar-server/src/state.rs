//! `AppState`: what every handler can reach. Cheap to clone.

use std::ops::Deref;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use hangar_sandbox::manager::SandboxManager;
use hangar_store::Store;
use metrics_exporter_prometheus::PrometheusHandle;

use crate::auth::AdminKeys;
use crate::config::{AppEnv, Settings};
use crate::llm::Llm;
use crate::runs::Runs;
use crate::workspace::Workspaces;
use hangar_coord::{InProcessLeases, InProcessRateLimiter, RateLimiter};

#[derive(Clone)]
pub struct AppState(Arc<Shared>);

pub struct Shared {
    pub settings: Settings,
    pub store: Arc<dyn Store>,
    pub admin_keys: AdminKeys,
    pub metrics: Option<PrometheusHandle>,
    pub llm: Arc<Llm>,
    pub sandboxes: Arc<SandboxManager>,
    pub runs: Arc<Runs>,
    /// Counts requests of the rate-limited routes (`middleware::rate_limit`).
    pub rate_limiter: Arc<dyn RateLimiter>,
    /// Conversation workspaces: local directories, manifests and blobs.
    pub workspaces: Arc<Workspaces>,
    shutting_down: AtomicBool,
}

impl Deref for AppState {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.0
    }
}

impl AppState {
    pub fn new(
        settings: Settings,
        store: Arc<dyn Store>,
        metrics: Option<PrometheusHandle>,
        llm: Arc<Llm>,
    ) -> anyhow::Result<Self> {
        let admin_keys = AdminKeys::new(&settings.api_keys);
        let workspaces = Arc::new(crate::workspace::from_settings(&settings, store.clone())?);
        let sandboxes = crate::sandbox::manager(&settings, store.clone());
        let runs = Runs::new(
            crate::runs::node_id(&settings),
            Arc::new(InProcessLeases::default()),
        );
        Ok(Self(Arc::new(Shared {
            settings,
            store,
            admin_keys,
            metrics,
            llm,
            sandboxes,
            runs: Arc::new(runs),
            rate_limiter: Arc::new(InProcessRateLimiter::default()),
            workspaces,
            shutting_down: AtomicBool::new(false),
        })))
    }

    /// `/metrics` needs an admin key in production unless `METRICS_PUBLIC=true`.
    pub fn metrics_protected(&self) -> bool {
        self.settings.app_env == AppEnv::Production && !self.settings.metrics_public
    }

    /// From now on `/health/ready` answers 503 so load balancers stop sending traffic.
    pub fn begin_shutdown(&self) {
        self.shutting_down.store(true, Ordering::SeqCst);
    }

    pub fn is_shutting_down(&self) -> bool {
        self.shutting_down.load(Ordering::SeqCst)
    }
}
