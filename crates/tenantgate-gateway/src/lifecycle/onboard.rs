//! One-call onboarding: a complete, working tenant or nothing at all.
//!
//! [`Onboarding::run`] takes a [`TenantSpec`] through the steps in [`Step`] order, each a
//! function of the tenant the steps before made: claim the idempotency key, provision the
//! tier's storage and record the tenant, make its key-encryption key (the platform's or its
//! own KMS key), set its limits and budget, copy its default prompt from a platform template,
//! create its knowledge-base space, make its first tenant-admin credential (an API key shown
//! once, or an invitation for a user of its OIDC issuer), seal the result for replays, and
//! last record it all in the platform's chain and then the tenant's. The tenant's chain is
//! written last because records in it are permanent: until then every step can be undone.
//!
//! A failure at any step undoes the earlier ones ([`Onboarding::undo`]: keys shredded, index
//! space removed, every row and the tier's storage discarded, the claim released) and is
//! recorded in the platform's chain. If the undo itself fails, the claim stays `running`; the
//! next attempt with the same key (or the server's start-up sweep) discards the tenant once
//! the claim is stale, as it does for a process that died mid-onboarding.

use crate::control::{AuditSink, KeySpec};
use crate::identity::keys::ServerSecret;
use crate::lifecycle::{platform_detail, record_platform};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use sha2::Digest;
use std::time::Instant;
use tenantgate_audit::EventType;
use tenantgate_core::{
    IsolationTier, NewTenant, PlanTier, PlatformAdmin, Role, Tenant, TenantId, TenantScope,
};
use tenantgate_store::onboarding::Claim;
use tenantgate_store::{Keyring, Store};

/// What a platform operator asks for: the body of `POST /admin/v1/tenants`, one entry of
/// `tenantgate apply`'s file, or `tenantgate tenant create`'s flags.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TenantSpec {
    pub slug: String,
    #[serde(default)]
    pub display_name: Option<String>,
    #[serde(default = "free")]
    pub plan: PlanTier,
    #[serde(default = "namespace")]
    pub isolation: IsolationTier,
    /// The dedicated tier's own database: a `postgres://` URL without a password, or an
    /// absolute data directory.
    #[serde(default)]
    pub database: Option<String>,
    #[serde(default)]
    pub allowed_models: Vec<String>,
    #[serde(default)]
    pub max_tokens_per_request: Option<u32>,
    /// Limit overrides over the plan's defaults (the names of `LimitSet`; the budget is
    /// `monthly_spend_micros`).
    #[serde(default)]
    pub limits: Option<serde_json::Map<String, Value>>,
    /// The tenant's own KMS key for its key-encryption key (default: the platform's).
    #[serde(default)]
    pub kms: Option<KmsSpec>,
    /// A default prompt copied from a platform template (`[lifecycle.prompt_templates]`).
    #[serde(default)]
    pub prompt: Option<PromptSpec>,
    /// Make a `tenant_admin` API key and return it (once).
    #[serde(default)]
    pub admin_key: bool,
    /// Invite a user of the tenant's OIDC issuer as its first `tenant_admin`.
    #[serde(default)]
    pub admin_invite: Option<InviteSpec>,
}

fn free() -> PlanTier {
    PlanTier::Free
}

