//! Stages guard-inbound and guard-outbound: the leak detectors of `tenantgate-guard` applied
//! with the tenant's policy. Every finding is an incident: a WARN event (tenant, detector,
//! action, direction; never the text) and a counter served at `/metrics`.

use crate::error::GatewayError;
use crate::pipeline::TenantContext;
use crate::state::AppState;
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::sync::Mutex;
use tenantgate_guard::{redact, Action, Detector, Direction, Hit};

/// Incident counters by (detector, action, direction).
#[derive(Default)]
pub struct Incidents(Mutex<BTreeMap<(&'static str, &'static str, &'static str), u64>>);

impl Incidents {
    fn record(&self, d: Detector, a: Action, dir: Direction) {
        if let Ok(mut m) = self.0.lock() {
            *m.entry((d.as_str(), action_str(a), dir_str(dir)))
                .or_default() += 1;
        }
    }

    /// Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut out = String::from("# HELP tenantgate_guard_incidents_total Leak-guard findings.\n# TYPE tenantgate_guard_incidents_total counter\n");
        if let Ok(m) = self.0.lock() {
            for ((d, a, dir), n) in m.iter() {
                out.push_str(&format!("tenantgate_guard_incidents_total{{detector=\"{d}\",action=\"{a}\",direction=\"{dir}\"}} {n}\n"));
            }
        }
        out
    }

    pub fn total(&self) -> u64 {
        self.0.lock().map(|m| m.values().sum()).unwrap_or(0)
    }
}

fn action_str(a: Action) -> &'static str {
    match a {
        Action::Block => "block",
        Action::Redact => "redact",
        Action::Flag => "flag",
        Action::Off => "off",
    }
}

fn dir_str(d: Direction) -> &'static str {
    match d {
        Direction::Inbound => "inbound",
        Direction::InboundData => "inbound_data",
        Direction::Outbound => "outbound",
    }
}

/// What to do with a piece of text after its hits were weighed against the policy.
pub enum Verdict {
    Clean,
    Redacted(String),
}

impl AppState {
    /// Scans one text. A `block` finding is an error; `redact` findings come back as the
    /// redacted text; `flag` findings are recorded only.
    pub fn guard_text(
        &self,
        ctx: &TenantContext,
        text: &str,
        dir: Direction,
    ) -> Result<Verdict, GatewayError> {
        let index = self.0.auth.load();
        let policy = index.guard_policy(ctx.principal.scope.tenant_id());
        let hits = index
            .scanner
            .scan(ctx.principal.scope.tenant_id(), text, dir, policy);
        self.weigh(ctx, text, &hits, policy, dir)
    }

    pub(crate) fn weigh(
        &self,
        ctx: &TenantContext,
        text: &str,
        hits: &[Hit],
        policy: &tenantgate_guard::Policy,
        dir: Direction,
    ) -> Result<Verdict, GatewayError> {
        if hits.is_empty() {
            return Ok(Verdict::Clean);
        }
        let mut redactions = Vec::new();
        let mut blocked = None;
        for h in hits {
            let action = policy.action(h.detector);
            self.record_incident(ctx, policy, h.detector, action, dir);
            match action {
                Action::Block => blocked = blocked.or(Some(h.detector.as_str())),
                Action::Redact => redactions.push(*h),
                Action::Flag | Action::Off => {}
            }
        }
        if let Some(d) = blocked {
            return Err(match dir {
                Direction::Outbound => GatewayError::OutputBlocked(d),
                Direction::Inbound | Direction::InboundData => GatewayError::InputBlocked(d),
            });
        }
        Ok(if redactions.is_empty() {
            Verdict::Clean
        } else {
            Verdict::Redacted(redact(text, &redactions))
        })
    }

    /// One finding: a counter, a WARN event naming tenant, detector, action and direction, and
    /// (if configured) a webhook POST to the platform and to the tenant. Never the text.
    pub(crate) fn record_incident(
        &self,
        ctx: &crate::pipeline::TenantContext,
        policy: &tenantgate_guard::Policy,
        d: Detector,
        action: Action,
        dir: Direction,
    ) {
        self.0.incidents.record(d, action, dir);
        let tenant_slug = ctx.tenant.slug.as_str();
        crate::audit::incident(self, ctx, d.as_str(), action_str(action), dir_str(dir));
        tracing::warn!(
            target: "tenantgate::incident",
            tenant = %tenant_slug, detector = d.as_str(), action = action_str(action),
            direction = dir_str(dir), "leak guard finding"
        );
        let targets: Vec<String> = self
            .0
            .config
            .guard
            .webhook_url
            .iter()
            .chain(policy.webhook_url.iter())
            .cloned()
            .collect();
        if targets.is_empty() {
            return;
        }
        let event = serde_json::json!({
            "type": "tenantgate.incident", "tenant": tenant_slug, "detector": d.as_str(),
            "action": action_str(action), "direction": dir_str(dir), "at_ms": crate::pipeline::now_ms(),
        });
        let http = self.0.webhooks.clone();
        // Delivery must not delay the call: one attempt, bounded by the client's timeout.
        self.spawn(async move {
            for url in targets {
                let req = http
                    .post(&url)
                    .header("content-type", "application/json")
                    .body(event.to_string());
                if let Err(e) = req.send().await {
                    tracing::warn!(error = %e, "incident webhook delivery failed");
                }
            }
        });
    }

