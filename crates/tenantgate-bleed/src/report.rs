//! The verdicts: one [`Check`] per attack performed, each mapped to the controls it evidences,
//! rendered for people ([`Report::human`]) and machines ([`Report::json`]).

use serde::Serialize;
use serde_json::{json, Value};

/// What a check attacks; decides the controls it is evidence for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Family {
    /// Forged, tampered or missing credentials (API keys, JWTs).
    Credential,
    /// Tenant named by headers, query or body fields instead of the credential.
    Spoofing,
    /// Every control-plane route x role x another tenant's ids, from `/openapi.json`.
    RouteMatrix,
    /// Requests asking an obedient model for system prompts and other tenants' data.
    PromptInjection,
    /// A model answering with another tenant's canary (plain, streamed, n > 1, translated).
    PoisonedResponse,
    /// Another tenant's identical request looking for a cached answer.
    CacheProbe,
    /// Audit, usage, knowledge and key queries for another tenant's records.
    DataQuery,
    /// Concurrent calls racing one tenant's limit; the others unaffected.
    LimitRace,
    /// After all attacks, the victim's data and state are as planted.
    Integrity,
}

/// A control a check is evidence for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum Control {
    /// NIST SP 800-53 SC-4: information in shared system resources.
    #[serde(rename = "NIST SP 800-53 SC-4")]
    NistSc4,
    /// NIST SP 800-53 AC-3: access enforcement.
    #[serde(rename = "NIST SP 800-53 AC-3")]
    NistAc3,
    #[serde(rename = "OWASP API1:2023 Broken Object Level Authorization")]
    OwaspApi1,
    #[serde(rename = "OWASP API5:2023 Broken Function Level Authorization")]
    OwaspApi5,
    #[serde(rename = "OWASP LLM02:2025 Sensitive Information Disclosure")]
    OwaspLlm02,
    #[serde(rename = "OWASP LLM07:2025 System Prompt Leakage")]
    OwaspLlm07,
    #[serde(rename = "OWASP LLM08:2025 Vector and Embedding Weaknesses")]
    OwaspLlm08,
}

impl Family {
    pub fn controls(self) -> &'static [Control] {
        use Control::*;
        match self {
            Family::Credential => &[NistAc3, OwaspApi5],
            Family::Spoofing => &[NistAc3, OwaspApi1],
            Family::RouteMatrix => &[NistAc3, OwaspApi1, OwaspApi5],
            Family::PromptInjection => &[NistSc4, OwaspLlm02, OwaspLlm07, OwaspLlm08],
            Family::PoisonedResponse => &[NistSc4, OwaspLlm02],
            Family::CacheProbe => &[NistSc4, OwaspLlm02],
            Family::DataQuery => &[NistSc4, NistAc3, OwaspApi1, OwaspLlm08],
            Family::LimitRace => &[NistSc4],
            Family::Integrity => &[NistAc3, OwaspApi1],
        }
    }
}

#[derive(Clone, Debug, Serialize)]
#[serde(tag = "verdict", content = "reason", rename_all = "snake_case")]
pub enum Verdict {
    Pass,
    /// A leak or a broken control: what crossed, and where.
    Fail(String),
    /// The deployment lacks what the attack needs (said why); never counted as a pass.
    Skip(String),
}

#[derive(Clone, Debug, Serialize)]
pub struct Check {
    pub id: String,
    pub family: Family,
    pub controls: &'static [Control],
    #[serde(flatten)]
    pub verdict: Verdict,
}

#[derive(Default)]
pub struct Report {
    pub checks: Vec<Check>,
    /// Setup and cleanup notes (tenants made and removed).
    pub notes: Vec<String>,
}

impl Report {
    pub fn push(&mut self, family: Family, id: impl Into<String>, verdict: Verdict) {
        self.checks.push(Check {
            id: id.into(),
            family,
            controls: family.controls(),
            verdict,
        });
    }

    /// Passes unless `leak` names something.
    pub fn expect_none(&mut self, family: Family, id: impl Into<String>, leak: Option<String>) {
        let v = match leak {
            None => Verdict::Pass,
            Some(l) => Verdict::Fail(l),
        };
        self.push(family, id, v);
    }

    pub fn counts(&self) -> (usize, usize, usize) {
        let mut c = (0, 0, 0);
        for k in &self.checks {
            match k.verdict {
                Verdict::Pass => c.0 += 1,
                Verdict::Fail(_) => c.1 += 1,
                Verdict::Skip(_) => c.2 += 1,
            }
        }
        c
    }

