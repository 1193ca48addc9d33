//! `GET /api/v1/products` and `GET /api/v1/products/{product}` (seed "Products"): published
//! products from the in-memory catalogue, priced in the requested currency, with coupons and
//! bundle children. Also the shared pieces `GET /api/v1/promotions` uses (currency choice,
//! product JSON).

use crate::auth::Authenticated;
use crate::catalogue::pricing::{convert, discounted};
use crate::catalogue::{ListQuery, Snapshot, BUNDLE_TYPE};
use crate::domain::Scope;
use crate::error::{ApiError, FieldErrors};
use crate::json::{self, number};
use crate::routes::pagination::Page;
use crate::state::AppState;
use crate::store::{CouponTier, ProductRecord};
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use chrono::{DateTime, Utc};
use hissaback_topics::CurrencyCode;
use rust_decimal::prelude::ToPrimitive;
use rust_decimal::Decimal;
use serde_json::{json, Map, Value};
use std::net::IpAddr;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/products", web::get().to(list)).route("/products/{product}", web::get().to(show));
}

/// The seed's message for a currency outside the list, word for word.
pub const UNSUPPORTED_CURRENCY: &str = "Unsupported currency, use USD, GBP, EUR, INR, BGN";


/// A query string as key → values, keeping repeated keys and `key[]` forms.
pub struct QueryParams(Vec<(String, String)>);

impl QueryParams {
    pub fn parse(query: &str) -> Self {
        QueryParams(url::form_urlencoded::parse(query.as_bytes()).into_owned().collect())
    }

    /// Every value of `key` (and `key[]`, `key[n]`).
    pub fn all(&self, key: &str) -> Vec<&str> {
        self.0
            .iter()
            .filter(|(k, _)| k == key || (k.starts_with(key) && k[key.len()..].starts_with('[') && k.ends_with(']')))
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// The last value of `key`, if any and not blank.
    pub fn one(&self, key: &str) -> Option<&str> {
        self.0.iter().rev().find(|(k, _)| k == key).map(|(_, v)| v.trim()).filter(|v| !v.is_empty())
    }

    /// The query string again, without `page` and `api_key`, and with `page` set.
    pub fn with_page(&self, page: usize) -> String {
        let mut out = url::form_urlencoded::Serializer::new(String::new());
        for (k, v) in &self.0 {
            if k != "page" && k != "api_key" {
                out.append_pair(k, v);
            }
        }
        out.append_pair("page", &page.to_string());
        out.finish()
    }
}

/// The currency of an answer: the IP's when it resolves to one of ours, else `currency_code`,
/// else USD. An unsupported `currency_code` is always a 422 with the seed's message.
pub fn resolve_currency(state: &AppState, q: &QueryParams) -> Result<CurrencyCode, ApiError> {
    let requested = match q.one("currency_code") {
        None => CurrencyCode::USD,
        Some(code) => CurrencyCode::parse(code).ok_or_else(|| {
            let mut errors = FieldErrors::new();
            errors.insert("currency_code".into(), vec![UNSUPPORTED_CURRENCY.into()]);
            let mut e = ApiError::validation(errors);
            e.set_message(UNSUPPORTED_CURRENCY);
            e
        })?,
    };
    let from_ip = match q.one("currency_from_ip") {
        None => None,
        Some(raw) => {
            let ip: IpAddr = raw
                .parse()
                .map_err(|_| ApiError::invalid_field("currency_from_ip", "The currency from ip field must be a valid IP address."))?;
            state.geoip.as_ref().and_then(|g| g.currency(ip))
        }
    };
    Ok(from_ip.unwrap_or(requested))
}

fn money(d: Decimal) -> Value {
    json!(d.to_f64().unwrap_or_default())
}

/// `{low, mid, high}`, each a live coupon or `null`.
fn coupons(p: &ProductRecord, price: Decimal, now: DateTime<Utc>) -> Value {
    let mut out = Map::new();
    for (tier, key) in [(CouponTier::Low, "low"), (CouponTier::Mid, "mid"), (CouponTier::High, "high")] {
        let live = p.coupons.iter().find(|c| c.tier == tier && c.expires_at.is_none_or(|e| e > now));
        out.insert(
            key.into(),
            match live {
                None => Value::Null,
                Some(c) => json!({
                    "code": c.code,
                    "percent_off": number(c.percent_off),
                    "discount_decimal": number(c.percent_off / Decimal::ONE_HUNDRED),
                    "new_price": money(discounted(price, c.percent_off)),
                    "expires_at": c.expires_at.map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)),
                }),
            },
        );
    }
    Value::Object(out)
}

