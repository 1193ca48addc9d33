//! `/openapi.json`: the OpenAPI 3.1 document, generated from the handlers' annotations and
//! completed by [`Complete`]: the `/v1/webhooks` family (served by the same handlers as
//! `/api/v1/webhooks`), one stable operationId per operation, the success bodies
//! ([`schemas`]), the failure envelope and the answers every credential or body can get.

use crate::routes::{postbacks, privacy, rewards, clicks, partner, webhooks, admin, blogs, categories, health, ping, products, promotions, stats};
use actix_web::HttpResponse;
use std::borrow::Cow;
use utoipa::openapi::path::{Operation, ParameterIn};
use utoipa::openapi::request_body::RequestBodyBuilder;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{Content, Ref, RefOr, Required, ResponseBuilder};
use utoipa::{Modify, OpenApi, ToSchema};

#[derive(OpenApi)]
#[openapi(
    info(title = "hissaback", description = "Affiliate API (/api/v1), partner flow (/v1) and admin API (/admin/v1)."),
    servers((url = "/", description = "this server")),
    paths(
        health::healthz, health::readyz, health::metrics, document,
        webhooks::list, webhooks::create, webhooks::delete, webhooks::deliveries, webhooks::redeliver, webhooks::rotate_secret, webhooks::enable,
        postbacks::receive, rewards::user_rewards, admin::rewards::pay,
        privacy::export, privacy::erase, privacy::admin_export, privacy::admin_erase,
        stats::usage, stats::campaigns, stats::payouts, stats::audit, admin::audit::audit,
        partner::offers, partner::create_campaign, partner::create_link, clicks::redirect,
        admin::partners::create_brand, admin::partners::create_offer, admin::partners::create_network, admin::partners::rotate_network_token,
        ping::test, categories::list, products::list, products::show, promotions::list,
        admin::products::create, admin::products::show, admin::products::update, admin::products::add_coupon,
        admin::promotions::create, admin::promotions::rates, admin::promotions::set_rates,
        admin::categories::create, admin::categories::update, admin::categories::delete,
        admin::affiliates::create, admin::affiliates::show, admin::affiliates::update,
        admin::keys::create, admin::keys::list, admin::keys::show, admin::keys::rotate, admin::keys::revoke,
        blogs::list_profiles, blogs::create_profile, blogs::create, blogs::update,
        admin::blogs::show, admin::blogs::publish, admin::blogs::unpublish,
    ),
    components(schemas(
        categories::CategoryView, admin::categories::CreateCategory, admin::categories::UpdateCategory, admin::categories::AdminCategoryView,
        admin::products::CreateProduct, admin::products::UpdateProduct, admin::products::CreateCoupon, admin::products::TeacherInput, admin::products::AdminProductView,
        admin::promotions::CreatePromotion, admin::promotions::SetRates,
        admin::rewards::PayRewards,
        webhooks::CreateWebhook, partner::CreateCampaign, partner::CreateLink, admin::partners::CreateNamed, admin::partners::CreateOffer,
        ping::TestResponse, ping::TestData, crate::domain::Scope, crate::domain::KeyKind,
        admin::affiliates::CreateAffiliate, admin::affiliates::UpdateAffiliate, admin::affiliates::UserInput,
        admin::affiliates::AffiliateView, admin::affiliates::UserView,
        admin::keys::CreateKey, admin::keys::RotateKey, admin::keys::RateLimitInput, admin::keys::KeyView, admin::keys::RateLimitView,
        blogs::CreateProfile, blogs::BlogProfileView, blogs::CreateBlog, blogs::UpdateBlog, blogs::BlogView,
        admin::blogs::UnpublishBlog, admin::blogs::AdminBlogView,
        schemas::Currency, schemas::PostbackStatus, schemas::Granularity, schemas::ErrorResponse, schemas::SuccessResponse, schemas::DataResponse, schemas::PostbackParams,
        schemas::Pagination, schemas::Coupon, schemas::AffiliateCoupons, schemas::BundleProduct, schemas::Product, schemas::PercentagePromotion,
        schemas::Webhook, schemas::WebhookWithSecret, schemas::DeliveryAttempt, schemas::Delivery,
        schemas::Offer, schemas::Campaign, schemas::Link, schemas::Reward, schemas::AuditEntry,
        schemas::HealthResponse, schemas::HealthData, schemas::ReadyResponse, schemas::ReadyData,
        schemas::CategoriesResponse, schemas::CategoriesData, schemas::ProductsResponse, schemas::ProductsData,
        schemas::ProductResponse, schemas::ProductData, schemas::PromotionsResponse, schemas::PromotionsData,
        schemas::BlogProfilesResponse, schemas::BlogProfilesData, schemas::BlogProfileResponse, schemas::BlogProfileData,
        schemas::BlogResponse, schemas::BlogData,
        schemas::WebhooksResponse, schemas::WebhooksData, schemas::WebhookSecretResponse, schemas::WebhookResponse, schemas::WebhookData,
        schemas::DeliveriesResponse, schemas::DeliveriesData, schemas::DeliveryResponse, schemas::DeliveryData,
        schemas::OffersResponse, schemas::OffersData, schemas::CampaignResponse, schemas::CampaignData, schemas::LinkResponse, schemas::LinkData,
        schemas::PostbackResponse, schemas::PostbackData, schemas::UserRewardsResponse, schemas::UserRewardsData,
        schemas::UsageStatsResponse, schemas::UsageStatsData, schemas::CampaignStatsResponse, schemas::CampaignStatsData,
        schemas::PayoutStatsResponse, schemas::PayoutStatsData, schemas::AuditResponse, schemas::AuditData,
        schemas::AdminAuditResponse, schemas::AdminAuditData,
        schemas::UserExportResponse, schemas::UserExportData, schemas::ErasureResponse, schemas::ErasureData,
        schemas::AffiliateResponse, schemas::AffiliateData, schemas::KeyResponse, schemas::KeyData, schemas::KeysResponse, schemas::KeysData,
        schemas::RotatedKeyResponse, schemas::RotatedKeyData, schemas::AdminCategoryResponse, schemas::AdminCategoryData,
        schemas::AdminProductResponse, schemas::AdminProductData, schemas::AdminBlogResponse, schemas::AdminBlogData,
        schemas::ExchangeRatesResponse, schemas::ExchangeRatesData, schemas::NetworkResponse, schemas::NetworkData,
        schemas::PayoutRunResponse, schemas::PayoutRunData,
    )),
    modifiers(&Complete)
)]
pub struct ApiDoc;

