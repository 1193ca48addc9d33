//! `GET /api/v1/products` and `GET /api/v1/products/{product}` (seed "Products"): published
//! products from the in-memory catalogue, priced in the requested currency, with coupons and
//! bundle children. Also the shared pieces `GET /api/v1/promotions` uses (currency choice,
//! product JSON).

use crate::auth::Authenticated;
use crate::catalogue::pricing::{convert, discounted};
use crate::catalogue::{ListQuery, ProductEntry, Rendered, Snapshot, BUNDLE_TYPE};
use crate::domain::Scope;
use crate::error::{ApiError, FieldErrors};
use crate::json::{self, number, FragmentBuilder};
use crate::routes::pagination::Page;
use crate::state::AppState;
use crate::store::{CouponTier, ProductRecord};
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

/// The holes of a cached product rendering: the base URL and the affiliate id of its `url`s,
/// the only parts of a product's JSON that depend on the request beyond currency and time.
const FILL_BASE_URL: u8 = 0;
const FILL_AFFILIATE: u8 = 1;

/// What one request writes into the holes, indexed by `FILL_*`.
pub struct Fills<'a> {
    base_url: std::borrow::Cow<'a, str>,
    affiliate: ([u8; 20], u8),
}

impl<'a> Fills<'a> {
    pub fn new(base_url: &'a str, affiliate_id: u64) -> Self {
        // u64 in decimal without a String: at most 20 digits, written from the end.
        let (mut digits, mut start, mut n) = ([0u8; 20], 20u8, affiliate_id);
        loop {
            start -= 1;
            digits[start as usize] = b'0' + (n % 10) as u8;
            n /= 10;
            if n == 0 {
                break;
            }
        }
        Fills { base_url: json::escaped_contents(base_url), affiliate: (digits, start) }
    }

    fn as_slices(&self) -> [&[u8]; 2] {
        [self.base_url.as_bytes(), &self.affiliate.0[self.affiliate.1 as usize..]]
    }
}

impl Render<'_> {
    /// [`Render::product`] as a cached rendering: the same bytes with holes for the base URL
    /// and the affiliate id, valid until the next coupon (of it or a child) expires and
    /// since the last one did.
    pub fn template(&self, p: &ProductRecord) -> Rendered {
        let template = Render { snapshot: self.snapshot, currency: self.currency, affiliate_id: 0, base_url: "", now: self.now };
        let value = template.product(p);
        let mut b = FragmentBuilder::default();
        b.value(&value, &mut |key, v, b| {
            // Rendered as `/{kind}/{slug}?affiliate=0`: the holes go around the path.
            let Some(path) = v.as_str().filter(|_| key == "url").and_then(|u| u.strip_suffix("?affiliate=0")) else {
                debug_assert!(key != "url", "a product url not ending in ?affiliate=0: {v}");
                return false;
            };
            b.raw(b"\"").hole(FILL_BASE_URL).str_contents(path).str_contents("?affiliate=").hole(FILL_AFFILIATE).raw(b"\"");
            true
        });
        // Time enters only through coupon liveness (`expires_at > now`).
        let (mut valid_from, mut valid_until) = (None, None);
        let children = p.bundle_product_ids.iter().filter_map(|id| self.snapshot.published(*id)).map(|c| &**c);
        for c in std::iter::once(p).chain(children).flat_map(|p| &p.coupons) {
            match c.expires_at {
                Some(e) if e > self.now => valid_until = Some(valid_until.map_or(e, |u: DateTime<Utc>| u.min(e))),
                Some(e) => valid_from = Some(valid_from.map_or(e, |f: DateTime<Utc>| f.max(e))),
                None => {}
            }
        }
        Rendered { fragment: b.finish(), valid_from, valid_until }
    }

    /// Writes the product of `entry` exactly as [`Render::product`] would print it, from its
    /// cached rendering (made first if missing or expired). `fills` must be this render's.
    pub fn write(&self, entry: &ProductEntry, fills: &Fills, out: &mut Vec<u8>) {
        entry.rendered(self.currency, self.now, || self.template(&entry.product), |r| r.fragment.write(out, &fills.as_slices()));
    }
}