/// Everything needed to render products for one request.
pub struct Render<'a> {
    pub snapshot: &'a Snapshot,
    pub currency: CurrencyCode,
    pub affiliate_id: u64,
    pub base_url: &'a str,
    pub now: DateTime<Utc>,
}

impl Render<'_> {
    fn url(&self, p: &ProductRecord) -> String {
        let kind = if p.model_type == BUNDLE_TYPE { "bundles" } else { "course" };
        format!("{}/{kind}/{}?affiliate={}", self.base_url, p.slug, self.affiliate_id)
    }

    /// A product as the listing shows it (bundles with `bundle_products`).
    pub fn product(&self, p: &ProductRecord) -> Value {
        let price = convert(p.price_usd, self.currency, self.snapshot.rates());
        let mut o = Map::new();
        o.insert("id".into(), json!(p.id));
        o.insert("title".into(), json!(p.title));
        o.insert("description".into(), json!(p.description));
        o.insert("image".into(), json!(p.image));
        o.insert("url".into(), json!(self.url(p)));
        o.insert("price".into(), money(price));
        o.insert("currency".into(), json!(self.currency.as_str()));
        o.insert("type".into(), json!(p.model_type));
        if p.model_type == BUNDLE_TYPE {
            o.insert("category".into(), self.category(p));
            let children: Vec<Value> = p
                .bundle_product_ids
                .iter()
                .filter_map(|id| self.snapshot.published(*id))
                .map(|c| self.child(c))
                .collect();
            o.insert("bundle_products".into(), Value::Array(children));
        } else {
            o.insert("affiliate_coupons".into(), coupons(p, price, self.now));
            if let Some(v) = &p.introduction_video_url {
                o.insert("introduction_video_url".into(), json!(v));
            }
            o.insert("category".into(), self.category(p));
        }
        Value::Object(o)
    }

    fn category(&self, p: &ProductRecord) -> Value {
        match self.snapshot.category(p.category_slug.as_deref()) {
            Some(c) => json!({ "name": c.name, "slug": c.slug }),
            None => Value::Null,
        }
    }

    /// A bundle child: the short form, with coupons for courses.
    fn child(&self, p: &ProductRecord) -> Value {
        let price = convert(p.price_usd, self.currency, self.snapshot.rates());
        let mut o = Map::new();
        o.insert("id".into(), json!(p.id));
        o.insert("title".into(), json!(p.title));
        o.insert("type".into(), json!(p.model_type));
        o.insert("price".into(), money(price));
        o.insert("currency".into(), json!(self.currency.as_str()));
        o.insert("url".into(), json!(self.url(p)));
        if p.model_type != BUNDLE_TYPE {
            o.insert("affiliate_coupons".into(), coupons(p, price, self.now));
            if let Some(v) = &p.introduction_video_url {
                o.insert("introduction_video_url".into(), json!(v));
            }
        }
        Value::Object(o)
    }
}

