//! `tenantgate bleed-test`: proves tenant isolation on a live deployment by attacking it.
//!
//! # Layout
//!
//! In the order a run goes:
//!
//! - [`target`]: the deployment as an outsider reaches it (replicas round-robin, credentials).
//! - [`provision`]: canary tenants made through the platform API, a unique canary planted in
//!   each place a tenant keeps data, removed at the end.
//! - [`attack`]: from the attacker tenant (or none, or the platform) at the victim:
//!   credentials, spoofed tenant fields, prompt injection, poisoned responses, cache probes,
//!   data queries, limit races, every route x role x foreign id, then the victim's integrity.
//! - [`report`]: one check per attack, mapped to NIST 800-53 and OWASP; human and JSON.
//!
//! Pass and fail are decided by canaries and statuses only (no model judges). The run uses
//! only the public HTTP surface and names no gateway crate: it is what an attacker holding a
//! tenant's credentials could do.

pub mod attack;
pub mod provision;
pub mod report;
pub mod target;

use attack::Ctx;
use provision::{Plan, Tenant};
use report::{Family, Report, Verdict};
use reqwest::Method;
use serde_json::json;
use std::path::PathBuf;
use std::time::Duration;
use target::{Cred, Target};

/// `tenantgate bleed-test`'s arguments.
#[derive(clap::Args, Debug, Clone)]
pub struct Args {
    /// A replica's base URL (repeat for each replica; calls go round-robin).
    #[arg(long = "target", required = true, value_name = "URL")]
    pub targets: Vec<String>,
    /// A platform admin's bearer token (an OIDC JWT from the platform issuer).
    #[arg(
        long,
        env = "TENANTGATE_BLEED_PLATFORM_CREDENTIAL",
        hide_env_values = true
    )]
    pub platform_credential: String,
    /// A model that answers with everything it received (a mockllm upstream:
    /// `mock:echo_all`), for prompt injection and cache probes.
    #[arg(long, value_name = "MODEL")]
    pub echo_model: Option<String>,
    /// A model whose upstream obeys mockllm directives, answering with what the request
    /// chooses (repeat: one OpenAI-format and one Anthropic-format model cover translation
    /// both ways).
    #[arg(long = "poison-model", value_name = "MODEL")]
    pub poison_models: Vec<String>,
    /// A model with a price, for the budget race (a canary tenant with a small monthly budget
    /// spends it in one burst).
    #[arg(long, value_name = "MODEL")]
    pub priced_model: Option<String>,
    /// The platform IdP's signing key (PEM; test deployments only): adds genuinely signed
    /// but invalid tokens (expired, wrong audience, not yet valid, foreign issuer).
    #[arg(long, value_name = "PEM_FILE")]
    pub idp_signing_key: Option<PathBuf>,
    /// Where to write the JSON report (the human report goes to stdout).
    #[arg(long, value_name = "FILE")]
    pub report: Option<PathBuf>,
    /// Print the JSON report to stdout instead of the human one.
    #[arg(long, value_enum, default_value_t = Format::Human)]
    pub format: Format,
    /// Keep the canary tenants (to look at them); by default they are removed.
    #[arg(long)]
    pub keep: bool,
    /// How long a change takes to reach every replica (their snapshot reload interval).
    #[arg(long, default_value_t = 1000, value_name = "MS")]
    pub reload_ms: u64,
    /// Per-request timeout.
    #[arg(long, default_value_t = 60, value_name = "SECS")]
    pub timeout_secs: u64,
}

#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Human,
    Json,
}

