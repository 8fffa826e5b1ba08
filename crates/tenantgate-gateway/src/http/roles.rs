//! Who may call a control-plane route, as axum extractors: a handler names the caller it needs
//! in its signature (`Member(ctx)`, `TenantAdmin(ctx)`, `Platform(admin)`, `BreakGlass(admin)`)
//! and the request never reaches its body otherwise. Each is resolved through
//! `AppState::tenant_context` or `AppState::caller`, the same stages model calls use, and a
//! refusal is the same `GatewayError` rendered in the OpenAI shape that the handlers answered
//! before (so `audit::record_tenant_call` records the same event for it).
//!
//! The route table (`api::API_ROUTES`) declares an [`Access`] per route; [`Declares`] and
//! [`Guarded`] read the access a handler's extractors enforce from its signature, and the
//! table's macro asserts at compile time that the two agree, so they cannot drift.
//!
//! Place a role extractor after the handler's `Path`/`Query`/`Extension` extractors: axum runs
//! them in argument order, and a malformed path or query has always been refused before the
//! credential was looked at.

use super::api::Access;
use super::RequestId;
use crate::error::{GatewayError, Wire};
use crate::identity::auth::Caller;
use crate::identity::TenantContext;
use crate::state::AppState;
use axum::body::Body;
use axum::extract::{FromRequestParts, Path, Query, State};
use axum::http::request::Parts;
use axum::http::HeaderMap;
use axum::response::Response;
use axum::Extension;
use tenantgate_core::{PlatformAdmin, Role};

/// Any principal of the caller's tenant (`member` or `tenant_admin`), suspended tenants and
/// platform admins refused by `tenant_context`.
pub(super) struct Member(pub TenantContext);

/// A `tenant_admin` of the caller's tenant; a member gets 403.
pub(super) struct TenantAdmin(pub TenantContext);

/// A platform admin (no tenant scope); tenant principals get 403.
pub(super) struct Platform(pub PlatformAdmin);

/// A platform admin on a break-glass route. Admitted exactly like [`Platform`]; the grant is
/// checked, and the read recorded, by `admin::break_glass`, which takes this type (built only
/// by its extractor: the field is private) so that a break-glass scope can only be opened on
/// a route declared `BreakGlass`.
pub(super) struct BreakGlass(PlatformAdmin);

impl BreakGlass {
    pub(super) fn admin(&self) -> &PlatformAdmin {
        &self.0
    }
}

/// A refusal, in the shape the control-plane handlers render their own errors in.
fn reject(e: GatewayError) -> Response {
    e.render(Wire::OpenAi)
}

impl FromRequestParts<AppState> for Member {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, app: &AppState) -> Result<Self, Response> {
        app.tenant_context(&parts.headers)
            .await
            .map(Member)
            .map_err(reject)
    }
}

impl FromRequestParts<AppState> for TenantAdmin {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, app: &AppState) -> Result<Self, Response> {
        let ctx = app.tenant_context(&parts.headers).await.map_err(reject)?;
        match ctx.principal.role {
            Role::TenantAdmin | Role::PlatformAdmin => Ok(TenantAdmin(ctx)),
            Role::Member => Err(reject(GatewayError::Forbidden(
                "this needs the tenant_admin role".into(),
            ))),
        }
    }
}

/// The platform admin making this request; tenant principals get 403.
async fn platform_admin(parts: &Parts, app: &AppState) -> Result<PlatformAdmin, Response> {
    match app.caller(&parts.headers).await.map_err(reject)? {
        Caller::Platform(admin) => Ok(admin),
        Caller::Tenant(_) => Err(reject(GatewayError::Forbidden(
            "this needs the platform_admin role".into(),
        ))),
    }
}

impl FromRequestParts<AppState> for Platform {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, app: &AppState) -> Result<Self, Response> {
        platform_admin(parts, app).await.map(Platform)
    }
}

impl FromRequestParts<AppState> for BreakGlass {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, app: &AppState) -> Result<Self, Response> {
        platform_admin(parts, app).await.map(BreakGlass)
    }
}