/// Lists published products, newest first.
#[utoipa::path(get, path = "/api/v1/products", tag = "affiliate",
    params(
        ("page" = Option<u32>, Query, description = "Page, from 1"),
        ("per_page" = Option<u32>, Query, description = "1 to 100, default 15"),
        ("currency_code" = Option<String>, Query, description = "USD, GBP, EUR, INR or BGN"),
        ("currency_from_ip" = Option<String>, Query, description = "IP address to infer the currency from"),
        ("type" = Option<Vec<String>>, Query, description = "Model types"),
        ("category_slug" = Option<Vec<String>>, Query, description = "Category slugs (repeated or comma-separated)"),
        ("search" = Option<String>, Query, description = "Whitespace-separated terms, all required"),
    ),
    responses((status = 200, description = "a page of products"), (status = 401), (status = 403), (status = 422, description = "Unsupported currency, use USD, GBP, EUR, INR, BGN")),
    security(("bearer" = []), ("api_key_header" = []), ("api_key_query" = [])))]
pub async fn list(auth: Authenticated, state: web::Data<AppState>, req: HttpRequest) -> Result<HttpResponse, ApiError> {
    auth.require(Scope::ProductsList)?;
    let q = QueryParams::parse(req.query_string());
    let mut errors = FieldErrors::new();
    let paging = Page::parse(&q, &mut errors);
    if !errors.is_empty() {
        return Err(ApiError::validation(errors));
    }
    let currency = resolve_currency(&state, &q)?;
    let query = ListQuery {
        types: q.all("type").iter().flat_map(|v| v.split(',')).map(str::trim).filter(|v| !v.is_empty()).map(String::from).collect(),
        category_slugs: q
            .all("category_slug")
            .iter()
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .map(String::from)
            .collect(),
        terms: q.one("search").map(|s| s.split_whitespace().map(str::to_lowercase).collect()).unwrap_or_default(),
        offset: paging.offset(),
        limit: paging.per_page,
    };
    let snapshot = state.catalogue.snapshot();
    let (items, total) = snapshot.list(&query);
    let render = Render { snapshot: &snapshot, currency, affiliate_id: auth.affiliate.id, base_url: &state.public_base_url, now: Utc::now() };
    let products: Vec<Value> = items.iter().map(|p| render.product(p)).collect();
    Ok(json::ok(json!({
        "products": products,
        "pagination": paging.block(total, &state.public_base_url, "/api/v1/products", &q),
    })))
}

/// One published product.
#[utoipa::path(get, path = "/api/v1/products/{product}", tag = "affiliate",
    params(("product" = String, Path, description = "numeric product id")),
    responses((status = 200, description = "the product"), (status = 401), (status = 403), (status = 404, description = "Product not found."), (status = 422)),
    security(("bearer" = []), ("api_key_header" = []), ("api_key_query" = [])))]
pub async fn show(auth: Authenticated, state: web::Data<AppState>, req: HttpRequest, path: web::Path<String>) -> Result<HttpResponse, ApiError> {
    auth.require(Scope::ProductsView)?;
    let q = QueryParams::parse(req.query_string());
    let currency = resolve_currency(&state, &q)?;
    let not_found = || ApiError::not_found("Product not found.");
    let id: u64 = path.parse().map_err(|_| not_found())?;
    let snapshot = state.catalogue.snapshot();
    let product = snapshot.published(id).ok_or_else(not_found)?;
    let render = Render { snapshot: &snapshot, currency, affiliate_id: auth.affiliate.id, base_url: &state.public_base_url, now: Utc::now() };
    Ok(json::data(StatusCode::OK, json!({ "product": render.product(product) })))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeated_and_bracketed_keys_are_all_read() {
        let q = QueryParams::parse("type=A&type%5B%5D=B&category_slug=x,y&page=2&api_key=secret");
        assert_eq!(q.all("type"), vec!["A", "B"]);
        assert_eq!(q.all("category_slug"), vec!["x,y"]);
        let again = q.with_page(3);
        assert!(again.contains("page=3") && !again.contains("page=2") && !again.contains("api_key"), "{again}");
    }

    #[test]
    fn whole_numbers_print_without_fraction() {
        assert_eq!(money(Decimal::new(12900, 2)), json!(129.0));
    }
}
