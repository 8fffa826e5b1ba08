//! The Redis limits backend: reserve and settle are each one Lua script, so a check and its
//! write are one atomic step on the shared counters of every replica. All of a tenant's keys
//! carry its id as a hash tag (`{tenant}`), so they live in one slot of a cluster.

use crate::limits::{Applied, Check, Counter};
use std::time::Duration;
use tenantgate_core::TenantId;

/// Releases expired reservations of the tenant (remembering their ids for a day, so a late
/// settle counts once), then checks every counter and, only if all pass, adds to every
/// counter and records the reservation (if it holds anything to settle: a request count
/// alone does not).
/// KEYS: reservations zset, reservations hash, expired hash, counters...
/// ARGV: now_ms, request id, expires_ms, held JSON, then (add, limit or -1, ttl) per counter.
const RESERVE: &str = r#"
local now = tonumber(ARGV[1])
local expired = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now)
for _, rid in ipairs(expired) do
  local h = redis.call('HGET', KEYS[2], rid)
  if h then
    for _, c in ipairs(cjson.decode(h)) do
      if redis.call('EXISTS', c[1]) == 1 then redis.call('DECRBY', c[1], c[2]) end
    end
    redis.call('HDEL', KEYS[2], rid)
    redis.call('HSET', KEYS[3], rid, now)
    redis.call('PEXPIRE', KEYS[3], 86400000)
  end
  redis.call('ZREM', KEYS[1], rid)
end
local n = #KEYS - 3
for i = 1, n do
  local add = tonumber(ARGV[2 + 3 * i])
  local limit = tonumber(ARGV[3 + 3 * i])
  local v = tonumber(redis.call('GET', KEYS[i + 3]) or '0')
  if limit >= 0 and v + add > limit then return {0, i - 1, v} end
