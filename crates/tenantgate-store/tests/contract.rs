//! One contract suite, run against every backend. The PostgreSQL run needs
//! `TENANTGATE_TEST_POSTGRES_URL` (e.g. `postgres://postgres@127.0.0.1:5432/test`); without it
//! those tests say so and return. Each test gets its own schema (PostgreSQL) or file (SQLite).

#![allow(
    clippy::unwrap_used,
    reason = "test code: a panic is the failure report"
)]

mod common;

use common::{admin, new_tenant, open_pg, open_sqlite, scope};
use rand::Rng;
use tenantgate_core::{IsolationTier, KeyId, NewApiKey, Role, TenantStatus};
use tenantgate_store::{Db, Store, StoreError};

fn new_key(tag: &str) -> NewApiKey {
    NewApiKey {
        prefix: format!("tgk_{tag}"),
        hash: format!("{:064x}", rand::thread_rng().gen::<u128>()),
        name: Some(tag.into()),
        role: Role::Member,
        end_user: Some(format!("user-{tag}")),
        expires_at_ms: None,
    }
}

mod cases {
    use super::*;

    pub async fn tenants_are_created_found_and_listed(store: &Store) {
        let a = admin();
        let p = store.platform(&a);
        let t = p.create_tenant(&new_tenant("acme")).await.unwrap();
        assert_eq!(t.status, TenantStatus::Active);
        assert_eq!(p.find_tenant("acme").await.unwrap(), t);
        assert_eq!(p.find_tenant(t.id.as_str()).await.unwrap(), t);
        p.create_tenant(&new_tenant("globex")).await.unwrap();
        let slugs: Vec<_> = p
            .list_tenants()
            .await
            .unwrap()
            .into_iter()
            .map(|t| t.slug)
            .collect();
        assert_eq!(slugs, ["acme", "globex"]);
        assert!(matches!(
            p.find_tenant("nope").await,
            Err(StoreError::NotFound)
        ));
    }

    pub async fn duplicate_and_invalid_tenants_write_nothing(store: &Store) {
        let a = admin();
        let p = store.platform(&a);
        p.create_tenant(&new_tenant("acme")).await.unwrap();
        let rev = store.revision().await.unwrap();
        assert!(matches!(
            p.create_tenant(&new_tenant("acme")).await,
            Err(StoreError::Conflict(_))
        ));
        assert!(matches!(
            p.create_tenant(&new_tenant("Bad Slug")).await,
            Err(StoreError::Invalid(_))
        ));
        let mut dedicated = new_tenant("dedi");
        dedicated.isolation = IsolationTier::Dedicated;
        assert!(matches!(
            p.create_tenant(&dedicated).await,
            Err(StoreError::Invalid(_))
        ));
        assert_eq!(p.list_tenants().await.unwrap().len(), 1);
        assert_eq!(
            store.revision().await.unwrap(),
            rev,
            "a failed write must not bump the revision"
        );
    }

    pub async fn tenant_handle_sees_only_its_own_keys(store: &Store) {
        let a = admin();
        let p = store.platform(&a);
        let ta = p.create_tenant(&new_tenant("acme")).await.unwrap();
        let tb = p.create_tenant(&new_tenant("globex")).await.unwrap();
        let ka = p.create_key(&ta.id, &new_key("a1")).await.unwrap();
        let kb = p.create_key(&tb.id, &new_key("b1")).await.unwrap();
        let sa = scope(&ta.id);
        let h = store.tenant(&sa);
        assert_eq!(h.get().await.unwrap().id, ta.id);
        let keys = h.list_keys().await.unwrap();
        assert_eq!(keys.iter().map(|k| &k.id).collect::<Vec<_>>(), [&ka.id]);
        // The attack: tenant A revokes tenant B's key by id. It must look like a missing key.
        assert!(matches!(
            h.revoke_key(&kb.id).await,
            Err(StoreError::NotFound)
        ));
        assert!(matches!(
            h.revoke_key(&KeyId::parse("missing").unwrap()).await,
            Err(StoreError::NotFound)
        ));
        assert!(p.list_keys(&tb.id).await.unwrap()[0]
            .revoked_at_ms
            .is_none());
        h.revoke_key(&ka.id).await.unwrap();
        assert!(h.list_keys().await.unwrap()[0].revoked_at_ms.is_some());
    }

