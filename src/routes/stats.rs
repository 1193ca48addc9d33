//! Partner stats and the audit log, scoped to the calling partner:
//!
//! - `GET /v1/stats/usage` (any scope): requests, errors by status class and rate-limit
//!   rejections per day, hour or minute, from the usage counters. The counters are shared by
//!   every instance, so this is also the global usage of a key across a cluster
//!   (`granularity=minute&key_id=`). An answer counts requests answered up to the usage
//!   recorder's last flush (`usage.flush_ms`), never itself.
//! - `GET /v1/stats/campaigns` (`campaigns.write`): clicks, conversions, conversion rate,
//!   commission and rewards per campaign.
//! - `GET /v1/stats/payouts` (`rewards.read`): reward totals per status and currency.
//! - `GET /v1/audit` (any scope): the partner's audit rows of one UTC day, newest first.
//!
//! `GET /admin/v1/audit` (in [`crate::routes::admin`]) reads any affiliate's rows, and
//! affiliate 0: admin actions, postbacks and calls that failed to authenticate.

use crate::auth::Authenticated;
use crate::domain::Scope;
use crate::error::{ApiError, FieldErrors};
use crate::json;
use crate::routes::pagination::int_param;
use crate::routes::products::QueryParams;
use crate::state::AppState;
use crate::store::{AuditEntry, RewardStatus, UsageResolution};
use actix_web::{web, HttpRequest, HttpResponse};
use chrono::{DateTime, Duration, NaiveDate, Utc};
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/stats/usage", web::get().to(usage))
        .route("/stats/campaigns", web::get().to(campaigns))
        .route("/stats/payouts", web::get().to(payouts))
        .route("/audit", web::get().to(audit));
}

/// A minor-unit amount as a JSON number with at most two decimals.
fn money(minor: i64) -> Value {
    json::number(rust_decimal::Decimal::new(minor, 2))
}

/// Amounts per currency as a JSON object.
fn per_currency(amounts: &BTreeMap<String, i64>) -> Value {
    Value::Object(amounts.iter().map(|(c, m)| (c.clone(), money(*m))).collect())
}

/// A percentage with two decimals; 0 when nothing was tried.
fn rate(part: u64, whole: u64) -> Value {
    if whole == 0 {
        return json!(0);
    }
    let pct = rust_decimal::Decimal::from(part) * rust_decimal::Decimal::ONE_HUNDRED / rust_decimal::Decimal::from(whole);
    json::number(pct.round_dp_with_strategy(2, rust_decimal::RoundingStrategy::MidpointAwayFromZero))
}

/// The default window of a granularity, ending now: 60 minutes, 24 hours or 7 days.
fn default_span(g: UsageResolution) -> Duration {
    match g {
        UsageResolution::Minute => Duration::minutes(60),
        UsageResolution::Hour => Duration::hours(24),
        UsageResolution::Day => Duration::days(7),
    }
}

/// The longest window one answer covers, and how it is said.
fn max_span(g: UsageResolution) -> (Duration, &'static str) {
    match g {
        UsageResolution::Minute => (Duration::days(1), "1 day"),
        UsageResolution::Hour => (Duration::days(7), "7 days"),
        UsageResolution::Day => (Duration::days(92), "92 days"),
    }
}

/// `YYYY-MM-DD` (the start of that day; as an end, the end of that day) or RFC 3339, in the
/// years 1970–9999 (so no arithmetic on it can overflow).
fn parse_instant(raw: &str, end: bool) -> Option<DateTime<Utc>> {
    use chrono::Datelike;
    match NaiveDate::parse_from_str(raw, "%Y-%m-%d") {
        Ok(d) => {
            let start = d.and_hms_opt(0, 0, 0)?.and_utc();
            if !(1970..=9999).contains(&start.year()) {
                return None;
            }
            if end {
                start.checked_add_signed(Duration::days(1))
            } else {
                Some(start)
            }
        }
        Err(_) => DateTime::parse_from_rfc3339(raw).ok().map(|t| t.to_utc()).filter(|t| (1970..=9999).contains(&t.year())),
    }
}

/// Requests, errors and rate-limit rejections over time.
#[utoipa::path(get, path = "/v1/stats/usage", tag = "partner",
    params(
        ("granularity" = Option<crate::routes::openapi::schemas::Granularity>, Query, description = "`day` (default), `hour` or `minute`"),
        ("from" = Option<String>, Query, description = "start: `YYYY-MM-DD` or RFC 3339; default 7 days, 24 hours or 60 minutes ago"),
        ("to" = Option<String>, Query, description = "end (exclusive; a date includes that day); default now"),
        ("key_id" = Option<u64>, Query, minimum = 1, description = "only this key of yours"),
    ),
    responses((status = 200, description = "totals, a series per period, per route and per key"), (status = 401), (status = 403, description = "Insufficient scope. (needs `stats.read`: secret keys only)"), (status = 404, description = "API key not found. (key_id of another affiliate)"), (status = 422), (status = 429)),
    security(("bearer" = []), ("api_key_header" = []), ("api_key_query" = [])))]
