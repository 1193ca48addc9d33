//! Usage counting and the audit log on the request path: after every answer, the `track`
//! middleware hands one counter increment and one audit row to the usage recorder actor
//! (fire-and-forget; the actor writes them in batches).
//!
//! What is recorded:
//! - usage counters: every answer to a request that presented a valid API key, including
//!   429s of its rate limit, per key, minute, route pattern and status class;
//! - audit rows: every call of the APIs (`/api/v1`, `/v1`, `/admin/v1`), authenticated or
//!   not: time, key, affiliate, network (postbacks), method, route, path (never the query
//!   string, which may carry a key), status, latency, client address and request id.

use crate::state::AppState;
use actix_web::dev::ServiceResponse;
use actix_web::HttpMessage;
use chrono::Utc;
use hissaback_actors::ports::{AuditActor, AuditEntry, UsageCell};
use hissaback_actors::usage::{minute_of, status_class};
use std::time::Duration;

/// Who is calling, once known: set by the API-key extractor (even when the key's limit
/// then refuses the call), the admin guard and the postback handler.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Caller {
    Key { affiliate_id: u64, key_id: u64 },
    Admin,
    Network { network_id: u64 },
}

/// Whether a path belongs to an audited API.
pub fn is_api_path(path: &str) -> bool {
    ["/api/", "/v1/", "/admin/"].iter().any(|p| path.starts_with(p))
}

/// Counts and audits one answered request.
pub fn record<B>(state: &AppState, res: &ServiceResponse<B>, route: &str, request_id: &str, latency: Duration) {
    let req = res.request();
    if !is_api_path(req.path()) {
        return;
    }
    let caller = req.extensions().get::<Caller>().copied();
    let status = res.status().as_u16();
    let now = Utc::now();
    let usage = match caller {
        Some(Caller::Key { affiliate_id, key_id }) => {
            Some(UsageCell { affiliate_id, period: minute_of(now), key_id, route: route.to_string(), status_class: status_class(status) })
        }
        _ => None,
    };
    let (actor, affiliate_id, key_id, network_id) = match caller {
        Some(Caller::Key { affiliate_id, key_id }) => (AuditActor::Key, affiliate_id, Some(key_id), None),
        Some(Caller::Admin) => (AuditActor::Admin, 0, None, None),
        Some(Caller::Network { network_id }) => (AuditActor::Network, 0, None, Some(network_id)),
        None => (AuditActor::Anonymous, 0, None, None),
    };
    let path = req.path();
    let audit = AuditEntry {
        at: now,
        affiliate_id,
        key_id,
        network_id,
        actor,
        // Bounded like the metrics label: a made-up method is recorded as `OTHER`.
        method: crate::metrics::method_label(req.method()).to_string(),
        route: route.to_string(),
        // A path naming an end user is personal data: those rows keep the route pattern.
        path: if route.contains("{user_id}") {
            route.to_string()
        } else if path.len() <= 512 {
            path.to_string()
        } else {
            path.chars().take(512).collect()
        },
        status,
        latency_us: u64::try_from(latency.as_micros()).unwrap_or(u64::MAX),
        client_ip: crate::auth::client_ip(req).map(|ip| ip.to_string()),
        request_id: request_id.to_string(),
    };
    state.usage.answered(usage, status == 429, audit);
}