/// The run's outcome: 0 no leak, 1 a leak or broken control, 2 the run could not be made.
pub async fn main(args: Args) -> i32 {
    let run_id = hex::encode(rand::random::<[u8; 4]>());
    match run(&args, &run_id).await {
        Ok(report) => {
            let json = report.json(&args.targets, &run_id);
            if let Some(path) = &args.report {
                if let Err(e) =
                    std::fs::write(path, serde_json::to_vec_pretty(&json).unwrap_or_default())
                {
                    eprintln!("bleed-test: writing {}: {e}", path.display());
                    return 2;
                }
            }
            match args.format {
                Format::Human => print!("{}", report.human(&args.targets, &run_id)),
                Format::Json => println!(
                    "{}",
                    serde_json::to_string_pretty(&json).unwrap_or_default()
                ),
            }
            i32::from(report.failed())
        }
        Err(e) => {
            eprintln!("bleed-test {run_id}: could not run: {e:#}");
            2
        }
    }
}

pub async fn run(args: &Args, run: &str) -> anyhow::Result<Report> {
    let t = Target::new(args.targets.clone(), Duration::from_secs(args.timeout_secs))?;
    let platform = Cred::Bearer(args.platform_credential.clone());
    t.must(Method::GET, "/admin/v1/health", &platform, None)
        .await?;
    let idp_key = match &args.idp_signing_key {
        None => None,
        Some(p) => Some(signing_key(&std::fs::read(p)?)?),
    };
    let mut made: Vec<String> = Vec::new();
    let result = async {
        let victim = provision::tenant(
            &t,
            &platform,
            Plan {
                run,
                role: "v",
                limits: None,
                bare: false,
            },
        )
        .await?;
        made.push(victim.slug.clone());
        let attacker = provision::tenant(
            &t,
            &platform,
            Plan {
                run,
                role: "x",
                limits: None,
                bare: false,
            },
        )
        .await?;
        made.push(attacker.slug.clone());
        let racer = provision::tenant(
            &t,
            &platform,
            Plan {
                run,
                role: "r",
                limits: Some(json!({"requests_per_minute": attack::race::RACE_LIMIT})),
                bare: false,
            },
        )
        .await?;
        made.push(racer.slug.clone());
        let spender = provision::tenant(
            &t,
            &platform,
            Plan {
                run,
                role: "b",
                limits: Some(json!({"monthly_spend_micros": attack::race::RACE_BUDGET_MICROS})),
                bare: false,
            },
        )
        .await?;
        made.push(spender.slug.clone());
        // The cache probe's pair: bare tenants, whose identical requests are composed
        // identically, so only the cache key's tenant keeps them apart.
        let mut bare = Vec::new();
        for role in ["cv", "cx"] {
            let b = provision::tenant(
                &t,
                &platform,
                Plan {
                    run,
                    role,
                    limits: None,
                    bare: true,
                },
            )
            .await?;
            made.push(b.slug.clone());
            bare.push(b);
        }
        made.push(format!("bleed-{run}-evil"));
        let models = t
            .must(Method::GET, "/v1/models", &victim.admin, None)
            .await?;
        let listed: Vec<String> = models["data"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|m| m["id"].as_str().map(str::to_owned))
            .collect();
        for m in args
            .echo_model
            .iter()
            .chain(&args.poison_models)
            .chain(&args.priced_model)
        {
            anyhow::ensure!(
                listed.contains(m),
                "model {m} is not offered to a new tenant (offered: {listed:?})"
            );
        }
        let plain = args
            .echo_model
            .clone()
            .or_else(|| listed.iter().find(|m| *m == "demo").cloned())
            .or_else(|| listed.first().cloned())
            .ok_or_else(|| anyhow::anyhow!("a new tenant is offered no model"))?;
        let mut report = Report::default();
        report.notes.push(format!(
            "canary tenants {}, {}, {}, {}, {}, {}",
            victim.slug, attacker.slug, racer.slug, spender.slug, bare[0].slug, bare[1].slug
        ));
        let victim = plant_calls(&t, victim, run, &plain).await?;
        let mut c = Ctx {
            t: &t,
            platform: &platform,
            victim: &victim,
            attacker: &attacker,
            echo: args.echo_model.as_deref(),
            poison: &args.poison_models,
            plain_model: &plain,
            idp_key,
            reload: Duration::from_millis(args.reload_ms),
            report,
        };
        let pair = (&bare[0], &bare[1]);
        attacks(
            &mut c,
            &racer,
            &spender,
            pair,
            args.priced_model.as_deref(),
            run,
        )
        .await;
        Ok::<Report, anyhow::Error>(c.report)
    }
    .await;
    let mut cleanup = Vec::new();
    if !args.keep {
        for slug in &made {
            if let Err(e) = provision::remove(&t, &platform, slug).await {
                cleanup.push(format!("{e:#}"));
            }
        }
    }
    let mut report = result?;
    if args.keep {
        report.notes.push("canary tenants kept (--keep)".into());
    } else if cleanup.is_empty() {
        report.notes.push("canary tenants removed".into());
    } else {
        for e in cleanup {
            report.push(Family::Integrity, "cleanup", Verdict::Fail(e));
        }
    }
    Ok(report)
}

