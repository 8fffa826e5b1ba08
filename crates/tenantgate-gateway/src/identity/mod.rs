//! Who is calling: API keys (hashed with the server secret), OIDC tokens (verified against the
//! issuer's keys), and the auth snapshot they are checked against.

pub mod auth;
mod context;
pub mod guard_policy;
pub mod keys;
pub mod oidc;

pub use context::TenantContext;
