//! Authentication and authorisation.
//!
//! [`Authenticated`] resolves the acting affiliate from an API key sent in any of the
//! seed's three transports (in this order: `Authorization: Bearer`, `X-Affiliate-Api-Key`,
//! `?api_key=`), with the seed's exact 401 messages. Handlers then ask for the scope they
//! need with [`Authenticated::require`]. [`Admin`] guards the admin API with its bearer token.
//!
//! Credentials come from the in-memory cache (`credentials.rs`) and the store on a miss; a
//! change made on this instance applies to its very next request, on the others within the
//! time `credential-changes` takes to reach them.

use crate::domain::{PlainApiKey, Scope};
use crate::error::{messages, ApiError};
use crate::credentials::Resolved;
use crate::state::AppState;
use std::net::IpAddr;
use std::sync::Arc;
use crate::store::{AffiliateRecord, ApiKeyRecord};
use actix_web::dev::Payload;
use actix_web::http::header::AUTHORIZATION;
use actix_web::{web, FromRequest, HttpMessage, HttpRequest};
use chrono::Utc;
use futures_util::future::LocalBoxFuture;
use secrecy::ExposeSecret;
use hissaback_actors::rate_limit::{Decision, Plan};
use sha2::{Digest, Sha256};

/// The custom header of the seed.
pub const KEY_HEADER: &str = "X-Affiliate-Api-Key";

/// Who is calling: the affiliate and the key it used.
#[derive(Clone, Debug)]
pub struct Authenticated {
    pub affiliate: Arc<AffiliateRecord>,
    pub key: Arc<ApiKeyRecord>,
}

impl Authenticated {
    /// 403 "Insufficient scope." unless the key holds `scope`.
    pub fn require(&self, scope: Scope) -> Result<(), ApiError> {
        if self.key.scopes.contains(&scope) {
            Ok(())
        } else {
            Err(ApiError::insufficient_scope())
        }
    }

    /// Approval-gated scopes the affiliate cannot use yet (the seed's `restrictions`).
    pub fn restrictions(&self) -> Vec<Scope> {
        Scope::APPROVAL_GATED
            .into_iter()
            .filter(|s| match s {
                Scope::BlogsManage => !self.affiliate.blog_approved,
                _ => false,
            })
            .collect()
    }
}

/// Whether the request carries an API key in any transport.
pub fn presents_key(req: &HttpRequest) -> bool {
    presented_key(req).is_some()
}

/// The plain key from the first transport that carries a non-empty one.
fn presented_key(req: &HttpRequest) -> Option<String> {
    let bearer = req
        .headers()
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(bearer_token);
    let header = || {
        req.headers()
            .get(KEY_HEADER)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(String::from)
    };
    let query = || {
        url::form_urlencoded::parse(req.query_string().as_bytes())
            .find(|(k, _)| k == "api_key")
            .map(|(_, v)| v.trim().to_string())
            .filter(|s| !s.is_empty())
    };
    bearer.or_else(header).or_else(query)
}

/// The token of an `Authorization: Bearer <token>` value (scheme case-insensitive).
pub fn bearer_token(value: &str) -> Option<String> {
    let (scheme, token) = value.trim().split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then(|| token.to_string())
}

async fn authenticate(state: &AppState, raw: Option<String>, ip: Option<IpAddr>, prefix: u64) -> Result<Authenticated, ApiError> {
    let raw = raw.ok_or_else(|| ApiError::unauthenticated(messages::KEY_MISSING))?;
    let plain = PlainApiKey::parse(&raw).ok_or_else(|| ApiError::unauthenticated(messages::KEY_INVALID))?;
    let digest = state.hasher.digest(&plain);
    let resolved = match state.credentials.get(&digest) {
        Some(hit) => hit,
        None => {
            // A key this instance does not know yet, from an address whose guesses with this
            // prefix are blocked: refused without a store read.
            refuse_blocked(state, ip, prefix)?;
            let ticket = state.credentials.ticket();
            let key = state
                .store
                .key_by_hash(&hex::encode(digest))
                .await?
                .filter(|k| k.is_usable_at(Utc::now()))
                .ok_or_else(|| ApiError::unauthenticated(messages::KEY_INVALID))?;
            let affiliate = state
                .store
                .get_affiliate(key.affiliate_id)
                .await?
                .ok_or_else(|| ApiError::unauthenticated(messages::AFFILIATE_NOT_RESOLVED))?;
            let resolved = Arc::new(Resolved { key: Arc::new(key), affiliate: Arc::new(affiliate) });
            state.credentials.fill(digest, ticket, resolved.clone());
            resolved
        }
    };
    // Expiry (a rotated key's grace window) is checked on every request, cached or not.
    if !resolved.key.is_usable_at(Utc::now()) {
        return Err(ApiError::unauthenticated(messages::KEY_INVALID));
    }
    if !resolved.affiliate.active {
        return Err(ApiError::unauthenticated(messages::AFFILIATE_INACTIVE));
    }
    state.key_usage.used(resolved.key.id);
    Ok(Authenticated { affiliate: resolved.affiliate.clone(), key: resolved.key.clone() })
}

