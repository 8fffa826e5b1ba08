//! The tenantgate gateway: configuration, the request pipeline and the HTTP server.
//!
//! Architecture Invariant: no SQL here; storage goes through `tenantgate-store` handles.
//! Architecture Invariant: no prompt or response text is logged below DEBUG.

pub mod audit;
pub mod bounds;
pub mod config;
pub mod control;
pub mod error;
pub mod http;
pub mod identity;
pub mod knowledge;
pub mod limits;
pub mod metrics;
pub mod pipeline;
pub mod server;
pub mod state;
pub mod stream;
pub mod upstream;

pub use config::Config;
pub use server::{Server, StartError};
pub use state::AppState;
