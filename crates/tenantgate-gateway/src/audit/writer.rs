//! The audit writer: two loops sharing the heads awaiting a checkpoint.
//!
//! - [`commits`] drains queued records into group commits and answers their waiters. On
//!   SQLite it runs on a thread of its own with a connection of its own
//!   (`tenantgate_store::audit_sqlite`): a batch is one hand-off in, one transaction in-process
//!   and one sync, instead of a round trip to the driver's thread per statement (that was most
//!   of a call's CPU). On PostgreSQL it is a task using the pool.
//! - [`signs`] signs checkpoints of the heads the commits advanced (through the continuity
//!   checks of `audit_anchor`), heads on request (an export), and, before any record is taken,
//!   the heads left unsigned at start, in batches.

use crate::audit::{AuditStats, Chain, Job, SignNow};
use crate::clock::now_ms;
use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tenantgate_audit::Signer;
use tenantgate_core::{TenantId, TenantScope};
use tenantgate_store::audit::{Appended, NewAuditRecord};
use tenantgate_store::audit_sqlite::AuditAppender;
use tenantgate_store::Store;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

/// The last head this process appended per tenant, awaiting a checkpoint.
pub(crate) type Dirty = HashMap<TenantId, Appended>;
/// Shared by the two loops: the commit loop inserts, the signing loop takes.
pub(crate) type SharedDirty = Arc<Mutex<Dirty>>;

fn lock(d: &SharedDirty) -> std::sync::MutexGuard<'_, Dirty> {
    d.lock().unwrap_or_else(|e| e.into_inner())
}

/// What the signing loop owns.
pub(crate) struct Writing {
    pub(crate) store: Store,
    pub(crate) signer: Arc<Signer>,
    pub(crate) stats: Arc<AuditStats>,
    pub(crate) continuity: crate::audit::anchor::Continuity,
}

/// Heads signed per batch at start (each batch: a few queries and one transaction per 256).
const START_SIGN_BATCH: usize = 2_000;

/// The signing loop. Readiness (and the commit loop, through `start`) wait for the heads left
/// unsigned at start; at shutdown it waits for the commit loop to drain (`drained`), then
/// signs the heads it reached.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn signs(
    mut w: Writing,
    dirty: SharedDirty,
    mut sign_rx: mpsc::Receiver<SignNow>,
    ready: Arc<std::sync::atomic::AtomicBool>,
    start: oneshot::Sender<()>,
    drained: oneshot::Receiver<()>,
    cancel: CancellationToken,
    interval: Duration,
) {
    // Heads left unsigned (a crash, another process, tenants the CLI created) are signed in
    // batches before the writer takes records; readiness waits for it, so no call queues
    // behind start-up work.
    sign_unsigned_heads(&mut w).await;
    let _ = start.send(());
    ready.store(true, Ordering::Release);
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            biased;
            Some(req) = sign_rx.recv() => sign_now(&mut w, &dirty, req).await,
            _ = tick.tick() => checkpoint(&mut w, &dirty).await,
            _ = cancel.cancelled() => break,
        }
    }
    let _ = drained.await;
    checkpoint(&mut w, &dirty).await;
}

/// What the commit loop owns.
pub(crate) struct Committing {
    pub(crate) store: Store,
    pub(crate) stats: Arc<AuditStats>,
    pub(crate) dirty: SharedDirty,
    pub(crate) max_batch: usize,
}

/// The commit loop: waits for `start`, then commits whatever is queued (up to `max_batch`)
/// as one transaction, until cancelled; then drains the queue and reports `drained`.
/// Blocking on SQLite (its own connection): run it on a thread of its own.
pub(crate) async fn commits(
    c: Committing,
    mut rx: mpsc::Receiver<Job>,
    start: oneshot::Receiver<()>,
    drained: oneshot::Sender<()>,
    cancel: CancellationToken,
) {
    let mut appender = match c.store.open_audit_appender().await {
        Ok(a) => a,
        Err(e) => {
            tracing::error!(target: "tenantgate::audit", error = %e,
                "cannot open the audit writer's own connection; committing through the pool");
            None
        }
    };
    tokio::select! {
        _ = start => {}
        _ = cancel.cancelled() => {}
    }
    loop {
        tokio::select! {
            biased;
            job = rx.recv() => {
                let Some(job) = job else { break };
                let mut batch = vec![job];
                while batch.len() < c.max_batch {
                    match rx.try_recv() {
                        Ok(j) => batch.push(j),
                        Err(_) => break,
                    }
                }
                commit(&c, appender.as_mut(), batch).await;
            }
            _ = cancel.cancelled() => break,
        }
    }
    rx.close();
    let mut rest = Vec::new();
    while let Some(j) = rx.recv().await {
        rest.push(j);
    }
    while !rest.is_empty() {
        let batch: Vec<Job> = rest.drain(..rest.len().min(c.max_batch)).collect();
        commit(&c, appender.as_mut(), batch).await;
    }
    let _ = drained.send(());
}

