//! Audit chains in the store, on both backends: linear under concurrent writers (two store
//! handles stand in for two replicas), tenant-partitioned, append-only, pruned only to a
//! signed checkpoint.
#![allow(clippy::unwrap_used, reason = "test code")]

mod common;

use common::{admin, new_tenant, open_pg, open_sqlite, scope, Harness};
use serde_json::json;
use tenantgate_audit::{link, Actor, EventType, Record, Signer, GENESIS};
use tenantgate_core::TenantId;
use tenantgate_store::audit::{AuditFilter, NewAuditRecord};
use tenantgate_store::{Db, Store};

fn entry(id: &str, ts_ms: i64, user: &str) -> NewAuditRecord {
    NewAuditRecord {
        record: Record {
            v: 1,
            tenant: String::new(),
            seq: 0,
            ts_ms,
            id: id.into(),
            event: EventType::ApiCall,
            actor: Actor {
                kind: "api_key".into(),
                key_id: Some("k1".into()),
                user: Some(user.into()),
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
            detail: json!({}),
        },
        prompt_sealed: Some(b"sealed-bytes".to_vec()),
        response_sealed: None,
    }
}

async fn tenant(store: &Store, slug: &str) -> TenantId {
    let a = admin();
    store
        .platform(&a)
        .create_tenant(&new_tenant(slug))
        .await
        .unwrap()
        .id
}

/// Recomputes the stored chain from genesis; returns the number of records.
async fn check_chain(store: &Store, id: &TenantId) -> u64 {
    let s = scope(id);
    let audit = store.tenant(&s).audit();
    let (head, head_hash) = audit.head().await.unwrap();
    let recs = audit.records(1, head).await.unwrap();
    let mut prev = GENESIS;
    for (i, r) in recs.iter().enumerate() {
        assert_eq!(r.seq, i as u64 + 1, "no gap, no duplicate");
        let v: serde_json::Value = serde_json::from_str(&r.record).unwrap();
        assert_eq!(v["seq"], r.seq);
        assert_eq!(v["tenant"], id.as_str());
        prev = link(&prev, &tenantgate_audit::canonical(&v).unwrap());
        assert_eq!(prev, r.hash, "stored hash at seq {}", r.seq);
    }
    assert_eq!(prev, head_hash);
    head
}

mod cases {
    use super::*;

    pub async fn batches_extend_one_linear_chain_per_tenant(h: &Harness) {
        let store = &h.store;
        let (a, b) = (tenant(store, "acme").await, tenant(store, "globex").await);
        let (sa, sb) = (scope(&a), scope(&b));
        for round in 0..3 {
            let ea: Vec<_> = (0..5)
                .map(|i| entry(&format!("a{round}{i}"), 1000, "u"))
                .collect();
            let eb = [entry(&format!("b{round}"), 1000, "u")];
            let out = store
                .audit_append(&[(&sa, &ea[..]), (&sb, &eb[..])])
                .await
                .unwrap();
            assert_eq!(out[0].len(), 5);
            assert_eq!(out[0][0].seq, round * 5 + 1);
            assert_eq!(out[1][0].seq, round + 1);
        }
        assert_eq!(check_chain(store, &a).await, 15);
        assert_eq!(check_chain(store, &b).await, 3);
        // Each tenant's handle sees only its own chain.
        let seen = store
            .tenant(&sb)
            .audit()
            .query(&AuditFilter {
                limit: 100,
                ..Default::default()
            })
            .await
            .unwrap();
        assert_eq!(seen.len(), 3);
        assert!(seen
            .iter()
            .all(|r| r.record.contains(b.as_str()) && !r.record.contains(a.as_str())));
        assert_eq!(seen[0].prompt_sealed.as_deref(), Some(&b"sealed-bytes"[..]));
    }

    pub async fn concurrent_writers_on_two_handles_never_fork_the_chain(h: &Harness) {
        let a = tenant(&h.store, "acme").await;
        let other = h.reopen().await;
        let mut tasks = Vec::new();
        for w in 0..6 {
            let store = if w % 2 == 0 {
                h.store.clone()
            } else {
                other.clone()
            };
            let a = a.clone();
            #[expect(
                clippy::disallowed_methods,
                reason = "the test drives the server from outside; its tasks are not server background work"
            )]
            tasks.push(tokio::spawn(async move {
                let s = scope(&a);
                for i in 0..20 {
                    let n = 1 + (i % 3);
                    let e: Vec<_> = (0..n)
                        .map(|j| entry(&format!("w{w}i{i}j{j}"), 5, "u"))
                        .collect();
                    store.audit_append(&[(&s, &e[..])]).await.unwrap();
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        // 6 writers x (7 x 1 + 7 x 2 + 6 x 3) records.
        assert_eq!(check_chain(&h.store, &a).await, 6 * (7 + 14 + 18));
        other.close().await;
    }

    pub async fn query_filters_by_user_time_and_event(h: &Harness) {
        let store = &h.store;
        let a = tenant(store, "acme").await;
        let s = scope(&a);
        let audit = store.tenant(&s).audit();
        audit
            .append(vec![
                entry("r1", 100, "alice"),
                entry("r2", 200, "bob"),
                entry("r3", 300, "alice"),
            ])
            .await
            .unwrap();
        let audit = &audit;
        let q = |f: AuditFilter| async move {
            audit
                .query(&AuditFilter { limit: 50, ..f })
                .await
                .unwrap()
                .iter()
                .map(|r| r.seq)
                .collect::<Vec<_>>()
        };
        assert_eq!(
            q(AuditFilter {
                user: Some("alice".into()),
                ..Default::default()
            })
            .await,
            vec![3, 1]
        );
        assert_eq!(
            q(AuditFilter {
                from_ms: Some(150),
                to_ms: Some(300),
                ..Default::default()
            })
            .await,
            vec![2]
        );
        assert_eq!(
            q(AuditFilter {
                event: Some("deletion".into()),
                ..Default::default()
            })
            .await,
            Vec::<u64>::new()
        );
        assert_eq!(
            q(AuditFilter {
                before_seq: Some(3),
                ..Default::default()
            })
            .await,
            vec![2, 1]
        );
        assert_eq!(audit.seq_range(150, 1000).await.unwrap(), Some((2, 3)));
    }

    pub async fn records_are_append_only_and_pruned_only_to_a_checkpoint(h: &Harness) {
        let store = &h.store;
        let a = tenant(store, "acme").await;
        let s = scope(&a);
        let audit = store.tenant(&s).audit();
        let out = audit
            .append(
                (1..=6)
                    .map(|i| entry(&format!("r{i}"), i * 100, "u"))
                    .collect(),
            )
            .await
            .unwrap();
        let signer = Signer::from_seed(&[1; 32]);
        audit
            .add_checkpoint(&signer.checkpoint(a.as_str(), 2, &out[1].hash, 0))
            .await
            .unwrap();
        audit
            .add_checkpoint(&signer.checkpoint(a.as_str(), 4, &out[3].hash, 0))
            .await
            .unwrap();
        // No UPDATE, through any path the application has.
        let upd = "UPDATE audit_records SET status = 500 WHERE seq = 1";
        let del = "DELETE FROM audit_records WHERE seq = 6";
        match store.db() {
            Db::Sqlite(p) => {
                assert!(sqlx::query(upd).execute(p).await.is_err());
                assert!(
                    sqlx::query(del).execute(p).await.is_err(),
                    "unsigned records cannot be deleted"
                );
            }
            Db::Postgres(p) => {
                let mut tx = p.begin().await.unwrap();
                sqlx::query("SELECT set_config('tenantgate.platform', 'on', true)")
                    .execute(&mut *tx)
                    .await
                    .unwrap();
                let e = sqlx::query(upd).execute(&mut *tx).await.unwrap_err();
                assert!(e.to_string().contains("permission denied"), "{e}");
                drop(tx);
                let mut tx = p.begin().await.unwrap();
                sqlx::query("SELECT set_config('tenantgate.platform', 'on', true)")
                    .execute(&mut *tx)
                    .await
                    .unwrap();
                assert!(sqlx::query(del).execute(&mut *tx).await.is_err());
            }
        }
        // Records 1-5 are older than 550: pruning (on the owner's maintenance handle) stops at
        // the checkpoint at 4, once its signature checks out against the signer's key.
        let owner = h.maintenance().await;
        let ad = admin();
        let other = Signer::from_seed(&[2; 32]).public_key();
        assert!(
            owner
                .platform(&ad)
                .audit_prune(&a, 550, &other)
                .await
                .is_err(),
            "a checkpoint that does not verify under the key prunes nothing"
        );
        assert_eq!(
            owner
                .platform(&ad)
                .audit_prune(&a, 550, &signer.public_key())
                .await
                .unwrap(),
            4
        );
        assert_eq!(audit.first_seq().await.unwrap(), Some(5));
        let (before, _) = audit.checkpoint_around(4).await.unwrap();
        let cp = before.unwrap();
        assert_eq!(cp.seq, 4);
        // What remains links from the checkpoint's hash.
        let rest = audit.records(1, 100).await.unwrap();
        let mut prev: [u8; 32] = hex::decode(&cp.hash).unwrap().try_into().unwrap();
        for r in rest {
            let v: serde_json::Value = serde_json::from_str(&r.record).unwrap();
            prev = link(&prev, &tenantgate_audit::canonical(&v).unwrap());
            assert_eq!(prev, r.hash);
        }
    }

    /// The rewrite attack's steps, as plain row edits with the triggers in place: a checkpoint
    /// that names no record with its hash (the "fake checkpoint with a large seq" that lifted
    /// the delete guard), one behind the newest, and deleting one are all refused; on
    /// PostgreSQL the request role cannot delete audit rows at all.
    pub async fn checkpoints_cannot_be_forged_reordered_or_deleted(h: &Harness) {
        let store = &h.store;
        let a = tenant(store, "acme").await;
        let s = scope(&a);
        let audit = store.tenant(&s).audit();
        let out = audit
            .append((1..=6).map(|i| entry(&format!("r{i}"), i, "u")).collect())
            .await
            .unwrap();
        let signer = Signer::from_seed(&[1; 32]);
        audit
            .add_checkpoint(&signer.checkpoint(a.as_str(), 4, &out[3].hash, 0))
            .await
            .unwrap();
        // Storing the same checkpoint again is a no-op, not an error (signing is idempotent).
        audit
            .add_checkpoint(&signer.checkpoint(a.as_str(), 4, &out[3].hash, 0))
            .await
            .unwrap();
        let fake_far = signer.checkpoint(a.as_str(), 1_000_000, &[7; 32], 0);
        let fake_hash = signer.checkpoint(a.as_str(), 6, &[7; 32], 0);
        let behind = signer.checkpoint(a.as_str(), 2, &out[1].hash, 0);
        for (cp, what) in [
            (&fake_far, "a checkpoint past the head"),
            (&fake_hash, "a checkpoint whose hash is not the record's"),
            (&behind, "a checkpoint behind the newest"),
        ] {
            let e = audit.add_checkpoint(cp).await.expect_err(what);
            assert!(e.to_string().contains("audit checkpoint"), "{what}: {e}");
        }
        // The signer's batch insert skips one behind the newest (a replica signed further
        // first) instead of failing the batch, and says which it stored.
        let ad = admin();
        let p = store.platform(&ad);
        assert!(p
            .audit_add_checkpoints(std::slice::from_ref(&behind))
            .await
            .unwrap()
            .is_empty());
        let at5 = signer.checkpoint(a.as_str(), 5, &out[4].hash, 0);
        assert_eq!(
            p.audit_add_checkpoints(&[at5]).await.unwrap(),
            [(a.as_str().to_owned(), 5)]
        );
        let tid = a.as_str().to_owned();
        // No record goes into the signed range (where retention may have pruned): the refusal
        // is the trigger's, ahead of the key's uniqueness.
        let insert_at_3 = "INSERT INTO audit_records (tenant_id, seq, ts_ms, request_id, event, \
             status, record, hash) SELECT tenant_id, 3, ts_ms, 'forged', event, status, record, \
             hash FROM audit_records WHERE tenant_id = $1 AND seq = 5";
        let e = match store.db() {
            Db::Sqlite(p) => sqlx::query(&insert_at_3.replace("$1", "?1"))
                .bind(&tid)
                .execute(p)
                .await
                .unwrap_err(),
            Db::Postgres(p) => {
                let mut tx = p.begin().await.unwrap();
                sqlx::query("SELECT set_config('tenantgate.platform', 'on', true)")
                    .execute(&mut *tx)
                    .await
                    .unwrap();
                sqlx::query(insert_at_3)
                    .bind(&tid)
                    .execute(&mut *tx)
                    .await
                    .unwrap_err()
            }
        };
        assert!(e.to_string().contains("past the last checkpoint"), "{e}");
        match store.db() {
            Db::Sqlite(p) => {
                let e = sqlx::query("DELETE FROM audit_checkpoints WHERE tenant_id = ?1")
                    .bind(&tid)
                    .execute(p)
                    .await
                    .unwrap_err();
                assert!(e.to_string().contains("cannot be deleted"), "{e}");
            }
            Db::Postgres(p) => {
                for sql in [
                    "DELETE FROM audit_checkpoints WHERE tenant_id = $1",
                    "DELETE FROM audit_records WHERE tenant_id = $1 AND seq <= 4",
                    "DELETE FROM audit_bodies WHERE tenant_id = $1",
                ] {
                    let mut tx = p.begin().await.unwrap();
                    sqlx::query("SELECT set_config('tenantgate.platform', 'on', true)")
                        .execute(&mut *tx)
                        .await
                        .unwrap();
                    let e = sqlx::query(sql)
                        .bind(&tid)
                        .execute(&mut *tx)
                        .await
                        .unwrap_err();
                    assert!(e.to_string().contains("permission denied"), "{sql}: {e}");
                }
                // Even the owner cannot delete a checkpoint.
                let owner = h.maintenance().await;
                let Db::Postgres(o) = owner.db() else {
                    unreachable!()
                };
                let mut tx = o.begin().await.unwrap();
                sqlx::query("SELECT set_config('tenantgate.platform', 'on', true)")
                    .execute(&mut *tx)
                    .await
                    .unwrap();
                let e = sqlx::query("DELETE FROM audit_checkpoints WHERE tenant_id = $1")
                    .bind(&tid)
                    .execute(&mut *tx)
                    .await
                    .unwrap_err();
                assert!(e.to_string().contains("cannot be deleted"), "{e}");
            }
        }
        // The walk from the checkpoint to the head holds; from a wrong hash it does not.
        let span = |from_hash: [u8; 32]| tenantgate_store::audit_anchor::Span {
            tenant: a.clone(),
            from_seq: 4,
            from_hash,
            to_seq: 6,
            to_hash: out[5].hash,
        };
        let r = p
            .audit_walk(&[span(out[3].hash), span([0; 32])])
            .await
            .unwrap();
        assert_eq!(r[0], Ok(()));
        assert!(r[1].is_err());
        let last = p
            .audit_last_checkpoints(std::slice::from_ref(&a))
            .await
            .unwrap();
        assert_eq!(last[&a].seq, 5);
    }

    pub async fn unsigned_heads_are_listed_for_the_checkpointer(h: &Harness) {
        let store = &h.store;
        let a = tenant(store, "acme").await;
        let s = scope(&a);
        let out = store
            .tenant(&s)
            .audit()
            .append(vec![entry("x", 1, "u")])
            .await
            .unwrap();
        let ad = admin();
        let p = store.platform(&ad);
        let heads = p.audit_unsigned_heads().await.unwrap();
        assert_eq!(heads.len(), 1);
        assert_eq!(
            (heads[0].seq, heads[0].last_checkpoint, heads[0].hash),
            (1, 0, out[0].hash)
        );
        let cp = Signer::from_seed(&[1; 32]).checkpoint(a.as_str(), 1, &out[0].hash, 0);
        p.audit_add_checkpoint(&a, &cp).await.unwrap();
        assert!(p.audit_unsigned_heads().await.unwrap().is_empty());
    }
}

macro_rules! suite {
    ($($case:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    let h = super::open_sqlite().await;
                    super::cases::$case(&h).await;
                    h.cleanup().await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    let Some(h) = super::open_pg().await else { return };
                    super::cases::$case(&h).await;
                    h.cleanup().await;
                }
            )*
        }
    };
}

suite!(
    batches_extend_one_linear_chain_per_tenant,
    concurrent_writers_on_two_handles_never_fork_the_chain,
    query_filters_by_user_time_and_event,
    records_are_append_only_and_pruned_only_to_a_checkpoint,
    checkpoints_cannot_be_forged_reordered_or_deleted,
    unsigned_heads_are_listed_for_the_checkpointer,
);

/// The audit writer's own SQLite connection (`audit_sqlite`) and the pool's transaction
/// interleave on one chain, from two threads at once: one linear chain, the same hashes as
/// the pool computes, and the database's triggers still refuse a record behind a checkpoint.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_writers_own_connection_and_the_pool_extend_one_chain() {
    let h = open_sqlite().await;
    let a = tenant(&h.store, "acme").await;
    let b = tenant(&h.store, "globex").await;
    let mut own = h.store.open_audit_appender().await.unwrap().unwrap();
    let (sa, sb) = (scope(&a), scope(&b));
    let thread = std::thread::spawn(move || {
        for i in 0..40 {
            let ea = [entry(&format!("own{i}"), 7, "u")];
            let eb = [entry(&format!("ownb{i}"), 7, "u")];
            let out = own.append(&[(&sa, &ea[..]), (&sb, &eb[..])]).unwrap();
            assert_eq!((out.len(), out[0].len(), out[1].len()), (2, 1, 1));
        }
        // The same tenant twice in one batch would read one head for both: refused.
        let e = [entry("twice", 7, "u")];
        assert!(own.append(&[(&sa, &e[..]), (&sa, &e[..])]).is_err());
        own
    });
    let s = scope(&a);
    for i in 0..40 {
        let e = [entry(&format!("pool{i}"), 7, "u")];
        h.store.audit_append(&[(&s, &e[..])]).await.unwrap();
    }
    let mut own = thread.join().unwrap();
    assert_eq!(check_chain(&h.store, &a).await, 80);
    assert_eq!(check_chain(&h.store, &b).await, 40);

    // A checkpoint past the head the appender would extend from: the trigger refuses the
    // record, whichever connection writes it.
    let (seq, hash) = h.store.tenant(&scope(&a)).audit().head().await.unwrap();
    let cp = Signer::from_seed(&[1; 32]).checkpoint(a.as_str(), seq, &hash, 0);
    let ad = admin();
    h.store
        .platform(&ad)
        .audit_add_checkpoint(&a, &cp)
        .await
        .unwrap();
    let more = [entry("after", 7, "u")];
    let sa = scope(&a);
    own.append(&[(&sa, &more[..])]).unwrap();
    assert_eq!(check_chain(&h.store, &a).await, 81);
    // PostgreSQL keeps the pool: no connection of its own is opened there.
    if let Some(pg) = open_pg().await {
        assert!(pg.store.open_audit_appender().await.unwrap().is_none());
        assert!(!pg.store.audit_appender_wanted());
        pg.cleanup().await;
    }
    drop(own);
    h.cleanup().await;
}
