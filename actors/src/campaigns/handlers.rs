//! Messages the campaign registry handles.

use super::CampaignRegistry;
use crate::ledger::Split;
use actix::prelude::*;

/// The split of a campaign (loaded through the source on a miss).
#[derive(Message)]
#[rtype(result = "anyhow::Result<Option<Split>>")]
pub struct SplitOf {
    pub affiliate_id: u64,
    pub campaign_id: u64,
}

impl Handler<SplitOf> for CampaignRegistry {
    type Result = ResponseActFuture<Self, anyhow::Result<Option<Split>>>;

    fn handle(&mut self, msg: SplitOf, _ctx: &mut Self::Context) -> Self::Result {
        if let Some(split) = self.cached(msg.campaign_id) {
            return Box::pin(fut::ready(Ok(Some(split))));
        }
        let source = self.source.clone();
        Box::pin(
            async move { source.split_of(msg.affiliate_id, msg.campaign_id).await }.into_actor(self).map(move |r, act, _| {
                if let Ok(Some(split)) = &r {
                    act.remember(msg.campaign_id, *split);
                }
                r
            }),
        )
    }
}

/// A campaign created on this instance.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Known {
    pub campaign_id: u64,
    pub split: Split,
}

impl Handler<Known> for CampaignRegistry {
    type Result = ();

    fn handle(&mut self, msg: Known, _ctx: &mut Self::Context) {
        self.remember(msg.campaign_id, msg.split);
    }
}
