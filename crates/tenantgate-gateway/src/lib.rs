//! The tenantgate gateway: configuration, the request pipeline and the HTTP server.
//!
//! Architecture Invariant: no SQL here; storage goes through `tenantgate-store` handles.
//! Architecture Invariant: no prompt or response text is logged below DEBUG.

pub mod admission;
mod admission_redis;
pub mod admission_requests;
pub mod audit;
pub mod audit_anchor;
mod audit_call;
mod audit_writer;
pub mod auth;
pub mod bounds;
pub mod cache;
pub mod compose;
pub mod config;
pub mod control;
pub mod error;
pub mod guard;
pub mod http;
pub mod keys;
pub mod oidc;
pub mod pipeline;
pub mod rag;
pub mod server;
pub mod state;
pub mod stream;
pub mod stream_guard;
mod stream_text;
pub mod upstream;

pub use config::Config;
pub use server::{Server, StartError};
pub use state::AppState;