    pub async fn auth_snapshot_excludes_revoked_and_expired_keys(store: &Store) {
        let a = admin();
        let p = store.platform(&a);
        let t = p.create_tenant(&new_tenant("acme")).await.unwrap();
        let live = p.create_key(&t.id, &new_key("live")).await.unwrap();
        let revoked = p.create_key(&t.id, &new_key("revoked")).await.unwrap();
        let mut exp = new_key("expired");
        exp.expires_at_ms = Some(1);
        p.create_key(&t.id, &exp).await.unwrap();
        p.revoke_key(revoked.prefix.as_str()).await.unwrap();
        let snap = p.auth_snapshot().await.unwrap();
        assert_eq!(
            snap.keys.iter().map(|k| &k.id).collect::<Vec<_>>(),
            [&live.id]
        );
        assert_eq!(snap.tenants.len(), 1);
        assert_eq!(snap.revision, store.revision().await.unwrap());
    }

    pub async fn every_change_moves_the_revision(store: &Store) {
        let a = admin();
        let p = store.platform(&a);
        let r0 = store.revision().await.unwrap();
        let t = p.create_tenant(&new_tenant("acme")).await.unwrap();
        let r1 = store.revision().await.unwrap();
        let k = p.create_key(&t.id, &new_key("k")).await.unwrap();
        let r2 = store.revision().await.unwrap();
        p.set_status(&t.id, TenantStatus::Suspended).await.unwrap();
        let r3 = store.revision().await.unwrap();
        p.revoke_tenant_key(&t.id, &k.id).await.unwrap();
        let r4 = store.revision().await.unwrap();
        p.set_models(&t.id, &["demo".into()], None).await.unwrap();
        let r5 = store.revision().await.unwrap();
        assert!(
            r0 < r1 && r1 < r2 && r2 < r3 && r3 < r4 && r4 < r5,
            "{r0} {r1} {r2} {r3} {r4} {r5}"
        );
        let t2 = p.get_tenant(&t.id).await.unwrap();
        assert_eq!(t2.status, TenantStatus::Suspended);
        assert_eq!(t2.allowed_models, ["demo"]);
        assert_eq!(t2.max_tokens_per_request, None);
    }

    pub async fn key_for_unknown_tenant_is_not_found(store: &Store) {
        let a = admin();
        let ghost =
            tenantgate_core::TenantId::parse("00000000-0000-0000-0000-000000000000").unwrap();
        assert!(matches!(
            store.platform(&a).create_key(&ghost, &new_key("g")).await,
            Err(StoreError::NotFound)
        ));
        // and through a scope for a tenant that does not exist
        let s = scope(&ghost);
        assert!(matches!(
            store.tenant(&s).create_key(&new_key("g2")).await,
            Err(StoreError::NotFound)
        ));
    }

    pub async fn ambiguous_prefix_revocation_is_refused(store: &Store) {
        let a = admin();
        let p = store.platform(&a);
        let t = p.create_tenant(&new_tenant("acme")).await.unwrap();
        p.create_key(&t.id, &new_key("same")).await.unwrap();
        p.create_key(&t.id, &new_key("same")).await.unwrap();
        assert!(matches!(
            p.revoke_key("tgk_same").await,
            Err(StoreError::Conflict(_))
        ));
        assert!(p
            .list_keys(&t.id)
            .await
            .unwrap()
            .iter()
            .all(|k| k.revoked_at_ms.is_none()));
    }