/// Signs one tenant's current head for an export (whatever this process has pending for it
/// goes along).
async fn sign_now(w: &mut Writing, dirty: &SharedDirty, req: SignNow) {
    lock(dirty).remove(&req.tenant);
    #[expect(
        clippy::disallowed_methods,
        reason = "the checkpoint signer reads the head of the tenant an export asked for"
    )]
    let admin = tenantgate_core::PlatformAdmin::local_operator("audit-checkpointer");
    let head = match w.store.platform(&admin).audit_head(&req.tenant).await {
        Ok(h) => h,
        Err(e) => {
            let _ = req.done.send(Err(e.to_string()));
            return;
        }
    };
    let heads = vec![crate::audit::anchor::Head {
        tenant: req.tenant,
        seq: head.0,
        hash: head.1,
    }];
    let mut out = w
        .continuity
        .sign(&w.store, &w.signer, &w.stats, now_ms(), heads)
        .await;
    let r = match out.pop() {
        Some((_, r)) => r,
        None => Err("nothing signed".into()),
    };
    let _ = req.done.send(r);
}

/// One group commit: the batch grouped per chain (order kept), tenants' own records in one
/// transaction. If it fails and holds several tenants, each tenant is retried alone so one
/// bad record cannot sink the others. Operator actions (rare: the admin API) are appended
/// after them, one transaction per tenant, as the platform.
async fn commit(c: &Committing, mut appender: Option<&mut AuditAppender>, batch: Vec<Job>) {
    let (store, stats) = (&c.store, &c.stats);
    let n = batch.len() as u64;
    let mut tenants: Vec<Group<TenantScope>> = Vec::new();
    let mut operators: Vec<Group<TenantId>> = Vec::new();
    let mut index: HashMap<(TenantId, bool), usize> = HashMap::new();
    for j in batch {
        match j.chain {
            Chain::Tenant(scope) => {
                let key = (scope.tenant_id().clone(), false);
                let i = *index.entry(key).or_insert_with(|| {
                    tenants.push(Group::new(scope));
                    tenants.len() - 1
                });
                tenants[i].push(j.entry, j.done);
            }
            Chain::Operator(tenant) => {
                let i = *index.entry((tenant.clone(), true)).or_insert_with(|| {
                    operators.push(Group::new(tenant));
                    operators.len() - 1
                });
                operators[i].push(j.entry, j.done);
            }
        }
    }
    let refs: Vec<(&TenantScope, &[NewAuditRecord])> = tenants
        .iter()
        .map(|g| (&g.chain, g.entries.as_slice()))
        .collect();
    let mut results: Vec<Result<Vec<Appended>, String>> = if refs.is_empty() {
        Vec::new()
    } else {
        match append(store, appender.as_deref_mut(), &refs).await {
            Ok(out) => out.into_iter().map(Ok).collect(),
            Err(e) if refs.len() > 1 => {
                tracing::warn!(target: "tenantgate::audit", error = %e, "group commit failed; retrying per tenant");
                let mut v = Vec::with_capacity(refs.len());
                for r in &refs {
                    v.push(
                        append(store, appender.as_deref_mut(), std::slice::from_ref(r))
                            .await
                            .map(|mut o| o.pop().unwrap_or_default())
                            .map_err(|e| e.to_string()),
                    );
                }
                v
            }
            Err(e) => vec![Err(e.to_string())],
        }
    };
    if !operators.is_empty() {
        #[expect(
            clippy::disallowed_methods,
            reason = "the audit writer appends platform operators' actions to the chain of the tenant they acted on"
        )]
        let admin = tenantgate_core::PlatformAdmin::local_operator("audit-writer");
        for g in &mut operators {
            let entries = std::mem::take(&mut g.entries);
            let mut r =
                append_operator(store, appender.as_deref_mut(), &admin, &g.chain, &entries).await;
            let deadline = std::time::Instant::now() + MOVED_RETRY;
            while r.as_ref().is_err_and(|e| e.is_moved()) && std::time::Instant::now() < deadline {
                store.forget_place(&g.chain);
                tokio::time::sleep(Duration::from_millis(20)).await;
                r = append_operator(store, appender.as_deref_mut(), &admin, &g.chain, &entries)
                    .await;
            }
            results.push(r.map_err(|e| e.to_string()));
        }
    }
    stats.batches.fetch_add(1, Ordering::Relaxed);
    stats.largest_batch.fetch_max(n, Ordering::Relaxed);
    let groups = tenants
        .into_iter()
        .map(|g| (g.chain.tenant_id().clone(), g.waiters))
        .chain(operators.into_iter().map(|g| (g.chain, g.waiters)));
    for ((tenant, waiters), result) in groups.zip(results) {
        match result {
            Ok(appended) => {
                stats
                    .appended
                    .fetch_add(appended.len() as u64, Ordering::Relaxed);
                if let Some(last) = appended.last() {
                    lock(&c.dirty).insert(tenant, *last);
                }
                for (w, a) in waiters.into_iter().zip(appended) {
                    if let Some(w) = w {
                        let _ = w.send(Ok(a));
                    }
                }
            }
            Err(e) => {
                // Waiting callers count their own failure (`AuditLog::append`); count the rest.
                let detached = waiters.iter().filter(|w| w.is_none()).count() as u64;
                stats.failures.fetch_add(detached, Ordering::Relaxed);
                for w in waiters.into_iter().flatten() {
                    let _ = w.send(Err(e.clone()));
                }
                tracing::error!(target: "tenantgate::audit", tenant = %tenant, error = %e,
                    "audit group commit failed");
            }
        }
    }
}