/// What a handler argument enforces about its caller: a role extractor names its [`Access`],
/// every other extractor nothing. A handler argument of a type without an impl here does not
/// compile into the route table, so a new extractor must say which it is.
pub(super) trait Declares {
    const ACCESS: Option<Access>;
}

macro_rules! declares {
    ($($ty:ty => $access:expr;)+) => {$(
        impl Declares for $ty {
            const ACCESS: Option<Access> = $access;
        }
    )+};
}

declares! {
    Member => Some(Access::Member);
    TenantAdmin => Some(Access::TenantAdmin);
    Platform => Some(Access::PlatformAdmin);
    BreakGlass => Some(Access::BreakGlass);
    State<AppState> => None;
    HeaderMap => None;
    Body => None;
    Extension<RequestId> => None;
}

impl<T> Declares for Path<T> {
    const ACCESS: Option<Access> = None;
}

impl<T> Declares for Query<T> {
    const ACCESS: Option<Access> = None;
}

/// The access a handler enforces: that of its one role extractor; `None` if it has none or
/// more than one (both are mistakes the route table refuses).
pub(super) trait Guarded<Args> {
    const ACCESS: Option<Access>;
}

/// The single `Some` among a handler's arguments' accesses.
const fn only_one(accesses: &[Option<Access>]) -> Option<Access> {
    let mut found = None;
    let mut i = 0;
    while i < accesses.len() {
        if let Some(a) = accesses[i] {
            if found.is_some() {
                return None;
            }
            found = Some(a);
        }
        i += 1;
    }
    found
}

macro_rules! guarded {
    ($($arg:ident),+) => {
        impl<F, Fut, $($arg: Declares),+> Guarded<($($arg,)+)> for F
        where
            F: FnOnce($($arg),+) -> Fut,
        {
            const ACCESS: Option<Access> = only_one(&[$($arg::ACCESS),+]);
        }
    };
}

guarded!(A1);
guarded!(A1, A2);
guarded!(A1, A2, A3);
guarded!(A1, A2, A3, A4);
guarded!(A1, A2, A3, A4, A5);
guarded!(A1, A2, A3, A4, A5, A6);
guarded!(A1, A2, A3, A4, A5, A6, A7);

/// Whether `handler`'s extractors enforce exactly `access` (for the route table's
/// compile-time check; the handler value only names its type).
pub(super) const fn enforces<F: Guarded<Args>, Args>(_handler: &F, access: Access) -> bool {
    match F::ACCESS {
        Some(a) => a as u8 == access as u8,
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn member(_: State<AppState>, _: Member) {}
    async fn admin(_: State<AppState>, _: Path<String>, _: TenantAdmin, _: HeaderMap, _: Body) {}
    async fn platform(_: Platform, _: Query<()>) {}
    async fn break_glass(_: Extension<RequestId>, _: BreakGlass) {}
    async fn nobody(_: State<AppState>, _: HeaderMap) {}
    async fn twice(_: Member, _: TenantAdmin) {}

    /// The check the route table relies on tells the roles apart, and refuses a handler with
    /// no role extractor or two.
    #[test]
    fn a_handlers_access_is_read_from_its_extractors() {
        let all = [
            Access::Member,
            Access::TenantAdmin,
            Access::PlatformAdmin,
            Access::BreakGlass,
        ];
        let enforced = |check: &dyn Fn(Access) -> bool| -> Vec<Access> {
            all.iter().copied().filter(|a| check(*a)).collect()
        };
        assert_eq!(enforced(&|a| enforces(&member, a)), [Access::Member]);
        assert_eq!(enforced(&|a| enforces(&admin, a)), [Access::TenantAdmin]);
        assert_eq!(
            enforced(&|a| enforces(&platform, a)),
            [Access::PlatformAdmin]
        );
        assert_eq!(
            enforced(&|a| enforces(&break_glass, a)),
            [Access::BreakGlass]
        );
        assert!(enforced(&|a| enforces(&nobody, a)).is_empty());
        assert!(enforced(&|a| enforces(&twice, a)).is_empty());
    }
}