/// Every attack in turn; one that cannot finish is a failure (a run that skipped an attack
/// by erroring must not look clean).
async fn attacks(
    c: &mut Ctx<'_>,
    racer: &Tenant,
    spender: &Tenant,
    bare: (&Tenant, &Tenant),
    priced: Option<&str>,
    run: &str,
) {
    macro_rules! step {
        ($name:literal, $fam:expr, $e:expr) => {
            if let Err(e) = $e {
                c.report.push(
                    $fam,
                    concat!($name, " (could not finish)"),
                    Verdict::Fail(format!("{e:#}")),
                );
            }
        };
    }
    step!(
        "credentials",
        Family::Credential,
        attack::credential::run(c).await
    );
    step!("spoofing", Family::Spoofing, attack::spoof::run(c).await);
    step!(
        "prompt injection",
        Family::PromptInjection,
        attack::model::injection(c).await
    );
    step!(
        "poisoned responses",
        Family::PoisonedResponse,
        attack::model::poisoned(c, "").await
    );
    step!(
        "poisoned responses, weakened policy",
        Family::PoisonedResponse,
        attack::model::poisoned_weakened(c).await
    );
    step!(
        "cache probe",
        Family::CacheProbe,
        attack::model::cache_probe(c, bare).await
    );
    step!(
        "data queries",
        Family::DataQuery,
        attack::data::run(c).await
    );
    step!(
        "limit race",
        Family::LimitRace,
        attack::race::run(c, racer).await
    );
    step!(
        "budget race",
        Family::LimitRace,
        attack::race::budget(c, spender, priced).await
    );
    match attack::routes::run(c, run).await {
        Ok(n) => c.report.notes.push(format!(
            "{n} control-plane operations from /openapi.json attacked"
        )),
        Err(e) => c.report.push(
            Family::RouteMatrix,
            "route matrix (could not finish)",
            Verdict::Fail(format!("{e:#}")),
        ),
    }
    step!(
        "integrity",
        Family::Integrity,
        attack::integrity::run(c).await
    );
}

/// The victim's own calls: audited, counted, and (with a caching deployment) cached, each
/// carrying a canary of their own.
async fn plant_calls(t: &Target, mut v: Tenant, run: &str, model: &str) -> anyhow::Result<Tenant> {
    let chat = provision::canary(run, "chat");
    for stream in [false, true] {
        let body = json!({"model": model, "stream": stream, "max_tokens": 64, "user": v.subject,
            "messages": [{"role": "user", "content": format!("Remember {chat} for shipping.")}]});
        t.must(Method::POST, "/v1/chat/completions", &v.member, Some(&body))
            .await?;
    }
    v.secrets.push(("chat message", chat));
    Ok(v)
}

fn signing_key(pem: &[u8]) -> anyhow::Result<jsonwebtoken::EncodingKey> {
    jsonwebtoken::EncodingKey::from_rsa_pem(pem)
        .or_else(|_| jsonwebtoken::EncodingKey::from_ec_pem(pem))
        .or_else(|_| jsonwebtoken::EncodingKey::from_ed_pem(pem))
        .map_err(|e| anyhow::anyhow!("--idp-signing-key: not an RSA, EC or Ed25519 PEM key: {e}"))
}