fn namespace() -> IsolationTier {
    IsolationTier::Namespace
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KmsSpec {
    /// An AWS KMS key id or ARN.
    pub aws_key_id: String,
    pub region: String,
    /// A KMS-compatible endpoint (tests, VPC endpoints).
    #[serde(default)]
    pub endpoint: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PromptSpec {
    /// The platform template's name.
    pub template: String,
    /// The tenant's prompt name (default: the template's), made its default prompt.
    #[serde(default)]
    pub name: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InviteSpec {
    /// The configured OIDC issuer the user signs in with: bound to this tenant
    /// (`[[auth.oidc]] tenant = slug`) or naming tenants by claim, never the platform's.
    pub issuer: String,
    /// The user's subject (the issuer's `user_claim`).
    pub subject: String,
}

/// The onboarding steps, in the order they run (and are undone in reverse).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Step {
    Claim,
    Storage,
    Key,
    Limits,
    Prompt,
    KnowledgeSpace,
    Credential,
    Result,
    Audit,
}

impl Step {
    pub fn as_str(self) -> &'static str {
        match self {
            Step::Claim => "claim",
            Step::Storage => "storage",
            Step::Key => "key",
            Step::Limits => "limits",
            Step::Prompt => "prompt",
            Step::KnowledgeSpace => "knowledge_space",
            Step::Credential => "credential",
            Step::Result => "result",
            Step::Audit => "audit",
        }
    }
}

/// Why an onboarding did not produce a tenant.
#[derive(Debug, thiserror::Error)]
pub enum OnboardError {
    /// The request itself is wrong; nothing was attempted.
    #[error("{message}")]
    Invalid {
        field: &'static str,
        message: String,
    },
    /// The slug exists, the idempotency key belongs to another request, or the same request
    /// is being onboarded now.
    #[error("{0}")]
    Conflict(String),
    /// A step failed; everything before it was undone (`undone`), or the undo failed too and
    /// the next attempt finishes it.
    #[error("onboarding failed at step {}: {error}", step.as_str())]
    Failed {
        step: Step,
        error: String,
        undone: bool,
    },
}

/// A finished onboarding: the response body (the tenant, its first credential, the steps
/// with their times) and whether it is a replay of an earlier attempt's result.
#[derive(Debug)]
pub struct Onboarded {
    pub body: Value,
    pub tenant: TenantId,
    pub replayed: bool,
}

/// What onboarding uses: the same for the admin API and the CLI.
pub struct Onboarding<'a> {
    pub store: &'a Store,
    pub keyring: &'a Keyring,
    pub config: &'a crate::config::Config,
    pub secret: &'a ServerSecret,
    pub sink: AuditSink<'a>,
    pub admin: &'a PlatformAdmin,
    /// `api` or `cli` (recorded).
    pub via: &'static str,
}

/// The keyring kind the replayable result is sealed under.
const RESULT_KIND: &str = "onboarding_result";

/// Idempotency keys: 1..=255 visible ASCII characters (the IETF draft's header value).
pub fn validate_idempotency_key(key: &str) -> Result<(), OnboardError> {
    if key.is_empty() || key.len() > 255 || !key.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(OnboardError::Invalid {
            field: "idempotency-key",
            message: "an idempotency key is 1..=255 visible ASCII characters".into(),
        });
    }
    Ok(())
}

impl<'a> Onboarding<'a> {
    /// Onboarding as `app`'s server runs it (its store, keyring, configuration and audit
    /// writer), acting as `admin`.
    pub fn of_server(
        app: &'a crate::state::AppState,
        admin: &'a PlatformAdmin,
        via: &'static str,
    ) -> Self {
        Onboarding {
            store: app.store(),
            keyring: app.keyring(),
            config: &app.0.config,
            secret: &app.0.secret,
            sink: AuditSink::Writer(&app.0.rec.log),
            admin,
            via,
        }
    }
}