    pub async fn members_grants_and_settings_stay_in_their_tenant(store: &Store) {
        let a = admin();
        let p = store.platform(&a);
        let ta = p.create_tenant(&new_tenant("acme")).await.unwrap();
        let tb = p.create_tenant(&new_tenant("globex")).await.unwrap();
        let (sa, sb) = (scope(&ta.id), scope(&tb.id));
        let (ha, hb) = (store.tenant(&sa), store.tenant(&sb));

        // members: set, replace, list per tenant, remove; another tenant's is NotFound
        ha.set_member("alice", Role::Member).await.unwrap();
        ha.set_member("alice", Role::TenantAdmin).await.unwrap();
        assert!(matches!(
            ha.set_member("root", Role::PlatformAdmin).await,
            Err(StoreError::Invalid(_))
        ));
        let m = ha.members().await.unwrap();
        assert_eq!((m.len(), m[0].role), (1, Role::TenantAdmin));
        assert!(hb.members().await.unwrap().is_empty());
        assert!(matches!(
            hb.remove_member("alice").await,
            Err(StoreError::NotFound)
        ));
        let snap = p.auth_snapshot().await.unwrap();
        assert_eq!(
            snap.members,
            vec![(ta.id.clone(), "alice".to_owned(), Role::TenantAdmin)]
        );
        ha.remove_member("alice").await.unwrap();
        assert!(ha.members().await.unwrap().is_empty());

        // the tenant's own model narrowing and display name
        ha.set_enabled_models(Some(&["gpt-4o".to_owned()]))
            .await
            .unwrap();
        ha.set_display_name("Acme Corp").await.unwrap();
        let t = ha.get().await.unwrap();
        assert_eq!(t.enabled_models, Some(vec!["gpt-4o".to_owned()]));
        assert_eq!(t.display_name, "Acme Corp");
        assert_eq!(hb.get().await.unwrap().enabled_models, None);
        ha.set_enabled_models(None).await.unwrap();
        assert_eq!(ha.get().await.unwrap().enabled_models, None);

        // break-glass grants: visible to their tenant only, active until expiry or revocation
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as i64;
        let g = p
            .create_grant(&ta.id, "incident 42", now + 60_000)
            .await
            .unwrap();
        assert!(matches!(
            p.create_grant(&ta.id, "x", now + 60_000).await,
            Err(StoreError::Invalid(_))
        ));
        assert_eq!(ha.break_glass_grants().await.unwrap(), vec![g.clone()]);
        assert!(hb.break_glass_grants().await.unwrap().is_empty());
        assert_eq!(p.grants(None).await.unwrap().len(), 1);
        assert_eq!(p.grants(Some(&tb.id)).await.unwrap().len(), 0);
        assert_eq!(
            p.active_grant(&ta.id, now).await.unwrap().map(|g| g.id),
            Some(g.id.clone())
        );
        assert!(p.active_grant(&tb.id, now).await.unwrap().is_none());
        assert!(p
            .active_grant(&ta.id, now + 60_000)
            .await
            .unwrap()
            .is_none());
        let revoked = p.revoke_grant(&g.id).await.unwrap();
        assert!(revoked.revoked_at_ms.is_some());
        assert!(p.active_grant(&ta.id, now).await.unwrap().is_none());
        assert!(matches!(
            p.revoke_grant(&g.id).await,
            Err(StoreError::NotFound)
        ));
    }

