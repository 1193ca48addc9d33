//! Credentials in memory: the API key and its affiliate by the key's HMAC, so an
//! authenticated request costs no store read at steady state.
//!
//! A change (revocation, rotation, an affiliate deactivated or edited) is applied to this
//! instance's cache by the code that made it, right after the store write, and published on
//! `credential-changes`; every instance follows that topic ([`CredentialFollower`]) and drops
//! what it holds for the affiliate. The cache's TTL (`auth.key_cache_ttl_seconds`) is the
//! backstop should an event be missed.
//!
//! A fill never resurrects a stale credential: each entry remembers the change counter as
//! it was *before* its store read, and an affiliate's change sets that affiliate's mark to a
//! later count. An entry whose store read may have started before the latest change of its
//! affiliate is ignored, so a fill racing a revocation cannot outlive it. Changes are rare;
//! the marks map holds one number per affiliate ever changed while this instance ran.

use crate::store::{AffiliateRecord, ApiKeyRecord};
use async_trait::async_trait;
use hissaback_actors::consumer::EventHandler;
use hissaback_topics::events::{CredentialChange, CredentialChanged};
use hissaback_topics::Delivery;
use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

/// A usable key with its affiliate, as read from the store.
#[derive(Debug)]
pub struct Resolved {
    pub key: Arc<ApiKeyRecord>,
    pub affiliate: Arc<AffiliateRecord>,
}

#[derive(Clone)]
struct Entry {
    /// The change counter read before the store read that produced this entry.
    seen: u64,
    resolved: Arc<Resolved>,
}

#[derive(Default)]
struct Marks {
    /// How many changes this instance has applied.
    count: u64,
    /// Per affiliate, the count right after its latest change.
    latest: HashMap<u64, u64>,
}

/// The cache. Cheap to clone (shared).
#[derive(Clone)]
pub struct Credentials {
    cache: moka::sync::Cache<[u8; 32], Entry>,
    marks: Arc<RwLock<Marks>>,
}

/// Proof that a lookup started at a given point of the change history: what
/// [`Credentials::fill`] needs to decide whether the store's answer may be kept.
#[derive(Clone, Copy, Debug)]
pub struct Ticket(u64);

impl Credentials {
    pub fn new(capacity: u64, ttl: Duration) -> Self {
        Self {
            cache: moka::sync::Cache::builder().max_capacity(capacity).time_to_live(ttl).build(),
            marks: Arc::default(),
        }
    }

    fn marks(&self) -> std::sync::RwLockReadGuard<'_, Marks> {
        self.marks.read().unwrap_or_else(|p| p.into_inner())
    }

    /// The cached credential of this key digest, unless a change may have outdated it.
    pub fn get(&self, digest: &[u8; 32]) -> Option<Arc<Resolved>> {
        let entry = self.cache.get(digest)?;
        let fresh = self.marks().latest.get(&entry.resolved.affiliate.id).is_none_or(|&latest| latest <= entry.seen);
        if fresh {
            Some(entry.resolved)
        } else {
            self.cache.invalidate(digest);
            None
        }
    }

    /// Take before reading the store for a missing credential.
    pub fn ticket(&self) -> Ticket {
        Ticket(self.marks().count)
    }

    /// Keeps what the store answered for `digest` (read after `ticket` was taken).
    pub fn fill(&self, digest: [u8; 32], ticket: Ticket, resolved: Arc<Resolved>) {
        self.cache.insert(digest, Entry { seen: ticket.0, resolved });
    }

    /// Applies a change: every credential of the affiliate cached before it is ignored from
    /// now on (`get` compares marks), and left to the TTL and the bound to free.
    pub fn forget(&self, change: CredentialChange) {
        let mut marks = self.marks.write().unwrap_or_else(|p| p.into_inner());
        marks.count += 1;
        let count = marks.count;
        marks.latest.insert(change.affiliate_id(), count);
    }
}

/// Follows `credential-changes` so changes made on other instances reach this cache
/// (reapplying one made here is harmless).
pub struct CredentialFollower(pub Credentials);

#[async_trait]
impl EventHandler for CredentialFollower {
    type Event = CredentialChanged;