/// Room reserved per product of a page; a course is typically 400 to 500 bytes.
const BYTES_PER_PRODUCT: usize = 512;
/// Room for the envelope and the pagination block.
const PAGE_OVERHEAD: usize = 512;

/// The listing's body, `{"success":true,"data":{"products":[…],"pagination":{…}}}`, written
/// into one buffer from the cached product renderings.
pub fn list_body(render: &Render, query: &ListQuery, paging: &Page, q: &QueryParams) -> Vec<u8> {
    let fills = Fills::new(render.base_url, render.affiliate_id);
    let expected = query.limit.min(render.snapshot.listed_len().saturating_sub(query.offset));
    let mut out = Vec::with_capacity(PAGE_OVERHEAD + expected * BYTES_PER_PRODUCT);
    out.extend_from_slice(json::DATA_OPEN);
    out.extend_from_slice(br#"{"products":["#);
    let mut first = true;
    let total = render.snapshot.page(query, |entry| {
        if !std::mem::take(&mut first) {
            out.push(b',');
        }
        render.write(entry, &fills, &mut out);
    });
    out.extend_from_slice(br#"],"pagination":"#);
    let block = paging.block(total, render.base_url, "/api/v1/products", q);
    serde_json::to_writer(&mut out, &block).expect("a JSON value always serializes");
    out.extend_from_slice(b"}}");
    out
}

/// A single product's body, `{"success":true,"data":{"product":{…}}}`.
fn show_body(render: &Render, entry: &ProductEntry) -> Vec<u8> {
    let mut out = Vec::with_capacity(PAGE_OVERHEAD + BYTES_PER_PRODUCT);
    out.extend_from_slice(json::DATA_OPEN);
    out.extend_from_slice(br#"{"product":"#);
    render.write(entry, &Fills::new(render.base_url, render.affiliate_id), &mut out);
    out.extend_from_slice(b"}}");
    out
}

/// The listing's filters and page from its (validated) query.
fn list_query(q: &QueryParams, paging: &Page) -> ListQuery {
    let listed = |key: &str| -> Vec<String> {
        q.all(key).iter().flat_map(|v| v.split(',')).map(str::trim).filter(|v| !v.is_empty()).map(String::from).collect()
    };
    ListQuery {
        types: listed("type"),
        category_slugs: listed("category_slug"),
        terms: q.one("search").map(|s| s.split_whitespace().map(str::to_lowercase).collect()).unwrap_or_default(),
        offset: paging.offset(),
        limit: paging.per_page,
    }
}

/// Lists published products, newest first.
#[utoipa::path(get, path = "/api/v1/products", tag = "affiliate",
    params(
        crate::routes::pagination::PageParams,
        ("currency_code" = Option<crate::routes::openapi::schemas::Currency>, Query, description = "USD (default), GBP, EUR, INR or BGN (case-insensitive)"),
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
    let query = list_query(&q, &paging);
    let snapshot = state.catalogue.snapshot();
    let render = Render { snapshot: &snapshot, currency, affiliate_id: auth.affiliate.id, base_url: &state.public_base_url, now: Utc::now() };
    Ok(json::ok_bytes(list_body(&render, &query, &paging, &q)))
}

/// One published product.
#[utoipa::path(get, path = "/api/v1/products/{product}", tag = "affiliate",
    params(
        ("product" = String, Path, description = "numeric product id"),
        ("currency_code" = Option<crate::routes::openapi::schemas::Currency>, Query, description = "USD (default), GBP, EUR, INR or BGN (case-insensitive)"),
        ("currency_from_ip" = Option<String>, Query, description = "IP address to infer the currency from"),
    ),
    responses((status = 200, description = "the product"), (status = 401), (status = 403), (status = 404, description = "Product not found."), (status = 422)),
    security(("bearer" = []), ("api_key_header" = []), ("api_key_query" = [])))]
pub async fn show(auth: Authenticated, state: web::Data<AppState>, req: HttpRequest, path: web::Path<String>) -> Result<HttpResponse, ApiError> {
    auth.require(Scope::ProductsView)?;
    let q = QueryParams::parse(req.query_string());
    let currency = resolve_currency(&state, &q)?;
    let not_found = || ApiError::not_found("Product not found.");
    let id: u64 = path.parse().map_err(|_| not_found())?;
    let snapshot = state.catalogue.snapshot();
    let entry = snapshot.published_entry(id).ok_or_else(not_found)?;
    let render = Render { snapshot: &snapshot, currency, affiliate_id: auth.affiliate.id, base_url: &state.public_base_url, now: Utc::now() };
    Ok(json::ok_bytes(show_body(&render, entry)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalogue::ExchangeRates;
    use crate::store::{CategoryRecord, CouponRecord, PromotionRecord};
    use chrono::Duration;
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};
    use std::str::FromStr;

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

    // The oracle: the listing and the single product as the handlers rendered them before
    // the cached renderings (a `Value` per product, serialized whole by `json::ok`).

    fn list_body_oracle(render: &Render, query: &ListQuery, paging: &Page, q: &QueryParams) -> Vec<u8> {
        let (items, total) = render.snapshot.list(query);
        let products: Vec<Value> = items.iter().map(|p| render.product(p)).collect();
        let data = json!({ "products": products, "pagination": paging.block(total, render.base_url, "/api/v1/products", q) });
        serde_json::to_vec(&json!({ "success": true, "data": data })).unwrap()
    }

    fn show_body_oracle(render: &Render, p: &ProductRecord) -> Vec<u8> {
        serde_json::to_vec(&json!({ "success": true, "data": json!({ "product": render.product(p) }) })).unwrap()
    }

    const COURSE: &str = "App\\Models\\Course";
    const VIDEO: &str = "App\\Models\\VideoCourse";
    const ODD_TEXT: [&str; 8] = [
        "Rocket Science",
        "Fusée \"rapide\" — 🚀 ünïcödé",
        "back\\slash and /slash/",
        "tabs\tand\nnewlines\r",
        "control \u{1}\u{1f}\u{7f} chars",
        "",
        "   spaced rocket   ",
        "<script>alert('x')</script> & co",
    ];

    fn d(s: &str) -> Decimal {
        Decimal::from_str(s).unwrap()
    }

    fn coupon(tier: CouponTier, code: &str, pct: &str, expires_at: Option<DateTime<Utc>>) -> CouponRecord {
        CouponRecord { tier, code: code.into(), percent_off: d(pct), expires_at }
    }

    /// A catalogue with odd fields: unicode, escapes, nulls, prices with many decimals,
    /// coupons expired, live, unlimited and soon to expire, bundles with published,
    /// unpublished, missing and bundle children, categories listed, unlisted and missing.
    fn catalogue(now: DateTime<Utc>) -> (Vec<ProductRecord>, Vec<CategoryRecord>) {
        let prices = ["0", "0.01", "10.005", "199.99", "129", "1000000000", "33.333333", "79.0"];
        let slugs = [Some("dev"), Some("design"), None, Some("gone"), Some("blank"), Some("ünï")];
        let mut products: Vec<ProductRecord> = (1..=48u64)
            .map(|id| {
                let i = id as usize;
                let text = ODD_TEXT[i % ODD_TEXT.len()];
                let model_type = match id % 6 {
                    0 => BUNDLE_TYPE,
                    1 => VIDEO,
                    _ => COURSE,
                };
                let at = |secs: i64| Some(now + Duration::seconds(secs));
                let coupons = match id % 5 {
                    0 => vec![],
                    1 => vec![coupon(CouponTier::Low, "LOW\"15", "15", None)],
                    2 => vec![coupon(CouponTier::Mid, "MID-12.5", "12.5", at(3600)), coupon(CouponTier::High, "HIGH", "55", at(-60))],
                    3 => vec![
                        coupon(CouponTier::High, "OLD", "25", at(-3600)),
                        coupon(CouponTier::High, "NEW", "22.5", at(120)),
                        coupon(CouponTier::Low, "ÜNÏ", "0.5", None),
                    ],
                    _ => vec![coupon(CouponTier::Low, "A", "100", None), coupon(CouponTier::Mid, "B", "33.3333", at(7 * 86400))],
                };
                ProductRecord {
                    id,
                    title: format!("{text} {id}"),
                    slug: format!("slug-{id}-{}", if id % 4 == 0 { "ü\"x" } else { "plain" }),
                    description: if id % 3 == 0 { String::new() } else { format!("About {text}, rocket {}", id % 7) },
                    image: (id % 2 == 0).then(|| format!("https://cdn.example.com/{id}.png?x=\"{text}\"")),
                    price_usd: d(prices[i % prices.len()]),
                    model_type: model_type.into(),
                    category_slug: slugs[i % slugs.len()].map(String::from),
                    published: id % 11 != 0,
                    introduction_video_url: (id % 3 == 1).then(|| format!("https://videos.example.com/{id}.mp4")),
                    bundle_product_ids: if model_type == BUNDLE_TYPE { vec![id - 1, id - 2, 11, 999, id - 6] } else { vec![] },
                    teachers: vec![],
                    coupons,
                    // Some share a creation time: the id breaks the tie.
                    created_at: now - Duration::seconds((i as i64 / 3) * 60),
                    updated_at: now,
                    version: 0,
                }
            })
            .collect();
        products.push(ProductRecord { id: 49, title: "Empty bundle".into(), bundle_product_ids: vec![], ..products[5].clone() });
        let category = |id: u64, name: &str, slug: Option<&str>, active: bool, deleted: bool| CategoryRecord {
            id,
            name: name.into(),
            slug: slug.map(String::from),
            active,
            created_at: now,
            updated_at: now,
            deleted_at: deleted.then_some(now),
            version: 0,
        };
        let categories = vec![
            category(1, "Development", Some("dev"), true, false),
            category(2, "Design \"& UX\" 🚀", Some("design"), true, false),
            category(3, "Gone", Some("gone"), true, true),
            category(4, "Blank", Some("  "), true, false),
            category(5, "Ünïcödé", Some("ünï"), true, false),
        ];
        (products, categories)
    }

    fn rates() -> ExchangeRates {
        ExchangeRates { gbp: d("0.79"), eur: d("0.9234"), inr: d("83.1"), bgn: d("1.95583") }
    }

    fn snapshot(now: DateTime<Utc>) -> Snapshot {
        let (products, categories) = catalogue(now);
        Snapshot::build(products, &categories, vec![], rates())
    }

    fn render<'a>(snapshot: &'a Snapshot, currency: CurrencyCode, affiliate_id: u64, base_url: &'a str, now: DateTime<Utc>) -> Render<'a> {
        Render { snapshot, currency, affiliate_id, base_url, now }
    }

    /// Both bodies for a raw query string, as the handler reads it; asserts they are equal.
    fn assert_same_listing(render: &Render, query: &str) {
        let q = QueryParams::parse(query);
        let mut errors = FieldErrors::new();
        let paging = Page::parse(&q, &mut errors);
        assert!(errors.is_empty(), "{query}: {errors:?}");
        let list = list_query(&q, &paging);
        let old = list_body_oracle(render, &list, &paging, &q);
        // Twice: the first fills the renderings, the second reads them.
        for _ in 0..2 {
            let new = list_body(render, &list, &paging, &q);
            assert_eq!(
                String::from_utf8_lossy(&new),
                String::from_utf8_lossy(&old),
                "{query} in {} for affiliate {} at {}",
                render.currency.as_str(),
                render.affiliate_id,
                render.base_url
            );
        }
    }

    const BASES: [&str; 3] = ["https://example.com", "http://localhost:8080/prefix", "https://odd.example/\"quoted\"\\path"];

    #[test]
    fn pages_are_byte_identical_to_the_serde_rendering() {
        let now = Utc::now();
        let snap = snapshot(now);
        let queries = [
            "",
            "per_page=15&search=rocket",
            "per_page=1",
            "per_page=100",
            "per_page=100&page=2",
            "page=3&per_page=15",
            "page=4&per_page=15",
            "page=999",
            "search=nothing-matches",
            "search=ROCKET%20about&per_page=5&page=2",
            "search=%C3%BCn%C3%AF",
            "search=%22rapide%22",
            "search=%5C",
            "type=App%5CModels%5CProductBundle",
            "type[]=App%5CModels%5CCourse&type[]=App%5CModels%5CVideoCourse&per_page=7&page=2",
            "category_slug=dev,design",
            "category_slug=gone",
            "category_slug[]=%C3%BCn%C3%AF&category_slug[]=dev&search=rocket",
            "currency_code=EUR&per_page=3&page=2&api_key=secret&x=%22y%22",
            "per_page=%2015%20&page=2",
        ];
        for currency in CurrencyCode::ALL {
            for (i, base) in BASES.iter().enumerate() {
                let r = render(&snap, currency, [7, 0, u64::MAX][i], base, now);
                for query in queries {
                    assert_same_listing(&r, query);
                }
            }
        }
    }

    #[test]
    fn random_queries_are_byte_identical() {
        let now = Utc::now();
        let snap = snapshot(now);
        let mut rng = StdRng::seed_from_u64(12);
        let words = ["rocket", "about", "science", "ü", "\"", "1", "slug", "design", "development", "zzz", "/", "&"];
        let types = ["App\\Models\\Course", "App\\Models\\VideoCourse", BUNDLE_TYPE, "Nope"];
        let slugs = ["dev", "design", "gone", "blank", "ünï", "missing"];
        for _ in 0..600 {
            let mut pairs: Vec<(String, String)> = vec![];
            if rng.random_bool(0.7) {
                pairs.push(("per_page".into(), rng.random_range(1..=100u32).to_string()));
            }
            if rng.random_bool(0.5) {
                pairs.push(("page".into(), rng.random_range(1..=12u32).to_string()));
            }
            if rng.random_bool(0.5) {
                let n = rng.random_range(1..=3);
                let terms: Vec<&str> = (0..n).map(|_| words[rng.random_range(0..words.len())]).collect();
                pairs.push(("search".into(), terms.join(" ")));
            }
            for _ in 0..rng.random_range(0..3) {
                pairs.push(("type".into(), types[rng.random_range(0..types.len())].into()));
            }
            if rng.random_bool(0.4) {
                let n = rng.random_range(1..=3);
                let chosen: Vec<&str> = (0..n).map(|_| slugs[rng.random_range(0..slugs.len())]).collect();
                pairs.push(("category_slug".into(), chosen.join(",")));
            }
            let query = url::form_urlencoded::Serializer::new(String::new()).extend_pairs(&pairs).finish();
            let currency = CurrencyCode::ALL[rng.random_range(0..CurrencyCode::ALL.len())];
            let base = BASES[rng.random_range(0..BASES.len())];
            let r = render(&snap, currency, rng.random_range(0..=u64::MAX), base, now);
            assert_same_listing(&r, &query);
        }
    }

    #[test]
    fn single_products_are_byte_identical() {
        let now = Utc::now();
        let snap = snapshot(now);
        for currency in CurrencyCode::ALL {
            for base in BASES {
                let r = render(&snap, currency, 123, base, now);
                for id in 1..=49 {
                    match snap.published_entry(id) {
                        Some(entry) => assert_eq!(show_body(&r, entry), show_body_oracle(&r, &entry.product), "product {id}"),
                        None => assert!(snap.published(id).is_none()),
                    }
                }
            }
        }
    }

    #[test]
    fn a_coupon_expiring_changes_the_rendering_at_that_moment() {
        let now = Utc::now();
        let snap = snapshot(now);
        // Coupons expire at now+120s (product 3 and the bundles holding it), now+3600s, a week.
        for later in [0, 119, 120, 121, 3599, 3600, 3601, 8 * 86400] {
            let at = now + Duration::seconds(later);
            for currency in [CurrencyCode::USD, CurrencyCode::INR] {
                let r = render(&snap, currency, 5, BASES[0], at);
                assert_same_listing(&r, "per_page=100");
                assert_same_listing(&r, "per_page=100&type=App%5CModels%5CProductBundle");
            }
        }
        // A clock set back makes an expired coupon live again.
        let r = render(&snap, CurrencyCode::USD, 5, BASES[0], now - Duration::seconds(7200));
        assert_same_listing(&r, "per_page=100");
    }

    #[test]
    fn renderings_are_made_once_and_kept() {
        let now = Utc::now();
        let snap = snapshot(now);
        let entry = snap.published_entry(1).unwrap();
        let r = render(&snap, CurrencyCode::GBP, 5, BASES[0], now);
        let mut made = 0;
        let mut out = Vec::new();
        for _ in 0..3 {
            entry.rendered(r.currency, now, || { made += 1; r.template(&entry.product) }, |x| x.fragment.write(&mut out, &Fills::new(r.base_url, 5).as_slices()));
        }
        assert_eq!(made, 1);
        // Another currency is another slot.
        entry.rendered(CurrencyCode::EUR, now, || { made += 1; r.template(&entry.product) }, |_| ());
        assert_eq!(made, 2);
    }

    /// Warms every rendering of `snap` in every currency.
    fn warm(snap: &Snapshot, now: DateTime<Utc>) {
        for currency in CurrencyCode::ALL {
            let r = render(snap, currency, 9, BASES[0], now);
            assert_same_listing(&r, "per_page=100");
        }
    }

    #[test]
    fn changes_reach_the_renderings() {
        let now = Utc::now();
        let (products, categories) = catalogue(now);
        let snap = Snapshot::build(products.clone(), &categories, vec![], rates());
        warm(&snap, now);
        // A child of bundles 6 (4, 5 …) and 12 changes: title, price, then unpublished.
        let mut child = products[4].clone();
        child.title = "Renamed \"child\" ✓".into();
        child.price_usd = d("12.345");
        let snap = snap.with_product(child.clone());
        warm(&snap, now);
        child.published = false;
        let snap = snap.with_product(child);
        warm(&snap, now);
        // Rates, categories and promotions.
        let snap = snap.with_rates(ExchangeRates { gbp: d("1.5"), ..rates() });
        warm(&snap, now);
        let mut renamed = categories.clone();
        renamed[0].name = "Dev \"renamed\"".into();
        renamed[1].active = false;
        let snap = snap.with_categories(&renamed);
        warm(&snap, now);
        let promotion = PromotionRecord {
            id: 1,
            title: "P".into(),
            text: "T".into(),
            promotion_type: "Percentage Promotion".into(),
            percentage_off: d("10"),
            ends_at: None,
            bundle_ids: vec![6],
            created_at: now,
        };
        let snap = snap.with_promotions(vec![promotion]);
        warm(&snap, now);
    }

    #[test]
    fn affiliate_ids_print_in_decimal() {
        for id in [0, 1, 9, 10, 12345, u64::MAX] {
            let f = Fills::new("b", id);
            assert_eq!(f.as_slices()[1], id.to_string().as_bytes());
        }
    }

    /// Property tests of the query-string parser every listing reads (issue 13, "Fuzzing in
    /// CI"): no input panics it, well-formed input reads back exactly, and repeated keys are
    /// read the same way by `all`, `one`, `with_page` and the paging.
    mod query_properties {
        use super::super::QueryParams;
        use crate::error::FieldErrors;
        use crate::routes::pagination::Page;
        use proptest::prelude::*;

        /// Text from the characters query strings are made of, escapes and odd ones included.
        fn query_text(max: usize) -> impl Strategy<Value = String> {
            let chars = prop_oneof![
                4 => proptest::sample::select(vec!['a', 'b', 'k', '0', '1', '9', '=', '&', '%', '+', '[', ']', ' ', '-', '.', ';', '#', '?']),
                1 => any::<char>(),
            ];
            proptest::collection::vec(chars, 0..max).prop_map(|v| v.into_iter().collect())
        }

        /// Keys drawn from a few names, so that keys repeat, some as `key[]` or `key[n]`.
        fn key() -> impl Strategy<Value = String> {
            prop_oneof![
                3 => proptest::sample::select(vec!["type", "page", "per_page", "api_key", "category_slug", "currency_code"]).prop_map(String::from),
                1 => proptest::sample::select(vec!["type[]", "type[0]", "type[x]", "typed", "page[]", "api_key[]"]).prop_map(String::from),
                1 => query_text(8),
            ]
        }

        fn pairs() -> impl Strategy<Value = Vec<(String, String)>> {
            proptest::collection::vec((key(), prop_oneof![3 => query_text(12), 1 => "[0-9]{1,3}".prop_map(String::from)]), 0..12)
        }

        fn encode(pairs: &[(String, String)]) -> String {
            let mut s = url::form_urlencoded::Serializer::new(String::new());
            for (k, v) in pairs {
                s.append_pair(k, v);
            }
            s.finish()
        }

        proptest! {
            #![proptest_config(ProptestConfig { cases: 1000, ..ProptestConfig::default() })]

            /// Any bytes (as the lossy text actix hands over) parse, and every reader and the
            /// paging answer without panicking.
            #[test]
            fn arbitrary_input_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200), text in query_text(120), key in key(), page in any::<usize>(), total in any::<usize>()) {
                for raw in [String::from_utf8_lossy(&bytes).into_owned(), text] {
                    let q = QueryParams::parse(&raw);
                    let _ = q.all(&key);
                    let _ = q.one(&key);
                    let _ = q.with_page(page);
                    let mut errors = FieldErrors::new();
                    let paging = Page::parse(&q, &mut errors);
                    prop_assert!(paging.page >= 1 && (1..=100).contains(&paging.per_page));
                    let _ = paging.offset();
                    let _ = paging.block(total, "https://example.com", "/api/v1/products", &q);
                }
            }

            /// Well-formed (serializer-made) query strings read back as exactly the pairs
            /// written, in order, repeated keys included.
            #[test]
            fn encoded_pairs_round_trip(pairs in pairs()) {
                let q = QueryParams::parse(&encode(&pairs));
                prop_assert_eq!(&q.0, &pairs);
            }

            /// Repeated keys: `all` is every value of the key and its bracketed forms in order;
            /// `one` is the last value of the key itself, trimmed, absent when that one is blank
            /// (a blank last value does not fall back to an earlier one).
            #[test]
            fn repeated_keys_are_read_consistently(pairs in pairs(), key in key()) {
                let q = QueryParams::parse(&encode(&pairs));
                let bracketed = |k: &str| k.strip_prefix(key.as_str()).is_some_and(|rest| rest.starts_with('[') && rest.ends_with(']'));
                let expected: Vec<&str> = pairs.iter().filter(|(k, _)| *k == key || bracketed(k)).map(|(_, v)| v.as_str()).collect();
                prop_assert_eq!(q.all(&key), expected);
                let last = pairs.iter().rev().find(|(k, _)| *k == key).map(|(_, v)| v.trim()).filter(|v| !v.is_empty());
                prop_assert_eq!(q.one(&key), last);
                if let Some(one) = q.one(&key) {
                    prop_assert!(q.all(&key).iter().any(|v| v.trim() == one));
                }
            }

            /// Paging links keep every other parameter in order, drop every `page` and
            /// `api_key`, and carry the new page once; reading them again gives that page.
            #[test]
            fn page_links_keep_the_rest_and_never_the_key(pairs in pairs(), page in 1usize..1_000_000) {
                let q = QueryParams::parse(&encode(&pairs));
                let again = QueryParams::parse(&q.with_page(page));
                let mut expected: Vec<(String, String)> = pairs.iter().filter(|(k, _)| k != "page" && k != "api_key").cloned().collect();
                expected.push(("page".into(), page.to_string()));
                prop_assert_eq!(&again.0, &expected);
                prop_assert!(again.0.iter().all(|(k, _)| k != "api_key"));
                let mut errors = FieldErrors::new();
                let per_page_ok = q.one("per_page").is_none_or(|v| v.parse::<u64>().is_ok_and(|n| (1..=100).contains(&n)));
                let paging = Page::parse(&again, &mut errors);
                prop_assert_eq!(paging.page, page);
                prop_assert_eq!(errors.is_empty(), per_page_ok, "{:?}", errors);
            }
        }
    }
}