    pub async fn knowledge_stays_in_its_tenant(store: &Store) {
        use tenantgate_store::knowledge::NewChunk;
        let a = admin();
        let p = store.platform(&a);
        let ta = p.create_tenant(&new_tenant("acme")).await.unwrap();
        let tb = p.create_tenant(&new_tenant("globex")).await.unwrap();
        let (sa, sb) = (scope(&ta.id), scope(&tb.id));
        let (ha, hb) = (store.tenant(&sa), store.tenant(&sb));
        let kb = ha
            .create_knowledge_base("handbook", "demo", 384, 400, true)
            .await
            .unwrap();
        assert!(matches!(
            ha.create_knowledge_base("handbook", "demo", 384, 400, false)
                .await,
            Err(StoreError::Conflict(_))
        ));
        assert!(matches!(
            ha.create_knowledge_base("bad name!", "demo", 384, 400, false)
                .await,
            Err(StoreError::Invalid(_))
        ));
        // globex may use the same name; each sees its own
        let kb_b = hb
            .create_knowledge_base("handbook", "demo", 384, 400, false)
            .await
            .unwrap();
        assert_ne!(kb.id, kb_b.id);
        assert_eq!(ha.knowledge_base("handbook").await.unwrap().id, kb.id);
        assert_eq!(ha.knowledge_base(&kb.id).await.unwrap().id, kb.id);
        assert!(matches!(
            hb.knowledge_base(&kb.id).await,
            Err(StoreError::NotFound)
        ));
        let chunks: Vec<NewChunk> = (0..1200)
            .map(|i| NewChunk {
                ord: i,
                tokens: 10,
                sealed: vec![i as u8; 16],
            })
            .collect();
        let doc = ha
            .add_document(&kb.id, "doc_1", "a.md", "text/markdown", 99, "ab", &chunks)
            .await
            .unwrap();
        assert_eq!(doc.chunks, 1200);
        // another tenant cannot add to, read, or delete from acme's knowledge base
        assert!(matches!(
            hb.add_document(&kb.id, "doc_x", "x", "text/plain", 1, "x", &chunks[..1])
                .await,
            Err(StoreError::NotFound)
        ));
        assert!(matches!(hb.chunks(&kb.id).await, Err(StoreError::NotFound)));
        assert!(hb.documents(&kb.id).await.unwrap().is_empty());
        let (rev, stored) = ha.chunks(&kb.id).await.unwrap();
        assert_eq!((rev, stored.len()), (1, 1200));
        let ids: Vec<i64> = stored.iter().take(3).map(|c| c.id).collect();
        assert_eq!(ha.chunks_by_id(&kb.id, &ids).await.unwrap().len(), 3);
        assert!(hb.chunks_by_id(&kb_b.id, &ids).await.unwrap().is_empty());
        // what an index catches up with: the documents at a revision, then their chunks
        assert_eq!(
            ha.document_ids(&kb.id).await.unwrap(),
            (1, vec!["doc_1".to_owned()])
        );
        let docs = ["doc_1".to_owned()];
        let of_doc = ha.chunks_of_documents(&kb.id, &docs).await.unwrap();
        assert_eq!(of_doc.len(), 1200);
        assert_eq!(
            (of_doc[0].id, &of_doc[0].document[..]),
            (stored[0].id, "a.md")
        );
        assert!(matches!(
            hb.document_ids(&kb.id).await,
            Err(StoreError::NotFound)
        ));
        assert!(hb
            .chunks_of_documents(&kb_b.id, &docs)
            .await
            .unwrap()
            .is_empty());
        assert!(hb
            .chunks_of_documents(&kb.id, &docs)
            .await
            .unwrap()
            .is_empty());
        assert!(matches!(
            hb.delete_document(&kb.id, "doc_1").await,
            Err(StoreError::NotFound)
        ));
        // defaults are in the snapshot
        let snap = p.auth_snapshot().await.unwrap();
        assert_eq!(
            snap.default_knowledge_bases,
            vec![(ta.id.clone(), kb.id.clone())]
        );
        // deletion: a document (revision moves), the knowledge base, everything
        ha.delete_document(&kb.id, "doc_1").await.unwrap();
        let (rev, stored) = ha.chunks(&kb.id).await.unwrap();
        assert_eq!((rev, stored.len()), (2, 0));
        assert!(matches!(
            hb.delete_knowledge_base(&kb.id).await,
            Err(StoreError::NotFound)
        ));
        assert_eq!(ha.delete_all_knowledge().await.unwrap(), 1);
        assert!(ha.knowledge_bases().await.unwrap().is_empty());
        assert_eq!(hb.knowledge_bases().await.unwrap().len(), 1);
    }
}

macro_rules! contract {
    ($($case:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test]
                async fn $case() {
                    let h = super::open_sqlite().await;
                    super::cases::$case(&h.store).await;
                    h.cleanup().await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test]
                async fn $case() {
                    let Some(h) = super::open_pg().await else { return };
                    super::cases::$case(&h.store).await;
                    h.cleanup().await;
                }
            )*
        }
    };
}

contract!(
    tenants_are_created_found_and_listed,
    duplicate_and_invalid_tenants_write_nothing,
    tenant_handle_sees_only_its_own_keys,
    auth_snapshot_excludes_revoked_and_expired_keys,
    every_change_moves_the_revision,
    key_for_unknown_tenant_is_not_found,
    ambiguous_prefix_revocation_is_refused,
    members_grants_and_settings_stay_in_their_tenant,
    knowledge_stays_in_its_tenant,
);

/// PostgreSQL row-level security: the second lock behind the tenant-bound handle.
mod postgres_rls {
    use super::*;

