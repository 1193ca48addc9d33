//! The campaign registry: every campaign's split rule in memory, so the ledger consumer
//! applies splits without a store read per conversion. Campaigns are immutable once made, so
//! the registry only grows: a new campaign is added when created on this instance, and one
//! made elsewhere is loaded through the [`CampaignSource`] port the first time it is asked
//! for.

mod handlers;

use crate::ledger::Split;
use crate::ports::CampaignSource;
use actix::prelude::*;
use std::collections::HashMap;
use std::sync::Arc;

pub use handlers::{Known, SplitOf};

pub struct CampaignRegistry {
    splits: HashMap<u64, Split>,
    source: Arc<dyn CampaignSource>,
}

impl CampaignRegistry {
    pub fn new(source: Arc<dyn CampaignSource>) -> Self {
        Self { splits: HashMap::new(), source }
    }

    pub fn remember(&mut self, campaign_id: u64, split: Split) {
        self.splits.insert(campaign_id, split);
    }

    pub fn cached(&self, campaign_id: u64) -> Option<Split> {
        self.splits.get(&campaign_id).copied()
    }

    pub fn len(&self) -> usize {
        self.splits.len()
    }

    pub fn is_empty(&self) -> bool {
        self.splits.is_empty()
    }
}

impl Actor for CampaignRegistry {
    type Context = Context<Self>;
}

impl Supervised for CampaignRegistry {
    fn restarting(&mut self, _ctx: &mut Self::Context) {
        tracing::warn!(campaigns = self.splits.len(), "campaign registry restarting");
    }
}

/// The facade: ask for a split, tell about a new campaign.
#[derive(Clone)]
pub struct Campaigns {
    addr: Addr<CampaignRegistry>,
}

impl Campaigns {
    pub fn start(source: Arc<dyn CampaignSource>) -> Self {
        Self { addr: Supervisor::start(move |_| CampaignRegistry::new(source)) }
    }

    /// The split of a partner's campaign; `None` when the campaign does not exist.
    pub async fn split_of(&self, affiliate_id: u64, campaign_id: u64) -> anyhow::Result<Option<Split>> {
        self.addr.send(SplitOf { affiliate_id, campaign_id }).await?
    }

    /// A campaign made on this instance.
    pub fn known(&self, campaign_id: u64, split: Split) {
        self.addr.do_send(Known { campaign_id, split });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use async_trait::async_trait;
    use rust_decimal::Decimal;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[derive(Default)]
    struct Source {
        reads: AtomicUsize,
    }

    #[async_trait]
    impl CampaignSource for Source {
        async fn split_of(&self, _affiliate_id: u64, campaign_id: u64) -> anyhow::Result<Option<Split>> {
            self.reads.fetch_add(1, Ordering::SeqCst);
            Ok((campaign_id < 100).then_some(Split::Share(Decimal::new(40, 0))))
        }
    }

    #[actix_rt::test]
    async fn splits_are_read_once_then_served_from_memory() {
        let source = Arc::new(Source::default());
        let campaigns = Campaigns::start(source.clone());
        for _ in 0..3 {
            assert_eq!(campaigns.split_of(1, 7).await.unwrap(), Some(Split::Share(Decimal::new(40, 0))));
        }
        assert_eq!(source.reads.load(Ordering::SeqCst), 1);
        campaigns.known(8, Split::Flat(500));
        assert_eq!(campaigns.split_of(1, 8).await.unwrap(), Some(Split::Flat(500)));
        assert_eq!(source.reads.load(Ordering::SeqCst), 1, "a known campaign needs no read");
        assert_eq!(campaigns.split_of(1, 500).await.unwrap(), None);
    }
}
