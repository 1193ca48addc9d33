//! The ledger's rules, as plain functions: the commission split, the conversion state machine
//! and the double-entry legs each step posts. The conversion's one writer (the ledger
//! consumer that owns its partition, in the service) applies them and stores the result;
//! everything here is deterministic, so applying the same event twice gives the same rows.
//!
//! # The state machine
//!
//! A conversion's [`Book`] moves `pending → queued → paying → paid`, or to `rejected` /
//! `reversed`, driven by [`Command`]s:
//!
//! - postbacks: `pending`, `approved` (accrual), `rejected`/`reversed`; a later postback with
//!   another payout adjusts the amounts until the payment starts (adjusting legs, reward
//!   recomputed with the campaign's split);
//! - payment, two-phase like a pending transfer: [`Command::StartPayment`] moves a queued
//!   reward to `paying` (no legs: nothing has moved yet), [`Command::Settle`] brings the
//!   provider's outcome back: `paid` (payment legs) or `queued` again;
//! - a rejection or reversal that meets a payment in flight is held and resolved when the
//!   payment settles: after a failed payment it is an ordinary reversal, after a successful
//!   one a clawback;
//! - a rejection or reversal after payment is a clawback: the network receivable and the
//!   platform's revenue are undone and the end user owes the reward back
//!   ([`accounts::USER_CLAWBACK`]), which a later payment to that user recovers
//!   ([`Command::Settle::recovered`]) instead of paying it in cash.
//!
//! Each step's legs sum to zero, and [`expected_balances`] says what every account must hold
//! for a book: `hissaback ledger check` compares it with the postings.

use hissaback_topics::events::PostbackStatus;
use rust_decimal::{Decimal, RoundingStrategy};
use serde::{Deserialize, Serialize};

/// A reward's status as partners see it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RewardStatus {
    Pending,
    Queued,
    Paying,
    Paid,
    Rejected,
    Reversed,
}

impl RewardStatus {
    /// Every status, in the order of a reward's life.
    pub const ALL: [RewardStatus; 6] =
        [RewardStatus::Pending, RewardStatus::Queued, RewardStatus::Paying, RewardStatus::Paid, RewardStatus::Rejected, RewardStatus::Reversed];

    pub fn as_str(self) -> &'static str {
        match self {
            RewardStatus::Pending => "pending",
            RewardStatus::Queued => "queued",
            RewardStatus::Paying => "paying",
            RewardStatus::Paid => "paid",
            RewardStatus::Rejected => "rejected",
            RewardStatus::Reversed => "reversed",
        }
    }

    /// Accrued: the network owes the payout and the platform books its revenue.
    pub fn is_live(self) -> bool {
        matches!(self, RewardStatus::Queued | RewardStatus::Paying | RewardStatus::Paid)
    }

    /// Rejected or reversed: nothing changes a final conversion any more.
    pub fn is_final(self) -> bool {
        matches!(self, RewardStatus::Rejected | RewardStatus::Reversed)
    }
}

/// How a campaign splits a payout with the end user.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
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
    /// What end users owe back after a reversal of a paid reward (positive: owed to us).
    pub const USER_CLAWBACK: &str = "user_clawback_receivable";
    pub const ALL: [&str; 5] = [NETWORK_RECEIVABLE, USER_REWARD_PAYABLE, PLATFORM_REVENUE, CASH, USER_CLAWBACK];
}

/// One leg to post: its key within the conversion (`{step}:{account}`), account and signed
/// amount.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Leg {
    pub leg: String,
    pub account: &'static str,
    pub amount_minor: i64,
}

impl Leg {
    /// The step a leg belongs to (`approve`, `adjust@0.17`, `pay` …): a step's legs sum to 0.
    pub fn step_of(leg: &str) -> &str {
        leg.rsplit_once(':').map_or(leg, |(step, _)| step)
    }
}

