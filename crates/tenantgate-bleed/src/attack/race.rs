//! Limits under a race: a burst of concurrent calls from one tenant, spread over every replica,
//! against its requests-per-minute limit, and against its monthly budget on a priced model (the
//! settled spend may never pass the budget: each call reserves its maximum first); the other
//! tenants keep being served. And one tenant's kill switch stops that tenant only.

use super::Ctx;
use crate::provision::Tenant;
use crate::report::{Family, Verdict};
use futures_util::future::join_all;
use reqwest::Method;
use serde_json::json;

pub const RACE_LIMIT: u64 = 5;
/// The budget tenant's monthly limit, in micro-dollars.
pub const RACE_BUDGET_MICROS: u64 = 100_000;
const BURST: usize = 24;

pub async fn run(c: &mut Ctx<'_>, racer: &Tenant) -> anyhow::Result<()> {
    let model = c.plain_model.to_owned();
    let body = json!({"model": model, "max_tokens": 16, "messages": [{"role": "user", "content": "race"}]});
    let calls = (0..BURST).map(|_| c.t.post("/v1/chat/completions", &racer.member, &body));
    let answers = join_all(calls).await;
    let mut admitted = 0u64;
    let mut refused = 0u64;
    let mut other = Vec::new();
    for a in answers {
        let a = a?;
        match a.status {
            200 => admitted += 1,
            429 => refused += 1,
            s => other.push(s),
        }
    }
    let verdict = if admitted > RACE_LIMIT {
        Verdict::Fail(format!("{admitted} of {BURST} concurrent calls admitted against a limit of {RACE_LIMIT} a minute"))
    } else if admitted == 0 || !other.is_empty() {
        Verdict::Fail(format!("{admitted} admitted, {refused} refused, other statuses {other:?}: the limit did not decide"))
    } else {
        Verdict::Pass
    };
    c.report.push(
        Family::LimitRace,
        format!(
            "{BURST} concurrent calls against {RACE_LIMIT}/min across {} replica(s)",
            c.t.urls.len()
        ),
        verdict,
    );
    served(
        c,
        "the victim is served while another tenant is at its limit",
    )
    .await?;

    // The attacker's kill switch: its own calls stop, the victim's do not.
    c.t.must(
        Method::PUT,
        "/tenant/v1/kill-switch",
        &c.attacker.admin,
        Some(&json!({"enabled": true})),
    )
    .await?;
    super::wait_reload(c).await;
    let a =
        c.t.post("/v1/chat/completions", &c.attacker.member, &body)
            .await?;
    let verdict = if a.body.contains("kill switch") && !a.ok() {
        Verdict::Pass
    } else {
        Verdict::Fail(format!(
            "the attacker's own kill switch did not stop its call ({}): {}",
            a.status,
            a.body.chars().take(200).collect::<String>()
        ))
    };
    c.report.push(
        Family::LimitRace,
        "kill switch stops its own tenant",
        verdict,
    );
    served(
        c,
        "the victim is served while another tenant's kill switch is on",
    )
    .await?;
    c.t.must(
        Method::PUT,
        "/tenant/v1/kill-switch",
        &c.attacker.admin,
        Some(&json!({"enabled": false})),
    )
    .await?;
    Ok(())
}

async fn served(c: &mut Ctx<'_>, what: &str) -> anyhow::Result<()> {
    let body = json!({"model": c.plain_model, "max_tokens": 16, "messages": [{"role": "user", "content": "still here?"}]});
    let mut statuses = Vec::new();
    for _ in 0..c.t.urls.len() {
        statuses.push(
            c.t.post("/v1/chat/completions", &c.victim.member, &body)
                .await?
                .status,
        );
    }
    let verdict = if statuses.iter().all(|s| *s == 200) {
        Verdict::Pass
    } else {
        Verdict::Fail(format!("the victim's calls answered {statuses:?}"))
    };
    c.report.push(Family::LimitRace, what, verdict);
    Ok(())
}

/// A burst against a monthly budget on a priced model: the tenant's settled spend (from its
/// own usage) stays within the budget, and the burst was refused in part.
pub async fn budget(c: &mut Ctx<'_>, spender: &Tenant, model: Option<&str>) -> anyhow::Result<()> {
    let Some(model) = model else {
        c.report.push(
            Family::LimitRace,
            "budget race",
            Verdict::Skip(
                "no --priced-model: a model with a price is needed to race a budget".into(),
            ),
        );
        return Ok(());
    };
    let body = json!({"model": model, "max_tokens": 16, "messages": [{"role": "user", "content": "race"}]});
    let answers =
        join_all((0..BURST).map(|_| c.t.post("/v1/chat/completions", &spender.member, &body)))
            .await;
    let (mut admitted, mut refused) = (0, 0);
    for a in answers {
        match a?.status {
            200 => admitted += 1,
            429 | 402 => refused += 1,
            _ => {}
        }
    }
    let usage =
        c.t.must(
            Method::GET,
            "/tenant/v1/usage?group_by=model",
            &spender.admin,
            None,
        )
        .await?;
    let spent: i64 = usage["data"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|r| r["cost_micros"].as_i64())
        .sum();
    let id =
        format!("{BURST} concurrent calls against a budget of {RACE_BUDGET_MICROS} micro-dollars");
    let verdict = if spent > RACE_BUDGET_MICROS as i64 {
        Verdict::Fail(format!(
            "settled spend {spent} passed the budget {RACE_BUDGET_MICROS} ({admitted} admitted)"
        ))
    } else if spent == 0 {
        Verdict::Skip(format!(
            "nothing was spent ({admitted} admitted, {refused} refused): model {model} is free or the budget admits no call"
        ))
    } else if refused == 0 || admitted == 0 {
        Verdict::Fail(format!(
            "{admitted} admitted, {refused} refused: the budget did not decide"
        ))
    } else {
        Verdict::Pass
    };
    c.report.push(Family::LimitRace, id, verdict);
    served(
        c,
        "the victim is served while another tenant is out of budget",
    )
    .await
}