/// How long a group commit keeps retrying a tenant whose data is being moved (the fence
/// holds its writes for the few milliseconds of the switch); past it the callers get the
/// error and answer 503.
const MOVED_RETRY: Duration = Duration::from_secs(10);

/// One group commit through the writer's own connection (SQLite, blocking this thread for
/// the transaction) or the pool. A batch refused by a moved tenant's fence (`tenant move`)
/// forgets its tenants' places and is retried: the new place comes from the control plane
/// once the switch committed, so the record lands there and none is lost.
async fn append(
    store: &Store,
    mut appender: Option<&mut AuditAppender>,
    refs: &[(&TenantScope, &[NewAuditRecord])],
) -> Result<Vec<Vec<Appended>>, tenantgate_store::StoreError> {
    let deadline = std::time::Instant::now() + MOVED_RETRY;
    let mut wait = Duration::from_millis(2);
    loop {
        match append_once(store, appender.as_deref_mut(), refs).await {
            Err(e) if e.is_moved() && std::time::Instant::now() < deadline => {
                for r in refs {
                    store.forget_place(r.0.tenant_id());
                }
                tracing::debug!(target: "tenantgate::audit", "a tenant's data is moving; retrying its records");
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(Duration::from_millis(100));
            }
            r => return r,
        }
    }
}

/// A platform operator's action, into the chain of the tenant it acted on.
async fn append_operator(
    store: &Store,
    appender: Option<&mut AuditAppender>,
    admin: &tenantgate_core::PlatformAdmin,
    tenant: &TenantId,
    entries: &[NewAuditRecord],
) -> Result<Vec<Appended>, tenantgate_store::StoreError> {
    match (appender, store.is_shared(tenant).await?) {
        (Some(a), true) => a.append_operator(admin, tenant, entries),
        (Some(_), false) | (None, _) => {
            store
                .platform(admin)
                .audit_append(tenant, entries.to_vec())
                .await
        }
    }
}

