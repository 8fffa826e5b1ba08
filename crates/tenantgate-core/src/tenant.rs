use crate::{InvalidValue, KeyId, TenantId};
use serde::Serialize;

macro_rules! str_enum {
    ($(#[$m:meta])* $name:ident { $($variant:ident => $s:literal),+ $(,)? }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
        #[serde(rename_all = "snake_case")]
        pub enum $name { $($variant),+ }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $s),+ }
            }
        }

        impl std::str::FromStr for $name {
            type Err = InvalidValue;
            fn from_str(s: &str) -> Result<Self, InvalidValue> {
                match s {
                    $($s => Ok($name::$variant),)+
                    other => Err(InvalidValue(format!(
                        concat!("unknown ", stringify!($name), " {:?}; expected one of: {}"),
                        other,
                        [$($s),+].join(", ")
                    ))),
                }
            }
        }

        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
                s.parse().map_err(|e: InvalidValue| serde::de::Error::custom(e.0))
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

str_enum!(
    /// Commercial plan; later issues attach default limits to it.
    PlanTier { Free => "free", Pro => "pro", Enterprise => "enterprise" }
);
str_enum!(
    /// Where the tenant's data lives (blueprint section 3; `tenantgate-store` `places.rs`).
    IsolationTier { Namespace => "namespace", Schema => "schema", Dedicated => "dedicated" }
);
str_enum!(
    /// `pending_deletion`: offboarding was requested; every call is refused until the window
    /// ends (then it is finalized) or the deletion is cancelled (back to its prior status).
    /// `deleted`: offboarded; keys revoked and key material destroyed (crypto-shredded); once
    /// finalized, a tombstone whose slug and display name are its id.
    TenantStatus { Active => "active", Suspended => "suspended", PendingDeletion => "pending_deletion", Deleted => "deleted" }
);
str_enum!(
    /// Roles a credential can carry. API keys carry `tenant_admin` or `member`.
    Role { PlatformAdmin => "platform_admin", TenantAdmin => "tenant_admin", Member => "member" }
);

/// A tenant as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Tenant {
    pub id: TenantId,
    pub slug: String,
    pub display_name: String,
    pub plan: PlanTier,
    pub isolation: IsolationTier,
    pub status: TenantStatus,
    /// Tenant-facing model names this tenant may call; `"*"` allows every configured model.
    pub allowed_models: Vec<String>,
    /// The tenant admin's own narrowing of `allowed_models` (`None`: everything the platform
    /// allows). A model must be in both to be callable.
    pub enabled_models: Option<Vec<String>>,
    /// Upper bound on `max_tokens` for one request; `None` means no tenant cap.
    pub max_tokens_per_request: Option<u32>,
    pub created_at_ms: i64,
}

impl Tenant {
    pub fn allows_model(&self, model: &str) -> bool {
        self.allowed_models.iter().any(|m| m == "*" || m == model)
            && self
                .enabled_models
                .as_ref()
                .is_none_or(|e| e.iter().any(|m| m == model))
    }
}

/// Input for creating a tenant; validated by [`NewTenant::validate`].
#[derive(Debug, Clone)]
pub struct NewTenant {
    pub slug: String,
    pub display_name: String,
    pub plan: PlanTier,
    pub isolation: IsolationTier,
    pub allowed_models: Vec<String>,
    pub max_tokens_per_request: Option<u32>,
}

impl NewTenant {
    pub fn validate(&self) -> Result<(), InvalidValue> {
        validate_slug(&self.slug)?;
        if self.display_name.trim().is_empty() || self.display_name.len() > 200 {
            return Err(InvalidValue(
                "display name must be 1..=200 characters".to_owned(),
            ));
        }
        validate_model_policy(&self.allowed_models, self.max_tokens_per_request)
    }
}

/// Checks a model allow-list and per-request token cap.
pub fn validate_model_policy(
    allowed_models: &[String],
    max_tokens_per_request: Option<u32>,
) -> Result<(), InvalidValue> {
    for m in allowed_models {
        if m.is_empty() || m.len() > 200 || m.chars().any(char::is_whitespace) {
            return Err(InvalidValue(format!("invalid model name {m:?}")));
        }
    }
    if max_tokens_per_request == Some(0) {
        return Err(InvalidValue(
            "max tokens per request must be at least 1".to_owned(),
        ));
    }
    Ok(())
}

/// Slugs are lowercase DNS-label-like names: `[a-z][a-z0-9-]{1,62}`, no trailing `-`.
pub fn validate_slug(slug: &str) -> Result<(), InvalidValue> {
    let b = slug.as_bytes();
    let ok = (2..=63).contains(&b.len())
        && b[0].is_ascii_lowercase()
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && !slug.ends_with('-');
    if ok {
        Ok(())
    } else {
        Err(InvalidValue(format!(
            "invalid slug {slug:?}: use 2-63 lowercase letters, digits or '-', starting with a letter"
        )))
    }
}

/// An API key as stored: never the key itself, only its keyed hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ApiKeyRecord {
    pub id: KeyId,
    pub tenant_id: TenantId,
    /// The first characters of the key, shown to identify it (`tgk_AbCd1234`).
    pub prefix: String,
    /// HMAC-SHA-256(server secret, key), hex.
    #[serde(skip)]
    pub hash: String,
    pub name: Option<String>,
    pub role: Role,
    pub end_user: Option<String>,
    pub created_at_ms: i64,
    pub expires_at_ms: Option<i64>,
    pub revoked_at_ms: Option<i64>,
}

impl ApiKeyRecord {
    pub fn is_usable_at(&self, now_ms: i64) -> bool {
        self.revoked_at_ms.is_none() && self.expires_at_ms.is_none_or(|e| now_ms < e)
    }
}

/// Input for storing a new key; the caller generated the secret and computed `hash`.
#[derive(Debug, Clone)]
pub struct NewApiKey {
    pub prefix: String,
    pub hash: String,
    pub name: Option<String>,
    pub role: Role,
    pub end_user: Option<String>,
    pub expires_at_ms: Option<i64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slug_rules() {
        assert!(validate_slug("acme-corp").is_ok());
        for bad in ["A", "a", "-a", "a-", "9lives", "acme_corp", "acmé"] {
            assert!(validate_slug(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn enums_round_trip_and_reject_unknown() {
        for r in Role::ALL {
            assert_eq!(r.as_str().parse::<Role>(), Ok(*r));
        }
        let err = "owner".parse::<Role>().unwrap_err();
        assert!(err.0.contains("tenant_admin"), "{err}");
    }

    #[test]
    fn wildcard_and_exact_allow_list() {
        let mut t = Tenant {
            id: TenantId::parse("t1").unwrap(),
            slug: "acme".into(),
            display_name: "Acme".into(),
            plan: PlanTier::Free,
            isolation: IsolationTier::Namespace,
            status: TenantStatus::Active,
            allowed_models: vec!["gpt-4o".into()],
            enabled_models: None,
            max_tokens_per_request: None,
            created_at_ms: 0,
        };
        assert!(t.allows_model("gpt-4o"));
        assert!(!t.allows_model("gpt-4o-mini"));
        t.allowed_models = vec!["*".into()];
        assert!(t.allows_model("anything"));
        // the tenant's own narrowing applies on top of the platform's list, never beyond it
        t.enabled_models = Some(vec!["gpt-4o".into()]);
        assert!(t.allows_model("gpt-4o"));
        assert!(!t.allows_model("anything"));
        t.allowed_models = vec!["o3".into()];
        assert!(!t.allows_model("gpt-4o"));
    }
}