fn legs(step: &str, entries: &[(&'static str, i64)]) -> Vec<Leg> {
    entries
        .iter()
        .filter(|(_, amount)| *amount != 0)
        .map(|&(account, amount_minor)| Leg { leg: format!("{step}:{account}"), account, amount_minor })
        .collect()
}

/// Accrual on approval: the network owes the payout; the user is owed the reward; the rest
/// is platform revenue.
pub fn approval_legs(payout: i64, reward: i64) -> Vec<Leg> {
    use accounts::*;
    legs("approve", &[(NETWORK_RECEIVABLE, payout), (USER_REWARD_PAYABLE, -reward), (PLATFORM_REVENUE, -(payout - reward))])
}

/// The opposite of the approval legs.
pub fn reversal_legs(payout: i64, reward: i64) -> Vec<Leg> {
    use accounts::*;
    legs("reverse", &[(NETWORK_RECEIVABLE, -payout), (USER_REWARD_PAYABLE, reward), (PLATFORM_REVENUE, payout - reward)])
}

/// Paying the user: the payable is settled, from cash and from what the user owed back
/// (`recovered`, at most the reward).
pub fn payment_legs(reward: i64, recovered: i64) -> Vec<Leg> {
    use accounts::*;
    legs("pay", &[(USER_REWARD_PAYABLE, reward), (CASH, -(reward - recovered)), (USER_CLAWBACK, -recovered)])
}

/// A reversal after payment: the accrual is undone and the user owes the reward back.
pub fn clawback_legs(payout: i64, reward: i64) -> Vec<Leg> {
    use accounts::*;
    legs("clawback", &[(NETWORK_RECEIVABLE, -payout), (PLATFORM_REVENUE, payout - reward), (USER_CLAWBACK, reward)])
}

/// A queued (accrued) conversion's payout changed from (payout, reward) to (new_payout,
/// new_reward): the differences, under a step named by the event that caused it.
pub fn adjustment_legs(tag: &str, (payout, reward): (i64, i64), (new_payout, new_reward): (i64, i64)) -> Vec<Leg> {
    use accounts::*;
    let (dp, dr) = (new_payout - payout, new_reward - reward);
    legs(&format!("adjust@{tag}"), &[(NETWORK_RECEIVABLE, dp), (USER_REWARD_PAYABLE, -dr), (PLATFORM_REVENUE, -(dp - dr))])
}

/// What the conversion's writer applies, in the order of its events.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Command {
    /// A network's postback with its payout (minor units).
    Postback { status: PostbackStatus, payout: i64 },
    /// Payment asked for: a queued reward becomes `paying`.
    StartPayment,
    /// The payout provider's outcome: `paid` and how much of the reward recovered an earlier
    /// clawback of the same user instead of cash (0 ..= reward).
    Settle { paid: bool, recovered: i64 },
}

/// A conversion as the ledger sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Book {
    pub status: RewardStatus,
    pub payout: i64,
    pub reward: i64,
    pub split: Split,
    /// A rejection or reversal that arrived while the payment was in flight.
    pub held: Option<RewardStatus>,
    /// Paid at some point (cash left, or a clawback was recovered).
    pub paid: bool,
    /// Of the reward, what recovered an earlier clawback rather than being paid in cash.
    pub recovered: i64,
    /// What the user owes back for this conversion (a reversal after payment).
    pub clawback: i64,
}

impl Book {
    /// The book of a conversion first seen with `payout` under `split`, before any status.
    pub fn new(payout: i64, split: Split) -> Self {
        Self { status: RewardStatus::Pending, payout, reward: reward_minor(payout, split), split, held: None, paid: false, recovered: 0, clawback: 0 }
    }
}

/// What a step did: the legs to post and whether partners are told (the reward event name).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Step {
    pub legs: Vec<Leg>,
    /// Reward webhook events this step causes, in order (`reward.queued`, `reward.paid`,
    /// `reward.rejected`, `reward.reversed`).
    pub events: Vec<&'static str>,
}

fn final_status(status: PostbackStatus) -> RewardStatus {
    if status == PostbackStatus::Rejected {
        RewardStatus::Rejected
    } else {
        RewardStatus::Reversed
    }
}

fn final_event(status: RewardStatus) -> &'static str {
    if status == RewardStatus::Rejected {
        "reward.rejected"
    } else {
        "reward.reversed"
    }
}

