//! `hissaback demo`: the embedded service with a demo data set, a printed admin token,
//! a printed API key (made exactly as the admin API makes keys) and example calls.
//!
//! Running it again on the same data directory reuses the demo affiliate and issues a
//! fresh key (plain keys are never stored, so an old one cannot be shown again).

use crate::accounts::{self, NewAffiliate, NewKey};
use crate::configuration::Settings;
use crate::domain::{KeyKind, Scope};
use crate::startup::Application;
use crate::state::AppState;
use crate::store::{CategoryRecord, Sequence};
use rand::distr::{Alphanumeric, SampleString};
use secrecy::ExposeSecret;

const DEMO_AFFILIATE: &str = "demo.affiliate_id";

/// The demo's categories: (name, slug).
const DEMO_CATEGORIES: [(&str, &str); 3] =
    [("Design", "design"), ("Development", "development"), ("Low-Level Programming", "low-level-programming")];

/// What the demo set up, to print.
pub struct DemoData {
    pub affiliate_id: u64,
    pub api_key: String,
}

/// Creates (or finds) the demo affiliate, categories, products and promotion, and issues a key
/// holding every scope.
pub async fn seed(state: &AppState) -> anyhow::Result<DemoData> {
    let existing = match state.store.get_setting(DEMO_AFFILIATE).await? {
        Some(id) => state.store.get_affiliate(id.parse()?).await?,
        None => None,
    };
    let affiliate = match existing {
        Some(a) => a,
        None => {
            let a = accounts::create_affiliate(
                state,
                NewAffiliate {
                    name: "Demo Affiliate".into(),
                    email: "demo@example.com".into(),
                    active: true,
                    blog_approved: true,
                    user: Some(("Demo Author".into(), "demo@example.com".into())),
                },
            )
            .await
            .map_err(|e| anyhow::anyhow!("creating the demo affiliate: {e}"))?;
            state.store.put_setting(DEMO_AFFILIATE, &a.id.to_string()).await?;
            a
        }
    };
    if state.store.categories().await?.is_empty() {
        for (name, slug) in DEMO_CATEGORIES {
            let now = chrono::Utc::now();
            let category = CategoryRecord {
                id: state.store.next_id(Sequence::Category).await?,
                name: name.into(),
                slug: Some(slug.into()),
                active: true,
                created_at: now,
                updated_at: now,
                deleted_at: None,
                version: 0,
            };
            state.store.put_category(&category).await?;
            if let Some(slug) = &category.slug {
                state.store.claim_unique(crate::routes::admin::categories::SLUG_NAMESPACE, slug, category.id).await?;
            }
        }
    }
    if state.store.products().await?.is_empty() {
        seed_products(state).await?;
    }
    let issued = accounts::issue_key(
        state,
        affiliate.id,
        NewKey { kind: KeyKind::Secret, scopes: Scope::ALL.to_vec(), allowed_brand_ids: vec![], allowed_offer_ids: vec![], rate_limit: None },
    )
    .await
    .map_err(|e| anyhow::anyhow!("issuing the demo key: {e}"))?;
    Ok(DemoData { affiliate_id: affiliate.id, api_key: issued.plain.expose().to_string() })
}

/// Two courses with coupons, a bundle of both and a running percentage promotion.
async fn seed_products(state: &AppState) -> anyhow::Result<()> {
    use crate::store::{CouponRecord, CouponTier, ProductRecord, PromotionRecord, TeacherRecord};
    use rust_decimal::Decimal;
    let now = chrono::Utc::now();
    let course = |id: u64, title: &str, slug: &str, cents: i64, category: &str, coupons: Vec<CouponRecord>| ProductRecord {
        id,
        title: title.into(),
        slug: slug.into(),
        description: format!("{title}: a hands-on course."),
        image: Some(format!("https://cdn.example.com/products/{slug}.png")),
        price_usd: Decimal::new(cents, 2),
        model_type: "App\\Models\\Course".into(),
        category_slug: Some(category.into()),
        published: true,
        introduction_video_url: Some(format!("https://videos.example.com/{slug}-intro.mp4")),
        bundle_product_ids: vec![],
        teachers: vec![TeacherRecord { id: 1, name: "Jamie Rivera".into() }],
        coupons,
        created_at: now,
        updated_at: now,
        version: 0,
    };
    let coupon = |tier, code: &str, pct: i64, scale| CouponRecord { tier, code: code.into(), percent_off: Decimal::new(pct, scale), expires_at: None };
    let ui = state.store.next_id(Sequence::Product).await?;
    let brand = state.store.next_id(Sequence::Product).await?;
    let bundle = state.store.next_id(Sequence::Product).await?;
    let products = [
        course(ui, "Advanced UI Design", "advanced-ui", 7900, "design", vec![coupon(CouponTier::Low, "AFFL-UIDESIGN", 125, 1), coupon(CouponTier::Mid, "AFFM-UIDESIGN", 25, 0)]),
        course(brand, "Rocket Engines in Rust", "rocket-engines-in-rust", 6900, "low-level-programming", vec![coupon(CouponTier::High, "AFFH-ROCKET", 55, 0)]),
        ProductRecord {
            title: "Designer Toolkit Bundle".into(),
            slug: "designer-toolkit".into(),
            description: "Save on our most popular courses.".into(),
            price_usd: Decimal::new(12900, 2),
            model_type: crate::catalogue::BUNDLE_TYPE.into(),
            introduction_video_url: None,
            bundle_product_ids: vec![ui, brand],
            coupons: vec![],
            ..course(bundle, "", "", 0, "design", vec![])
        },
    ];
    for p in &products {
        state.store.claim_unique("product_slug", &p.slug, p.id).await?;
        state.store.put_product(p).await?;
    }
    let promotion = PromotionRecord {
        id: state.store.next_id(Sequence::Promotion).await?,
        title: "Spring Savings".into(),
        text: "25% off all courses".into(),
        promotion_type: "Percentage Promotion".into(),
        percentage_off: Decimal::new(25, 0),
        ends_at: Some(now + chrono::Duration::days(30)),
        bundle_ids: vec![bundle],
        created_at: now,
    };
    state.store.put_promotion(&promotion).await?;
    state.catalogue.refresh(crate::catalogue::actor::Refresh::Everything).await
}

pub async fn run(mut settings: Settings) -> anyhow::Result<()> {
    if settings.admin.token.is_none() {
        let token = format!("hb_admin_{}", Alphanumeric.sample_string(&mut rand::rng(), 32));
        settings.admin.token = Some(token.into());
    }
    let app = Application::build(settings).await?;
    let state = app.state();
    let data = seed(&state).await?;
    let base = &state.public_base_url;
    let key = &data.api_key;
    let admin = state.admin_token.as_ref().map(|t| t.expose_secret().to_string()).unwrap_or_default();
    println!(
        "\nhissaback demo is serving on {base} (embedded store in {dir})\n\n\
         Demo affiliate id: {id}\n\
         API key (every scope; shown once): {key}\n\
         Admin token: {admin}\n\n\
         Try:\n  \
         curl -H \"Authorization: Bearer {key}\" {base}/api/v1/test\n  \
         curl -H \"X-Affiliate-Api-Key: {key}\" \"{base}/api/v1/products?currency_code=EUR&per_page=5\"\n  \
         curl -H \"Authorization: Bearer {admin}\" {base}/admin/v1/affiliates/{id}/keys\n\n\
         Stop with Ctrl-C.\n",
        dir = state.settings.store.data_dir.display(),
        id = data.affiliate_id,
    );
    app.run_until_stopped().await
}