    /// Whether `text` has any finding under the tenant's policy (nothing recorded).
    fn has_findings(&self, ctx: &TenantContext, text: &str, dir: Direction) -> bool {
        let index = self.0.auth.load();
        let tenant = ctx.principal.scope.tenant_id();
        !index
            .scanner
            .scan(tenant, text, dir, index.guard_policy(tenant))
            .is_empty()
    }

    /// Guards one string in place.
    fn guard_string(
        &self,
        ctx: &TenantContext,
        v: &mut Value,
        dir: Direction,
    ) -> Result<(), GatewayError> {
        if let Value::String(s) = v {
            if let Verdict::Redacted(r) = self.guard_text(ctx, s, dir)? {
                *s = r;
            }
        }
        Ok(())
    }

    /// Guards every string leaf of a value (tool inputs, content part arrays).
    fn guard_strings(
        &self,
        ctx: &TenantContext,
        v: &mut Value,
        dir: Direction,
    ) -> Result<(), GatewayError> {
        match v {
            Value::String(_) => self.guard_string(ctx, v, dir),
            Value::Array(a) => a
                .iter_mut()
                .try_for_each(|x| self.guard_strings(ctx, x, dir)),
            Value::Object(o) => {
                // Keys are text the model wrote too: a key with a finding is renamed (or the
                // whole value blocked) like any other string.
                if o.keys().any(|k| self.has_findings(ctx, k, dir)) {
                    let mut renamed = Map::new();
                    for (k, mut v) in std::mem::take(o) {
                        let k = match self.guard_text(ctx, &k, dir)? {
                            Verdict::Clean => k,
                            Verdict::Redacted(r) => r,
                        };
                        self.guard_strings(ctx, &mut v, dir)?;
                        renamed.insert(k, v);
                    }
                    *o = renamed;
                    return Ok(());
                }
                o.values_mut()
                    .try_for_each(|x| self.guard_strings(ctx, x, dir))
            }
            _ => Ok(()),
        }
    }

    /// Guards message content: a string, or each part of an array. Text is scanned wherever it
    /// sits (text parts, plain-text documents, tool calls the client replays, part types added
    /// later); only bytes that must not be rewritten (images, audio, files, base64 documents)
    /// are passed over, by name.
    fn guard_content(
        &self,
        ctx: &TenantContext,
        content: &mut Value,
        dir: Direction,
    ) -> Result<(), GatewayError> {
        match content {
            Value::String(_) => self.guard_string(ctx, content, dir),
            Value::Array(parts) => parts
                .iter_mut()
                .try_for_each(|p| self.guard_part(ctx, p, dir)),
            _ => Ok(()),
        }
    }

    fn guard_part(
        &self,
        ctx: &TenantContext,
        p: &mut Value,
        dir: Direction,
    ) -> Result<(), GatewayError> {
        match p["type"].as_str() {
            Some("text") => match p.get_mut("text") {
                Some(t) => self.guard_string(ctx, t, dir),
                None => Ok(()),
            },
            // Anthropic documents: plain text, or content blocks; base64 and URLs are bytes.
            Some("document") => {
                let src = &mut p["source"];
                match src["type"].as_str() {
                    Some("text") => self.guard_string(ctx, &mut src["data"], dir),
                    Some("content") => self.guard_content(ctx, &mut src["content"], dir),
                    _ => Ok(()),
                }
            }
            // Scanned by the caller, as data the model reads.
            Some("tool_result") => Ok(()),
            // Bytes (or references to them) whose content must not be rewritten.
            Some("image" | "image_url" | "input_audio" | "file" | "redacted_thinking") => Ok(()),
            // Anything else (a replayed `tool_use`, thinking, a type added later): every
            // string in it.
            _ => self.guard_strings(ctx, p, dir),
        }
    }

    /// Guard-inbound for an OpenAI chat request, as the client sent it (before the tenant's
    /// system prompt is composed in, so that one is never scanned): every message whatever
    /// its role, the client's system and developer messages included, and the tool calls it
    /// replays; tool results are data the model will read.
    pub fn guard_openai_request(
        &self,
        ctx: &TenantContext,
        body: &mut Map<String, Value>,
    ) -> Result<(), GatewayError> {
        let Some(Value::Array(messages)) = body.get_mut("messages") else {
            return Ok(());
        };
        for m in messages.iter_mut() {
            let dir = match m["role"].as_str() {
                Some("tool") | Some("function") => Direction::InboundData,
                // system, developer, user, assistant, and any role a client invents.
                _ => Direction::Inbound,
            };
            if let Some(c) = m.get_mut("content") {
                self.guard_content(ctx, c, dir)?;
            }
            for replayed in ["tool_calls", "function_call"] {
                if let Some(v) = m.get_mut(replayed) {
                    self.guard_strings(ctx, v, Direction::Inbound)?;
                }
            }
        }
        Ok(())
    }

