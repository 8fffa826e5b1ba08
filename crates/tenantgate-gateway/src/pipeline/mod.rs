//! The request pipeline.

pub mod authorize;
pub mod compose;
pub mod guard;

pub use authorize::*;