impl FromRequest for Authenticated {
    type Error = ApiError;
    type Future = LocalBoxFuture<'static, Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _payload: &mut Payload) -> Self::Future {
        let state = req.app_data::<web::Data<AppState>>().cloned();
        let raw = presented_key(req);
        let req = req.clone();
        Box::pin(async move {
            let state = state.ok_or_else(|| ApiError::internal(anyhow::anyhow!("application state missing")))?;
            let ip = client_ip(&req);
            let prefix = credential_prefix("api_key", raw.as_deref());
            match authenticate(&state, raw, ip, prefix).await {
                Ok(auth) => {
                    req.extensions_mut().insert(crate::usage::Caller::Key { affiliate_id: auth.affiliate.id, key_id: auth.key.id });
                    let plan = Plan { per_minute: auth.key.rate_limit.per_minute, burst: auth.key.rate_limit.burst };
                    let decision = state.limits.check(auth.key.id, plan);
                    req.extensions_mut().insert(RateInfo(decision));
                    refuse_spent(&state, &decision, "key", "Rate limit exceeded.")?;
                    req.extensions_mut().insert(auth.clone());
                    Ok(auth)
                }
                Err(e) if e.code() == "unauthenticated" => Err(count_failure(&state, ip, "api_key", prefix, e)),
                Err(e) => Err(e),
            }
        })
    }
}

pub const TOO_MANY_FAILURES: &str = "Too many failed authentications; retry later.";

/// The caller's address: the peer, or, when the peer is a trusted proxy
/// (`server.trusted_proxies`), the nearest address in `X-Forwarded-For` that is not one: a
/// client cannot forge its address by sending the header itself. The same rule serves
/// authentication, the audit log and clicks.
pub fn client_ip(req: &HttpRequest) -> Option<IpAddr> {
    let peer = req.peer_addr()?.ip();
    let trusted = req.app_data::<web::Data<AppState>>().map(|s| s.trusted_proxies.as_slice()).unwrap_or_default();
    Some(forwarded_client(peer, trusted, req.headers().get_all("x-forwarded-for").filter_map(|v| v.to_str().ok())))
}

/// The client behind a chain of proxies: walking `X-Forwarded-For` from the right (the hop
/// nearest to us) while the hop is trusted; a malformed entry stops the walk at the last
/// address known good.
pub fn forwarded_client<'a>(peer: IpAddr, trusted: &[ipnet::IpNet], headers: impl Iterator<Item = &'a str>) -> IpAddr {
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|net| net.contains(ip));
    if !is_trusted(&peer) {
        return peer;
    }
    let hops: Vec<&str> = headers.flat_map(|h| h.split(',')).map(str::trim).collect();
    let mut client = peer;
    for hop in hops.iter().rev() {
        match hop.parse::<IpAddr>() {
            Ok(ip) => {
                client = ip;
                if !is_trusted(&ip) {
                    break;
                }
            }
            Err(_) => break,
        }
    }
    client
}

/// How many leading characters of a presented credential name its failure bucket
/// (`hb_sk_` and eight more of an API key, what `prefix` shows).
const PREFIX_CHARS: usize = 14;

/// The failure bucket of a presented credential of `kind`: a hash of the kind and the
/// credential's first characters (never `rate_limit::WHOLE_ADDRESS`).
pub fn credential_prefix(kind: &str, presented: Option<&str>) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    kind.hash(&mut h);
    presented.map(|p| p.char_indices().nth(PREFIX_CHARS).map_or(p, |(at, _)| &p[..at])).hash(&mut h);
    h.finish() | 1
}

