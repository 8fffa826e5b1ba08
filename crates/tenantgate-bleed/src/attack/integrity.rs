//! After every attack: the victim's credentials, prompt, knowledge, members, switches, policy
//! and standing are exactly as planted. A write that crossed tenants shows up here even when
//! its answer looked harmless.

use super::Ctx;
use crate::report::{Family, Verdict};
use reqwest::Method;
use serde_json::json;

pub async fn run(c: &mut Ctx<'_>) -> anyhow::Result<()> {
    let v = c.victim;
    let mut checks: Vec<(String, Option<String>)> = Vec::new();
    for (name, cred) in [("admin key", &v.admin), ("member key", &v.member)] {
        let a = c.t.get("/tenant/v1/me", cred).await?;
        checks.push((
            format!("victim's {name} still works"),
            (a.status != 200).then(|| format!("answered {}", a.status)),
        ));
    }
    let a =
        c.t.get(
            &format!("/tenant/v1/prompts/{}/versions", v.prompt),
            &v.admin,
        )
        .await?;
    let versions = a.json()["data"]
        .as_array()
        .map(Vec::len)
        .unwrap_or(usize::MAX);
    checks.push((
        "victim's prompt has only its own version".into(),
        (a.status != 200 || versions != 1).then(|| {
            format!(
                "answered {} with {versions} versions: {}",
                a.status,
                a.body.chars().take(300).collect::<String>()
            )
        }),
    ));
    let a =
        c.t.get(
            &format!("/tenant/v1/prompts/{}/versions/1", v.prompt),
            &v.admin,
        )
        .await?;
    let planted = v
        .secrets
        .iter()
        .find(|(w, _)| *w == "system prompt")
        .map(|(_, s)| s.as_str())
        .unwrap_or("");
    checks.push((
        "victim's prompt text as planted".into(),
        (!a.body.contains(planted)).then(|| format!("answered {}", a.status)),
    ));
    let a =
        c.t.get(&format!("/tenant/v1/knowledge-bases/{}", v.kb), &v.admin)
            .await?;
    checks.push((
        "victim's knowledge base and document present".into(),
        (a.status != 200 || !a.body.contains(&v.doc_id)).then(|| {
            format!(
                "answered {}: {}",
                a.status,
                a.body.chars().take(300).collect::<String>()
            )
        }),
    ));
    let doc = v
        .secrets
        .iter()
        .find(|(w, _)| *w == "knowledge-base document")
        .map(|(_, s)| s.clone())
        .unwrap_or_default();
    let a =
        c.t.post(
            &format!("/tenant/v1/knowledge-bases/{}/search", v.kb),
            &v.member,
            &json!({"query": "vault code for shipping"}),
        )
        .await?;
    checks.push((
        "victim's search still finds its document".into(),
        (!a.body.contains(&doc)).then(|| format!("answered {}", a.status)),
    ));
    let a = c.t.get("/tenant/v1/members", &v.admin).await?;
    let role = a.json()["data"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|m| m["subject"] == json!(v.subject))
        .map(|m| m["role"].clone());
    checks.push((
        "victim's member keeps its role".into(),
        (role != Some(json!("member"))).then(|| format!("role now {role:?}")),
    ));
    let a = c.t.get("/tenant/v1/limits", &v.admin).await?;
    checks.push((
        "victim's kill switch untouched".into(),
        (a.json()["kill_switch"] != json!(false)).then(|| {
            format!(
                "answered {}: {}",
                a.status,
                a.body.chars().take(200).collect::<String>()
            )
        }),
    ));
    let a = c.t.get("/tenant/v1/guard-policy", &v.admin).await?;
    checks.push((
        "victim's guard policy untouched".into(),
        (a.json()["cross_tenant"] != json!("block"))
            .then(|| format!("now {}", a.body.chars().take(200).collect::<String>())),
    ));
    let a =
        c.t.must(
            Method::GET,
            &format!("/admin/v1/tenants/{}", v.slug),
            c.platform,
            None,
        )
        .await?;
    let status = a["status"].clone();
    checks.push((
        "victim still active".into(),
        (status != json!("active")).then(|| format!("status {status}")),
    ));
    let body = json!({"model": c.plain_model, "max_tokens": 16, "messages": [{"role": "user", "content": "after"}]});
    let a = c.t.post("/v1/chat/completions", &v.member, &body).await?;
    checks.push((
        "victim's calls still served".into(),
        (a.status != 200).then(|| format!("answered {}", a.status)),
    ));
    for (id, problem) in checks {
        c.report.push(
            Family::Integrity,
            id,
            problem.map_or(Verdict::Pass, Verdict::Fail),
        );
    }
    Ok(())
}