/// Ends a live book as `to` (rejected or reversed): a reversal before payment, a clawback
/// after it.
fn end(book: &mut Book, to: RewardStatus, step: &mut Step) {
    if book.status == RewardStatus::Paid {
        step.legs.extend(clawback_legs(book.payout, book.reward));
        book.clawback = book.reward;
    } else if book.status.is_live() {
        step.legs.extend(reversal_legs(book.payout, book.reward));
    }
    book.status = to;
    book.held = None;
    step.events.push(final_event(to));
}

/// Applies `command` to `book` (`None`: the conversion's first event) and returns the new
/// book with the step, or `None` when it changes nothing (a repeat, a step back, a command
/// that does not apply in this status). `tag` names the event (its position), so legs an
/// adjustment posts are distinct per event and the same on replay.
pub fn apply(book: Option<Book>, split: Split, command: Command, tag: &str) -> Option<(Book, Step)> {
    use PostbackStatus as P;
    use RewardStatus as R;
    let mut step = Step::default();
    let mut b = match book {
        Some(b) => b,
        None => {
            let Command::Postback { status, payout } = command else { return None };
            let mut b = Book::new(payout, split);
            match status {
                P::Pending => {}
                P::Approved => {
                    b.status = R::Queued;
                    step.legs = approval_legs(b.payout, b.reward);
                    step.events.push("reward.queued");
                }
                P::Rejected | P::Reversed => {
                    b.status = final_status(status);
                    step.events.push(final_event(b.status));
                }
            }
            return Some((b, step));
        }
    };
    match (b.status, command) {
        (s, _) if s.is_final() => return None,
        (R::Pending, Command::Postback { status, payout }) => match status {
            P::Pending if payout == b.payout => return None,
            P::Pending => {
                b.payout = payout;
                b.reward = reward_minor(payout, b.split);
            }
            P::Approved => {
                b.payout = payout;
                b.reward = reward_minor(payout, b.split);
                b.status = R::Queued;
                step.legs = approval_legs(b.payout, b.reward);
                step.events.push("reward.queued");
            }
            P::Rejected | P::Reversed => end(&mut b, final_status(status), &mut step),
        },
        (R::Queued, Command::Postback { status, payout }) => match status {
            P::Approved if payout != b.payout => {
                let reward = reward_minor(payout, b.split);
                step.legs = adjustment_legs(tag, (b.payout, b.reward), (payout, reward));
                b.payout = payout;
                b.reward = reward;
            }
            P::Rejected | P::Reversed => end(&mut b, final_status(status), &mut step),
            _ => return None,
        },
        (R::Paying, Command::Postback { status: status @ (P::Rejected | P::Reversed), .. }) => {
            // The payment is in flight: the writer holds the reversal until it settles.
            if b.held.is_some() {
                return None;
            }
            b.held = Some(final_status(status));
        }
        (R::Paid, Command::Postback { status: status @ (P::Rejected | P::Reversed), .. }) => end(&mut b, final_status(status), &mut step),
        (R::Queued, Command::StartPayment) => b.status = R::Paying,
        (R::Paying, Command::Settle { paid: true, recovered }) => {
            let recovered = recovered.clamp(0, b.reward);
            step.legs = payment_legs(b.reward, recovered);
            b.recovered = recovered;
            b.paid = true;
            b.status = R::Paid;
            step.events.push("reward.paid");
            if let Some(to) = b.held {
                end(&mut b, to, &mut step);
            }
        }
        (R::Paying, Command::Settle { paid: false, .. }) => {
            b.status = R::Queued;
            if let Some(to) = b.held {
                end(&mut b, to, &mut step);
            }
        }
        _ => return None,
    }
    Some((b, step))
}

