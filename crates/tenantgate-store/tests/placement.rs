//! Isolation tiers: a tenant's data rows are where its tier says and nowhere else.
//!
//! Three tenants, one per tier (namespace, schema, dedicated), each write every kind of data
//! (KEK and data keys, a sealed secret, prompt versions, a knowledge base's documents and
//! chunks, audit records with sealed bodies and a signed checkpoint). Then the test looks
//! with plain SQL, past the store: in the shared tables only the namespace tenant's rows; in
//! the schema tenant's schema (PostgreSQL) or file (SQLite) only its rows; in the dedicated
//! tenant's own database only its rows. Reads through the tenant-bound handles work on every
//! tier, from this store and from a second one opened on the same database (a replica).

#![allow(
    clippy::unwrap_used,
    reason = "test code: a panic is the failure report"
)]

mod common;

use common::{admin, new_tenant, scope, Harness};
use std::sync::Arc;
use tenantgate_audit::{Actor, EventType, Record, Signer};
use tenantgate_core::{IsolationTier, Tenant, TenantId};
use tenantgate_crypto::{Key, MasterKey};
use tenantgate_store::audit::NewAuditRecord;
use tenantgate_store::knowledge::NewChunk;
use tenantgate_store::{Db, Keyring, KeyringOptions, LocalKms, Place, Store};

const DATA_TABLES: &[&str] = &[
    "tenant_keks",
    "tenant_data_keys",
    "tenant_secrets",
    "prompt_templates",
    "prompt_versions",
    "kb_documents",
    "kb_chunks",
    "kb_sources",
    "audit_heads",
    "audit_records",
    "audit_bodies",
    "audit_checkpoints",
];

fn keyring(store: &Store, master: &Key) -> Keyring {
    let kms = LocalKms::new(
        store.clone(),
        MasterKey::from_key(master.clone()),
        std::time::Duration::from_secs(60),
    );
    Keyring::new(store.clone(), Arc::new(kms), KeyringOptions::default())
}

fn entry(i: i64, body: Vec<u8>) -> NewAuditRecord {
    NewAuditRecord {
        record: Record {
            v: 1,
            tenant: String::new(),
            seq: 0,
            ts_ms: i,
            id: format!("r{i}"),
            event: EventType::ApiCall,
            actor: Actor {
                kind: "api_key".into(),
                key_id: Some("k1".into()),
                user: Some("u".into()),
                role: None,
            },
            model: None,
            prompt: None,
            response: None,
            tool_calls: vec![],
            tokens: None,
            cost_micros: None,
            latency_ms: Some(1),
            status: 200,
            error: None,
            client: None,
            detail: serde_json::json!({}),
        },
        prompt_sealed: Some(body),
        response_sealed: None,
    }
}

/// Writes every kind of tenant data through the store's handles, and reads it back.
async fn write_and_read_everything(store: &Store, kr: &Keyring, t: &Tenant) {
    let s = scope(&t.id);
    kr.put_secret(&s, "provider", b"sk-secret").await.unwrap();
    let prompts = kr.prompts(store, &s);
    prompts
        .push("support", "You are {{ who }}.", "ops", true)
        .await
        .unwrap();
    let h = store.tenant(&s);
    let kb = h
        .create_knowledge_base("handbook", "demo", 8, 400, true)
        .await
        .unwrap();
    let chunks: Vec<NewChunk> = (0..3)
        .map(|i| NewChunk {
            ord: i,
            tokens: 5,
            sealed: vec![i as u8; 16],
        })
        .collect();
    // The document as uploaded (sealed by the gateway: opaque here), in one part.
    let source = [tenantgate_store::export::SourcePart {
        part: 0,
        sealed: kr
            .seal(&s, "kb_source", "doc-1:0", b"0123456789")
            .await
            .unwrap(),
    }];
    h.add_document_with_source(
        &kb.id,
        "doc-1",
        "a.txt",
        "text/plain",
        10,
        "00",
        &chunks,
        &source,
    )
    .await
    .unwrap();
    let body = kr
        .seal(&s, "audit_body", "r1", b"the prompt")
        .await
        .unwrap();
    let out = h
        .audit()
        .append(vec![entry(1, body.clone()), entry(2, body)])
        .await
        .unwrap();
    let signer = Signer::from_seed(&[1; 32]);
    h.audit()
        .add_checkpoint(&signer.checkpoint(t.id.as_str(), 2, &out[1].hash, 0))
        .await
        .unwrap();
    read_everything(store, kr, t).await;
}

