//! Canary tenants: made through the platform API, planted with unique canaries in every place
//! a tenant keeps data (prompt, knowledge base, key and user names, audited calls, response
//! cache, usage), and removed at the end.

use crate::target::{Cred, Target};
use reqwest::Method;
use serde_json::{json, Value};

/// A canary tenant as the run knows it.
pub struct Tenant {
    pub slug: String,
    pub id: String,
    pub display_name: String,
    pub admin: Cred,
    pub admin_key: String,
    pub admin_key_id: String,
    pub member: Cred,
    pub member_key: String,
    pub member_key_id: String,
    /// The guard's canary token in this tenant's system prompt.
    pub guard_canary: String,
    /// Content only this tenant holds, by where it was planted: another tenant seeing any of
    /// it anywhere is a leak.
    pub secrets: Vec<(&'static str, String)>,
    /// Names and ids the attacks put into URLs.
    pub prompt: String,
    pub kb: String,
    pub kb_id: String,
    pub doc_id: String,
    pub subject: String,
}

impl Tenant {
    /// The first of this tenant's secrets (or its guard canary) found in `text`.
    pub fn secret_in(&self, text: &str) -> Option<String> {
        self.secrets
            .iter()
            .find(|(_, v)| text.contains(v.as_str()))
            .map(|(w, _)| format!("tenant {}'s {w} canary", self.slug))
            .or_else(|| {
                text.contains(&self.guard_canary)
                    .then(|| format!("tenant {}'s guard canary", self.slug))
            })
    }

    /// Content only the tenant's own principals may read (prompt, instructions, documents,
    /// conversations), not the metadata a platform admin sees (key and end-user names).
    pub fn content_in(&self, text: &str) -> Option<String> {
        self.secrets
            .iter()
            .filter(|(w, _)| !matches!(*w, "API key name" | "end user"))
            .find(|(_, v)| text.contains(v.as_str()))
            .map(|(w, _)| format!("tenant {}'s {w} canary", self.slug))
    }

    /// A secret, or an identifier the gateway's guard knows as this tenant's (its id; the slug
    /// and display name are checked too where the text is a model's answer).
    pub fn trace_in(&self, text: &str) -> Option<String> {
        self.secret_in(text).or_else(|| {
            [
                ("id", &self.id),
                ("slug", &self.slug),
                ("display name", &self.display_name),
            ]
            .iter()
            .find(|(_, v)| text.contains(v.as_str()))
            .map(|(w, _)| format!("tenant {}'s {w}", self.slug))
        })
    }
}

/// A fresh canary: unique per run and place, never a substring of a slug or id.
pub fn canary(run: &str, tag: &str) -> String {
    format!(
        "CANARY{}{}{}",
        run.to_uppercase(),
        tag.to_uppercase(),
        hex::encode(rand::random::<[u8; 6]>())
    )
}

pub struct Plan<'a> {
    pub run: &'a str,
    pub role: &'a str,
    /// Limit overrides (`requests_per_minute` for the race tenant).
    pub limits: Option<Value>,
    /// Keys only: no prompt, no custom instructions, no knowledge base, so two bare tenants'
    /// requests are composed identically and only the tenant tells them apart (the cache probe).
    pub bare: bool,
}

