//! Topic names. Every topic the design names is a variant here, so a typo in a topic name
//! is a compile error rather than a silent new topic on the broker.

use std::fmt;

/// One of the event streams of the system.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Topic {
    /// Raw postbacks from affiliate networks, accepted and durable before the HTTP answer.
    Postbacks,
    /// Conversions resolved from postbacks, keyed by conversion so one conversion stays in order.
    Conversions,
    /// Catalogue, blog and promotion changes made through the admin API.
    ProductChanges,
    /// Webhook delivery jobs for the dispatcher.
    WebhookJobs,
    /// Payments to make through the payout provider, keyed by end user (one payer per user,
    /// which also owns netting that user's clawbacks).
    Payouts,
    /// API keys and affiliates whose credentials changed (revoked, rotated, deactivated...):
    /// every instance follows it to drop what its credential cache holds.
    CredentialChanges,
}

impl Topic {
    /// Every topic, in a stable order (used by `hissaback migrate` to create them).
    pub const ALL: [Topic; 6] = [
        Topic::Postbacks,
        Topic::Conversions,
        Topic::ProductChanges,
        Topic::WebhookJobs,
        Topic::Payouts,
        Topic::CredentialChanges,
    ];

    /// The topic's base name, without the deployment's prefix.
    pub fn as_str(self) -> &'static str {
        match self {
            Topic::Postbacks => "postbacks",
            Topic::Conversions => "conversions",
            Topic::ProductChanges => "product-changes",
            Topic::WebhookJobs => "webhook-jobs",
            Topic::Payouts => "payouts",
            Topic::CredentialChanges => "credential-changes",
        }
    }

    /// Where undecodable messages of this topic go, so they never block a partition.
    pub fn dead_letter(self) -> String {
        format!("{}.dead-letter", self.as_str())
    }

    /// Every topic and its dead-letter topic (base names): what `hissaback migrate` creates.
    pub fn all_with_dead_letters() -> Vec<String> {
        Self::ALL.iter().flat_map(|t| [t.as_str().to_string(), t.dead_letter()]).collect()
    }

    /// The name on the broker: the configured prefix (e.g. `hissaback.`) and the base name.
    pub fn qualified(self, prefix: &str) -> String {
        format!("{prefix}{}", self.as_str())
    }
}

impl fmt::Display for Topic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn qualified_names_carry_the_prefix() {
        assert_eq!(Topic::Postbacks.qualified("hissaback."), "hissaback.postbacks");
        assert_eq!(Topic::ProductChanges.qualified(""), "product-changes");
    }

    #[test]
    fn names_are_distinct() {
        let mut names: Vec<_> = Topic::ALL.iter().map(|t| t.as_str()).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), Topic::ALL.len());
    }
}