async fn read_everything(store: &Store, kr: &Keyring, t: &Tenant) {
    let s = scope(&t.id);
    assert_eq!(
        &kr.get_secret(&s, "provider").await.unwrap()[..],
        b"sk-secret"
    );
    let p = kr.prompts(store, &s).get("support", None).await.unwrap();
    assert_eq!(p.template, "You are {{ who }}.");
    let h = store.tenant(&s);
    let kb = h.knowledge_base("handbook").await.unwrap();
    let (rev, chunks) = h.chunks(&kb.id).await.unwrap();
    assert_eq!(chunks.len(), 3);
    assert_eq!(rev, kb.revision);
    assert_eq!(h.documents(&kb.id).await.unwrap().len(), 1);
    let recs = h.audit().records(1, 2).await.unwrap();
    assert_eq!(recs.len(), 2);
    assert!(recs[0].prompt_sealed.is_some());
    assert_eq!(h.audit().checkpoints(0, 10).await.unwrap().len(), 1);
}

/// Rows of `tenant` (and of anyone else) in each data table of one database (and schema).
async fn counts(db: &Db, schema: Option<&str>, tenant: &TenantId) -> Vec<(&'static str, i64, i64)> {
    let mut out = Vec::new();
    for t in DATA_TABLES {
        let table = match schema {
            Some(s) => format!("{s}.{t}"),
            None => (*t).to_owned(),
        };
        let own = format!("SELECT COUNT(*) FROM {table} WHERE tenant_id = $1");
        let other = format!("SELECT COUNT(*) FROM {table} WHERE tenant_id <> $1");
        let (a, b): (i64, i64) = match db {
            Db::Sqlite(p) => (
                sqlx::query_scalar(&own)
                    .bind(tenant.as_str())
                    .fetch_one(p)
                    .await
                    .unwrap(),
                sqlx::query_scalar(&other)
                    .bind(tenant.as_str())
                    .fetch_one(p)
                    .await
                    .unwrap(),
            ),
            Db::Postgres(p) => {
                // As the owner, with row-level security bypassed: what a DBA sees.
                let mut c = p.acquire().await.unwrap();
                (
                    sqlx::query_scalar(&own)
                        .bind(tenant.as_str())
                        .fetch_one(&mut *c)
                        .await
                        .unwrap(),
                    sqlx::query_scalar(&other)
                        .bind(tenant.as_str())
                        .fetch_one(&mut *c)
                        .await
                        .unwrap(),
                )
            }
        };
        out.push((*t, a, b));
    }
    out
}

fn assert_all(c: &[(&str, i64, i64)], what: &str, own: bool) {
    for (t, n, _) in c {
        if own {
            assert!(*n > 0, "{what}: no rows in {t}");
        } else {
            assert_eq!(*n, 0, "{what}: rows in {t}");
        }
    }
}

fn assert_no_others(c: &[(&str, i64, i64)], what: &str) {
    for (t, _, others) in c {
        assert_eq!(*others, 0, "{what}: another tenant's rows in {t}");
    }
}

async fn sqlite_file(path: &std::path::Path) -> Db {
    let o = sqlx::sqlite::SqliteConnectOptions::new().filename(path);
    Db::Sqlite(sqlx::SqlitePool::connect_with(o).await.unwrap())
}