pub async fn usage(auth: Authenticated, state: web::Data<AppState>, req: HttpRequest) -> Result<HttpResponse, ApiError> {
    auth.require(Scope::StatsRead)?;
    let q = QueryParams::parse(req.query_string());
    let mut errors = FieldErrors::new();
    let granularity = match q.one("granularity") {
        None => Some(UsageResolution::Day),
        Some(raw) => UsageResolution::parse(raw).or_else(|| {
            errors.insert("granularity".into(), vec!["The granularity must be day, hour or minute.".into()]);
            None
        }),
    };
    let instant = |field: &str, end: bool, errors: &mut FieldErrors| match q.one(field) {
        None => None,
        Some(raw) => parse_instant(raw, end).or_else(|| {
            errors.insert(field.into(), vec![format!("The {field} field must be a date (YYYY-MM-DD) or an RFC 3339 time, between 1970 and 9999.")]);
            None
        }),
    };
    let from = instant("from", false, &mut errors);
    let to = instant("to", true, &mut errors);
    let key_id = int_param(&q, "key_id", 1, u64::MAX, &mut errors);
    let Some(granularity) = granularity else {
        return Err(ApiError::validation(errors));
    };
    if !errors.is_empty() {
        return Err(ApiError::validation(errors));
    }
    let to_given = to.is_some();
    let to = to.unwrap_or_else(Utc::now);
    // The default window is whole periods ending with the one `to` falls in (or ends).
    let from = match from {
        Some(f) => granularity.floor(f),
        None => {
            let end = granularity.ceil(to);
            (end - default_span(granularity)).max(DateTime::UNIX_EPOCH)
        }
    };
    if from >= to {
        return Err(if to_given {
            ApiError::invalid_field("to", "The to field must be after from.")
        } else {
            ApiError::invalid_field("from", "The from field must be in the past.")
        });
    }
    let (longest, said) = max_span(granularity);
    if to - from > longest {
        return Err(ApiError::invalid_field("to", format!("At most {said} per answer with granularity {}.", granularity.name())));
    }
    if let Some(k) = key_id {
        // Another affiliate's key is simply not found among yours.
        let own = state.store.key_by_id(k).await?.is_some_and(|key| key.affiliate_id == auth.affiliate.id);
        if !own {
            return Err(ApiError::not_found("API key not found."));
        }
    }
    let cells = state.store.usage_of(auth.affiliate.id, granularity, from, to).await?;
    #[derive(Default)]
    struct Tally {
        requests: u64,
        rate_limited: u64,
        classes: BTreeMap<String, u64>,
    }
    impl Tally {
        fn add(&mut self, class: &str, requests: u64, rate_limited: u64) {
            self.requests += requests;
            self.rate_limited += rate_limited;
            *self.classes.entry(class.to_string()).or_default() += requests;
        }
        fn errors(&self) -> u64 {
            self.classes.iter().filter(|(c, _)| c.as_str() >= "4xx").map(|(_, n)| n).sum()
        }
        fn view(&self) -> Map<String, Value> {
            let class = |c: &str| self.classes.get(c).copied().unwrap_or(0);
            let mut m = Map::new();
            m.insert("requests".into(), json!(self.requests));
            m.insert("errors".into(), json!({"total": self.errors(), "4xx": class("4xx"), "5xx": class("5xx")}));
            m.insert("error_rate".into(), rate(self.errors(), self.requests));
            m.insert("rate_limited".into(), json!(self.rate_limited));
            m.insert(
                "by_status_class".into(),
                json!({"2xx": class("2xx"), "3xx": class("3xx"), "4xx": class("4xx"), "5xx": class("5xx")}),
            );
            m
        }
        /// The view with what it is about first (`period`, `route`, `key_id`).
        fn labelled(&self, name: &str, value: Value) -> Value {
            let mut m = Map::new();
            m.insert(name.to_string(), value);
            m.extend(self.view());
            Value::Object(m)
        }
    }
    let mut totals = Tally::default();
    let mut periods: BTreeMap<DateTime<Utc>, Tally> = BTreeMap::new();
    let mut t = from;
    while t < to {
        periods.insert(t, Tally::default());
        t += granularity.step();
    }
    let mut routes: BTreeMap<String, Tally> = BTreeMap::new();
    let mut keys: BTreeMap<u64, Tally> = BTreeMap::new();
    for (cell, counts) in cells.iter().filter(|(c, _)| key_id.is_none_or(|k| c.key_id == k)) {
        let class = cell.status_class.as_str();
        totals.add(class, counts.requests, counts.rate_limited);
        periods.entry(granularity.floor(cell.period)).or_default().add(class, counts.requests, counts.rate_limited);
        routes.entry(cell.route.clone()).or_default().add(class, counts.requests, counts.rate_limited);
        keys.entry(cell.key_id).or_default().add(class, counts.requests, counts.rate_limited);
    }
    let series: Vec<Value> = periods.iter().map(|(start, tally)| tally.labelled("period", json!(json::format_time(start)))).collect();
    let mut routes: Vec<(String, Tally)> = routes.into_iter().collect();
    routes.sort_by(|a, b| b.1.requests.cmp(&a.1.requests).then_with(|| a.0.cmp(&b.0)));
    let routes: Vec<Value> = routes.iter().map(|(route, tally)| tally.labelled("route", json!(route))).collect();
    let keys: Vec<Value> = keys.iter().map(|(k, tally)| tally.labelled("key_id", json!(k))).collect();
    Ok(json::ok(json!({
        "granularity": granularity.name(),
        "from": json::format_time(&from),
        "to": json::format_time(&to),
        "key_id": key_id,
        "totals": Value::Object(totals.view()),
        "series": series,
        "routes": routes,
        "keys": keys,
    })))
}

