//! API key scopes: the seed's nine, the partner flow's four, and the two that read what a
//! partner's callers did (usage statistics, the audit log) and the erasure of an end user's
//! personal data, which publishable keys never hold.

use serde::{Deserialize, Serialize};
use std::fmt;
use utoipa::ToSchema;

/// What a key may do. Names are the wire format (`products.list`, ...).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, ToSchema)]
pub enum Scope {
    #[serde(rename = "payouts.history.view")]
    PayoutsHistoryView,
    #[serde(rename = "payments.view")]
    PaymentsView,
    #[serde(rename = "webhooks.manage")]
    WebhooksManage,
    #[serde(rename = "blogs.manage")]
    BlogsManage,
    #[serde(rename = "blogs.accounts.manage")]
    BlogsAccountsManage,
    #[serde(rename = "products.list")]
    ProductsList,
    #[serde(rename = "products.view")]
    ProductsView,
    #[serde(rename = "products.discounts.manage")]
    ProductsDiscountsManage,
    #[serde(rename = "promotions.view")]
    PromotionsView,
    #[serde(rename = "offers.read")]
    OffersRead,
    #[serde(rename = "campaigns.write")]
    CampaignsWrite,
    #[serde(rename = "links.write")]
    LinksWrite,
    #[serde(rename = "rewards.read")]
    RewardsRead,
    /// Usage statistics (`/v1/stats/usage`): secret keys only.
    #[serde(rename = "stats.read")]
    StatsRead,
    /// The partner's audit log (`/v1/audit`, with client addresses): secret keys only.
    #[serde(rename = "audit.read")]
    AuditRead,
    /// Erasing an end user's personal data (`DELETE /v1/users/{user_id}`): secret keys only.
    #[serde(rename = "users.manage")]
    UsersManage,
}

impl Scope {
    /// Every supported scope, in the order the seed lists them, then the partner scopes.
    pub const ALL: [Scope; 16] = [
        Scope::PayoutsHistoryView,
        Scope::PaymentsView,
        Scope::WebhooksManage,
        Scope::BlogsManage,
        Scope::BlogsAccountsManage,
        Scope::ProductsList,
        Scope::ProductsView,
        Scope::ProductsDiscountsManage,
        Scope::PromotionsView,
        Scope::OffersRead,
        Scope::CampaignsWrite,
        Scope::LinksWrite,
        Scope::RewardsRead,
        Scope::StatsRead,
        Scope::AuditRead,
        Scope::UsersManage,
    ];

    /// Scopes a publishable key may hold: reads that are safe in a browser.
    pub const PUBLISHABLE: [Scope; 4] = [Scope::ProductsList, Scope::ProductsView, Scope::PromotionsView, Scope::OffersRead];

    /// Scopes that need an approval on the affiliate before they work.
    pub const APPROVAL_GATED: [Scope; 1] = [Scope::BlogsManage];

    pub fn as_str(self) -> &'static str {
        match self {
            Scope::PayoutsHistoryView => "payouts.history.view",
            Scope::PaymentsView => "payments.view",
            Scope::WebhooksManage => "webhooks.manage",
            Scope::BlogsManage => "blogs.manage",
            Scope::BlogsAccountsManage => "blogs.accounts.manage",
            Scope::ProductsList => "products.list",
            Scope::ProductsView => "products.view",
            Scope::ProductsDiscountsManage => "products.discounts.manage",
            Scope::PromotionsView => "promotions.view",
            Scope::OffersRead => "offers.read",
            Scope::CampaignsWrite => "campaigns.write",
            Scope::LinksWrite => "links.write",
            Scope::RewardsRead => "rewards.read",
            Scope::StatsRead => "stats.read",
            Scope::AuditRead => "audit.read",
            Scope::UsersManage => "users.manage",
        }
    }

    pub fn parse(s: &str) -> Option<Scope> {
        Self::ALL.into_iter().find(|sc| sc.as_str() == s)
    }

    /// Sorts into the canonical order and removes duplicates.
    pub fn canonical(mut scopes: Vec<Scope>) -> Vec<Scope> {
        scopes.sort();
        scopes.dedup();
        scopes
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_names_round_trip() {
        for s in Scope::ALL {
            assert_eq!(Scope::parse(s.as_str()), Some(s));
            assert_eq!(serde_json::to_value(s).unwrap(), s.as_str());
        }
        assert_eq!(Scope::parse("products.delete"), None);
    }

    #[test]
    fn canonical_order_follows_the_seed() {
        let got = Scope::canonical(vec![Scope::ProductsView, Scope::ProductsList, Scope::ProductsView]);
        assert_eq!(got, vec![Scope::ProductsList, Scope::ProductsView]);
    }
}
