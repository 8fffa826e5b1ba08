//! `tenantgate prompt ...`: a client of the tenant API (`/tenant/v1/prompts...`) that acts as
//! the tenant of its API key, never as the operator.

use crate::print;
use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use serde_json::json;
use std::path::PathBuf;

#[derive(Args)]
pub(crate) struct PromptArgs {
    /// Gateway base URL.
    #[arg(long, env = "TENANTGATE_URL", default_value = "http://127.0.0.1:8080")]
    url: String,
    /// An API key of the tenant (tenant_admin to write or read bodies). The tenant is the key's.
    #[arg(long, env = "TENANTGATE_API_KEY", hide_env_values = true)]
    api_key: String,
    #[command(subcommand)]
    pub(crate) cmd: PromptCmd,
}

#[derive(Subcommand)]
pub(crate) enum PromptCmd {
    /// List prompts (names and versions, no bodies).
    List,
    /// A prompt's versions: number, author, time, SHA-256, active flag.
    Versions { name: String },
    /// Add a new version from a file (minijinja template).
    Push {
        name: String,
        #[arg(long)]
        file: PathBuf,
        /// Make the new version active at once (the first version always is).
        #[arg(long)]
        activate: bool,
    },
    /// Print one version's template (the active one by default).
    Show {
        name: String,
        #[arg(long)]
        version: Option<u32>,
    },
    /// Point the prompt at an existing version (rollback).
    Activate {
        name: String,
        #[arg(long)]
        version: u32,
    },
    /// Unified diff between two versions.
    Diff {
        name: String,
        #[arg(long)]
        from: u32,
        #[arg(long)]
        to: u32,
    },
    /// Show the prompt settings, or replace them when any flag is given.
    Settings {
        /// refuse | append | allow: what happens to a client's own system message.
        #[arg(long)]
        client_system: Option<String>,
        /// Prompt applied when a request names none.
        #[arg(long)]
        default: Option<String>,
        #[arg(long)]
        custom_instructions: Option<String>,
        #[arg(long)]
        canary: Option<bool>,
    },
    /// Export every prompt and version as a zip.
    Export {
        #[arg(long)]
        out: PathBuf,
    },
    /// Import an export into this tenant (all or nothing).
    Import { file: PathBuf },
}

/// One call to the tenant API; a non-2xx answer becomes an error carrying its message.
async fn api(
    args: &PromptArgs,
    method: reqwest::Method,
    path: &str,
    body: Option<serde_json::Value>,
) -> Result<reqwest::Response> {
    let url = format!("{}/tenant/v1{path}", args.url.trim_end_matches('/'));
    let mut rb = reqwest::Client::new()
        .request(method, &url)
        .bearer_auth(&args.api_key);
    if let Some(b) = body {
        rb = rb.json(&b);
    }
    let resp = rb
        .send()
        .await
        .with_context(|| format!("cannot reach {url}"))?;
    if !resp.status().is_success() {
        let status = resp.status();
        let v: serde_json::Value = resp.json().await.unwrap_or_default();
        bail!(
            "{status}: {}",
            v["error"]["message"].as_str().unwrap_or("request failed")
        );
    }
    Ok(resp)
}

pub(crate) async fn prompt(args: PromptArgs) -> Result<()> {
    use reqwest::Method;
    let value = |r: reqwest::Response| async move {
        r.json::<serde_json::Value>()
            .await
            .context("invalid response")
    };
    match &args.cmd {
        PromptCmd::List => print(&value(api(&args, Method::GET, "/prompts", None).await?).await?),
        PromptCmd::Versions { name } => print(
            &value(
                api(
                    &args,
                    Method::GET,
                    &format!("/prompts/{name}/versions"),
                    None,
                )
                .await?,
            )
            .await?,
        ),
        PromptCmd::Push {
            name,
            file,
            activate,
        } => {
            let template = std::fs::read_to_string(file)
                .with_context(|| format!("read {}", file.display()))?;
            let r = api(
                &args,
                Method::POST,
                &format!("/prompts/{name}/versions"),
                Some(json!({"template": template, "activate": activate})),
            )
            .await?;
            print(&value(r).await?);
        }
        PromptCmd::Show { name, version } => {
            let version = match version {
                Some(v) => *v,
                None => {
                    let list = value(
                        api(
                            &args,
                            Method::GET,
                            &format!("/prompts/{name}/versions"),
                            None,
                        )
                        .await?,
                    )
                    .await?;
                    let active = list["data"]
                        .as_array()
                        .and_then(|d| d.iter().find(|v| v["active"] == true))
                        .and_then(|v| v["version"].as_u64());
                    u32::try_from(active.context("no active version")?)?
                }
            };
            let v = value(
                api(
                    &args,
                    Method::GET,
                    &format!("/prompts/{name}/versions/{version}"),
                    None,
                )
                .await?,
            )
            .await?;
            print!("{}", v["template"].as_str().unwrap_or_default());
        }
        PromptCmd::Activate { name, version } => print(
            &value(
                api(
                    &args,
                    Method::POST,
                    &format!("/prompts/{name}/activate"),
                    Some(json!({"version": version})),
                )
                .await?,
            )
            .await?,
        ),
        PromptCmd::Diff { name, from, to } => {
            let v = value(
                api(
                    &args,
                    Method::GET,
                    &format!("/prompts/{name}/diff?from={from}&to={to}"),
                    None,
                )
                .await?,
            )
            .await?;
            print!("{}", v["diff"].as_str().unwrap_or_default());
        }
        PromptCmd::Settings {
            client_system,
            default,
            custom_instructions,
            canary,
        } => {
            let mut s = value(api(&args, Method::GET, "/prompt-settings", None).await?).await?;
            if client_system.is_some()
                || default.is_some()
                || custom_instructions.is_some()
                || canary.is_some()
            {
                let body = json!({
                    "client_system": client_system.clone().map(serde_json::Value::String).unwrap_or(s["client_system"].clone()),
                    "default_prompt": default.clone().map(serde_json::Value::String).unwrap_or(s["default_prompt"].clone()),
                    "custom_instructions": custom_instructions.clone().map(serde_json::Value::String).unwrap_or(s["custom_instructions"].clone()),
                    "canary_enabled": canary.map(serde_json::Value::Bool).unwrap_or(s["canary_enabled"].clone()),
                });
                s = value(api(&args, Method::PUT, "/prompt-settings", Some(body)).await?).await?;
            }
            print(&s);
        }
        PromptCmd::Export { out } => {
            let bytes = api(&args, Method::GET, "/prompt-archive", None)
                .await?
                .bytes()
                .await?;
            std::fs::write(out, &bytes).with_context(|| format!("write {}", out.display()))?;
            print(&json!({"written": out.display().to_string(), "bytes": bytes.len()}));
        }
        PromptCmd::Import { file } => {
            let bytes = std::fs::read(file).with_context(|| format!("read {}", file.display()))?;
            let url = format!(
                "{}/tenant/v1/prompt-archive",
                args.url.trim_end_matches('/')
            );
            let resp = reqwest::Client::new()
                .post(&url)
                .bearer_auth(&args.api_key)
                .header("content-type", "application/zip")
                .body(bytes)
                .send()
                .await?;
            let status = resp.status();
            let v: serde_json::Value = resp.json().await.unwrap_or_default();
            if !status.is_success() {
                bail!(
                    "{status}: {}",
                    v["error"]["message"].as_str().unwrap_or("import failed")
                );
            }
            print(&v);
        }
    }
    Ok(())
}