async fn each_tier_keeps_its_rows_in_its_place(h: &Harness, dedicated: &str, dedicated_db: Db) {
    let store = &h.store;
    let a = admin();
    let p = store.platform(&a);
    let master = Key::generate();
    let kr = keyring(store, &master);
    let ns = p.create_tenant(&new_tenant("ns")).await.unwrap();
    let mut n = new_tenant("sch");
    n.isolation = IsolationTier::Schema;
    let sch = p.create_tenant(&n).await.unwrap();
    let mut n = new_tenant("ded");
    n.isolation = IsolationTier::Dedicated;
    // The dedicated tier needs its own database; another tier refuses one.
    assert!(p.create_tenant(&n).await.is_err());
    let mut other = new_tenant("nope");
    other.isolation = IsolationTier::Schema;
    assert!(p.create_tenant_at(&other, Some(dedicated)).await.is_err());
    let ded = p.create_tenant_at(&n, Some(dedicated)).await.unwrap();
    assert_eq!(sch.isolation, IsolationTier::Schema);
    assert_eq!(ded.isolation, IsolationTier::Dedicated);

    for t in [&ns, &sch, &ded] {
        write_and_read_everything(store, &kr, t).await;
    }

    // The shared tables: the namespace tenant's rows, nobody else's. (Counted on the owner's
    // connection: on PostgreSQL the request role would see no rows without a tenant setting.)
    let owner = h.maintenance().await;
    let shared = owner.db();
    assert_all(&counts(shared, None, &ns.id).await, "shared/ns", true);
    assert_all(
        &counts(shared, None, &sch.id).await,
        "shared/schema tenant",
        false,
    );
    assert_all(
        &counts(shared, None, &ded.id).await,
        "shared/dedicated tenant",
        false,
    );

    // The schema tenant's place: its rows only.
    let place = store.place(&sch.id).await.unwrap();
    let c = match (&place, shared) {
        (Place::PgSchema(s), Db::Postgres(_)) => counts(owner.db(), Some(s), &sch.id).await,
        (Place::SqliteFile(f), Db::Sqlite(_)) => {
            assert!(f.exists(), "{}", f.display());
            counts(&sqlite_file(f).await, None, &sch.id).await
        }
        other => panic!("schema tenant placed at {other:?}"),
    };
    assert_all(&c, "schema place", true);
    assert_no_others(&c, "schema place");

    // The dedicated tenant's own database: its rows only.
    let c = counts(&dedicated_db, None, &ded.id).await;
    assert_all(&c, "dedicated database", true);
    assert_no_others(&c, "dedicated database");

    // A second store on the same database (another replica) finds each place from the control
    // plane and reads everything back.
    let replica = h.reopen().await;
    let kr2 = keyring(&replica, &master);
    for t in [&ns, &sch, &ded] {
        read_everything(&replica, &kr2, t).await;
    }
    // `tenant show`'s answer, layer by layer.
    for (t, tier) in [
        (&ns, IsolationTier::Namespace),
        (&sch, IsolationTier::Schema),
        (&ded, IsolationTier::Dedicated),
    ] {
        let s = replica.platform(&a).placement(&t.id).await.unwrap();
        assert_eq!(s.tier, tier);
        assert_eq!(s.layers.len(), 6);
    }
    // The signer's cross-tenant reads reach every place: each chain's head is signed.
    let unsigned = replica.platform(&a).audit_unsigned_heads().await.unwrap();
    assert!(unsigned.is_empty(), "{unsigned:?}");
    let last = replica
        .platform(&a)
        .audit_last_checkpoints(&[ns.id.clone(), sch.id.clone(), ded.id.clone()])
        .await
        .unwrap();
    assert_eq!(last.len(), 3);
    replica.close().await;
}

#[tokio::test]
async fn sqlite_each_tier_keeps_its_rows_in_its_place() {
    let h = common::open_sqlite().await;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("tenantgate.sqlite");
    let loc = dir.path().display().to_string();
    // The dedicated data directory's file is created with the tenant; the test's own pool
    // on it connects when first used, afterwards.
    each_tier_keeps_its_rows_in_its_place(&h, &loc, Db::Sqlite(lazy_sqlite(&db))).await;
    h.cleanup().await;
}

fn lazy_sqlite(path: &std::path::Path) -> sqlx::SqlitePool {
    let o = sqlx::sqlite::SqliteConnectOptions::new().filename(path);
    sqlx::SqlitePool::connect_lazy_with(o)
}

