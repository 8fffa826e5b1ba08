//! The attacker's own read APIs asked for the victim's records: audit (filtered by the
//! victim's key and user, exported), usage by key and user, keys, members, prompts, knowledge
//! bases and a search for the victim's document. Nothing of the victim may come back.

use super::Ctx;
use crate::report::Family;
use crate::target::Cred;
use serde_json::json;

pub async fn run(c: &mut Ctx<'_>) -> anyhow::Result<()> {
    let (v, x) = (c.victim, c.attacker);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or_default();
    let from = now - 3_600_000;
    let reads = [
        "/tenant/v1/me".to_owned(),
        "/tenant/v1/keys".to_owned(),
        "/tenant/v1/members".to_owned(),
        "/tenant/v1/prompts".to_owned(),
        "/tenant/v1/prompt-settings".to_owned(),
        "/tenant/v1/knowledge-bases".to_owned(),
        format!("/tenant/v1/knowledge-bases/{}", x.kb),
        "/tenant/v1/audit/records?limit=500".to_owned(),
        format!("/tenant/v1/audit/records?key_id={}", v.member_key_id),
        format!("/tenant/v1/audit/records?key_id={}", v.admin_key_id),
        format!("/tenant/v1/audit/records?user={}", v.subject),
        format!("/tenant/v1/audit/export?from={from}&to={}", now + 60_000),
        format!(
            "/tenant/v1/audit/export?from={from}&to={}&format=csv",
            now + 60_000
        ),
        "/tenant/v1/usage?group_by=key".to_owned(),
        "/tenant/v1/usage?group_by=user".to_owned(),
        "/tenant/v1/usage?group_by=model".to_owned(),
        format!("/tenant/v1/usage?group_by=minute&from={from}"),
        "/tenant/v1/limits".to_owned(),
        "/tenant/v1/break-glass".to_owned(),
        "/tenant/v1/provider-keys".to_owned(),
        "/tenant/v1/export".to_owned(),
        "/v1/models".to_owned(),
        "/v1/fine_tuning/jobs".to_owned(),
        "/v1/files".to_owned(),
    ];
    for (role, cred) in [("admin", &x.admin), ("member", &x.member)] {
        for path in &reads {
            let a = c.t.get(path, cred).await?;
            let leak = v
                .secret_in(&a.body)
                .or_else(|| {
                    [&v.id, &v.admin_key_id, &v.member_key_id, &v.doc_id]
                        .iter()
                        .find(|s| !s.is_empty() && a.body.contains(s.as_str()))
                        .map(|s| format!("the victim's identifier {s}"))
                })
                .map(|l| format!("{l} in the answer ({})", a.status));
            c.report.expect_none(
                Family::DataQuery,
                format!("{role} GET {}", path.split('?').next().unwrap_or(path)) + &query_tag(path),
                leak,
            );
        }
    }
    // Searching for the victim's document by its words, in the attacker's knowledge base.
    for q in [
        "vault code for shipping",
        "shipping handbook parcels Mondays",
    ] {
        let a =
            c.t.post(
                &format!("/tenant/v1/knowledge-bases/{}/search", x.kb),
                &x.member,
                &json!({"query": q, "top_k": 50}),
            )
            .await?;
        let leak = v
            .secret_in(&a.body)
            .map(|l| format!("{l} in the search results ({})", a.status));
        c.report
            .expect_none(Family::DataQuery, format!("knowledge search {q:?}"), leak);
    }
    // Embeddings are per call, never a shared index: a call answers for its own input only.
    let a =
        c.t.post(
            "/v1/embeddings",
            &Cred::Bearer(x.member_key.clone()),
            &json!({"model": c.plain_model, "input": "vault code for shipping"}),
        )
        .await?;
    let leak = v
        .secret_in(&a.body)
        .map(|l| format!("{l} in an embeddings answer"));
    c.report.expect_none(Family::DataQuery, "embeddings", leak);
    Ok(())
}

fn query_tag(path: &str) -> String {
    match path.split_once('?') {
        Some((_, q)) => format!(
            " ?{}",
            q.split('&')
                .map(|kv| kv.split('=').next().unwrap_or(""))
                .collect::<Vec<_>>()
                .join("&")
        ),
        None => String::new(),
    }
}
