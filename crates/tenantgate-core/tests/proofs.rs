//! The proof types cannot be made from anything a client sends: they implement no `Default`,
//! no `Deserialize` and no conversion from an id or a string. Checked at compile time: if one
//! of these impls is ever added, this test file stops compiling.
//!
//! `TenantScope::from_verified_credential` / `from_break_glass` and
//! `PlatformAdmin::from_verified_credential` / `local_operator` are the only constructors;
//! `clippy.toml` restricts their call sites and `tenantgate-gateway/tests/structure.rs` counts
//! them.

use static_assertions::{assert_impl_all, assert_not_impl_any};
use tenantgate_core::{PlatformAdmin, Principal, TenantId, TenantScope};

// A scope is a proof that a credential was verified for one tenant.
assert_not_impl_any!(
    TenantScope: Default,
    serde::de::DeserializeOwned,
    From<TenantId>,
    From<&'static TenantId>,
    From<String>,
    From<&'static str>,
    From<Principal>,
    From<PlatformAdmin>,
    std::str::FromStr,
);
// `TryFrom` has a blanket impl for every `From`, so this also catches a `From` from the
// other types a request or a token could carry.
assert_not_impl_any!(
    TenantScope: TryFrom<TenantId>,
    TryFrom<String>,
    TryFrom<&'static str>,
    TryFrom<Vec<u8>>,
);

// A platform admin is the capability for cross-tenant operations.
assert_not_impl_any!(
    PlatformAdmin: Default,
    serde::de::DeserializeOwned,
    Clone,
    From<String>,
    From<&'static str>,
    From<TenantId>,
    From<TenantScope>,
    std::str::FromStr,
    TryFrom<String>,
    TryFrom<&'static str>,
);

// The principal carries a scope, so it must not be deserializable either.
assert_not_impl_any!(Principal: Default, serde::de::DeserializeOwned);

// The same macro accepts what the types do implement (the assertions above are not vacuous:
// a scope is cloned into every stage and crosses tasks).
assert_impl_all!(TenantScope: Clone, Send, Sync, std::fmt::Debug);
assert_impl_all!(TenantId: serde::Serialize, Clone);

/// The assertions above are checked when this file compiles; this test makes the file a test
/// target that `cargo test -p tenantgate-core` builds and reports, and shows the one way in.
#[test]
fn a_scope_is_made_only_by_its_named_constructors() {
    let tenant = TenantId::parse("t-1").unwrap();
    #[expect(
        clippy::disallowed_methods,
        reason = "this test stands in for the authentication stage"
    )]
    let scope = TenantScope::from_verified_credential(tenant.clone());
    assert_eq!(scope.tenant_id(), &tenant);
}
