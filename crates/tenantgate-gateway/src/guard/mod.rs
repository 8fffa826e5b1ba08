//! Stages guard-inbound and guard-outbound: the leak detectors of `tenantgate-guard` applied
//! with the tenant's policy. Every finding is an incident: a WARN event (tenant, detector,
//! action, direction; never the text) and a counter served at `/metrics`.

use crate::audit::Recorder;
use crate::error::GatewayError;
use crate::identity::TenantContext;
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::Mutex;
use tenantgate_guard::{redact, Action, Detector, Direction, Hit};

/// An incident's labels: (detector, action, direction).
pub type IncidentKind = (&'static str, &'static str, &'static str);

/// Incident counters by (detector, action, direction), served at `/metrics` (`crate::metrics`).
#[derive(Default)]
pub struct Incidents(Mutex<BTreeMap<IncidentKind, u64>>);

impl Incidents {
    pub(crate) fn record(&self, d: Detector, a: Action, dir: Direction) {
        if let Ok(mut m) = self.0.lock() {
            *m.entry((d.as_str(), action_str(a), dir_str(dir)))
                .or_default() += 1;
        }
    }

    /// Every count so far, in label order (read at scrape time).
    pub(crate) fn counts(&self) -> Vec<(IncidentKind, u64)> {
        self.0
            .lock()
            .map(|m| m.iter().map(|(k, n)| (*k, *n)).collect())
            .unwrap_or_default()
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

/// Where findings go: the counters, the tenant's audit chain, and the webhooks. Owned and
/// cheap to clone (a stream's guard holds one).
#[derive(Clone)]
pub struct IncidentSink {
    pub counts: Arc<Incidents>,
    rec: Recorder,
    webhooks: reqwest::Client,
    platform_webhook: Option<String>,
}

impl IncidentSink {
    /// The HTTP client webhooks are delivered with (bounded timeout).
    pub fn webhooks(&self) -> &reqwest::Client {
        &self.webhooks
    }

    pub fn new(rec: Recorder, platform_webhook: Option<String>) -> Self {
        IncidentSink {
            counts: Arc::new(Incidents::default()),
            rec,
            webhooks: reqwest::Client::builder()
                .timeout(std::time::Duration::from_secs(5))
                .build()
                .unwrap_or_default(),
            platform_webhook,
        }
    }
}

/// The leak guard for one call: the tenant's policy from the call's view, and the sink its
/// findings go to.
pub struct Guard<'a> {
    ctx: &'a TenantContext,
    sink: &'a IncidentSink,
}

/// What to do with a piece of text after its hits were weighed against the policy.
pub enum Verdict {
    Clean,
    Redacted(String),
}

impl<'a> Guard<'a> {
    pub fn new(ctx: &'a TenantContext, sink: &'a IncidentSink) -> Self {
        Guard { ctx, sink }
    }

    /// Scans one text. A `block` finding is an error; `redact` findings come back as the
    /// redacted text; `flag` findings are recorded only.
    pub fn guard_text(&self, text: &str, dir: Direction) -> Result<Verdict, GatewayError> {
        let index = &self.ctx.view;
        let policy = index.guard_policy(self.ctx.principal.scope.tenant_id());
        let hits = index
            .scanner
            .scan(self.ctx.principal.scope.tenant_id(), text, dir, policy);
        self.weigh(text, &hits, policy, dir)
    }

    pub(crate) fn weigh(
        &self,
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
            self.record_incident(policy, h.detector, action, dir);
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
        policy: &tenantgate_guard::Policy,
        d: Detector,
        action: Action,
        dir: Direction,
    ) {
        self.sink.counts.record(d, action, dir);
        let tenant_slug = self.ctx.tenant.slug.as_str();
        crate::audit::incident(
            &self.sink.rec,
            self.ctx,
            d.as_str(),
            action_str(action),
            dir_str(dir),
        );
        tracing::warn!(
            target: "tenantgate::incident",
            tenant = %tenant_slug, detector = d.as_str(), action = action_str(action),
            direction = dir_str(dir), "leak guard finding"
        );
        let targets: Vec<String> = self
            .sink
            .platform_webhook
            .iter()
            .chain(policy.webhook_url.iter())
            .cloned()
            .collect();
        if targets.is_empty() {
            return;
        }
        let event = serde_json::json!({
            "type": "tenantgate.incident", "tenant": tenant_slug, "detector": d.as_str(),
            "action": action_str(action), "direction": dir_str(dir), "at_ms": crate::clock::now_ms(),
        });
        let http = self.sink.webhooks.clone();
        // Delivery must not delay the call: one attempt, bounded by the client's timeout, on
        // the server's task tracker.
        self.sink.rec.spawn(async move {
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
    fn has_findings(&self, text: &str, dir: Direction) -> bool {
        let index = &self.ctx.view;
        let tenant = self.ctx.principal.scope.tenant_id();
        !index
            .scanner
            .scan(tenant, text, dir, index.guard_policy(tenant))
            .is_empty()
    }

    /// Guards one string in place.
    fn guard_string(&self, v: &mut Value, dir: Direction) -> Result<(), GatewayError> {
        if let Value::String(s) = v {
            if let Verdict::Redacted(r) = self.guard_text(s, dir)? {
                *s = r;
            }
        }
        Ok(())
    }

    /// Guards every string of a client-supplied value (template variables) in place.
    pub fn guard_values(&self, v: &mut Value, dir: Direction) -> Result<(), GatewayError> {
        self.guard_strings(v, dir)
    }

    /// Guards every string leaf of a value (tool inputs, content part arrays).
    fn guard_strings(&self, v: &mut Value, dir: Direction) -> Result<(), GatewayError> {
        match v {
            Value::String(_) => self.guard_string(v, dir),
            Value::Array(a) => a.iter_mut().try_for_each(|x| self.guard_strings(x, dir)),
            Value::Object(o) => {
                // Keys are text the model wrote too: a key with a finding is renamed (or the
                // whole value blocked) like any other string.
                if o.keys().any(|k| self.has_findings(k, dir)) {
                    let mut renamed = Map::new();
                    for (k, mut v) in std::mem::take(o) {
                        let k = match self.guard_text(&k, dir)? {
                            Verdict::Clean => k,
                            Verdict::Redacted(r) => r,
                        };
                        self.guard_strings(&mut v, dir)?;
                        renamed.insert(k, v);
                    }
                    *o = renamed;
                    return Ok(());
                }
                o.values_mut().try_for_each(|x| self.guard_strings(x, dir))
            }
            _ => Ok(()),
        }
    }

    /// Guards message content: a string, or each part of an array. Text is scanned wherever it
    /// sits (text parts, plain-text documents, tool calls the client replays, part types added
    /// later); only bytes that must not be rewritten (images, audio, files, base64 documents)
    /// are passed over, by name.
    fn guard_content(&self, content: &mut Value, dir: Direction) -> Result<(), GatewayError> {
        match content {
            Value::String(_) => self.guard_string(content, dir),
            Value::Array(parts) => parts.iter_mut().try_for_each(|p| self.guard_part(p, dir)),
            _ => Ok(()),
        }
    }

    fn guard_part(&self, p: &mut Value, dir: Direction) -> Result<(), GatewayError> {
        match p["type"].as_str() {
            Some("text") => match p.get_mut("text") {
                Some(t) => self.guard_string(t, dir),
                None => Ok(()),
            },
            // Anthropic documents: plain text, or content blocks; base64 and URLs are bytes.
            Some("document") => {
                let src = &mut p["source"];
                match src["type"].as_str() {
                    Some("text") => self.guard_string(&mut src["data"], dir),
                    Some("content") => self.guard_content(&mut src["content"], dir),
                    _ => Ok(()),
                }
            }
            // Scanned by the caller, as data the model reads.
            Some("tool_result") => Ok(()),
            // Bytes (or references to them) whose content must not be rewritten.
            Some("image" | "image_url" | "input_audio" | "file" | "redacted_thinking") => Ok(()),
            // Anything else (a replayed `tool_use`, thinking, a type added later): every
            // string in it.
            _ => self.guard_strings(p, dir),
        }
    }

    /// Guard-inbound for an OpenAI chat request, as the client sent it (before the tenant's
    /// system prompt is composed in, so that one is never scanned): every message whatever
    /// its role, the client's system and developer messages included, and the tool calls it
    /// replays; tool results are data the model will read.
    pub fn guard_openai_request(&self, body: &mut Map<String, Value>) -> Result<(), GatewayError> {
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
                self.guard_content(c, dir)?;
            }
            for replayed in ["tool_calls", "function_call"] {
                if let Some(v) = m.get_mut(replayed) {
                    self.guard_strings(v, Direction::Inbound)?;
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
        body: &mut Map<String, Value>,
    ) -> Result<(), GatewayError> {
        if let Some(system) = body.get_mut("system") {
            self.guard_content(system, Direction::Inbound)?;
        }
        let Some(Value::Array(messages)) = body.get_mut("messages") else {
            return Ok(());
        };
        for m in messages.iter_mut() {
            let Some(content) = m.get_mut("content") else {
                continue;
            };
            // The string form and text blocks are the caller's input ...
            self.guard_content(content, Direction::Inbound)?;
            // ... tool results are data the model will read.
            for b in content
                .as_array_mut()
                .into_iter()
                .flatten()
                .filter(|b| b["type"] == "tool_result")
            {
                if let Some(c) = b.get_mut("content") {
                    self.guard_content(c, Direction::InboundData)?;
                }
            }
        }
        Ok(())
    }

    /// Guard-outbound for a complete OpenAI chat completion.
    pub fn guard_openai_response(&self, v: &mut Value) -> Result<(), GatewayError> {
        // Every choice (n > 1) and every string of its message (content, refusal, reasoning,
        // tool-call arguments, an audio transcript, fields added later); only the audio bytes
        // are not text.
        for c in v["choices"].as_array_mut().into_iter().flatten() {
            let msg = &mut c["message"];
            let audio = msg
                .get_mut("audio")
                .and_then(Value::as_object_mut)
                .and_then(|a| a.remove("data"));
            self.guard_strings(msg, Direction::Outbound)?;
            if let (Some(d), Some(a)) = (audio, msg.get_mut("audio").and_then(Value::as_object_mut))
            {
                a.insert("data".into(), d);
            }
        }
        Ok(())
    }

    /// Guard-outbound for a complete Anthropic message.
    pub fn guard_anthropic_response(&self, v: &mut Value) -> Result<(), GatewayError> {
        for b in v["content"].as_array_mut().into_iter().flatten() {
            match b["type"].as_str() {
                // The provider's encrypted data and signatures, not text.
                Some("redacted_thinking") => {}
                Some("thinking") => self.guard_string(&mut b["thinking"], Direction::Outbound)?,
                // Text, tool inputs, server tool results, block types added later: every
                // string in the block.
                _ => self.guard_strings(b, Direction::Outbound)?,
            }
        }
        Ok(())
    }

    /// Guard-outbound for a passthrough body: one scan of the raw JSON; only if it finds
    /// anything is the body parsed, guarded field by field and re-serialized.
    pub fn guard_passthrough(
        &self,
        bytes: bytes::Bytes,
        anthropic: bool,
    ) -> Result<bytes::Bytes, GatewayError> {
        let index = &self.ctx.view;
        let policy = index.guard_policy(self.ctx.principal.scope.tenant_id());
        let raw = String::from_utf8_lossy(&bytes);
        // The raw scan sees JSON escapes, not the text they decode to: a body with `\u` or
        // `\/` escapes is parsed and scanned field by field instead.
        let escaped = raw.contains("\\u") || raw.contains("\\/");
        if !escaped
            && index
                .scanner
                .scan(
                    self.ctx.principal.scope.tenant_id(),
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
            self.guard_anthropic_response(&mut v)?;
        } else {
            self.guard_openai_response(&mut v)?;
        }
        let out = serde_json::to_vec(&v).map_err(|_| GatewayError::Internal)?;
        // What leaves is scanned once more as a whole: a finding the field walk could not
        // place (somewhere no walker looks) blocks the response instead of passing through.
        let hits = index.scanner.scan(
            self.ctx.principal.scope.tenant_id(),
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