    async fn two_tenants(store: &Store) -> (tenantgate_core::Tenant, tenantgate_core::Tenant) {
        let a = admin();
        let p = store.platform(&a);
        let ta = p.create_tenant(&new_tenant("acme")).await.unwrap();
        let tb = p.create_tenant(&new_tenant("globex")).await.unwrap();
        p.create_key(&ta.id, &new_key("a")).await.unwrap();
        p.create_key(&tb.id, &new_key("b")).await.unwrap();
        (ta, tb)
    }

    #[tokio::test]
    async fn a_connection_without_the_tenant_setting_sees_no_rows() {
        let Some(h) = open_pg().await else { return };
        two_tenants(&h.store).await;
        let Db::Postgres(pool) = h.store.db() else {
            unreachable!()
        };
        for table in ["tenants", "api_keys"] {
            let n: i64 = sqlx::query_scalar(&format!("SELECT count(*) FROM {table}"))
                .fetch_one(pool)
                .await
                .unwrap();
            assert_eq!(n, 0, "{table} visible without a tenant setting");
        }
        h.cleanup().await;
    }

    #[tokio::test]
    async fn a_query_missing_its_tenant_predicate_still_sees_one_tenant() {
        let Some(h) = open_pg().await else { return };
        let (ta, tb) = two_tenants(&h.store).await;
        let Db::Postgres(pool) = h.store.db() else {
            unreachable!()
        };
        let mut tx = pool.begin().await.unwrap();
        sqlx::query("SELECT set_config('tenantgate.tenant_id', $1, true)")
            .bind(ta.id.as_str())
            .execute(&mut *tx)
            .await
            .unwrap();
        let owners: Vec<String> = sqlx::query_scalar("SELECT tenant_id FROM api_keys")
            .fetch_all(&mut *tx)
            .await
            .unwrap();
        assert_eq!(owners, [ta.id.as_str().to_owned()]);
        // Writing a row for another tenant under A's setting is refused by the policy.
        let err = sqlx::query("INSERT INTO api_keys (id, tenant_id, prefix, hash, role, created_at_ms) VALUES ('x', $1, 'p', 'h', 'member', 0)")
            .bind(tb.id.as_str())
            .execute(&mut *tx)
            .await
            .unwrap_err();
        assert!(err.to_string().contains("row-level security"), "{err}");
        drop(tx);
        h.cleanup().await;
    }

    #[tokio::test]
    async fn every_table_but_the_platform_ones_has_rls_enabled_and_forced() {
        let Some(h) = open_pg().await else { return };
        let Db::Postgres(pool) = h.store.db() else {
            unreachable!()
        };
        let schema = h.pg_schema.as_ref().map(|(_, s)| s.clone()).unwrap();
        let rows: Vec<(String, bool, bool)> = sqlx::query_as(
            "SELECT c.relname::text, c.relrowsecurity, c.relforcerowsecurity FROM pg_class c \
             JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = $1 AND c.relkind IN ('r', 'p') ORDER BY 1",
        )
        .bind(&schema)
        .fetch_all(pool)
        .await
        .unwrap();
        // Tables that hold no tenant data. Adding a table means adding RLS or a line here.
        const PLATFORM_TABLES: &[&str] = &["_sqlx_migrations", "control_revision"];
        let mut checked = 0;
        for (name, enabled, forced) in &rows {
            if PLATFORM_TABLES.contains(&name.as_str()) {
                continue;
            }
            assert!(
                *enabled && *forced,
                "table {name}: rls enabled={enabled} forced={forced}"
            );
            checked += 1;
        }
        assert!(checked >= 2, "expected tenant tables, found {rows:?}");
        h.cleanup().await;
    }