#[tokio::test]
async fn postgres_each_tier_keeps_its_rows_in_its_place() {
    let Some(h) = common::open_pg().await else {
        return;
    };
    let (url, _) = h.pg_schema.clone().unwrap();
    // The dedicated tenant's own database on the same server.
    let name = format!("tg_ded_{:016x}", rand::random::<u64>());
    let mut admin_conn = {
        use sqlx::Connection;
        sqlx::PgConnection::connect(&url).await.unwrap()
    };
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&mut admin_conn)
        .await
        .unwrap();
    let base = url.rsplit_once('/').unwrap().0;
    let ded_url = format!("{base}/{name}");
    // Its tables live under the configured schema name there.
    let schema = h.pg_schema.as_ref().unwrap().1.clone();
    let after = format!("SET search_path TO {schema}");
    let ded_db = Db::Postgres(
        sqlx::postgres::PgPoolOptions::new()
            .max_connections(1)
            .after_connect(move |c, _| {
                let after = after.clone();
                Box::pin(async move {
                    sqlx::Executor::execute(c, after.as_str()).await?;
                    Ok(())
                })
            })
            .connect_lazy(&ded_url)
            .unwrap(),
    );
    each_tier_keeps_its_rows_in_its_place(&h, &format!("{base}/{name}"), ded_db.clone()).await;
    // Clean up: the tenant schemas and the dedicated database.
    if let Db::Postgres(p) = &ded_db {
        p.close().await;
    }
    let owner = h.maintenance().await;
    if let Db::Postgres(p) = owner.db() {
        let rows: Vec<String> = sqlx::query_scalar(&format!(
            "SELECT location FROM {schema}.tenant_placement WHERE tier = 'schema'"
        ))
        .fetch_all(p)
        .await
        .unwrap();
        for s in rows {
            let _ = sqlx::query(&format!("DROP SCHEMA IF EXISTS {s} CASCADE"))
                .execute(p)
                .await;
        }
        p.close().await;
    }
    h.cleanup().await;
    let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        .execute(&mut admin_conn)
        .await;
}

/// Appends one record at a time to `t`'s chain until `stop`, as the gateway's writer does: a
/// write refused by a moved tenant's fence forgets the place and is retried. Returns how many
/// records it appended.
async fn keep_appending(store: &Store, t: &TenantId, stop: &std::sync::atomic::AtomicBool) -> u64 {
    use std::sync::atomic::Ordering;
    let s = scope(t);
    let mut n = 0;
    let mut i = 1000;
    while !stop.load(Ordering::Relaxed) {
        i += 1;
        loop {
            match store
                .tenant(&s)
                .audit()
                .append(vec![entry(i, vec![1; 8])])
                .await
            {
                Ok(_) => break,
                Err(e) if e.is_moved() => {
                    store.forget_place(t);
                    tokio::time::sleep(std::time::Duration::from_millis(2)).await;
                }
                Err(e) => panic!("append failed: {e}"),
            }
        }
        n += 1;
        tokio::task::yield_now().await;
    }
    n
}

/// Every record from 1 to the head links to the one before it, from the genesis.
async fn chain_verifies(store: &Store, t: &TenantId) -> u64 {
    let s = scope(t);
    let (head, hash) = store.tenant(&s).audit().head().await.unwrap();
    let recs = store.tenant(&s).audit().records(1, head).await.unwrap();
    assert_eq!(recs.len() as u64, head, "records missing from the chain");
    let mut prev = tenantgate_audit::GENESIS;
    for (i, r) in recs.iter().enumerate() {
        assert_eq!(r.seq, i as u64 + 1);
        prev = tenantgate_audit::link(&prev, r.record.as_bytes());
        assert_eq!(prev, r.hash, "record {} does not link", r.seq);
    }
    assert_eq!(prev, hash);
    head
}

