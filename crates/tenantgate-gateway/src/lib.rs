//! The tenantgate gateway: configuration, the request pipeline and the HTTP server.
//!
//! # Layout
//!
//! Folders per concern, in the order a request meets them:
//!
//! - [`http`]: the edge (request id, body bounds, one log line) and the adapters: a model
//!   call's wire request becomes a [`pipeline::Input`], its [`pipeline::Outcome`] the wire
//!   response; the control-plane API (`/tenant/v1`, `/admin/v1`) with roles as extractors.
//! - [`identity`]: credentials (API keys, OIDC tokens) -> [`identity::TenantContext`].
//! - [`pipeline`]: one path for every model call, top to bottom in `pipeline/mod.rs`:
//!   authenticate, count, parse, authorize, guard in, compose, plan retrieval, admit,
//!   retrieve, route (cache, translation, provider, guard out), record.
//! - [`guard`]: the leak guard applied with the tenant's policy; incidents.
//! - [`limits`]: admission (rate, concurrency, budgets) as reserve-then-settle.
//! - [`upstream`]: the model catalog and its targets, the transport (HTTP providers and the demo
//!   model), failover policy and circuit breakers, caches.
//! - [`stream`]: streamed answers re-framed, guarded per channel, recorded before the end.
//! - [`audit`]: the call's record (a drop guard), the group-commit writer, signed checkpoints.
//! - [`knowledge`]: per-knowledge-base indexes, sealed, loaded lazily.
//! - [`finetune`]: tenant-owned fine-tuning: training files validated and guarded, job
//!   answers rewritten to gateway ids (handlers in `http/finetune.rs`).
//! - [`lifecycle`]: a tenant from the platform's side: one-call onboarding (or nothing), the
//!   export bundle, offboarding; every step in the tenant's and the platform's chains.
//! - [`console`]: the browser console under `/console`, a client of the control API in
//!   process (sessions, OIDC sign-in, CSRF, server-rendered pages); mounted by the server,
//!   above `http`.
//! - [`config`], [`error`], [`bounds`]: settings, the one error table, client-string bounds.
//! - `bleed_switch` (test builds only): one isolation layer switched off, for the bleed test.
//! - [`metrics`] (`/metrics`) and [`telemetry`] (the log subscriber, OTLP traces, `traceparent`).
//! - [`state`], [`server`], [`control`]: the composition root, bind/serve and background
//!   loops, operations shared with the CLI.
//!
//! Architecture Invariant: no SQL here; storage goes through `tenantgate-store` handles.
//! Architecture Invariant: no prompt or response text is logged below DEBUG.

pub mod audit;
#[cfg(all(feature = "bleed-switches", debug_assertions))]
pub mod bleed_switch;
pub mod bounds;
mod clock;
pub mod config;
pub mod console;
pub mod control;
pub mod error;
pub mod finetune;
pub mod guard;
pub mod http;
pub mod identity;
pub mod knowledge;
pub mod lifecycle;
pub mod limits;
pub mod metrics;
pub mod pipeline;
pub mod rate;
pub mod server;
pub mod state;
pub mod stream;
pub mod telemetry;
pub mod upstream;

pub use config::Config;
pub use server::{Server, StartError};
pub use state::AppState;