/// The bodies the handlers answer, as documentation: each mirrors the `json!` (or view type)
/// its handler writes, in the seeds' envelope `{"success": true, "data": …}` (failures:
/// [`ErrorResponse`]). Fields marked optional may be absent; `Option` fields listed as
/// required are always present and may be `null`.
#[allow(dead_code)]
pub mod schemas {
    use crate::routes::admin::affiliates::AffiliateView;
    use crate::routes::admin::blogs::AdminBlogView;
    use crate::routes::admin::categories::AdminCategoryView;
    use crate::routes::admin::keys::KeyView;
    use crate::routes::admin::products::AdminProductView;
    use crate::routes::blogs::{BlogProfileView, BlogView};
    use crate::routes::categories::CategoryView;
    use std::collections::BTreeMap;
    use utoipa::ToSchema;

    /// `{"success": true, "data": …}` around a named data object.
    macro_rules! envelope {
        ($($(#[$meta:meta])* $name:ident => $data:ident;)*) => {$(
            $(#[$meta])*
            #[derive(ToSchema)]
            pub struct $name {
                /// Always `true`.
                pub success: bool,
                pub data: $data,
            }
        )*};
    }

    /// The currencies the API prices in and accepts (case-insensitively).
    #[derive(ToSchema)]
    pub enum Currency {
        USD,
        GBP,
        EUR,
        INR,
        BGN,
    }

    /// A postback's status.
    #[derive(ToSchema)]
    #[serde(rename_all = "lowercase")]
    pub enum PostbackStatus {
        Pending,
        Approved,
        Rejected,
        Reversed,
    }

    /// The periods of usage statistics.
    #[derive(ToSchema)]
    #[serde(rename_all = "lowercase")]
    pub enum Granularity {
        Day,
        Hour,
        Minute,
    }

    /// Every failure: `success: false`, a human `message` and a stable `code`
    /// (`unauthenticated`, `insufficient_scope`, `not_found`, `validation_failed`,
    /// `invalid_json`, `payload_too_large`, `unsupported_media_type`, `rate_limited`,
    /// `method_not_allowed`, `conflict`, `unavailable`, …).
    #[derive(ToSchema)]
    pub struct ErrorResponse {
        /// Always `false`.
        pub success: bool,
        pub message: String,
        pub code: String,
        /// 422 `validation_failed` only: the messages per field.
        pub errors: Option<BTreeMap<String, Vec<String>>>,
    }

    /// `{"success": true}` alone.
    #[derive(ToSchema)]
    pub struct SuccessResponse {
        /// Always `true`.
        pub success: bool,
    }

    /// The envelope around data this document does not detail.
    #[derive(ToSchema)]
    pub struct DataResponse {
        /// Always `true`.
        pub success: bool,
        #[schema(value_type = Object)]
        pub data: serde_json::Value,
    }

    /// A postback's parameters in a POST body (form or JSON); each may come from the query
    /// string instead (the body wins). JSON `null` counts as absent.
    #[derive(ToSchema)]
    pub struct PostbackParams {
        /// The network's postback token.
        pub token: Option<String>,
        /// The click id from the redirect.
        pub click_id: Option<String>,
        /// The network's transaction id.
        pub txn_id: Option<String>,
        /// What the network pays (or `commission`): a non-negative plain decimal.
        pub payout: Option<f64>,
        /// Alias of `payout`.
        pub commission: Option<f64>,
        pub currency: Option<Currency>,
        pub status: Option<PostbackStatus>,
        /// Conversion goal (first 64 characters kept).
        pub goal: Option<String>,
    }

    /// The `pagination` block of listings.
    #[derive(ToSchema)]
    pub struct Pagination {
        pub current_page: u64,
        pub per_page: u64,
        pub total: u64,
        pub last_page: u64,
        #[schema(required = true)]
        pub next_page_url: Option<String>,
        #[schema(required = true)]
        pub prev_page_url: Option<String>,
    }

    /// A live coupon of a product.
    #[derive(ToSchema)]
    pub struct Coupon {
        pub code: String,
        pub percent_off: f64,
        pub discount_decimal: f64,
        pub new_price: f64,
        #[schema(required = true)]
        pub expires_at: Option<String>,
    }

    /// A course's coupons by tier, each `null` when none is live.
    #[derive(ToSchema)]
    pub struct AffiliateCoupons {
        #[schema(required = true)]
        pub low: Option<Coupon>,
        #[schema(required = true)]
        pub mid: Option<Coupon>,
        #[schema(required = true)]
        pub high: Option<Coupon>,
    }

    /// A bundle's child product, short form (courses with coupons).
    #[derive(ToSchema)]
    pub struct BundleProduct {
        pub id: u64,
        pub title: String,
        #[serde(rename = "type")]
        pub model_type: String,
        pub price: f64,
        pub currency: Currency,
        pub url: String,
        /// Courses only.
        pub affiliate_coupons: Option<AffiliateCoupons>,
        /// Courses with a video only.
        pub introduction_video_url: Option<String>,
    }

    /// A published product priced in the answer's currency.
    #[derive(ToSchema)]
    pub struct Product {
        pub id: u64,
        pub title: String,
        pub description: String,
        #[schema(required = true)]
        pub image: Option<String>,
        pub url: String,
        pub price: f64,
        pub currency: Currency,
        #[serde(rename = "type")]
        pub model_type: String,
        #[schema(required = true)]
        pub category: Option<CategoryView>,
        /// Courses only.
        pub affiliate_coupons: Option<AffiliateCoupons>,
        /// Courses with a video only.
        pub introduction_video_url: Option<String>,
        /// Bundles only.
        pub bundle_products: Option<Vec<BundleProduct>>,
    }

    /// The running percentage promotion.
    #[derive(ToSchema)]
    pub struct PercentagePromotion {
        pub id: u64,
        pub title: String,
        pub text: String,
        #[serde(rename = "type")]
        pub promotion_type: String,
        pub percentage_off: f64,
        #[schema(required = true)]
        pub ends_at: Option<String>,
    }

    /// `active`, or `disabled` by the dispatcher after repeated failures.
    #[derive(ToSchema)]
    #[serde(rename_all = "lowercase")]
    pub enum WebhookStatus {
        Active,
        Disabled,
    }

    /// A webhook (never its secret).
    #[derive(ToSchema)]
    pub struct Webhook {
        pub id: u64,
        pub event: String,
        pub url: String,
        pub created_at: String,
        pub updated_at: String,
        pub status: WebhookStatus,
        #[schema(required = true)]
        pub disabled_at: Option<String>,
        #[schema(required = true)]
        pub disabled_reason: Option<String>,
    }

    /// A webhook with its plain secret: only when created or rotated.
    #[derive(ToSchema)]
    pub struct WebhookWithSecret {
        pub id: u64,
        pub event: String,
        pub url: String,
        pub secret: String,
        pub created_at: String,
        pub updated_at: String,
    }

    /// One attempt of a delivery.
    #[derive(ToSchema)]
    pub struct DeliveryAttempt {
        pub at: String,
        #[schema(required = true)]
        pub status_code: Option<u16>,
        pub latency_ms: u64,
        #[schema(required = true)]
        pub error: Option<String>,
    }

    #[derive(ToSchema)]
    #[serde(rename_all = "lowercase")]
    pub enum DeliveryState {
        Pending,
        Succeeded,
        Failed,
    }

    /// A webhook delivery and its attempts.
    #[derive(ToSchema)]
    pub struct Delivery {
        pub id: String,
        pub event: String,
        pub state: DeliveryState,
        pub attempts: Vec<DeliveryAttempt>,
        #[schema(required = true)]
        pub next_attempt_at: Option<String>,
        pub created_at: String,
        pub updated_at: String,
    }

    /// An offer as partners see it.
    #[derive(ToSchema)]
    pub struct Offer {
        pub id: u64,
        pub name: String,
        pub brand_id: u64,
        pub brand_name: String,
        pub category: String,
        pub base_commission: f64,
        pub default_share_pct: f64,
        pub currency: String,
    }

    /// A campaign: exactly one of `share_pct` and `flat_reward` is set.
    #[derive(ToSchema)]
    pub struct Campaign {
        pub campaign_id: u64,
        pub offer_id: u64,
        pub tenant_id: String,
        #[schema(required = true)]
        pub share_pct: Option<f64>,
        #[schema(required = true)]
        pub flat_reward: Option<f64>,
        pub created_at: String,
    }

    /// A smart link.
    #[derive(ToSchema)]
    pub struct Link {
        pub code: String,
        /// `{public base URL}/r/{code}`.
        pub url: String,
        pub campaign_id: u64,
        pub pid: u64,
        pub offer_id: u64,
        /// The offer's tracking URL with the known macros filled.
        pub raw_url: String,
    }

    /// A reward of a conversion.
    #[derive(ToSchema)]
    pub struct Reward {
        pub reward_id: u64,
        pub conversion_id: u64,
        pub campaign_id: u64,
        pub offer_id: u64,
        pub amount: f64,
        pub currency: String,
        pub status: String,
        pub clawback: f64,
        pub created_at: String,
        pub updated_at: String,
        #[schema(required = true)]
        pub paid_at: Option<String>,
    }

    /// An audit row.
    #[derive(ToSchema)]
    pub struct AuditEntry {
        pub at: String,
        pub request_id: String,
        pub actor: String,
        pub affiliate_id: u64,
        #[schema(required = true)]
        pub key_id: Option<u64>,
        #[schema(required = true)]
        pub network_id: Option<u64>,
        pub method: String,
        pub route: String,
        pub path: String,
        pub status: u16,
        pub latency_ms: f64,
        #[schema(required = true)]
        pub client_ip: Option<String>,
    }

    #[derive(ToSchema)]
    pub struct HealthData {
        /// `ok`.
        pub status: String,
    }

    #[derive(ToSchema)]
    pub struct ReadyData {
        /// `ready`.
        pub status: String,
        /// The store backend.
        pub store: String,
        /// The event bus backend.
        pub events: String,
    }

    #[derive(ToSchema)]
    pub struct CategoriesData {
        pub categories: Vec<CategoryView>,
    }

    #[derive(ToSchema)]
    pub struct ProductsData {
        pub products: Vec<Product>,
        pub pagination: Pagination,
    }

    #[derive(ToSchema)]
    pub struct ProductData {
        pub product: Product,
    }

    #[derive(ToSchema)]
    pub struct PromotionsData {
        pub bundles: Vec<Product>,
        #[schema(required = true)]
        pub percentage_promotion: Option<PercentagePromotion>,
    }

    #[derive(ToSchema)]
    pub struct BlogProfilesData {
        pub profiles: Vec<BlogProfileView>,
    }

    #[derive(ToSchema)]
    pub struct BlogProfileData {
        pub profile: BlogProfileView,
    }

    #[derive(ToSchema)]
    pub struct BlogData {
        pub blog: BlogView,
    }

    #[derive(ToSchema)]
    pub struct WebhooksData {
        pub webhooks: Vec<Webhook>,
        /// The events this API's webhooks may subscribe to.
        pub supported_events: Vec<String>,
    }

    #[derive(ToSchema)]
    pub struct WebhookData {
        pub webhook: Webhook,
    }

    #[derive(ToSchema)]
    pub struct DeliveriesData {
        pub deliveries: Vec<Delivery>,
    }

    #[derive(ToSchema)]
    pub struct DeliveryData {
        pub delivery: Delivery,
    }

    #[derive(ToSchema)]
    pub struct OffersData {
        pub offers: Vec<Offer>,
        pub pagination: Pagination,
    }

    #[derive(ToSchema)]
    pub struct CampaignData {
        pub campaign: Campaign,
    }

    #[derive(ToSchema)]
    pub struct LinkData {
        pub link: Link,
    }

    #[derive(ToSchema)]
    pub struct PostbackData {
        /// `accepted`.
        pub status: String,
        pub network_id: u64,
        pub txn_id: String,
        pub conversion_id: u64,
    }

    #[derive(ToSchema)]
    pub struct UserRewardsData {
        pub user_id: String,
        pub tenant_id: String,
        pub rewards: Vec<Reward>,
        /// Amounts per currency for `pending`, `queued`, `paying`, `paid`, `owed` and `balance`.
        pub totals: BTreeMap<String, BTreeMap<String, f64>>,
    }

    #[derive(ToSchema)]
    pub struct UsageStatsData {
        /// `day`, `hour` or `minute`.
        pub granularity: String,
        pub from: String,
        pub to: String,
        #[schema(required = true)]
        pub key_id: Option<u64>,
        /// `requests`, `errors`, `error_rate`, `rate_limited`, `by_status_class`.
        #[schema(value_type = Object)]
        pub totals: serde_json::Value,
        /// The totals per period (`period` first).
        #[schema(value_type = Vec<Object>)]
        pub series: Vec<serde_json::Value>,
        /// The totals per route (`route` first).
        #[schema(value_type = Vec<Object>)]
        pub routes: Vec<serde_json::Value>,
        /// The totals per key (`key_id` first).
        #[schema(value_type = Vec<Object>)]
        pub keys: Vec<serde_json::Value>,
    }

    #[derive(ToSchema)]
    pub struct CampaignStatsData {
        /// Per campaign: `campaign_id`, `offer_id`, `tenant_id`, `clicks`, `conversions`,
        /// `conversion_rate`, `conversions_by_status`, `commission`, `rewards`.
        #[schema(value_type = Vec<Object>)]
        pub campaigns: Vec<serde_json::Value>,
        #[schema(value_type = Object)]
        pub totals: serde_json::Value,
    }

    #[derive(ToSchema)]
    pub struct PayoutStatsData {
        /// Amounts per status and currency.
        pub totals: BTreeMap<String, BTreeMap<String, f64>>,
        /// Conversions per status.
        pub counts: BTreeMap<String, u64>,
        #[schema(required = true)]
        pub last_paid_at: Option<String>,
    }

    #[derive(ToSchema)]
    pub struct AuditData {
        pub date: String,
        pub entries: Vec<AuditEntry>,
    }

    #[derive(ToSchema)]
    pub struct AdminAuditData {
        pub affiliate_id: u64,
        pub date: String,
        pub entries: Vec<AuditEntry>,
    }

    #[derive(ToSchema)]
    pub struct UserExportData {
        pub user_id: String,
        pub tenant_id: String,
        #[schema(value_type = Vec<Object>)]
        pub clicks: Vec<serde_json::Value>,
        #[schema(value_type = Vec<Object>)]
        pub conversions: Vec<serde_json::Value>,
        pub rewards: Vec<Reward>,
    }

    #[derive(ToSchema)]
    pub struct ErasureData {
        pub erased: bool,
        pub tenant_id: String,
        pub pseudonym: String,
        pub clicks: u64,
        pub conversions: u64,
        pub pending: u64,
    }

    #[derive(ToSchema)]
    pub struct AffiliateData {
        pub affiliate: AffiliateView,
    }

    #[derive(ToSchema)]
    pub struct KeyData {
        pub key: KeyView,
    }

    #[derive(ToSchema)]
    pub struct KeysData {
        pub keys: Vec<KeyView>,
    }

    #[derive(ToSchema)]
    pub struct RotatedKeyData {
        pub key: KeyView,
        /// `{id, expires_at}` of the old key.
        #[schema(value_type = Object)]
        pub rotated_from: serde_json::Value,
    }

    #[derive(ToSchema)]
    pub struct AdminCategoryData {
        pub category: AdminCategoryView,
    }

    #[derive(ToSchema)]
    pub struct AdminProductData {
        pub product: AdminProductView,
    }

    #[derive(ToSchema)]
    pub struct AdminBlogData {
        pub blog: AdminBlogView,
    }

    #[derive(ToSchema)]
    pub struct ExchangeRatesData {
        /// `USD`.
        pub base: String,
        /// Per 1 USD: `GBP`, `EUR`, `INR`, `BGN`.
        pub rates: BTreeMap<String, f64>,
    }

    /// `network` `{id, name, postback_token}`: the plain token, shown only here.
    #[derive(ToSchema)]
    pub struct NetworkData {
        #[schema(value_type = Object)]
        pub network: serde_json::Value,
    }

    #[derive(ToSchema)]
    pub struct PayoutRunData {
        pub paid: u64,
        pub failed: u64,
        pub pending: u64,
        pub provider: String,
    }

    envelope! {
        HealthResponse => HealthData;
        ReadyResponse => ReadyData;
        CategoriesResponse => CategoriesData;
        ProductsResponse => ProductsData;
        ProductResponse => ProductData;
        PromotionsResponse => PromotionsData;
        BlogProfilesResponse => BlogProfilesData;
        BlogProfileResponse => BlogProfileData;
        BlogResponse => BlogData;
        WebhooksResponse => WebhooksData;
        WebhookSecretResponse => WebhookWithSecret;
        WebhookResponse => WebhookData;
        DeliveriesResponse => DeliveriesData;
        DeliveryResponse => DeliveryData;
        OffersResponse => OffersData;
        CampaignResponse => CampaignData;
        LinkResponse => LinkData;
        PostbackResponse => PostbackData;
        UserRewardsResponse => UserRewardsData;
        UsageStatsResponse => UsageStatsData;
        CampaignStatsResponse => CampaignStatsData;
        PayoutStatsResponse => PayoutStatsData;
        AuditResponse => AuditData;
        AdminAuditResponse => AdminAuditData;
        UserExportResponse => UserExportData;
        ErasureResponse => ErasureData;
        AffiliateResponse => AffiliateData;
        KeyResponse => KeyData;
        KeysResponse => KeysData;
        RotatedKeyResponse => RotatedKeyData;
        AdminCategoryResponse => AdminCategoryData;
        AdminProductResponse => AdminProductData;
        AdminBlogResponse => AdminBlogData;
        ExchangeRatesResponse => ExchangeRatesData;
        NetworkResponse => NetworkData;
        PayoutRunResponse => PayoutRunData;
    }
}

/// A schema's name, for a `$ref`.
type SchemaName = fn() -> Cow<'static, str>;

/// Every operation: its method, path, stable operationId and, when it answers JSON, the
/// schema of its success body. The `/v1/webhooks` rows document the partner API's copy of
/// the `/api/v1/webhooks` routes (see [`partner_webhooks`]).
fn operations() -> Vec<(&'static str, &'static str, &'static str, Option<SchemaName>)> {
    use schemas::*;
    fn n<T: ToSchema>() -> Cow<'static, str> {
        T::name()
    }
    vec![
        ("get", "/healthz", "getHealth", Some(n::<HealthResponse>)),
        ("get", "/readyz", "getReadiness", Some(n::<ReadyResponse>)),
        ("get", "/metrics", "getMetrics", None),
        ("get", "/openapi.json", "getOpenApiDocument", None),
        // Affiliate API.
        ("get", "/api/v1/test", "testApiKey", None),
        ("get", "/api/v1/categories", "listCategories", Some(n::<CategoriesResponse>)),
        ("get", "/api/v1/products", "listProducts", Some(n::<ProductsResponse>)),
        ("get", "/api/v1/products/{product}", "getProduct", Some(n::<ProductResponse>)),
        ("get", "/api/v1/promotions", "listPromotions", Some(n::<PromotionsResponse>)),
        ("get", "/api/v1/blog-profiles", "listBlogProfiles", Some(n::<BlogProfilesResponse>)),
        ("post", "/api/v1/blog-profiles", "createBlogProfile", Some(n::<BlogProfileResponse>)),
        ("post", "/api/v1/blogs", "createBlog", Some(n::<BlogResponse>)),
        ("put", "/api/v1/blogs/{blog}", "replaceBlog", Some(n::<BlogResponse>)),
        ("patch", "/api/v1/blogs/{blog}", "updateBlog", Some(n::<BlogResponse>)),
        ("get", "/api/v1/webhooks", "listWebhooks", Some(n::<WebhooksResponse>)),
        ("post", "/api/v1/webhooks", "createWebhook", Some(n::<WebhookSecretResponse>)),
        ("delete", "/api/v1/webhooks/{webhook}", "deleteWebhook", Some(n::<SuccessResponse>)),
        ("get", "/api/v1/webhooks/{webhook}/deliveries", "listWebhookDeliveries", Some(n::<DeliveriesResponse>)),
        ("post", "/api/v1/webhooks/{webhook}/deliveries/{delivery}/redeliver", "redeliverWebhookDelivery", Some(n::<DeliveryResponse>)),
        ("post", "/api/v1/webhooks/{webhook}/rotate-secret", "rotateWebhookSecret", Some(n::<WebhookSecretResponse>)),
        ("post", "/api/v1/webhooks/{webhook}/enable", "enableWebhook", Some(n::<WebhookResponse>)),
        // Partner flow.
        ("get", "/v1/webhooks", "listPartnerWebhooks", Some(n::<WebhooksResponse>)),
        ("post", "/v1/webhooks", "createPartnerWebhook", Some(n::<WebhookSecretResponse>)),
        ("delete", "/v1/webhooks/{webhook}", "deletePartnerWebhook", Some(n::<SuccessResponse>)),
        ("get", "/v1/webhooks/{webhook}/deliveries", "listPartnerWebhookDeliveries", Some(n::<DeliveriesResponse>)),
        ("post", "/v1/webhooks/{webhook}/deliveries/{delivery}/redeliver", "redeliverPartnerWebhookDelivery", Some(n::<DeliveryResponse>)),
        ("post", "/v1/webhooks/{webhook}/rotate-secret", "rotatePartnerWebhookSecret", Some(n::<WebhookSecretResponse>)),
        ("post", "/v1/webhooks/{webhook}/enable", "enablePartnerWebhook", Some(n::<WebhookResponse>)),
        ("get", "/v1/offers", "listOffers", Some(n::<OffersResponse>)),
        ("post", "/v1/campaigns", "createCampaign", Some(n::<CampaignResponse>)),
        ("post", "/v1/links", "createLink", Some(n::<LinkResponse>)),
        ("get", "/v1/postbacks", "receivePostbackByGet", Some(n::<PostbackResponse>)),
        ("post", "/v1/postbacks", "receivePostbackByPost", Some(n::<PostbackResponse>)),
        ("get", "/v1/rewards/user", "listUserRewards", Some(n::<UserRewardsResponse>)),
        ("get", "/v1/stats/usage", "getUsageStats", Some(n::<UsageStatsResponse>)),
        ("get", "/v1/stats/campaigns", "getCampaignStats", Some(n::<CampaignStatsResponse>)),
        ("get", "/v1/stats/payouts", "getPayoutStats", Some(n::<PayoutStatsResponse>)),
        ("get", "/v1/audit", "listAuditEntries", Some(n::<AuditResponse>)),
        ("get", "/v1/users/{user_id}/export", "exportUserData", Some(n::<UserExportResponse>)),
        ("delete", "/v1/users/{user_id}", "eraseUserData", Some(n::<ErasureResponse>)),
        ("get", "/r/{code}", "followLink", None),
        // Admin API.
        ("post", "/admin/v1/affiliates", "adminCreateAffiliate", Some(n::<AffiliateResponse>)),
        ("get", "/admin/v1/affiliates/{id}", "adminGetAffiliate", Some(n::<AffiliateResponse>)),
        ("patch", "/admin/v1/affiliates/{id}", "adminUpdateAffiliate", Some(n::<AffiliateResponse>)),
        ("post", "/admin/v1/affiliates/{id}/keys", "adminCreateKey", Some(n::<KeyResponse>)),
        ("get", "/admin/v1/affiliates/{id}/keys", "adminListKeys", Some(n::<KeysResponse>)),
        ("get", "/admin/v1/keys/{id}", "adminGetKey", Some(n::<KeyResponse>)),
        ("delete", "/admin/v1/keys/{id}", "adminRevokeKey", Some(n::<KeyResponse>)),
        ("post", "/admin/v1/keys/{id}/rotate", "adminRotateKey", Some(n::<RotatedKeyResponse>)),
        ("get", "/admin/v1/affiliates/{id}/users/{user_id}/export", "adminExportUserData", Some(n::<UserExportResponse>)),
        ("delete", "/admin/v1/affiliates/{id}/users/{user_id}", "adminEraseUserData", Some(n::<ErasureResponse>)),
        ("get", "/admin/v1/audit", "adminListAuditEntries", Some(n::<AdminAuditResponse>)),
        ("get", "/admin/v1/blogs/{id}", "adminGetBlog", Some(n::<AdminBlogResponse>)),
        ("post", "/admin/v1/blogs/{id}/publish", "adminPublishBlog", Some(n::<AdminBlogResponse>)),
        ("post", "/admin/v1/blogs/{id}/unpublish", "adminUnpublishBlog", Some(n::<AdminBlogResponse>)),
        ("post", "/admin/v1/brands", "adminCreateBrand", Some(n::<DataResponse>)),
        ("post", "/admin/v1/offers", "adminCreateOffer", Some(n::<DataResponse>)),
        ("post", "/admin/v1/networks", "adminCreateNetwork", Some(n::<NetworkResponse>)),
        ("post", "/admin/v1/networks/{id}/rotate-token", "adminRotateNetworkToken", Some(n::<NetworkResponse>)),
        ("post", "/admin/v1/categories", "adminCreateCategory", Some(n::<AdminCategoryResponse>)),
        ("patch", "/admin/v1/categories/{id}", "adminUpdateCategory", Some(n::<AdminCategoryResponse>)),
        ("delete", "/admin/v1/categories/{id}", "adminDeleteCategory", Some(n::<AdminCategoryResponse>)),
        ("get", "/admin/v1/exchange-rates", "adminGetExchangeRates", Some(n::<ExchangeRatesResponse>)),
        ("put", "/admin/v1/exchange-rates", "adminSetExchangeRates", Some(n::<ExchangeRatesResponse>)),
        ("post", "/admin/v1/products", "adminCreateProduct", Some(n::<AdminProductResponse>)),
        ("get", "/admin/v1/products/{id}", "adminGetProduct", Some(n::<AdminProductResponse>)),
        ("patch", "/admin/v1/products/{id}", "adminUpdateProduct", Some(n::<AdminProductResponse>)),
        ("post", "/admin/v1/products/{id}/coupons", "adminAddCoupon", Some(n::<DataResponse>)),
        ("post", "/admin/v1/promotions", "adminCreatePromotion", Some(n::<DataResponse>)),
        ("post", "/admin/v1/rewards/pay", "adminPayRewards", Some(n::<PayoutRunResponse>)),
    ]
}

/// Completes the generated document; the steps run in this order.
struct Complete;

impl Modify for Complete {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        security_schemes(openapi);
        partner_webhooks(openapi);
        postbacks(openapi);
        let table = operations();
        for (path, item) in openapi.paths.paths.iter_mut() {
            for (method, op) in methods(item) {
                let row = table.iter().find(|(m, p, _, _)| *m == method && *p == path.as_str());
                if let Some((_, _, id, _)) = row {
                    op.operation_id = Some((*id).to_string());
                }
                if let Some(schema) = row.and_then(|r| r.3) {
                    success_body(op, &schema());
                }
                answers(path, op);
            }
        }
        other_bodies(openapi);
        unique_operation_ids(openapi);
    }
}