async fn append_once(
    store: &Store,
    appender: Option<&mut AuditAppender>,
    refs: &[(&TenantScope, &[NewAuditRecord])],
) -> Result<Vec<Vec<Appended>>, tenantgate_store::StoreError> {
    let Some(a) = appender else {
        return store.audit_append(refs).await;
    };
    // The writer's own connection is to the shared file: tenants whose data is elsewhere (the
    // schema and dedicated tiers) go through the store, to their places.
    let mut own = Vec::with_capacity(refs.len());
    let mut elsewhere = Vec::new();
    for (i, r) in refs.iter().enumerate() {
        if store.is_shared(r.0.tenant_id()).await? {
            own.push((i, *r));
        } else {
            elsewhere.push((i, *r));
        }
    }
    if elsewhere.is_empty() {
        return a.append(refs);
    }
    let mut out: Vec<Vec<Appended>> = (0..refs.len()).map(|_| Vec::new()).collect();
    let (at, part): (Vec<usize>, Vec<_>) = elsewhere.into_iter().unzip();
    for (i, w) in at.into_iter().zip(store.audit_append(&part).await?) {
        out[i] = w;
    }
    if !own.is_empty() {
        let (at, part): (Vec<usize>, Vec<_>) = own.into_iter().unzip();
        for (i, w) in at.into_iter().zip(a.append(&part)?) {
            out[i] = w;
        }
    }
    Ok(out)
}

type Waiter = Option<oneshot::Sender<Result<Appended, String>>>;

/// One chain's records in a batch, in the order they were queued, and who waits for them.
struct Group<C> {
    chain: C,
    entries: Vec<NewAuditRecord>,
    waiters: Vec<Waiter>,
}

impl<C> Group<C> {
    fn new(chain: C) -> Self {
        Group {
            chain,
            entries: Vec::new(),
            waiters: Vec::new(),
        }
    }

    fn push(&mut self, entry: NewAuditRecord, done: Waiter) {
        self.entries.push(entry);
        self.waiters.push(done);
    }
}

/// Signs the head each advanced chain reached (as this process appended it), once it checks
/// out as extending the last signed checkpoint (`audit_anchor`): a few queries and one
/// transaction per 256 tenants per tick, however many moved.
async fn checkpoint(w: &mut Writing, dirty: &SharedDirty) {
    let taken = std::mem::take(&mut *lock(dirty));
    if taken.is_empty() {
        return;
    }
    let heads: Vec<crate::audit::anchor::Head> = taken
        .iter()
        .map(|(tenant, head)| crate::audit::anchor::Head {
            tenant: tenant.clone(),
            seq: head.seq,
            hash: head.hash,
        })
        .collect();
    let out = w
        .continuity
        .sign(&w.store, &w.signer, &w.stats, now_ms(), heads)
        .await;
    let failed: Vec<TenantId> = out
        .into_iter()
        .filter_map(|(t, r)| r.err().map(|_| t))
        .collect();
    if !failed.is_empty() {
        tracing::warn!(target: "tenantgate::audit", tenants = failed.len(),
            "audit heads left unsigned this tick");
        // A failure that is not a broken chain (the database busy, say) is tried again next
        // tick, unless a newer head took its place meanwhile; a broken chain is never signed.
        let broken = w
            .continuity
            .breaks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let mut dirty = lock(dirty);
        for t in failed {
            if let (false, Some(head)) = (broken.contains_key(&t), taken.get(&t)) {
                dirty.entry(t).or_insert(*head);
            }
        }
    }
}

/// At start: signs every chain head left past its last checkpoint (by a crash, another
/// process, or tenants created with the CLI), in batches.
async fn sign_unsigned_heads(w: &mut Writing) {
    #[expect(
        clippy::disallowed_methods,
        reason = "the audit writer signs every tenant's chain head at start"
    )]
    let admin = tenantgate_core::PlatformAdmin::local_operator("audit-checkpointer");
    let heads = match w.store.platform(&admin).audit_unsigned_heads().await {
        Ok(h) => h,
        Err(e) => {
            tracing::error!(target: "tenantgate::audit", error = %e, "cannot list unsigned audit heads");
            return;
        }
    };
    let mut heads = heads.into_iter().peekable();
    while heads.peek().is_some() {
        let batch: Vec<crate::audit::anchor::Head> = heads
            .by_ref()
            .take(START_SIGN_BATCH)
            .map(|h| crate::audit::anchor::Head {
                tenant: h.tenant,
                seq: h.seq,
                hash: h.hash,
            })
            .collect();
        w.continuity
            .sign(&w.store, &w.signer, &w.stats, now_ms(), batch)
            .await;
    }
}