/// 429 while failures from the address with this credential prefix (or from the address
/// as a whole) are blocked. Only for credentials that did not check out: a valid credential
/// is never refused because others at its address failed.
pub fn refuse_blocked(state: &AppState, ip: Option<IpAddr>, prefix: u64) -> Result<(), ApiError> {
    match ip.and_then(|ip| state.limits.auth_failures_blocked(ip, prefix)) {
        Some(wait) => {
            state.metrics.rate_limited.with_label_values(&["auth_failures"]).inc();
            Err(ApiError::rate_limited(TOO_MANY_FAILURES, wait))
        }
        None => Ok(()),
    }
}

/// Counts a failed authentication of credential `kind` against the address and the
/// credential's prefix: answers the 429 once either is over its allowance, `refused`
/// otherwise.
pub fn count_failure(state: &AppState, ip: Option<IpAddr>, kind: &str, prefix: u64, refused: ApiError) -> ApiError {
    state.metrics.auth_failures.with_label_values(&[kind]).inc();
    match ip.and_then(|ip| state.limits.auth_failed(ip, prefix)) {
        Some(wait) => {
            state.metrics.rate_limited.with_label_values(&["auth_failures"]).inc();
            ApiError::rate_limited(TOO_MANY_FAILURES, wait)
        }
        None => refused,
    }
}

/// 429 `message` with the bucket's headers when `decision` refused the call (`kind` labels
/// `hissaback_rate_limited_total`: `key` or `network`).
pub fn refuse_spent(state: &AppState, decision: &Decision, kind: &str, message: &'static str) -> Result<(), ApiError> {
    match decision.retry_after_secs {
        Some(wait) => {
            state.metrics.rate_limited.with_label_values(&[kind]).inc();
            Err(rate_headers(decision).into_iter().fold(ApiError::rate_limited(message, wait), |e, (k, v)| e.with_header(k, v)))
        }
        None => Ok(()),
    }
}

/// The rate-limit outcome of this request, for the response headers.
#[derive(Clone, Copy, Debug)]
pub struct RateInfo(pub Decision);

/// `X-RateLimit-*` and the IETF `RateLimit-Policy` / `RateLimit` fields of a decision
/// (lower-case names: header names are case-insensitive).
pub fn rate_headers(d: &Decision) -> Vec<(&'static str, String)> {
    vec![
        ("x-ratelimit-limit", d.plan.per_minute.to_string()),
        ("x-ratelimit-remaining", d.remaining.to_string()),
        ("x-ratelimit-reset", d.reset_secs.to_string()),
        ("ratelimit-policy", format!("{};w=60;burst={}", d.plan.per_minute, d.plan.burst)),
        ("ratelimit", format!("limit={}, remaining={}, reset={}", d.plan.per_minute, d.remaining, d.reset_secs)),
    ]
}

/// Middleware: every authenticated answer carries the key's rate-limit headers.
pub async fn rate_limit_headers(
    req: actix_web::dev::ServiceRequest,
    next: actix_web::middleware::Next<impl actix_web::body::MessageBody>,
) -> Result<actix_web::dev::ServiceResponse<impl actix_web::body::MessageBody>, actix_web::Error> {
    let mut res = next.call(req).await?;
    let info = res.request().extensions().get::<RateInfo>().copied();
    if let Some(RateInfo(d)) = info {
        for (name, value) in rate_headers(&d) {
            if let Ok(v) = actix_web::http::header::HeaderValue::from_str(&value) {
                res.headers_mut().insert(actix_web::http::header::HeaderName::from_static(name), v);
            }
        }
    }
    Ok(res)
}

/// The admin API's caller: proof that the admin bearer token was presented.
pub struct Admin;

impl FromRequest for Admin {
    type Error = ApiError;
    type Future = std::future::Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _payload: &mut Payload) -> Self::Future {
        std::future::ready(check_admin(req))
    }
}