/// Moves one tenant namespace -> schema -> dedicated -> namespace while a writer keeps
/// appending to its chain: no record is lost, the chain verifies across every move, the data
/// reads back, and each source keeps nothing of the tenant's. An aborted move changes nothing.
async fn a_tenant_moves_between_tiers_under_writes(h: &Harness, dedicated: &str) {
    use std::sync::atomic::{AtomicBool, Ordering};
    let store = &h.store;
    let a = admin();
    let master = Key::generate();
    let kr = keyring(store, &master);
    let t = store
        .platform(&a)
        .create_tenant(&new_tenant("mover"))
        .await
        .unwrap();
    write_and_read_everything(store, &kr, &t).await;
    let owner = h.maintenance().await;
    let mp = owner.platform(&a);

    // Abort: copied, then rolled back; the tenant stays where it was.
    let plan = mp
        .move_begin(&t.id, Some((IsolationTier::Schema, None)))
        .await
        .unwrap();
    mp.move_copy(&plan).await.unwrap();
    mp.move_abort(&plan).await.unwrap();
    store.forget_place(&t.id);
    assert_eq!(store.place(&t.id).await.unwrap(), Place::Shared);
    let before = chain_verifies(store, &t.id).await;

    let mut expected = before;
    for (tier, loc) in [
        (IsolationTier::Schema, None),
        (IsolationTier::Dedicated, Some(dedicated)),
        (IsolationTier::Namespace, None),
    ] {
        let stop = AtomicBool::new(false);
        let from = store.place(&t.id).await.unwrap();
        // Another replica that learned the place before the move and has not reloaded.
        let stale = h.reopen().await;
        assert_eq!(stale.place(&t.id).await.unwrap(), from);
        let mover = async {
            let plan = mp.move_begin(&t.id, Some((tier, loc))).await.unwrap();
            mp.move_copy(&plan).await.unwrap();
            let report = mp.move_switch(&plan).await.unwrap();
            let plan = mp.move_begin(&t.id, None).await.unwrap();
            mp.move_purge(&plan).await.unwrap();
            stop.store(true, Ordering::Relaxed);
            report
        };
        let (appended, report) = tokio::join!(keep_appending(store, &t.id, &stop), mover);
        expected += appended;
        assert!(appended > 0, "the writer made no progress during the move");
        assert!(report
            .tables
            .iter()
            .any(|c| c.table == "audit_records" && c.rows > 0));
        store.forget_place(&t.id);
        let to = store.place(&t.id).await.unwrap();
        assert_eq!(to.tier(), tier);
        assert_ne!(to, from);
        assert_eq!(
            chain_verifies(store, &t.id).await,
            expected,
            "a record was lost"
        );
        read_everything(store, &kr, &t).await;
        // The stale replica's write is refused by the fence, not lost in the old place; once it
        // forgets the place it writes to the new one.
        let e = stale
            .tenant(&scope(&t.id))
            .audit()
            .append(vec![entry(1, vec![2; 8])])
            .await
            .unwrap_err();
        assert!(e.is_moved(), "{e}");
        stale.forget_place(&t.id);
        stale
            .tenant(&scope(&t.id))
            .audit()
            .append(vec![entry(1, vec![2; 8])])
            .await
            .unwrap();
        expected += 1;
        assert_eq!(chain_verifies(store, &t.id).await, expected);
        stale.close().await;
        // The tenant row says the new tier.
        assert_eq!(
            store
                .platform(&a)
                .get_tenant(&t.id)
                .await
                .unwrap()
                .isolation,
            tier
        );
        // Nothing of the tenant's is left where it was.
        if from == Place::Shared {
            assert_all(
                &counts(owner.db(), None, &t.id).await,
                "shared after the move",
                false,
            );
        }
    }
    owner.close().await;
}

#[tokio::test]
async fn sqlite_a_tenant_moves_between_tiers_under_writes() {
    let h = common::open_sqlite().await;
    let dir = tempfile::tempdir().unwrap();
    a_tenant_moves_between_tiers_under_writes(&h, &dir.path().display().to_string()).await;
    h.cleanup().await;
}

#[tokio::test]
async fn postgres_a_tenant_moves_between_tiers_under_writes() {
    let Some(h) = common::open_pg().await else {
        return;
    };
    let (url, _) = h.pg_schema.clone().unwrap();
    let name = format!("tg_ded_{:016x}", rand::random::<u64>());
    let mut admin_conn = {
        use sqlx::Connection;
        sqlx::PgConnection::connect(&url).await.unwrap()
    };
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&mut admin_conn)
        .await
        .unwrap();
    let base = url.rsplit_once('/').unwrap().0;
    a_tenant_moves_between_tiers_under_writes(&h, &format!("{base}/{name}")).await;
    h.cleanup().await;
    let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        .execute(&mut admin_conn)
        .await;
}