/// The two answers outside the envelope: the metrics (Prometheus text) and this document.
fn other_bodies(openapi: &mut utoipa::openapi::OpenApi) {
    use utoipa::openapi::schema::{ObjectBuilder, Type};
    let mut set = |path: &str, content_type: &str, schema: ObjectBuilder| {
        let Some(op) = openapi.paths.paths.get_mut(path).and_then(|item| item.get.as_mut()) else { return };
        if let Some(RefOr::T(response)) = op.responses.responses.get_mut("200") {
            response.content.insert(content_type.to_string(), Content::new(Some(schema.build())));
        }
    };
    set("/metrics", "text/plain", ObjectBuilder::new().schema_type(Type::String));
    set("/openapi.json", "application/json", ObjectBuilder::new().schema_type(Type::Object));
}

/// The operations of a path item with their lower-case methods.
fn methods(item: &mut utoipa::openapi::PathItem) -> Vec<(&'static str, &mut Operation)> {
    [
        ("get", &mut item.get),
        ("post", &mut item.post),
        ("put", &mut item.put),
        ("patch", &mut item.patch),
        ("delete", &mut item.delete),
    ]
    .into_iter()
    .filter_map(|(m, op)| op.as_mut().map(|op| (m, op)))
    .collect()
}

fn security_schemes(openapi: &mut utoipa::openapi::OpenApi) {
    let components = openapi.components.get_or_insert_with(Default::default);
    let bearer = |description: &str| {
        SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).description(Some(description)).build())
    };
    components.add_security_scheme("bearer", bearer("An API key as `Authorization: Bearer <key>`."));
    components.add_security_scheme("admin", bearer("The admin token as `Authorization: Bearer <token>` (admin API only)."));
    components.add_security_scheme("api_key_header", SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::new("X-Affiliate-Api-Key"))));
    components.add_security_scheme("api_key_query", SecurityScheme::ApiKey(ApiKey::Query(ApiKeyValue::new("api_key"))));
}