    #[tokio::test]
    async fn the_runtime_role_neither_owns_the_tables_nor_bypasses_rls() {
        let Some(h) = open_pg().await else { return };
        let Db::Postgres(pool) = h.store.db() else {
            unreachable!()
        };
        let schema = h.pg_schema.as_ref().map(|(_, s)| s.clone()).unwrap();
        let (user, superuser, bypass): (String, bool, bool) =
            sqlx::query_as("SELECT rolname::text, rolsuper, rolbypassrls FROM pg_roles WHERE rolname = current_user")
                .fetch_one(pool)
                .await
                .unwrap();
        assert_eq!(user, tenantgate_store::DEFAULT_PG_RUNTIME_ROLE);
        assert!(!superuser && !bypass);
        let owned: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM pg_tables WHERE schemaname = $1 AND tableowner = current_user",
        )
        .bind(&schema)
        .fetch_one(pool)
        .await
        .unwrap();
        assert_eq!(owned, 0);
        h.cleanup().await;
    }

    /// The request pool logs in as the runtime role itself: `RESET ROLE` returns to that same
    /// role (there is no owner session underneath to regain), `SET ROLE` to the owner is
    /// refused, and row-level security still hides other tenants' rows afterwards.
    #[tokio::test]
    async fn reset_role_on_a_request_connection_gains_nothing() {
        use sqlx::Connection as _;
        let Some(h) = open_pg().await else { return };
        let (ta, _tb) = two_tenants(&h.store).await;
        let Db::Postgres(pool) = h.store.db() else {
            unreachable!()
        };
        let mut c = pool.acquire().await.unwrap();
        let owner: String = sqlx::query_scalar(
            "SELECT tableowner::text FROM pg_tables WHERE schemaname = current_schema() AND tablename = 'tenants'",
        )
        .fetch_one(&mut *c)
        .await
        .unwrap();
        sqlx::query("RESET ROLE").execute(&mut *c).await.unwrap();
        let (user, session): (String, String) =
            sqlx::query_as("SELECT current_user::text, session_user::text")
                .fetch_one(&mut *c)
                .await
                .unwrap();
        assert_eq!(user, tenantgate_store::DEFAULT_PG_RUNTIME_ROLE);
        assert_eq!(session, tenantgate_store::DEFAULT_PG_RUNTIME_ROLE);
        let e = sqlx::query(&format!("SET ROLE {owner}"))
            .execute(&mut *c)
            .await
            .unwrap_err();
        assert!(e.to_string().contains("permission denied"), "{e}");
        sqlx::query("SET SESSION AUTHORIZATION DEFAULT")
            .execute(&mut *c)
            .await
            .unwrap();
        let mut tx = c.begin().await.unwrap();
        sqlx::query("SELECT set_config('tenantgate.tenant_id', $1, true)")
            .bind(ta.id.as_str())
            .execute(&mut *tx)
            .await
            .unwrap();
        let seen: Vec<String> = sqlx::query_scalar("SELECT id FROM tenants")
            .fetch_all(&mut *tx)
            .await
            .unwrap();
        assert_eq!(seen, [ta.id.as_str().to_owned()]);
        drop(tx);
        drop(c);
        h.cleanup().await;
    }

    /// A pool that would log in as a superuser (or any role owning the tables) is refused at
    /// open, naming the problem.
    #[tokio::test]
    async fn a_request_login_that_could_bypass_rls_is_refused() {
        let Some(h) = open_pg().await else { return };
        let (url, schema) = h.pg_schema.clone().unwrap();
        let mut o = tenantgate_store::StoreOptions::new(url.clone());
        o.pg_schema = schema;
        o.pg_login = tenantgate_store::PgLogin::Url(url);
        let e = Store::open(&o).await.unwrap_err();
        assert!(e.to_string().contains("must not be a superuser"), "{e}");
        h.cleanup().await;
    }
}

/// PostgreSQL: a change made through one store reaches another store's listener at commit.
#[tokio::test]
async fn postgres_changes_are_pushed_to_listeners() {
    let Some(h) = open_pg().await else { return };
    let mut listener = h
        .store
        .change_listener()
        .await
        .unwrap()
        .expect("postgres listens");
    let a = admin();
    #[expect(
        clippy::disallowed_methods,
        reason = "the test drives the server from outside; its tasks are not server background work"
    )]
    let wait = tokio::spawn(async move {
        tokio::time::timeout(std::time::Duration::from_secs(5), listener.changed()).await
    });
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    h.store
        .platform(&a)
        .create_tenant(&new_tenant("pushed"))
        .await
        .unwrap();
    wait.await.unwrap().expect("notified within 5 s").unwrap();
    h.cleanup().await;
}

#[tokio::test]
async fn sqlite_has_no_listener_and_callers_poll() {
    let h = open_sqlite().await;
    assert!(h.store.change_listener().await.unwrap().is_none());
    h.cleanup().await;
}