/// Clicks, conversions, conversion rate, commission and rewards per campaign.
#[utoipa::path(get, path = "/v1/stats/campaigns", tag = "partner",
    params(("campaign_id" = Option<u64>, Query, minimum = 1, description = "only this campaign")),
    responses((status = 200, description = "one row per campaign, and totals"), (status = 401), (status = 403), (status = 404), (status = 422)),
    security(("bearer" = []), ("api_key_header" = []), ("api_key_query" = [])))]
pub async fn campaigns(auth: Authenticated, state: web::Data<AppState>, req: HttpRequest) -> Result<HttpResponse, ApiError> {
    auth.require(Scope::CampaignsWrite)?;
    let q = QueryParams::parse(req.query_string());
    let mut errors = FieldErrors::new();
    let only = int_param(&q, "campaign_id", 1, u64::MAX, &mut errors);
    if !errors.is_empty() {
        return Err(ApiError::validation(errors));
    }
    let affiliate = auth.affiliate.id;
    let (campaigns, clicks, conversions) =
        tokio::try_join!(state.store.campaigns_of(affiliate), state.store.clicks_of(affiliate), state.store.conversions_of_affiliate(affiliate))?;
    let campaigns: Vec<_> = campaigns.into_iter().filter(|c| only.is_none_or(|id| c.id == id)).collect();
    if only.is_some() && campaigns.is_empty() {
        return Err(ApiError::not_found("Campaign not found."));
    }
    #[derive(Default)]
    struct Row {
        clicks: u64,
        conversions: u64,
        by_status: BTreeMap<&'static str, u64>,
        commission: BTreeMap<String, i64>,
        rewards: BTreeMap<String, i64>,
    }
    impl Row {
        fn view(&self) -> Map<String, Value> {
            let mut m = Map::new();
            m.insert("clicks".into(), json!(self.clicks));
            m.insert("conversions".into(), json!(self.conversions));
            m.insert("conversion_rate".into(), rate(self.conversions, self.clicks));
            let statuses: Map<String, Value> = RewardStatus::ALL
                .iter()
                .map(|s| (s.as_str().to_string(), json!(self.by_status.get(s.as_str()).copied().unwrap_or(0))))
                .collect();
            m.insert("conversions_by_status".into(), Value::Object(statuses));
            m.insert("commission".into(), per_currency(&self.commission));
            m.insert("rewards".into(), per_currency(&self.rewards));
            m
        }
    }
    let mut rows: BTreeMap<u64, Row> = campaigns.iter().map(|c| (c.id, Row::default())).collect();
    for (cell, n) in &clicks {
        if let Some(row) = rows.get_mut(&cell.campaign_id) {
            row.clicks += n;
        }
    }
    for c in &conversions {
        let Some(row) = rows.get_mut(&c.campaign_id) else { continue };
        row.conversions += 1;
        *row.by_status.entry(c.status.as_str()).or_default() += 1;
        if !matches!(c.status, RewardStatus::Rejected | RewardStatus::Reversed) {
            *row.commission.entry(c.currency.clone()).or_default() += c.payout_minor;
            *row.rewards.entry(c.currency.clone()).or_default() += c.reward_minor;
        }
    }
    let mut total = Row::default();
    let mut out = Vec::new();
    for c in &campaigns {
        let row = &rows[&c.id];
        total.clicks += row.clicks;
        total.conversions += row.conversions;
        for (s, n) in &row.by_status {
            *total.by_status.entry(s).or_default() += n;
        }
        for (cur, m) in &row.commission {
            *total.commission.entry(cur.clone()).or_default() += m;
        }
        for (cur, m) in &row.rewards {
            *total.rewards.entry(cur.clone()).or_default() += m;
        }
        let mut m = Map::new();
        m.insert("campaign_id".into(), json!(c.id));
        m.insert("offer_id".into(), json!(c.offer_id));
        m.insert("tenant_id".into(), json!(c.tenant_id));
        m.extend(row.view());
        out.push(Value::Object(m));
    }
    Ok(json::ok(json!({ "campaigns": out, "totals": Value::Object(total.view()) })))
}