/// `webhooks::partner` mounts the handlers of `/api/v1/webhooks` under `/v1` too (with the
/// partner's events), authenticated the same way (an API key with `webhooks.manage`): the
/// same operations, under `/v1`, tagged `partner`.
fn partner_webhooks(openapi: &mut utoipa::openapi::OpenApi) {
    let copies: Vec<(String, utoipa::openapi::PathItem)> = openapi
        .paths
        .paths
        .iter()
        .filter_map(|(path, item)| {
            let rest = path.strip_prefix("/api/v1/webhooks")?;
            let mut item = item.clone();
            for (_, op) in methods(&mut item) {
                op.tags = Some(vec!["partner".to_string()]);
                op.operation_id = None;
                if let Some(body) = op.request_body.as_mut() {
                    body.description = Some(
                        "`event`: one of the partner API's events (`supported_events` of `GET /v1/webhooks`), the affiliate API's plus the reward events."
                            .to_string(),
                    );
                }
            }
            Some((format!("/v1/webhooks{rest}"), item))
        })
        .collect();
    openapi.paths.paths.extend(copies);
}

/// `/v1/postbacks`: the parameters come from the query string and, for POST, from a form or
/// JSON body (which wins), so a POST's query parameters are each optional. A GET is
/// documented without a body.
fn postbacks(openapi: &mut utoipa::openapi::OpenApi) {
    let Some(item) = openapi.paths.paths.get_mut("/v1/postbacks") else { return };
    if let Some(get) = item.get.as_mut() {
        get.request_body = None;
    }
    if let Some(post) = item.post.as_mut() {
        for p in post.parameters.iter_mut().flatten() {
            if p.parameter_in == ParameterIn::Query {
                p.required = Required::False;
            }
        }
        let params = || Content::new(Some(Ref::from_schema_name(schemas::PostbackParams::name())));
        post.request_body = Some(
            RequestBodyBuilder::new()
                .description(Some("The parameters as a form (`application/x-www-form-urlencoded`) or a JSON object; any other content type is refused (415)."))
                .content("application/x-www-form-urlencoded", params())
                .content("application/json", params())
                .required(Some(Required::False))
                .build(),
        );
    }
}