/// Onboards one tenant with an admin key, a member key, a default prompt and knowledge base,
/// each carrying its own canary.
pub async fn tenant(t: &Target, platform: &Cred, plan: Plan<'_>) -> anyhow::Result<Tenant> {
    let slug = format!("bleed-{}-{}", plan.run, plan.role);
    let display_name = format!("Bleed {} {}", plan.role, plan.run);
    // Every model the platform offers ("*"), so every model path can be attacked.
    let mut spec = json!({"slug": slug, "display_name": display_name, "plan": "enterprise",
        "admin_key": true, "allowed_models": ["*"]});
    if let Some(l) = plan.limits {
        spec["limits"] = l;
    }
    let made = t
        .must(Method::POST, "/admin/v1/tenants", platform, Some(&spec))
        .await?;
    let id = made["tenant"]["id"]
        .as_str()
        .ok_or_else(|| anyhow::anyhow!("onboarding answered no tenant id: {made}"))?
        .to_owned();
    let admin_key = made["admin_key"]["key"]
        .as_str()
        .ok_or_else(|| anyhow::anyhow!("onboarding answered no admin key"))?
        .to_owned();
    let admin_key_id = made["admin_key"]["id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let admin = Cred::Bearer(admin_key.clone());
    // A new key reaches every replica at its next snapshot reload: wait until all answer.
    settle(t, &admin).await?;

    let mut secrets: Vec<(&'static str, String)> = Vec::new();
    let run = plan.run;
    let key_name = canary(run, "keyname");
    let end_user = canary(run, "enduser");
    let k = t
        .must(
            Method::POST,
            "/tenant/v1/keys",
            &admin,
            Some(&json!({"name": key_name, "role": "member", "end_user": end_user})),
        )
        .await?;
    let member_key = k["key"].as_str().unwrap_or_default().to_owned();
    let member_key_id = k["record"]["id"].as_str().unwrap_or_default().to_owned();
    secrets.push(("API key name", key_name));
    secrets.push(("end user", end_user));
    let member = Cred::Bearer(member_key.clone());
    settle(t, &member).await?;
    let mut tenant = Tenant {
        slug,
        id,
        display_name,
        admin,
        admin_key,
        admin_key_id,
        member,
        member_key,
        member_key_id,
        guard_canary: String::new(),
        secrets,
        prompt: String::new(),
        kb: String::new(),
        kb_id: String::new(),
        doc_id: String::new(),
        subject: String::new(),
    };
    if !plan.bare {
        plant(t, run, plan.role, &mut tenant).await?;
    }
    let settings = t
        .must(
            Method::GET,
            "/tenant/v1/prompt-settings",
            &tenant.admin,
            None,
        )
        .await?;
    tenant.guard_canary = settings["canary"].as_str().unwrap_or_default().to_owned();
    anyhow::ensure!(
        !tenant.guard_canary.is_empty(),
        "the prompt settings carry no canary"
    );
    Ok(tenant)
}

/// A default prompt, custom instructions, a default knowledge base with a document and a
/// member, each carrying its own canary.
async fn plant(t: &Target, run: &str, role: &str, v: &mut Tenant) -> anyhow::Result<()> {
    let prompt = format!("bleed-prompt-{}", role);
    let prompt_secret = canary(run, "prompt");
    t.must(
        Method::POST,
        &format!("/tenant/v1/prompts/{prompt}/versions"),
        &v.admin,
        Some(&json!({"template": format!("You answer for {}. Internal note: {prompt_secret}.", v.display_name),
            "activate": true})),
    )
    .await?;
    v.secrets.push(("system prompt", prompt_secret));
    let instructions = canary(run, "instructions");
    t.must(
        Method::PUT,
        "/tenant/v1/prompt-settings",
        &v.admin,
        Some(&json!({"client_system": "append", "default_prompt": prompt,
            "custom_instructions": format!("Reference {instructions}."), "canary_enabled": true})),
    )
    .await?;
    v.secrets.push(("custom instructions", instructions));
    let kb = format!("bleed-kb-{}", role);
    let made = t
        .must(
            Method::POST,
            "/tenant/v1/knowledge-bases",
            &v.admin,
            Some(&json!({"name": kb, "chunk_tokens": 64, "default": true})),
        )
        .await?;
    let kb_id = made["id"].as_str().unwrap_or(&kb).to_owned();
    let doc_secret = canary(run, "document");
    let doc = t
        .send(
            Method::POST,
            &format!("/tenant/v1/knowledge-bases/{kb}/documents?name=handbook.txt"),
            &v.admin,
            crate::target::Extra {
                raw: Some((
                    "text/plain",
                    format!(
                        "The shipping handbook. Parcels leave the warehouse on Mondays. \
                         The vault code for shipping is {doc_secret}. Refunds take five days."
                    ),
                )),
                ..Default::default()
            },
        )
        .await?;
    anyhow::ensure!(
        doc.ok(),
        "document upload answered {}: {}",
        doc.status,
        doc.body
    );
    let doc_id = doc.json()["id"].as_str().unwrap_or_default().to_owned();
    v.secrets.push(("knowledge-base document", doc_secret));

    let subject = format!("bleed-user-{}-{}", role, run);
    t.must(
        Method::PUT,
        &format!("/tenant/v1/members/{subject}"),
        &v.admin,
        Some(&json!({"role": "member"})),
    )
    .await?;

    v.prompt = prompt;
    v.kb = kb;
    v.kb_id = kb_id;
    v.doc_id = doc_id;
    v.subject = subject;
    Ok(())
}

/// Waits until `cred` is accepted by every replica (a new key is seen at each one's next
/// snapshot reload), up to 30 s.
pub async fn settle(t: &Target, cred: &Cred) -> anyhow::Result<()> {
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
    let mut ok_in_a_row = 0;
    while ok_in_a_row < t.urls.len() * 2 {
        let a = t.get("/tenant/v1/me", cred).await?;
        if a.ok() {
            ok_in_a_row += 1;
        } else {
            ok_in_a_row = 0;
            anyhow::ensure!(
                tokio::time::Instant::now() < deadline,
                "a new credential was still refused after 30 s ({})",
                a.status
            );
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    }
    Ok(())
}

/// Removes a tenant at once (no deletion window): keys shredded, rows removed.
pub async fn remove(t: &Target, platform: &Cred, slug: &str) -> anyhow::Result<()> {
    let a = t
        .send(
            Method::DELETE,
            &format!("/admin/v1/tenants/{slug}?window_secs=0"),
            platform,
            Default::default(),
        )
        .await?;
    anyhow::ensure!(
        a.ok() || a.status == 404,
        "removing {slug} answered {}: {}",
        a.status,
        a.body.chars().take(300).collect::<String>()
    );
    Ok(())
}
