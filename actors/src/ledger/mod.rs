//! The ledger's rules, as plain functions: the commission split, the reward state machine
//! and the double-entry legs each transition posts. The ledger consumer (in the service)
//! applies them and stores the result; everything here is deterministic, so applying the
//! same event twice gives the same rows.

use hissaback_topics::events::PostbackStatus;
use rust_decimal::{Decimal, RoundingStrategy};
use serde::{Deserialize, Serialize};

/// A reward's status as partners see it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RewardStatus {
    Pending,
    Queued,
    Paid,
    Rejected,
    Reversed,
}

impl RewardStatus {
    /// Every status, in the order of a reward's life.
    pub const ALL: [RewardStatus; 5] = [RewardStatus::Pending, RewardStatus::Queued, RewardStatus::Paid, RewardStatus::Rejected, RewardStatus::Reversed];

    pub fn as_str(self) -> &'static str {
        match self {
            RewardStatus::Pending => "pending",
            RewardStatus::Queued => "queued",
            RewardStatus::Paid => "paid",
            RewardStatus::Rejected => "rejected",
            RewardStatus::Reversed => "reversed",
        }
    }
}

/// How a campaign splits a payout with the end user.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Split {
    /// This percent of the payout.
    Share(Decimal),
    /// This many minor units, never more than the payout.
    Flat(i64),
}

/// The end user's reward in minor units: the share rounded half away from zero, or the flat
/// reward capped at the payout; never negative, never above the payout.
pub fn reward_minor(payout_minor: i64, split: Split) -> i64 {
    let payout_minor = payout_minor.max(0);
    let r = match split {
        Split::Share(pct) => (Decimal::from(payout_minor) * pct / Decimal::ONE_HUNDRED)
            .round_dp_with_strategy(0, RoundingStrategy::MidpointAwayFromZero)
            .try_into()
            .unwrap_or(0i64),
        Split::Flat(flat) => flat,
    };
    r.clamp(0, payout_minor)
}

/// Accounts of the ledger.
pub mod accounts {
    pub const NETWORK_RECEIVABLE: &str = "network_receivable";
    pub const USER_REWARD_PAYABLE: &str = "user_reward_payable";
    pub const PLATFORM_REVENUE: &str = "platform_revenue";
    pub const CASH: &str = "cash";
}

/// One leg to post: its key within the conversion, account and signed amount.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Leg {
    pub leg: String,
    pub account: &'static str,
    pub amount_minor: i64,
}

fn legs(prefix: &str, entries: [(&'static str, i64); 3]) -> Vec<Leg> {
    entries.into_iter().map(|(account, amount_minor)| Leg { leg: format!("{prefix}:{account}"), account, amount_minor }).collect()
}

/// Accrual on approval: the network owes the payout; the user is owed the reward; the rest
/// is platform revenue.
pub fn approval_legs(payout: i64, reward: i64) -> Vec<Leg> {
    legs(
        "approve",
        [(accounts::NETWORK_RECEIVABLE, payout), (accounts::USER_REWARD_PAYABLE, -reward), (accounts::PLATFORM_REVENUE, -(payout - reward))],
    )
}

/// The opposite of the approval legs.
pub fn reversal_legs(payout: i64, reward: i64) -> Vec<Leg> {
    legs(
        "reverse",
        [(accounts::NETWORK_RECEIVABLE, -payout), (accounts::USER_REWARD_PAYABLE, reward), (accounts::PLATFORM_REVENUE, payout - reward)],
    )
}

/// Paying the user: the payable is settled from cash.
pub fn payment_legs(reward: i64) -> Vec<Leg> {
    vec![
        Leg { leg: format!("pay:{}", accounts::USER_REWARD_PAYABLE), account: accounts::USER_REWARD_PAYABLE, amount_minor: reward },
        Leg { leg: format!("pay:{}", accounts::CASH), account: accounts::CASH, amount_minor: -reward },
    ]
}

/// What a postback status does to a reward in `current` (None: first sight): the new status
/// and the legs to post, or `None` when it changes nothing (a repeat, a step back, or a
/// change after payment).
pub fn transition(current: Option<RewardStatus>, incoming: PostbackStatus, payout: i64, reward: i64) -> Option<(RewardStatus, Vec<Leg>)> {
    use PostbackStatus as P;
    use RewardStatus as R;
    match (current, incoming) {
        (None, P::Pending) => Some((R::Pending, vec![])),
        (None | Some(R::Pending), P::Approved) => Some((R::Queued, approval_legs(payout, reward))),
        (None | Some(R::Pending), P::Rejected) => Some((R::Rejected, vec![])),
        (None | Some(R::Pending), P::Reversed) => Some((R::Reversed, vec![])),
        (Some(R::Queued), P::Rejected) => Some((R::Rejected, reversal_legs(payout, reward))),
        (Some(R::Queued), P::Reversed) => Some((R::Reversed, reversal_legs(payout, reward))),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use PostbackStatus as P;
    use RewardStatus as R;

    #[test]
    fn the_split_rounds_and_caps() {
        assert_eq!(reward_minor(1000, Split::Share(Decimal::new(40, 0))), 400);
        assert_eq!(reward_minor(1005, Split::Share(Decimal::new(50, 0))), 503, "502.5 rounds away from zero");
        assert_eq!(reward_minor(999, Split::Share(Decimal::new(100, 0))), 999);
        assert_eq!(reward_minor(300, Split::Flat(500)), 300, "a flat reward never exceeds the payout");
        assert_eq!(reward_minor(300, Split::Flat(250)), 250);
        assert_eq!(reward_minor(-5, Split::Flat(250)), 0);
    }

    #[test]
    fn every_transition_posts_legs_that_sum_to_zero() {
        for l in [approval_legs(1234, 500), reversal_legs(1234, 500), payment_legs(500)] {
            assert_eq!(l.iter().map(|x| x.amount_minor).sum::<i64>(), 0);
        }
    }

    #[test]
    fn the_state_machine_moves_forward_only() {
        assert_eq!(transition(None, P::Pending, 100, 40).map(|t| t.0), Some(R::Pending));
        let (s, legs) = transition(Some(R::Pending), P::Approved, 100, 40).unwrap();
        assert_eq!((s, legs.len()), (R::Queued, 3));
        assert_eq!(transition(None, P::Approved, 100, 40).map(|t| t.0), Some(R::Queued), "approved before pending");
        assert!(transition(Some(R::Queued), P::Pending, 100, 40).is_none(), "no step back");
        assert!(transition(Some(R::Queued), P::Approved, 100, 40).is_none(), "a repeat changes nothing");
        let (s, legs) = transition(Some(R::Queued), P::Reversed, 100, 40).unwrap();
        assert_eq!((s, legs[0].amount_minor), (R::Reversed, -100));
        assert_eq!(transition(Some(R::Pending), P::Rejected, 100, 40), Some((R::Rejected, vec![])));
        assert!(transition(Some(R::Paid), P::Reversed, 100, 40).is_none(), "paid rewards are not reversed here");
        assert!(transition(Some(R::Rejected), P::Approved, 100, 40).is_none());
    }
}