/// The success answer's JSON body.
fn success_body(op: &mut Operation, schema: &str) {
    for (status, response) in op.responses.responses.iter_mut() {
        if let (true, RefOr::T(response)) = (status.starts_with('2'), response) {
            if response.content.is_empty() {
                response.content.insert("application/json".to_string(), Content::new(Some(Ref::from_schema_name(schema))));
            }
        }
    }
}

/// The answers any operation can get from what it reads (credential, body), and the failure
/// envelope on every failure.
fn answers(path: &str, op: &mut Operation) {
    let schemes: Vec<String> = op
        .security
        .iter()
        .flatten()
        .filter_map(|s| serde_json::to_value(s).ok())
        .filter_map(|v| v.as_object().map(|o| o.keys().cloned().collect::<Vec<_>>()))
        .flatten()
        .collect();
    let admin = schemes.iter().any(|s| s == "admin");
    let key = schemes.iter().any(|s| s != "admin");
    let mut document = |status: &str, description: &str| {
        let entry = op
            .responses
            .responses
            .entry(status.to_string())
            .or_insert_with(|| RefOr::T(ResponseBuilder::new().description(description).build()));
        if let RefOr::T(response) = entry {
            if response.description.is_empty() {
                response.description = description.to_string();
            }
        }
    };
    if admin {
        document("401", "unauthenticated: Admin token is missing. / Admin token is invalid. (admin_disabled: The admin API is disabled: no admin token is configured.)");
    }
    if key {
        document("401", "unauthenticated: API key is missing. / API key is invalid. / Affiliate account is not active. / Affiliate not resolved for the request.");
        // Every key-authenticated handler but the key check itself asks for a scope.
        if path != "/api/v1/test" {
            document("403", "insufficient_scope: Insufficient scope.");
        }
    }
    // Every call that presents a credential can be refused by a rate limit: the key's
    // bucket, or the address's failed-authentication allowance (admin token included).
    if admin || key {
        document("429", "rate_limited: Rate limit exceeded. / Too many failed authentications; retry later. (with Retry-After)");
    }
    // Every body is read by `crate::extract` (`JsonBody`, `read_json`, `read_decoded_body` +
    // `parse_json`), whose answers these are.
    if op.request_body.is_some() {
        document("400", "invalid_json: the request body is not valid JSON (or could not be read).");
        document("413", "payload_too_large: the request body is larger than the configured limit.");
        document("415", "unsupported_media_type: Requests with a body must set Content-Type: application/json.");
    }
    for (status, response) in op.responses.responses.iter_mut() {
        if let (true, RefOr::T(response)) = (status.starts_with('4') || status.starts_with('5'), response) {
            if response.content.is_empty() {
                response
                    .content
                    .insert("application/json".to_string(), Content::new(Some(Ref::from_schema_name(schemas::ErrorResponse::name()))));
            }
        }
    }
}