/// What every account must hold, per the book (amounts in the conversion's currency). The
/// postings of a conversion must sum to exactly these.
pub fn expected_balances(b: &Book) -> [(&'static str, i64); 5] {
    use accounts::*;
    let accrued = b.status.is_live();
    [
        (NETWORK_RECEIVABLE, if accrued { b.payout } else { 0 }),
        (USER_REWARD_PAYABLE, if matches!(b.status, RewardStatus::Queued | RewardStatus::Paying) { -b.reward } else { 0 }),
        (PLATFORM_REVENUE, if accrued { -(b.payout - b.reward) } else { 0 }),
        (CASH, if b.paid { -(b.reward - b.recovered) } else { 0 }),
        (USER_CLAWBACK, b.clawback - b.recovered),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;
    use PostbackStatus as P;
    use RewardStatus as R;

    const SPLIT: Split = Split::Share(Decimal::from_parts(40, 0, 0, false, 0));

    fn pb(status: PostbackStatus, payout: i64) -> Command {
        Command::Postback { status, payout }
    }

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
    fn every_step_posts_legs_that_sum_to_zero() {
        for l in [approval_legs(1234, 500), reversal_legs(1234, 500), payment_legs(500, 120), clawback_legs(1234, 500), adjustment_legs("0.1", (100, 40), (250, 100))] {
            assert_eq!(l.iter().map(|x| x.amount_minor).sum::<i64>(), 0);
        }
    }

    #[test]
    fn a_later_payout_adjusts_the_amounts_until_payment() {
        let (b, _) = apply(None, SPLIT, pb(P::Pending, 1000), "0.1").unwrap();
        let (b, step) = apply(Some(b), SPLIT, pb(P::Approved, 25000), "0.2").unwrap();
        assert_eq!((b.status, b.payout, b.reward), (R::Queued, 25000, 10000), "the approval books the later payout");
        assert_eq!(step.legs, approval_legs(25000, 10000));
        let (b, step) = apply(Some(b), SPLIT, pb(P::Approved, 20000), "0.3").unwrap();
        assert_eq!((b.payout, b.reward), (20000, 8000));
        assert_eq!(step.legs[0].leg, "adjust@0.3:network_receivable");
        assert!(apply(Some(b), SPLIT, pb(P::Approved, 20000), "0.4").is_none(), "a repeat changes nothing");
        let (b, _) = apply(Some(b), SPLIT, Command::StartPayment, "0.5").unwrap();
        assert!(apply(Some(b), SPLIT, pb(P::Approved, 1), "0.6").is_none(), "no adjustment once the payment started");
    }

    #[test]
    fn payment_is_two_phase_and_a_reversal_in_flight_waits_for_it() {
        let (b, _) = apply(None, SPLIT, pb(P::Approved, 1000), "0.1").unwrap();
        assert!(apply(Some(b), SPLIT, Command::Settle { paid: true, recovered: 0 }, "x").is_none(), "no settlement before the payment started");
        let (paying, step) = apply(Some(b), SPLIT, Command::StartPayment, "0.2").unwrap();
        assert_eq!((paying.status, step.legs.len()), (R::Paying, 0));
        assert!(apply(Some(paying), SPLIT, Command::StartPayment, "0.3").is_none(), "a second payment request does nothing");
        // The provider refused: back to queued.
        let (b, _) = apply(Some(paying), SPLIT, Command::Settle { paid: false, recovered: 0 }, "0.4").unwrap();
        assert_eq!(b.status, R::Queued);
        // A reversal meets the payment in flight, then the payment succeeds: a clawback.
        let (held, _) = apply(Some(paying), SPLIT, pb(P::Reversed, 1000), "0.5").unwrap();
        assert_eq!((held.status, held.held), (R::Paying, Some(R::Reversed)));
        let (b, step) = apply(Some(held), SPLIT, Command::Settle { paid: true, recovered: 0 }, "0.6").unwrap();
        assert_eq!((b.status, b.paid, b.clawback), (R::Reversed, true, 400));
        assert_eq!(step.events, vec!["reward.paid", "reward.reversed"]);
        // The same reversal, the payment failing: an ordinary reversal.
        let (b, step) = apply(Some(held), SPLIT, Command::Settle { paid: false, recovered: 0 }, "0.6").unwrap();
        assert_eq!((b.status, b.paid, b.clawback), (R::Reversed, false, 0));
        assert_eq!(step.legs, reversal_legs(1000, 400));
    }

    #[test]
    fn final_statuses_stay_final() {
        let (b, _) = apply(None, SPLIT, pb(P::Rejected, 1000), "0.1").unwrap();
        assert_eq!(b.status, R::Rejected);
        for c in [pb(P::Approved, 1000), pb(P::Pending, 5), Command::StartPayment, Command::Settle { paid: true, recovered: 0 }] {
            assert!(apply(Some(b), SPLIT, c, "t").is_none());
        }
        assert!(apply(None, SPLIT, Command::StartPayment, "t").is_none());
    }

    /// Applies commands and posts their legs, as the writer does.
    fn run(commands: &[Command]) -> (Option<Book>, BTreeMap<String, i64>) {
        let mut book = None;
        let mut postings: BTreeMap<String, i64> = BTreeMap::new();
        for (i, c) in commands.iter().enumerate() {
            if let Some((b, step)) = apply(book, SPLIT, *c, &format!("0.{i}")) {
                let mut per_step: BTreeMap<&str, i64> = BTreeMap::new();
                for l in &step.legs {
                    *per_step.entry(Leg::step_of(&l.leg)).or_default() += l.amount_minor;
                    // A leg key is written once: rewriting it would change the ledger.
                    assert!(postings.insert(l.leg.clone(), l.amount_minor).is_none(), "leg {} posted twice", l.leg);
                }
                assert!(per_step.values().all(|s| *s == 0), "each step balances: {per_step:?}");
                book = Some(b);
            }
        }
        (book, postings)
    }

    fn balances(postings: &BTreeMap<String, i64>) -> BTreeMap<&'static str, i64> {
        let mut out: BTreeMap<&'static str, i64> = accounts::ALL.iter().map(|a| (*a, 0)).collect();
        for (leg, amount) in postings {
            let account = leg.rsplit_once(':').unwrap().1;
            let a = accounts::ALL.iter().find(|a| **a == account).unwrap();
            *out.get_mut(a).unwrap() += amount;
        }
        out
    }

    mod property {
        use super::*;
        use proptest::prelude::*;

        fn command() -> impl Strategy<Value = Command> {
            prop_oneof![
                (prop_oneof![Just(P::Pending), Just(P::Approved), Just(P::Rejected), Just(P::Reversed)], prop_oneof![Just(1000i64), Just(2500), 0i64..100_000])
                    .prop_map(|(status, payout)| Command::Postback { status, payout }),
                Just(Command::StartPayment),
                (any::<bool>(), 0i64..600).prop_map(|(paid, recovered)| Command::Settle { paid, recovered }),
            ]
        }

        proptest! {
            /// Any order and repetition of statuses, adjustments, payments, settlements and
            /// reversals keeps every account balanced and the status consistent with the
            /// postings.
            #[test]
            fn any_sequence_keeps_the_books_balanced(commands in proptest::collection::vec(command(), 0..24)) {
                let (book, postings) = run(&commands);
                let total: i64 = postings.values().sum();
                prop_assert_eq!(total, 0);
                let Some(b) = book else {
                    prop_assert!(postings.is_empty());
                    return Ok(());
                };
                let posted = balances(&postings);
                for (account, expected) in expected_balances(&b) {
                    prop_assert_eq!(posted[account], expected, "account {} of {:?}", account, b);
                }
                prop_assert!(b.reward >= 0 && b.reward <= b.payout.max(0));
                prop_assert!(b.recovered <= b.reward);
                if b.reward > 0 {
                    prop_assert_eq!(b.paid, postings.keys().any(|k| k.starts_with("pay:")));
                }
                prop_assert_eq!(b.clawback > 0, postings.keys().any(|k| k.starts_with("clawback:")) && b.reward > 0);
                prop_assert!(b.held.is_none() || b.status == R::Paying, "only a payment in flight holds a reversal");
            }

            /// Replaying any prefix again (at-least-once delivery) with the same tags changes
            /// nothing: the writer skips events it applied, and the legs it would post are
            /// the same keys with the same amounts.
            #[test]
            fn a_replayed_sequence_gives_the_same_book(commands in proptest::collection::vec(command(), 0..16)) {
                prop_assert_eq!(run(&commands), run(&commands));
            }
        }
    }
}
