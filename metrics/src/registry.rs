//! The collectors of one process.

use crate::text::Encoder;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

type Collector = Arc<dyn Fn(&mut Encoder) + Send + Sync>;

/// Async work run before each scrape (e.g. refreshing a cached figure that needs a blocking
/// scan). It should bound its own time: the scrape waits for it.
pub type ScrapeHook = Arc<dyn Fn() -> Pin<Box<dyn Future<Output = ()> + Send>> + Send + Sync>;

/// Everything one process exposes. Collectors render their own families, in registration
/// order; a family must come from one collector only.
pub struct Registry {
    collectors: Mutex<Vec<Collector>>,
    hooks: Mutex<Vec<ScrapeHook>>,
    started: f64,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry")
            .field("collectors", &lock(&self.collectors).len())
            .field("hooks", &lock(&self.hooks).len())
            .finish()
    }
}

impl Registry {
    /// A registry whose output starts with `tessera_build_info{role=...,version=...}` and
    /// `tessera_process_start_time_seconds`.
    pub fn new(role: &'static str) -> Arc<Self> {
        let started = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs_f64())
            .unwrap_or(0.0);
        let r = Arc::new(Self {
            collectors: Mutex::new(Vec::new()),
            hooks: Mutex::new(Vec::new()),
            started,
        });
        let started = r.started;
        r.register(move |e| {
            e.family(
                "tessera_build_info",
                crate::Kind::Gauge,
                "Always 1; labels name the process role and the Tessera version.",
            )
            .sample(
                "tessera_build_info",
                &[("role", role), ("version", env!("CARGO_PKG_VERSION"))],
                1u64,
            );
            e.gauge(
                "tessera_process_start_time_seconds",
                "Start time of the process since the Unix epoch, in seconds.",
                started.floor(),
            );
        });
        r
    }

    /// Adds a collector.
    pub fn register(&self, f: impl Fn(&mut Encoder) + Send + Sync + 'static) {
        lock(&self.collectors).push(Arc::new(f));
    }

    /// Adds a hook run (in registration order) before each scrape.
    pub fn on_scrape<F, Fut>(&self, f: F)
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        lock(&self.hooks).push(Arc::new(move || Box::pin(f())));
    }

    /// Renders every collector (without running hooks).
    pub fn render(&self) -> String {
        let collectors = lock(&self.collectors).clone();
        let mut e = Encoder::new();
        for c in collectors {
            c(&mut e);
        }
        e.finish()
    }

    /// Runs the hooks, then renders.
    pub async fn scrape(&self) -> String {
        let hooks = lock(&self.hooks).clone();
        for h in hooks {
            h().await;
        }
        self.render()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}