impl Onboarding<'_> {
    /// Onboards `spec`. With `idempotency_key`, a retry of the same request returns the first
    /// result (`replayed`), and the key cannot be reused for another request.
    pub async fn run(
        &self,
        spec: &TenantSpec,
        idempotency_key: Option<&str>,
    ) -> Result<Onboarded, OnboardError> {
        let new = self.validate(spec)?;
        if let Some(k) = idempotency_key {
            validate_idempotency_key(k)?;
        }
        // Without a key the claim still exists (under a key nobody can repeat), so a crash
        // mid-onboarding leaves a claim the start-up sweep finds.
        let key = match idempotency_key {
            Some(k) => format!("key:{k}"),
            None => format!("auto:{}", uuid::Uuid::now_v7().simple()),
        };
        let request = hex::encode(sha2::Sha256::digest(
            serde_json::to_vec(spec).unwrap_or_default(),
        ));
        let id = tenantgate_store::new_tenant_id();
        let p = self.store.platform(self.admin);
        let stale_ms = (self.config.lifecycle.onboarding_stale_secs * 1000) as i64;
        let claim = p
            .onboarding_claim(&key, &request, &id, stale_ms)
            .await
            .map_err(|e| failed(Step::Claim, e, true))?;
        match claim {
            Claim::New { discard: None } => {}
            Claim::New {
                discard: Some(stale),
            } => {
                tracing::warn!(tenant = %stale, "discarding the tenant of an onboarding that never finished");
                self.undo(&stale, "stale claim", Step::Claim, None)
                    .await
                    .map_err(|e| OnboardError::Failed {
                        step: Step::Claim,
                        error: e,
                        undone: false,
                    })?;
            }
            Claim::Replay { tenant, sealed } => return self.replay(tenant, &key, &sealed).await,
            Claim::InProgress => {
                return Err(OnboardError::Conflict(
                    "an onboarding with this idempotency key is in progress; retry later".into(),
                ))
            }
            Claim::Mismatch => {
                return Err(OnboardError::Conflict(
                    "this idempotency key was used for a different onboarding request".into(),
                ))
            }
        }
        let mut made = Made {
            id: id.clone(),
            steps: Vec::new(),
        };
        match self.steps(spec, &new, &key, &mut made).await {
            Ok(body) => Ok(Onboarded {
                body,
                tenant: id,
                replayed: false,
            }),
            Err((step, error)) => {
                let refusal = match &error {
                    StepError::Invalid(_) => Some(false),
                    StepError::Conflict(_) => Some(true),
                    StepError::Failed(_) => None,
                };
                let error = error.to_string();
                let undone = match self.undo(&id, &error, step, Some(&key)).await {
                    Ok(()) => true,
                    Err(e) => {
                        tracing::error!(tenant = %id, step = step.as_str(), error = %e,
                            "an onboarding failed and could not be undone; the next attempt or the start-up sweep finishes the undo");
                        false
                    }
                };
                match (refusal, undone) {
                    (Some(true), true) => return Err(OnboardError::Conflict(error)),
                    (Some(false), true) => {
                        return Err(OnboardError::Invalid {
                            field: "database",
                            message: error,
                        })
                    }
                    _ => {}
                }
                Err(OnboardError::Failed {
                    step,
                    error,
                    undone,
                })
            }
        }
    }

    /// Finishes onboardings whose process died: each claim stale for
    /// `lifecycle.onboarding_stale_secs` is taken over (one replica wins it), its partial
    /// tenant undone and the claim released. Returns how many were undone.
    pub async fn sweep(&self) -> Result<usize, String> {
        let p = self.store.platform(self.admin);
        let stale_ms = (self.config.lifecycle.onboarding_stale_secs * 1000) as i64;
        let mut undone = 0;
        for (key, request) in p
            .onboarding_stale(stale_ms)
            .await
            .map_err(|e| e.to_string())?
        {
            let id = tenantgate_store::new_tenant_id();
            let claim = p
                .onboarding_claim(&key, &request, &id, stale_ms)
                .await
                .map_err(|e| e.to_string())?;
            if let Claim::New {
                discard: Some(stale),
            } = claim
            {
                tracing::warn!(tenant = %stale, "discarding the tenant of an onboarding that never finished");
                self.undo(&stale, "stale claim", Step::Claim, Some(&key))
                    .await?;
                undone += 1;
            }
        }
        Ok(undone)
    }

    /// Everything checked before anything is made.
    fn validate(&self, spec: &TenantSpec) -> Result<NewTenant, OnboardError> {
        let invalid =
            |field: &'static str, message: String| OnboardError::Invalid { field, message };
        let new = NewTenant {
            display_name: spec
                .display_name
                .clone()
                .unwrap_or_else(|| spec.slug.clone()),
            slug: spec.slug.clone(),
            plan: spec.plan,
            isolation: spec.isolation,
            allowed_models: spec.allowed_models.clone(),
            max_tokens_per_request: spec.max_tokens_per_request,
        };
        new.validate().map_err(|e| invalid("slug", e.0))?;
        tenantgate_core::validate_model_policy(&new.allowed_models, new.max_tokens_per_request)
            .map_err(|e| invalid("allowed_models", e.0))?;
        if let Some(d) = &spec.database {
            if d.len() > 1024 {
                return Err(invalid("database", "at most 1024 bytes".into()));
            }
        }
        if let Some(l) = &spec.limits {
            serde_json::from_value::<crate::limits::LimitSet>(Value::Object(l.clone()))
                .map_err(|e| invalid("limits", e.to_string()))?;
        }
        if let Some(k) = &spec.kms {
            if k.aws_key_id.is_empty() || k.aws_key_id.len() > 2048 || k.region.len() > 64 {
                return Err(invalid(
                    "kms",
                    "a KMS key id (<= 2048 bytes) and a region".into(),
                ));
            }
            if k.endpoint.as_ref().is_some_and(|e| e.len() > 1024) {
                return Err(invalid("kms", "endpoint: at most 1024 bytes".into()));
            }
        }
        if let Some(p) = &spec.prompt {
            if !self
                .config
                .lifecycle
                .prompt_templates
                .contains_key(&p.template)
            {
                return Err(invalid(
                    "prompt",
                    format!(
                        "no platform prompt template {:?} (configured: {})",
                        truncate(&p.template),
                        self.config
                            .lifecycle
                            .prompt_templates
                            .keys()
                            .cloned()
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                ));
            }
            if let Some(n) = &p.name {
                tenantgate_store::prompts::validate_name(n).map_err(|e| invalid("prompt", e.0))?;
            }
        }
        if let Some(i) = &spec.admin_invite {
            let Some(o) = self.config.auth.oidc.iter().find(|o| o.issuer == i.issuer) else {
                return Err(invalid(
                    "admin_invite",
                    "the issuer is not one of the configured OIDC issuers".into(),
                ));
            };
            let bound_here = o.tenant.as_deref() == Some(spec.slug.as_str());
            if o.platform_admins || (o.tenant.is_some() && !bound_here) {
                return Err(invalid(
                    "admin_invite",
                    "the issuer is the platform's or bound to another tenant".into(),
                ));
            }
            if i.subject.is_empty()
                || i.subject.len() > 256
                || i.subject.chars().any(char::is_control)
            {
                return Err(invalid(
                    "admin_invite",
                    "subject must be 1..=256 printable characters".into(),
                ));
            }
        }
        Ok(new)
    }

    /// The steps after the claim, in order; each one's time and outcome goes in `made`.
    async fn steps(
        &self,
        spec: &TenantSpec,
        new: &NewTenant,
        key: &str,
        made: &mut Made,
    ) -> Result<Value, (Step, StepError)> {
        let id = made.id.clone();
        let tenant = made
            .step(Step::Storage, self.storage(spec, new, &id))
            .await?;
        made.step(Step::Key, self.key(spec, &tenant)).await?;
        made.step(Step::Limits, self.limits(spec, &tenant)).await?;
        made.step(Step::Prompt, self.prompt(spec, &tenant)).await?;
        made.step(Step::KnowledgeSpace, self.knowledge_space(&tenant))
            .await?;
        let credential = made
            .step(Step::Credential, self.credential(spec, &tenant))
            .await?;
        let mut body = json!({ "tenant": tenant });
        if let (Some(b), Value::Object(c)) = (body.as_object_mut(), credential) {
            b.extend(c);
        }
        body["steps"] = json!(made.steps);
        made.step(Step::Result, self.seal_result(&tenant.id, key, &body))
            .await?;
        let steps = made.steps.clone();
        made.step(Step::Audit, self.audit(&tenant, &steps)).await?;
        Ok(body)
    }

    async fn storage(
        &self,
        spec: &TenantSpec,
        new: &NewTenant,
        id: &TenantId,
    ) -> Result<(Tenant, Value), StepError> {
        let t = self
            .store
            .platform(self.admin)
            .create_tenant_as(id.clone(), new, spec.database.as_deref())
            .await
            .map_err(|e| match e {
                tenantgate_store::StoreError::Conflict(m) => StepError::Conflict(m),
                tenantgate_store::StoreError::Invalid(m) => StepError::Invalid(m.0),
                e => StepError::Failed(e.to_string()),
            })?;
        let detail = json!({"isolation": t.isolation});
        Ok((t, detail))
    }

    /// The KEK exists before the first record is sealed: a tenant on its own KMS key is
    /// onboarded only if that key wraps and unwraps now.
    async fn key(&self, spec: &TenantSpec, tenant: &Tenant) -> Result<((), Value), StepError> {
        let status = match &spec.kms {
            None => self.keyring.rotate(self.admin, &tenant.id).await,
            Some(k) => {
                let key = tenantgate_crypto::CustomerKey::Aws {
                    key_id: k.aws_key_id.clone(),
                    region: k.region.clone(),
                    endpoint: k.endpoint.clone(),
                };
                self.keyring
                    .use_customer_key(self.admin, &tenant.id, Some(&key))
                    .await
            }
        }
        .map_err(|e| StepError::Failed(e.to_string()))?;
        Ok((
            (),
            json!({"wrapped_by": status.wrapped_by, "kek_version": status.current_version}),
        ))
    }

    async fn limits(&self, spec: &TenantSpec, tenant: &Tenant) -> Result<((), Value), StepError> {
        let Some(l) = &spec.limits else {
            return Ok(((), json!({"plan": tenant.plan})));
        };
        let text = serde_json::to_string(l).map_err(|e| StepError::Failed(e.to_string()))?;
        self.store
            .platform(self.admin)
            .set_limits(&tenant.id, Some(&text), None)
            .await
            .map_err(|e| StepError::Failed(e.to_string()))?;
        Ok((
            (),
            json!({"plan": tenant.plan, "overrides": l.keys().collect::<Vec<_>>()}),
        ))
    }

    async fn prompt(&self, spec: &TenantSpec, tenant: &Tenant) -> Result<((), Value), StepError> {
        let Some(p) = &spec.prompt else {
            return Ok(((), Value::Null));
        };
        let text = &self.config.lifecycle.prompt_templates[&p.template];
        let name = p.name.as_deref().unwrap_or(&p.template);
        let scope = self.scope(&tenant.id);
        let prompts = self.keyring.prompts(self.store, &scope);
        let fail = |e: tenantgate_store::KeyringError| StepError::Failed(e.to_string());
        let v = prompts
            .push(name, text, &format!("platform:{}", p.template), true)
            .await
            .map_err(fail)?;
        let mut settings = prompts.settings_or_init().await.map_err(fail)?;
        settings.default_prompt = Some(name.to_owned());
        prompts.set_settings(&settings).await.map_err(fail)?;
        Ok(((), json!({"template": p.template, "version": v.version})))
    }

    /// The directory the tenant's knowledge-base indexes will be written to, owner-only.
    async fn knowledge_space(&self, tenant: &Tenant) -> Result<((), Value), StepError> {
        let dir = self.config.rag.index_dir.join(tenant.id.as_str());
        tokio::task::spawn_blocking(move || {
            std::fs::create_dir_all(&dir)?;
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt;
                std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))?;
            }
            Ok::<_, std::io::Error>(())
        })
        .await
        .map_err(|e| StepError::Failed(e.to_string()))?
        .map_err(|e| StepError::Failed(format!("the index directory: {e}")))?;
        Ok(((), Value::Null))
    }

    /// The first credential; its detail names what was made, never the key's plaintext.
    async fn credential(
        &self,
        spec: &TenantSpec,
        tenant: &Tenant,
    ) -> Result<(Value, Value), StepError> {
        let mut out = json!({});
        let mut detail = json!({});
        if spec.admin_key {
            let kspec = KeySpec {
                role: Role::TenantAdmin,
                name: Some("initial admin key".into()),
                end_user: None,
                expires_at_ms: None,
            };
            let (rec, plaintext) =
                crate::control::create_key(self.store, self.admin, self.secret, &tenant.id, kspec)
                    .await
                    .map_err(|e| StepError::Failed(e.to_string()))?;
            out["admin_key"] = json!({"id": rec.id, "key": plaintext, "prefix": rec.prefix});
            detail["admin_key"] = json!({"id": rec.id, "prefix": rec.prefix});
        }
        if let Some(i) = &spec.admin_invite {
            let scope = self.scope(&tenant.id);
            let m = self
                .store
                .tenant(&scope)
                .set_member(&i.subject, Role::TenantAdmin)
                .await
                .map_err(|e| StepError::Failed(e.to_string()))?;
            out["admin_invite"] = json!({"issuer": i.issuer, "subject": m.subject, "role": m.role});
            detail["admin_invite"] = json!({"role": m.role});
        }
        Ok((out, detail))
    }

    /// The result (with the admin key's plaintext) sealed under the tenant's own keys, kept
    /// for the replay window only; shredding the tenant's keys makes it unreadable.
    async fn seal_result(
        &self,
        tenant: &TenantId,
        key: &str,
        body: &Value,
    ) -> Result<((), Value), StepError> {
        let plain = zeroize::Zeroizing::new(serde_json::to_vec(body).unwrap_or_default());
        let sealed = self
            .keyring
            .seal(&self.scope(tenant), RESULT_KIND, key, &plain)
            .await
            .map_err(|e| StepError::Failed(e.to_string()))?;
        self.store
            .platform(self.admin)
            .onboarding_done(key, &sealed)
            .await
            .map_err(|e| StepError::Failed(e.to_string()))?;
        Ok(((), Value::Null))
    }

    /// The platform's chain first, then the tenant's: the first record of the tenant's chain
    /// is the last thing onboarding writes.
    async fn audit(&self, tenant: &Tenant, steps: &[StepDone]) -> Result<((), Value), StepError> {
        let detail = json!({
            "action": "tenant.onboard", "via": self.via, "plan": tenant.plan,
            "isolation": tenant.isolation, "steps": steps,
        });
        let fail = |e: String| StepError::Failed(format!("the audit log: {e}"));
        record_platform(
            self.sink,
            self.admin,
            EventType::ConfigurationChange,
            platform_detail(&tenant.id, detail.clone()),
        )
        .await
        .map_err(fail)?;
        crate::control::record_operator_event(
            self.sink,
            self.admin,
            &tenant.id,
            EventType::ConfigurationChange,
            detail,
        )
        .await
        .map_err(fail)?;
        Ok(((), Value::Null))
    }

    /// Undoes whatever of `tenant` exists: its keys shredded, its index space removed, every
    /// row and its storage discarded, then the claim released (`key`) and the failure
    /// recorded in the platform's chain.
    async fn undo(
        &self,
        tenant: &TenantId,
        error: &str,
        step: Step,
        key: Option<&str>,
    ) -> Result<(), String> {
        self.keyring
            .shred(self.admin, tenant)
            .await
            .map_err(|e| format!("shredding its keys: {e}"))?;
        let dir = self.config.rag.index_dir.join(tenant.as_str());
        match tokio::fs::remove_dir_all(&dir).await {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            // The index directory itself may be what failed (not a directory at all).
            Err(e) if e.kind() == std::io::ErrorKind::NotADirectory => {}
            Err(e) => return Err(format!("removing its index directory: {e}")),
        }
        let p = self.store.platform(self.admin);
        p.discard_tenant(tenant)
            .await
            .map_err(|e| format!("discarding its rows and storage: {e}"))?;
        if let Some(k) = key {
            p.onboarding_release(k)
                .await
                .map_err(|e| format!("releasing its claim: {e}"))?;
        }
        // The platform's record of the failure; the tenant never existed for anyone else.
        // (The audit log may be what failed: then the log line is the record.)
        let _ = record_platform(
            self.sink,
            self.admin,
            EventType::RequestFailed,
            json!({"action": "tenant.onboard.undone", "tenant": tenant.as_str(),
                   "failed_step": step.as_str(), "via": self.via}),
        )
        .await;
        tracing::warn!(tenant = %tenant, step = step.as_str(), error = %error, "onboarding failed and was undone");
        Ok(())
    }

    async fn replay(
        &self,
        tenant: TenantId,
        key: &str,
        sealed: &[u8],
    ) -> Result<Onboarded, OnboardError> {
        let plain = self
            .keyring
            .open(&self.scope(&tenant), RESULT_KIND, key, sealed)
            .await
            .map_err(|e| failed(Step::Result, e, true))?;
        let body: Value =
            serde_json::from_slice(&plain).map_err(|e| failed(Step::Result, e, true))?;
        Ok(Onboarded {
            body,
            tenant,
            replayed: true,
        })
    }

    fn scope(&self, tenant: &TenantId) -> TenantScope {
        #[expect(
            clippy::disallowed_methods,
            reason = "onboarding writes the new tenant's first content as the operator, before it has a credential"
        )]
        TenantScope::for_lifecycle(self.admin, tenant.clone())
    }
}

/// A step's error: a conflict the caller can fix (a slug taken), or a failure.
#[derive(Debug, thiserror::Error)]
enum StepError {
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Failed(String),
}

/// A step that ran, and how long it took.
#[derive(Clone, Debug, Serialize)]
struct StepDone {
    step: Step,
    ms: u64,
    #[serde(skip_serializing_if = "Value::is_null")]
    detail: Value,
}

struct Made {
    id: TenantId,
    steps: Vec<StepDone>,
}

impl Made {
    /// Runs one step: its output goes on, its detail into the steps list.
    async fn step<T>(
        &mut self,
        step: Step,
        f: impl std::future::Future<Output = Result<(T, Value), StepError>>,
    ) -> Result<T, (Step, StepError)> {
        let t0 = Instant::now();
        let (out, detail) = f.await.map_err(|e| (step, e))?;
        self.steps.push(StepDone {
            step,
            ms: t0.elapsed().as_millis() as u64,
            detail,
        });
        Ok(out)
    }
}

fn failed(step: Step, e: impl std::fmt::Display, undone: bool) -> OnboardError {
    OnboardError::Failed {
        step,
        error: e.to_string(),
        undone,
    }
}

fn truncate(s: &str) -> &str {
    match s.char_indices().nth(64) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}