/// An operation outside [`operations`] (or a repeated id) gets one made of its method and
/// path, e.g. `post_v1_webhooks`: the document stays valid whatever is added.
fn unique_operation_ids(openapi: &mut utoipa::openapi::OpenApi) {
    let mut seen = std::collections::HashSet::new();
    for (path, item) in openapi.paths.paths.iter_mut() {
        for (method, op) in methods(item) {
            let id = op.operation_id.clone().unwrap_or_default();
            if id.is_empty() || seen.contains(&id) {
                let words: String = path.chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '_' }).collect();
                let made = format!("{method}_{}", words.split('_').filter(|w| !w.is_empty()).collect::<Vec<_>>().join("_"));
                op.operation_id = Some(made.clone());
                seen.insert(made);
            } else {
                seen.insert(id);
            }
        }
    }
}

#[utoipa::path(get, path = "/openapi.json", tag = "operations", responses((status = 200, description = "this document")))]
pub async fn document() -> HttpResponse {
    HttpResponse::Ok().json(ApiDoc::openapi())
}

/// Every documented route: its pattern (in actix's `{name}` syntax, as OpenAPI writes it) and
/// the methods it answers, for the 405 of a known path called with another method.
static ROUTES: std::sync::LazyLock<Vec<(actix_web::dev::ResourceDef, Vec<&'static str>)>> = std::sync::LazyLock::new(|| {
    use utoipa::openapi::path::HttpMethod;
    let doc = ApiDoc::openapi();
    doc.paths
        .paths
        .iter()
        .map(|(path, item)| {
            let mut methods = Vec::new();
            for (method, op) in [
                (HttpMethod::Get, &item.get),
                (HttpMethod::Post, &item.post),
                (HttpMethod::Put, &item.put),
                (HttpMethod::Patch, &item.patch),
                (HttpMethod::Delete, &item.delete),
            ] {
                if op.is_some() {
                    methods.push(match method {
                        HttpMethod::Get => "GET",
                        HttpMethod::Post => "POST",
                        HttpMethod::Put => "PUT",
                        HttpMethod::Patch => "PATCH",
                        _ => "DELETE",
                    });
                }
            }
            (actix_web::dev::ResourceDef::new(path.as_str()), methods)
        })
        .collect()
});