/// Reward totals per status and currency.
#[utoipa::path(get, path = "/v1/stats/payouts", tag = "partner",
    responses((status = 200, description = "totals and counts per status"), (status = 401), (status = 403)),
    security(("bearer" = []), ("api_key_header" = []), ("api_key_query" = [])))]
pub async fn payouts(auth: Authenticated, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    auth.require(Scope::RewardsRead)?;
    let conversions = state.store.conversions_of_affiliate(auth.affiliate.id).await?;
    let totals: Map<String, Value> =
        crate::partner::ledger::reward_totals(&conversions).iter().map(|(s, per)| (s.as_str().to_string(), per_currency(per))).collect();
    let counts: Map<String, Value> = RewardStatus::ALL
        .iter()
        .map(|s| (s.as_str().to_string(), json!(conversions.iter().filter(|c| c.status == *s).count())))
        .collect();
    let last_paid_at = conversions.iter().filter_map(|c| c.paid_at).max();
    Ok(json::ok(json!({
        "totals": totals,
        "counts": counts,
        "last_paid_at": last_paid_at.map(|t| json::format_time(&t)),
    })))
}

/// The JSON form of an audit row.
pub fn audit_view(e: &AuditEntry) -> Value {
    json!({
        "at": json::format_time(&e.at),
        "request_id": e.request_id,
        "actor": e.actor,
        "affiliate_id": e.affiliate_id,
        "key_id": e.key_id,
        "network_id": e.network_id,
        "method": e.method,
        "route": e.route,
        "path": e.path,
        "status": e.status,
        "latency_ms": json::number(rust_decimal::Decimal::new(i64::try_from(e.latency_us).unwrap_or(i64::MAX), 3)),
        "client_ip": e.client_ip,
    })
}

/// `date` (default today, UTC) and `limit` (1–1000, default 100) of an audit query.
pub fn audit_query(q: &QueryParams, errors: &mut FieldErrors) -> (NaiveDate, usize) {
    let date = match q.one("date") {
        None => Utc::now().date_naive(),
        Some(raw) => NaiveDate::parse_from_str(raw, "%Y-%m-%d").ok().filter(|d| (1970..=9999).contains(&chrono::Datelike::year(d))).unwrap_or_else(|| {
            errors.insert("date".into(), vec!["The date field must be a date (YYYY-MM-DD) between 1970 and 9999.".into()]);
            Utc::now().date_naive()
        }),
    };
    let limit = int_param(q, "limit", 1, 1000, errors).unwrap_or(100);
    (date, limit as usize)
}

/// The partner's own audit rows of one day, newest first.
#[utoipa::path(get, path = "/v1/audit", tag = "partner",
    params(("date" = Option<String>, Query, description = "UTC day, `YYYY-MM-DD`; default today"), ("limit" = Option<u32>, Query, minimum = 1, maximum = 1000, description = "1–1000, default 100")),
    responses((status = 200, description = "audit rows, newest first"), (status = 401), (status = 403, description = "Insufficient scope. (needs `audit.read`: secret keys only)"), (status = 422)),
    security(("bearer" = []), ("api_key_header" = []), ("api_key_query" = [])))]
pub async fn audit(auth: Authenticated, state: web::Data<AppState>, req: HttpRequest) -> Result<HttpResponse, ApiError> {
    auth.require(Scope::AuditRead)?;
    let q = QueryParams::parse(req.query_string());
    let mut errors = FieldErrors::new();
    let (date, limit) = audit_query(&q, &mut errors);
    if !errors.is_empty() {
        return Err(ApiError::validation(errors));
    }
    let rows = state.store.audit_of(auth.affiliate.id, date, limit).await?;
    Ok(json::ok(json!({ "date": date.to_string(), "entries": rows.iter().map(audit_view).collect::<Vec<_>>() })))
}
