//! The tenant named by anything but the credential: headers, the query string and body
//! fields carrying the victim's id or slug. The call must stay the attacker's (its identity,
//! its usage), and the victim's counted usage must not move.

use super::Ctx;
use crate::report::{Family, Verdict};
use crate::target::Extra;
use reqwest::Method;
use serde_json::json;

const HEADERS: [&str; 9] = [
    "x-tenant-id",
    "x-tenant",
    "x-tenantgate-tenant",
    "x-org-id",
    "openai-organization",
    "openai-project",
    "anthropic-workspace",
    "x-forwarded-user",
    "tenant",
];

pub async fn run(c: &mut Ctx<'_>) -> anyhow::Result<()> {
    let (v, x) = (c.victim, c.attacker);
    let before = super::requests_counted(c, v).await?;
    for value in [v.id.as_str(), v.slug.as_str()] {
        for h in HEADERS {
            let a =
                c.t.send(
                    Method::GET,
                    &format!("/tenant/v1/me?tenant={value}&tenant_id={value}"),
                    &x.admin,
                    Extra {
                        headers: &[(h, value)],
                        ..Default::default()
                    },
                )
                .await?;
            let me = a.json();
            let verdict = if a.status == 200 && me["tenant"]["id"] == json!(x.id) {
                Verdict::Pass
            } else if a.status == 200 {
                Verdict::Fail(format!("/tenant/v1/me answered as {}", me["tenant"]))
            } else {
                Verdict::Fail(format!("/tenant/v1/me answered {}", a.status))
            };
            c.report.push(
                Family::Spoofing,
                format!(
                    "header {h}: victim {}",
                    if value == v.id { "id" } else { "slug" }
                ),
                verdict,
            );
        }
    }
    // Model calls claiming the victim in headers and body fields. The gateway may refuse the
    // unknown fields; whatever it does, the call must not be the victim's.
    let model = c.any_model().to_owned();
    let headers: Vec<(&str, &str)> = HEADERS.iter().map(|h| (*h, v.id.as_str())).collect();
    let anthropic = json!({"model": model, "max_tokens": 50, "metadata": {"user_id": v.id},
        "messages": [{"role": "user", "content": "which tenant am I?"}]});
    let calls = [
        (
            "chat with openai body fields",
            "/v1/chat/completions",
            x.member.clone(),
            json!({"model": model, "user": v.slug, "tenant": v.id, "tenant_id": v.id,
                "metadata": {"tenant": v.id, "tenant_id": v.id},
                "messages": [{"role": "user", "content": "which tenant am I?"}]}),
        ),
        (
            "chat with the openai user field",
            "/v1/chat/completions",
            x.member.clone(),
            json!({"model": model, "user": v.id,
                "messages": [{"role": "user", "content": "which tenant am I?"}]}),
        ),
        (
            "messages with metadata.user_id",
            "/v1/messages",
            crate::target::Cred::XApiKey(x.member_key.clone()),
            anthropic,
        ),
    ];
    for (name, path, cred, body) in calls {
        let a =
            c.t.send(
                Method::POST,
                path,
                &cred,
                Extra {
                    headers: &headers,
                    json: Some(&body),
                    ..Default::default()
                },
            )
            .await?;
        let leak = v
            .secret_in(&a.body)
            .map(|l| format!("{l} in the answer ({})", a.status));
        c.report.expect_none(
            Family::Spoofing,
            format!("{name} and headers naming the victim"),
            leak,
        );
    }
    let after = super::requests_counted(c, v).await?;
    let verdict = if after == before {
        Verdict::Pass
    } else {
        Verdict::Fail(format!("the victim's counted requests moved from {before} to {after} during the attacker's spoofed calls"))
    };
    c.report.push(
        Family::Spoofing,
        "victim usage unchanged by spoofed calls",
        verdict,
    );
    Ok(())
}