/// The methods a documented route answers at `path`, when there is such a route.
pub fn allowed_methods(path: &str) -> Option<Vec<&'static str>> {
    let mut out: Vec<&'static str> = Vec::new();
    for (def, methods) in ROUTES.iter() {
        if def.is_match(path) {
            for m in methods {
                if !out.contains(m) {
                    out.push(m);
                }
            }
        }
    }
    if out.contains(&"GET") && head_is_safe(path) {
        // HEAD is answered wherever GET is safe (see `head_as_get`).
        out.insert(out.iter().position(|m| *m == "GET").unwrap_or(0) + 1, "HEAD");
    }
    (!out.is_empty()).then_some(out)
}

/// GETs with effects, which a HEAD (a link checker, a crawler) must not trigger: a click
/// redirect records a click, a postback records a conversion.
fn head_is_safe(path: &str) -> bool {
    !(path.starts_with("/r/") || path == "/v1/postbacks")
}

/// Middleware: a HEAD request is served by the route's GET handler where that GET is safe;
/// the answer keeps its status and headers (`Content-Length` included) and the HTTP layer
/// sends no body for HEAD.
pub async fn head_as_get(
    mut req: actix_web::dev::ServiceRequest,
    next: actix_web::middleware::Next<impl actix_web::body::MessageBody + 'static>,
) -> Result<actix_web::dev::ServiceResponse<impl actix_web::body::MessageBody>, actix_web::Error> {
    if req.method() == actix_web::http::Method::HEAD && head_is_safe(req.path()) {
        req.head_mut().method = actix_web::http::Method::GET;
    }
    next.call(req).await
}