end
local out = {1}
for i = 1, n do
  local v = redis.call('INCRBY', KEYS[i + 3], tonumber(ARGV[2 + 3 * i]))
  local ttl = tonumber(ARGV[4 + 3 * i])
  if ttl > 0 then redis.call('EXPIRE', KEYS[i + 3], ttl) end
  out[#out + 1] = v
end
if ARGV[4] ~= '[]' then
  redis.call('HSET', KEYS[2], ARGV[2], ARGV[4])
  redis.call('ZADD', KEYS[1], ARGV[3], ARGV[2])
  redis.call('PEXPIRE', KEYS[1], 86400000)
  redis.call('PEXPIRE', KEYS[2], 86400000)
end
return out
"#;

/// Once per request id: if the reservation is still held, apply the settlement deltas and drop
/// it; if it expired (and was released), add the actual usage instead; if neither, it was
/// settled already. No per-call marker is kept.
/// KEYS: reservations zset, reservations hash, expired hash.
/// ARGV: request id, deltas JSON, late JSON.
const SETTLE: &str = r#"
local deltas
if redis.call('HDEL', KEYS[2], ARGV[1]) == 1 then
  redis.call('ZREM', KEYS[1], ARGV[1])
  deltas = cjson.decode(ARGV[2])
elseif redis.call('HDEL', KEYS[3], ARGV[1]) == 1 then
  deltas = cjson.decode(ARGV[3])
else
  return 0
end
for _, d in ipairs(deltas) do
  if redis.call('EXISTS', d[1]) == 1 then redis.call('INCRBY', d[1], d[2]) end
end
return 1
"#;

const TIMEOUT: Duration = Duration::from_secs(2);

pub struct RedisLimits {
    conn: redis::aio::ConnectionManager,
    prefix: String,
    reserve: redis::Script,
    settle: redis::Script,
}

impl RedisLimits {
    pub async fn connect(url: &str, prefix: &str) -> Result<Self, redis::RedisError> {
        let client = redis::Client::open(url)?;
        let conn = tokio::time::timeout(TIMEOUT, client.get_connection_manager())
            .await
            .map_err(|_| {
                redis::RedisError::from((redis::ErrorKind::IoError, "connect timed out"))
            })??;
        Ok(RedisLimits {
            conn,
            prefix: prefix.to_owned(),
            reserve: redis::Script::new(RESERVE),
            settle: redis::Script::new(SETTLE),
        })
    }

    fn k(&self, key: &str) -> String {
        format!("{}{key}", self.prefix)
    }

    /// A counter's Redis key: the configured prefix and [`Counter::key`].
    fn counter_key(&self, tenant: &TenantId, c: &Counter) -> String {
        self.k(&c.key(tenant))
    }

    fn res_keys(&self, t: &TenantId) -> (String, String, String) {
        (
            self.k(&format!("{{{}}}:res:z", t.as_str())),
            self.k(&format!("{{{}}}:res:h", t.as_str())),
            self.k(&format!("{{{}}}:res:x", t.as_str())),
        )
    }

    pub async fn reserve(
        &self,
        tenant: &TenantId,
        rid: &str,
        checks: &[Check],
        ttl_ms: i64,
        now_ms: i64,
    ) -> Result<Applied, String> {
        let held: Vec<(String, i64)> = crate::limits::held(checks)
            .counters
            .into_iter()
            .map(|(c, add)| (self.counter_key(tenant, &c), add))
            .collect();
        let held = serde_json::to_string(&held).map_err(|e| e.to_string())?;
        let (z, h, x) = self.res_keys(tenant);
        let mut inv = self.reserve.prepare_invoke();
        inv.key(&z).key(&h).key(&x);
        for c in checks {
            inv.key(self.counter_key(tenant, &c.counter));
        }
        inv.arg(now_ms).arg(rid).arg(now_ms + ttl_ms).arg(held);
        for c in checks {
            inv.arg(c.add).arg(c.limit.unwrap_or(-1)).arg(c.ttl_secs);
        }
        let mut conn = self.conn.clone();
        let out: Vec<i64> = tokio::time::timeout(TIMEOUT, inv.invoke_async(&mut conn))
            .await
            .map_err(|_| "redis timed out".to_string())?
            .map_err(|e| e.to_string())?;
        match out.first() {
            Some(1) => Ok(Applied::Ok(out[1..].to_vec())),
            Some(0) if out.len() == 3 => Ok(Applied::Refused {
                index: out[1] as usize,
                current: out[2],
            }),
            _ => Err(format!("unexpected reply from the reserve script: {out:?}")),
        }
    }

    pub async fn settle(
        &self,
        tenant: &TenantId,
        rid: &str,
        on_held: &[(Counter, i64)],
        late: &[(Counter, i64)],
    ) -> Result<bool, String> {
        let pre = |v: &[(Counter, i64)]| -> Result<String, String> {
            let v: Vec<(String, i64)> = v
                .iter()
                .map(|(c, d)| (self.counter_key(tenant, c), *d))
                .collect();
            serde_json::to_string(&v).map_err(|e| e.to_string())
        };
        let (z, h, x) = self.res_keys(tenant);
        let mut inv = self.settle.prepare_invoke();
        inv.key(&z).key(&h).key(&x);
        inv.arg(rid).arg(pre(on_held)?).arg(pre(late)?);
        let mut conn = self.conn.clone();
        let out: i64 = tokio::time::timeout(TIMEOUT, inv.invoke_async(&mut conn))
            .await
            .map_err(|_| "redis timed out".to_string())?
            .map_err(|e| e.to_string())?;
        Ok(out == 1)
    }

    pub async fn get_many(
        &self,
        tenant: &TenantId,
        counters: &[Counter],
    ) -> Result<Vec<i64>, String> {
        let mut conn = self.conn.clone();
        let keys: Vec<String> = counters
            .iter()
            .map(|c| self.counter_key(tenant, c))
            .collect();
        let v: Vec<Option<i64>> = tokio::time::timeout(
            TIMEOUT,
            redis::cmd("MGET").arg(&keys).query_async(&mut conn),
        )
        .await
        .map_err(|_| "redis timed out".to_string())?
        .map_err(|e| e.to_string())?;
        Ok(v.into_iter().map(Option::unwrap_or_default).collect())
    }

    pub async fn get(&self, tenant: &TenantId, counter: &Counter) -> Result<i64, String> {
        let mut conn = self.conn.clone();
        let v: Option<i64> =
            redis::AsyncCommands::get(&mut conn, self.counter_key(tenant, counter))
                .await
                .map_err(|e| e.to_string())?;
        Ok(v.unwrap_or(0))
    }
}