fn check_admin(req: &HttpRequest) -> Result<Admin, ApiError> {
    let state = req
        .app_data::<web::Data<AppState>>()
        .ok_or_else(|| ApiError::internal(anyhow::anyhow!("application state missing")))?;
    let expected = state.admin_token.as_ref().ok_or_else(|| {
        ApiError::new(
            actix_web::http::StatusCode::UNAUTHORIZED,
            "admin_disabled",
            "The admin API is disabled: no admin token is configured.",
        )
    })?;
    // Wrong admin tokens count against the address and their prefix like wrong API keys
    // (once over the allowance they are answered 429, so the token cannot be guessed
    // quickly); the right token is never refused for others' failures.
    let ip = client_ip(req);
    let presented = req.headers().get(AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(bearer_token);
    let prefix = credential_prefix("admin", presented.as_deref());
    let fail = |message: &'static str| count_failure(state, ip, "admin", prefix, ApiError::unauthenticated(message));
    let presented = presented.ok_or_else(|| fail("Admin token is missing."))?;
    // Comparing digests keeps the comparison's timing independent of the token's content.
    let same = Sha256::digest(presented.as_bytes()) == Sha256::digest(expected.expose_secret().as_bytes());
    if same {
        req.extensions_mut().insert(crate::usage::Caller::Admin);
        Ok(Admin)
    } else {
        Err(fail("Admin token is invalid."))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::test::TestRequest;

    #[test]
    fn forwarded_clients_are_believed_only_through_trusted_hops() {
        let trusted: Vec<ipnet::IpNet> = vec!["10.0.0.0/8".parse().unwrap(), "127.0.0.1/32".parse().unwrap()];
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        // An untrusted peer: its header is ignored.
        assert_eq!(forwarded_client(ip("203.0.113.1"), &trusted, ["198.51.100.7"].into_iter()), ip("203.0.113.1"));
        // A trusted peer: the nearest untrusted hop, a forged left part ignored.
        assert_eq!(forwarded_client(ip("127.0.0.1"), &trusted, ["6.6.6.6, 198.51.100.7, 10.1.2.3"].into_iter()), ip("198.51.100.7"));
        assert_eq!(forwarded_client(ip("127.0.0.1"), &trusted, ["6.6.6.6", "198.51.100.7"].into_iter()), ip("198.51.100.7"));
        // No header, or garbage: the last address known good.
        assert_eq!(forwarded_client(ip("127.0.0.1"), &trusted, std::iter::empty()), ip("127.0.0.1"));
        assert_eq!(forwarded_client(ip("127.0.0.1"), &trusted, ["198.51.100.7, junk"].into_iter()), ip("127.0.0.1"));
        assert_eq!(forwarded_client(ip("127.0.0.1"), &trusted, ["2001:db8::1"].into_iter()), ip("2001:db8::1"));
    }

    #[test]
    fn credential_prefixes_pick_buckets_by_kind_and_first_characters() {
        let a = credential_prefix("api_key", Some("hb_sk_AAAAAAAA0000"));
        assert_eq!(a, credential_prefix("api_key", Some("hb_sk_AAAAAAAA9999")));
        assert_ne!(a, credential_prefix("api_key", Some("hb_sk_BBBBBBBB0000")));
        assert_ne!(a, credential_prefix("admin", Some("hb_sk_AAAAAAAA0000")));
        assert_ne!(credential_prefix("admin", None), 0, "never the whole-address bucket");
        assert_eq!(credential_prefix("admin", Some("é")), credential_prefix("admin", Some("é")));
    }

    #[test]
    fn bearer_tokens_are_parsed_strictly() {
        assert_eq!(bearer_token("Bearer abc"), Some("abc".into()));
        assert_eq!(bearer_token("bearer  abc "), Some("abc".into()));
        assert_eq!(bearer_token("Basic abc"), None);
        assert_eq!(bearer_token("Bearer "), None);
        assert_eq!(bearer_token("Bearer"), None);
    }

    #[test]
    fn transports_are_tried_in_order_and_blank_ones_skipped() {
        let req = TestRequest::default()
            .insert_header((AUTHORIZATION, "Bearer first"))
            .insert_header((KEY_HEADER, "second"))
            .uri("/x?api_key=third")
            .to_http_request();
        assert_eq!(presented_key(&req), Some("first".into()));
        let req = TestRequest::default()
            .insert_header((AUTHORIZATION, "Basic zzz"))
            .insert_header((KEY_HEADER, " "))
            .uri("/x?api_key=third")
            .to_http_request();
        assert_eq!(presented_key(&req), Some("third".into()));
        assert_eq!(presented_key(&TestRequest::default().to_http_request()), None);
    }
}