    async fn handle(&self, event: CredentialChanged, _delivery: &Delivery) -> anyhow::Result<()> {
        self.0.forget(event.change);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{KeyKind, Scope};
    use chrono::Utc;

    fn resolved(key_id: u64, affiliate_id: u64) -> Arc<Resolved> {
        let now = Utc::now();
        Arc::new(Resolved {
            key: Arc::new(ApiKeyRecord {
                id: key_id,
                affiliate_id,
                kind: KeyKind::Secret,
                prefix: "hb_sk_x".into(),
                hash: "h".into(),
                scopes: vec![Scope::ProductsList],
                allowed_brand_ids: vec![],
                allowed_offer_ids: vec![],
                rate_limit: crate::store::RatePlan { per_minute: 1, burst: 1 },
                created_at: now,
                expires_at: None,
                revoked_at: None,
                rotated_to: None,
                last_used_at: None,
                version: 0,
            }),
            affiliate: Arc::new(AffiliateRecord {
                id: affiliate_id,
                name: "a".into(),
                email: "a@example.com".into(),
                active: true,
                blog_approved: false,
                user: None,
                created_at: now,
                updated_at: now,
                version: 0,
            }),
        })
    }

    fn cache() -> Credentials {
        Credentials::new(100, Duration::from_secs(60))
    }

    #[test]
    fn a_filled_credential_is_served_until_its_affiliate_changes() {
        let c = cache();
        c.fill([1; 32], c.ticket(), resolved(1, 7));
        c.fill([2; 32], c.ticket(), resolved(2, 8));
        assert_eq!(c.get(&[1; 32]).unwrap().key.id, 1);
        c.forget(CredentialChange::Key { key_id: 1, affiliate_id: 7 });
        assert!(c.get(&[1; 32]).is_none(), "the changed affiliate's key is dropped");
        assert_eq!(c.get(&[2; 32]).unwrap().key.id, 2, "other affiliates keep theirs");
        c.forget(CredentialChange::Affiliate { affiliate_id: 8 });
        assert!(c.get(&[2; 32]).is_none());
    }

    #[test]
    fn a_fill_that_raced_a_change_is_never_served() {
        let c = cache();
        // The lookup starts, the key is revoked while it reads the store, then it fills.
        let ticket = c.ticket();
        c.forget(CredentialChange::Key { key_id: 1, affiliate_id: 7 });
        c.fill([1; 32], ticket, resolved(1, 7));
        assert!(c.get(&[1; 32]).is_none(), "the stale read must not be served");
        // A lookup that starts after the change keeps its answer.
        let ticket = c.ticket();
        c.fill([1; 32], ticket, resolved(1, 7));
        assert!(c.get(&[1; 32]).is_some());
    }

    #[test]
    fn concurrent_fills_and_changes_never_serve_a_credential_older_than_a_finished_change() {
        // A change is a store write (the version) then `forget`. Readers fill from the store
        // version they read; whatever `get` serves must have read a version no older than
        // every change whose `forget` had finished before that `get` began.
        use std::sync::atomic::{AtomicU64, Ordering::SeqCst};
        let c = cache();
        let version = AtomicU64::new(0);
        let forgotten = AtomicU64::new(0);
        let with_version = |v: u64| {
            let r = resolved(1, 7);
            Arc::new(Resolved { key: Arc::new(ApiKeyRecord { rotated_to: Some(v), ..(*r.key).clone() }), affiliate: r.affiliate.clone() })
        };
        std::thread::scope(|s| {
            s.spawn(|| {
                for i in 1..=3_000 {
                    version.store(i, SeqCst);
                    c.forget(CredentialChange::Affiliate { affiliate_id: 7 });
                    forgotten.store(i, SeqCst);
                }
            });
            for reader in 0..2u8 {
                let (c, version, forgotten) = (&c, &version, &forgotten);
                s.spawn(move || {
                    for _ in 0..20_000 {
                        let digest = [reader; 32];
                        let finished = forgotten.load(SeqCst);
                        match c.get(&digest) {
                            Some(hit) => assert!(hit.key.rotated_to.unwrap() >= finished, "served version {} after change {finished}", hit.key.rotated_to.unwrap()),
                            None => {
                                let ticket = c.ticket();
                                c.fill(digest, ticket, with_version(version.load(SeqCst)));
                            }
                        }
                    }
                });
            }
        });
    }
}
