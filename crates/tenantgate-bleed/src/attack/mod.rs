//! The attacks, each run from the attacker tenant (or no tenant, or the platform) at the
//! victim's data, in the order [`crate::run`] calls them.

pub mod credential;
pub mod data;
pub mod integrity;
pub mod model;
pub mod race;
pub mod routes;
pub mod spoof;

use crate::provision::Tenant;
use crate::report::Report;
use crate::target::{Cred, Target};

/// What every attack reads, and the report it adds to.
pub struct Ctx<'a> {
    pub t: &'a Target,
    pub platform: &'a Cred,
    pub victim: &'a Tenant,
    pub attacker: &'a Tenant,
    /// A model that answers with everything it received (mockllm's `mock:echo_all`).
    pub echo: Option<&'a str>,
    /// Models whose upstream obeys mockllm directives (answers chosen by the request).
    pub poison: &'a [String],
    /// Any model the tenants may call, for the calls whose answer does not matter.
    pub plain_model: &'a str,
    /// The IdP's signing key, when the deployment is a test one (genuinely signed forgeries).
    pub idp_key: Option<jsonwebtoken::EncodingKey>,
    pub reload: std::time::Duration,
    pub report: Report,
}

impl Ctx<'_> {
    pub fn any_model(&self) -> &str {
        self.echo.unwrap_or(self.plain_model)
    }
}

/// The tenant's settled model calls this month, as its admin reads them.
pub async fn requests_counted(c: &Ctx<'_>, who: &Tenant) -> anyhow::Result<i64> {
    let u =
        c.t.must(
            reqwest::Method::GET,
            "/tenant/v1/usage?group_by=model",
            &who.admin,
            None,
        )
        .await?;
    Ok(u["data"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|r| r["requests"].as_i64())
        .sum())
}

/// A change made on one replica reaches the others at their next snapshot reload.
pub async fn wait_reload(c: &Ctx<'_>) {
    if c.t.urls.len() > 1 {
        tokio::time::sleep(c.reload).await;
    }
}