    /// Guard-inbound for an Anthropic messages request as the client sent it (before the
    /// tenant's system prompt is composed in): the client's `system` and every message;
    /// `tool_result` blocks are data.
    pub fn guard_anthropic_request(
        &self,
        ctx: &TenantContext,
        body: &mut Map<String, Value>,
    ) -> Result<(), GatewayError> {
        if let Some(system) = body.get_mut("system") {
            self.guard_content(ctx, system, Direction::Inbound)?;
        }
        let Some(Value::Array(messages)) = body.get_mut("messages") else {
            return Ok(());
        };
        for m in messages.iter_mut() {
            let Some(content) = m.get_mut("content") else {
                continue;
            };
            // The string form and text blocks are the caller's input ...
            self.guard_content(ctx, content, Direction::Inbound)?;
            // ... tool results are data the model will read.
            for b in content
                .as_array_mut()
                .into_iter()
                .flatten()
                .filter(|b| b["type"] == "tool_result")
            {
                if let Some(c) = b.get_mut("content") {
                    self.guard_content(ctx, c, Direction::InboundData)?;
                }
            }
        }
        Ok(())
    }

    /// Guard-outbound for a complete OpenAI chat completion.
    pub fn guard_openai_response(
        &self,
        ctx: &TenantContext,
        v: &mut Value,
    ) -> Result<(), GatewayError> {
        // Every choice (n > 1) and every string of its message (content, refusal, reasoning,
        // tool-call arguments, an audio transcript, fields added later); only the audio bytes
        // are not text.
        for c in v["choices"].as_array_mut().into_iter().flatten() {
            let msg = &mut c["message"];
            let audio = msg
                .get_mut("audio")
                .and_then(Value::as_object_mut)
                .and_then(|a| a.remove("data"));
            self.guard_strings(ctx, msg, Direction::Outbound)?;
            if let (Some(d), Some(a)) = (audio, msg.get_mut("audio").and_then(Value::as_object_mut))
            {
                a.insert("data".into(), d);
            }
        }
        Ok(())
    }

    /// Guard-outbound for a complete Anthropic message.
    pub fn guard_anthropic_response(
        &self,
        ctx: &TenantContext,
        v: &mut Value,
    ) -> Result<(), GatewayError> {
        for b in v["content"].as_array_mut().into_iter().flatten() {
            match b["type"].as_str() {
                // The provider's encrypted data and signatures, not text.
                Some("redacted_thinking") => {}
                Some("thinking") => {
                    self.guard_string(ctx, &mut b["thinking"], Direction::Outbound)?
                }
                // Text, tool inputs, server tool results, block types added later: every
                // string in the block.
                _ => self.guard_strings(ctx, b, Direction::Outbound)?,
            }
        }
        Ok(())
    }

    /// Guard-outbound for a passthrough body: one scan of the raw JSON; only if it finds
    /// anything is the body parsed, guarded field by field and re-serialized.
    pub fn guard_passthrough(
        &self,
        ctx: &TenantContext,
        bytes: bytes::Bytes,
        anthropic: bool,
    ) -> Result<bytes::Bytes, GatewayError> {
        let index = self.0.auth.load();
        let policy = index.guard_policy(ctx.principal.scope.tenant_id());
        let raw = String::from_utf8_lossy(&bytes);
        // The raw scan sees JSON escapes, not the text they decode to: a body with `\u` or
        // `\/` escapes is parsed and scanned field by field instead.
        let escaped = raw.contains("\\u") || raw.contains("\\/");
        if !escaped
            && index
                .scanner
                .scan(
                    ctx.principal.scope.tenant_id(),
                    &raw,
                    Direction::Outbound,
                    policy,
                )
                .is_empty()
        {
            return Ok(bytes);
        }
        let mut v: Value = serde_json::from_slice(&bytes).map_err(|_| GatewayError::Internal)?;
        if anthropic {
            self.guard_anthropic_response(ctx, &mut v)?;
        } else {
            self.guard_openai_response(ctx, &mut v)?;
        }
        let out = serde_json::to_vec(&v).map_err(|_| GatewayError::Internal)?;
        // What leaves is scanned once more as a whole: a finding the field walk could not
        // place (somewhere no walker looks) blocks the response instead of passing through.
        let hits = index.scanner.scan(
            ctx.principal.scope.tenant_id(),
            &String::from_utf8_lossy(&out),
            Direction::Outbound,
            policy,
        );
        if let Some(h) = hits
            .iter()
            .find(|h| policy.action(h.detector) == tenantgate_guard::Action::Block)
        {
            return Err(GatewayError::OutputBlocked(h.detector.as_str()));
        }
        Ok(bytes::Bytes::from(out))
    }
}