    pub fn failed(&self) -> bool {
        self.counts().1 > 0
    }

    pub fn json(&self, targets: &[String], run: &str) -> Value {
        let (p, f, s) = self.counts();
        json!({
            "tool": "tenantgate bleed-test",
            "version": env!("CARGO_PKG_VERSION"),
            "run": run,
            "targets": targets,
            "summary": {"passed": p, "failed": f, "skipped": s, "leak": f > 0},
            "notes": self.notes,
            "checks": self.checks,
        })
    }

    /// Every failure and skip in full, passes counted per family, then the controls covered.
    pub fn human(&self, targets: &[String], run: &str) -> String {
        use std::fmt::Write;
        let mut out = String::new();
        let _ = writeln!(
            out,
            "tenantgate bleed-test {run} against {}",
            targets.join(", ")
        );
        for n in &self.notes {
            let _ = writeln!(out, "  note: {n}");
        }
        let mut families: Vec<Family> = Vec::new();
        for c in &self.checks {
            if !families.contains(&c.family) {
                families.push(c.family);
            }
        }
        for f in families {
            let of: Vec<&Check> = self.checks.iter().filter(|c| c.family == f).collect();
            let pass = of
                .iter()
                .filter(|c| matches!(c.verdict, Verdict::Pass))
                .count();
            let names: Vec<String> = f
                .controls()
                .iter()
                .map(|c| {
                    serde_json::to_value(c)
                        .ok()
                        .and_then(|v| v.as_str().map(str::to_owned))
                        .unwrap_or_default()
                })
                .collect();
            let _ = writeln!(
                out,
                "\n{:?}: {pass}/{} passed  [{}]",
                f,
                of.len(),
                names.join("; ")
            );
            for c in of {
                match &c.verdict {
                    Verdict::Pass => {}
                    Verdict::Fail(r) => {
                        let _ = writeln!(out, "  LEAK  {}: {r}", c.id);
                    }
                    Verdict::Skip(r) => {
                        let _ = writeln!(out, "  skip  {}: {r}", c.id);
                    }
                }
            }
        }
        let (p, f, s) = self.counts();
        let _ = writeln!(
            out,
            "\n{}: {p} passed, {f} failed, {s} skipped",
            if f > 0 { "LEAK FOUND" } else { "no leak found" }
        );
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failure_fails_the_run_and_is_named_in_both_reports_a_skip_is_not_a_pass() {
        let mut r = Report::default();
        r.push(Family::RouteMatrix, "GET /x as Anonymous", Verdict::Pass);
        r.push(
            Family::CacheProbe,
            "probe",
            Verdict::Skip("cache off".into()),
        );
        assert!(!r.failed());
        r.expect_none(
            Family::PoisonedResponse,
            "chat",
            Some("tenant v's guard canary reached the attacker".into()),
        );
        assert!(r.failed());
        assert_eq!(r.counts(), (1, 1, 1));
        let j = r.json(&["http://t".into()], "run1");
        assert_eq!(
            j["summary"],
            json!({"passed": 1, "failed": 1, "skipped": 1, "leak": true})
        );
        let failed = &j["checks"][2];
        assert_eq!(failed["verdict"], "fail");
        assert_eq!(
            failed["reason"],
            "tenant v's guard canary reached the attacker"
        );
        assert_eq!(
            failed["controls"],
            json!([
                "NIST SP 800-53 SC-4",
                "OWASP LLM02:2025 Sensitive Information Disclosure"
            ])
        );
        let h = r.human(&["http://t".into()], "run1");
        assert!(
            h.contains("LEAK  chat: tenant v's guard canary reached the attacker"),
            "{h}"
        );
        assert!(h.contains("skip  probe: cache off"), "{h}");
        assert!(
            h.ends_with("LEAK FOUND: 1 passed, 1 failed, 1 skipped\n"),
            "{h}"
        );
    }

    #[test]
    fn every_family_maps_to_a_nist_control() {
        use Family::*;
        for f in [
            Credential,
            Spoofing,
            RouteMatrix,
            PromptInjection,
            PoisonedResponse,
            CacheProbe,
            DataQuery,
            LimitRace,
            Integrity,
        ] {
            assert!(
                f.controls()
                    .iter()
                    .any(|c| matches!(c, Control::NistSc4 | Control::NistAc3)),
                "{f:?}"
            );
        }
    }
}
