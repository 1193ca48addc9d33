//! The backend test suite: written once against the `Store` trait and run for every
//! backend (`store_suite!` instantiates it per backend).

use chrono::{Duration, Utc};
use hissaback::domain::{KeyKind, Scope};
use hissaback::store::{AffiliateRecord, ApiKeyRecord, RatePlan, Sequence, SharedStore, UserRecord};
use hissaback_actors::ports::KeyLastUsed;

fn affiliate(id: u64) -> AffiliateRecord {
    let now = Utc::now();
    AffiliateRecord {
        id,
        name: format!("Affiliate {id}"),
        email: format!("a{id}@example.test"),
        active: true,
        blog_approved: false,
        user: Some(UserRecord { id: id * 10, name: "U".into(), email: "u@example.test".into() }),
        created_at: now,
        updated_at: now,
        version: 0,
    }
}

fn key(id: u64, affiliate_id: u64, hash: &str) -> ApiKeyRecord {
    ApiKeyRecord {
        id,
        affiliate_id,
        kind: KeyKind::Secret,
        prefix: "hb_sk_abcdefgh".into(),
        hash: hash.into(),
        scopes: vec![Scope::ProductsList, Scope::WebhooksManage],
        allowed_brand_ids: vec![3],
        allowed_offer_ids: vec![],
        rate_limit: RatePlan { per_minute: 300, burst: 1000 },
        created_at: Utc::now(),
        last_used_at: None,
        expires_at: None,
        revoked_at: None,
        rotated_to: None,
        version: 0,
    }
}

pub async fn ids_are_positive_unique_and_per_sequence(store: SharedStore) {
    let mut seen = std::collections::HashSet::new();
    for _ in 0..50 {
        let id = store.next_id(Sequence::Affiliate).await.unwrap();
        assert!(id > 0);
        assert!(seen.insert(id), "id {id} handed out twice");
    }
    let k = store.next_id(Sequence::ApiKey).await.unwrap();
    assert!(k > 0);
}

pub async fn ids_stay_unique_under_concurrency(store: SharedStore) {
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let s = store.clone();
            tokio::spawn(async move {
                let mut v = Vec::new();
                for _ in 0..25 {
                    v.push(s.next_id(Sequence::User).await.unwrap());
                }
                v
            })
        })
        .collect();
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    let n = all.len();
    all.sort();
    all.dedup();
    assert_eq!(all.len(), n);
}

pub async fn affiliates_round_trip_and_update(store: SharedStore) {
    let id = store.next_id(Sequence::Affiliate).await.unwrap();
    assert!(store.get_affiliate(id).await.unwrap().is_none());
    let mut a = affiliate(id);
    store.put_affiliate(&a).await.unwrap();
    let got = store.get_affiliate(id).await.unwrap().unwrap();
    assert_eq!(got.name, a.name);
    assert_eq!(got.user, a.user);
    a.active = false;
    a.user = None;
    store.put_affiliate(&a).await.unwrap();
    let got = store.get_affiliate(id).await.unwrap().unwrap();
    assert!(!got.active);
    assert!(got.user.is_none());
}

pub async fn keys_are_found_by_hash_and_id_and_listed_per_affiliate(store: SharedStore) {
    let a = store.next_id(Sequence::Affiliate).await.unwrap();
    let other = store.next_id(Sequence::Affiliate).await.unwrap();
    let k1 = key(store.next_id(Sequence::ApiKey).await.unwrap(), a, &format!("hash-{a}-1"));
    let k2 = key(store.next_id(Sequence::ApiKey).await.unwrap(), a, &format!("hash-{a}-2"));
    let k3 = key(store.next_id(Sequence::ApiKey).await.unwrap(), other, &format!("hash-{other}-1"));
    for k in [&k1, &k2, &k3] {
        store.put_key(k).await.unwrap();
    }
    let by_hash = store.key_by_hash(&k2.hash).await.unwrap().unwrap();
    assert_eq!(by_hash.id, k2.id);
    assert_eq!(by_hash.scopes, k2.scopes);
    assert_eq!(by_hash.allowed_brand_ids, vec![3]);
    assert_eq!(store.key_by_id(k1.id).await.unwrap().unwrap().hash, k1.hash);
    assert!(store.key_by_hash("no-such-hash").await.unwrap().is_none());
    let listed: Vec<u64> = store.keys_of_affiliate(a).await.unwrap().iter().map(|k| k.id).collect();
    assert_eq!(listed, vec![k1.id, k2.id]);
    assert!(store.keys_of_affiliate(other + 1000).await.unwrap().is_empty());
}

pub async fn key_updates_replace_the_row(store: SharedStore) {
    let a = store.next_id(Sequence::Affiliate).await.unwrap();
    let mut k = key(store.next_id(Sequence::ApiKey).await.unwrap(), a, &format!("hash-upd-{a}"));
    store.put_key(&k).await.unwrap();
    let now = Utc::now();
    k.revoked_at = Some(now);
    k.expires_at = Some(now + Duration::hours(1));
    k.rotated_to = Some(99);
    store.put_key(&k).await.unwrap();
    let got = store.key_by_hash(&k.hash).await.unwrap().unwrap();
    assert!(got.revoked_at.is_some());
    assert_eq!(got.rotated_to, Some(99));
    assert!(!got.is_usable_at(Utc::now()));
}

pub async fn last_used_is_recorded_and_never_moves_back(store: SharedStore) {
    let a = store.next_id(Sequence::Affiliate).await.unwrap();
    let k = key(store.next_id(Sequence::ApiKey).await.unwrap(), a, &format!("hash-lu-{a}"));
    store.put_key(&k).await.unwrap();
    let t1 = Utc::now();
    let t0 = t1 - Duration::minutes(5);
    store.record_last_used(&[KeyLastUsed { key_id: k.id, at: t1 }]).await.unwrap();
    store.record_last_used(&[KeyLastUsed { key_id: k.id, at: t0 }]).await.unwrap();
    let got = store.key_by_id(k.id).await.unwrap().unwrap().last_used_at.unwrap();
    assert!((got - t1).num_milliseconds().abs() < 1, "kept {got}, expected {t1}");
    // A later whole-row write (e.g. a revocation) keeps last_used_at.
    let mut revoked = k.clone();
    revoked.revoked_at = Some(Utc::now());
    store.put_key(&revoked).await.unwrap();
    assert!(store.key_by_hash(&k.hash).await.unwrap().unwrap().last_used_at.is_some());
    // Unknown keys in a batch are ignored, not errors.
    store.record_last_used(&[KeyLastUsed { key_id: 987_654_321, at: t1 }]).await.unwrap();
}

pub async fn categories_round_trip_including_soft_deletes(store: SharedStore) {
    let before = store.categories().await.unwrap().len();
    let id = store.next_id(Sequence::Category).await.unwrap();
    let now = Utc::now();
    let mut c = hissaback::store::CategoryRecord {
        id,
        name: "Design".into(),
        slug: Some("design".into()),
        active: true,
        created_at: now,
        updated_at: now,
        deleted_at: None,
        version: 0,
    };
    store.put_category(&c).await.unwrap();
    assert_eq!(store.get_category(id).await.unwrap().unwrap().slug.as_deref(), Some("design"));
    c.deleted_at = Some(now);
    store.put_category(&c).await.unwrap();
    let all = store.categories().await.unwrap();
    assert_eq!(all.len(), before + 1);
    assert!(all.iter().find(|x| x.id == id).unwrap().deleted_at.is_some());
    assert!(store.get_category(id + 10_000).await.unwrap().is_none());
}

pub async fn unique_claims_belong_to_one_owner(store: SharedStore) {
    let value = format!("slug-{}", store.next_id(Sequence::Blog).await.unwrap());
    assert!(store.claim_unique("blog_slug", &value, 1).await.unwrap());
    assert!(store.claim_unique("blog_slug", &value, 1).await.unwrap(), "the owner may claim again");
    assert!(!store.claim_unique("blog_slug", &value, 2).await.unwrap(), "another owner may not");
    assert!(store.claim_unique("profile_identifier", &value, 2).await.unwrap(), "namespaces are separate");
}

pub async fn products_and_promotions_round_trip(store: SharedStore) {
    use hissaback::store::{CouponRecord, CouponTier, ProductRecord, PromotionRecord, TeacherRecord};
    use rust_decimal::Decimal;
    let now = Utc::now();
    let mut ids = Vec::new();
    for _ in 0..20 {
        let id = store.next_id(Sequence::Product).await.unwrap();
        ids.push(id);
        let p = ProductRecord {
            id,
            title: format!("Course {id}"),
            slug: format!("course-{id}"),
            description: "d".into(),
            image: None,
            price_usd: Decimal::new(19999, 2),
            model_type: "App\\Models\\Course".into(),
            category_slug: Some("design".into()),
            published: true,
            introduction_video_url: None,
            bundle_product_ids: vec![],
            teachers: vec![TeacherRecord { id: 1, name: "T".into() }],
            coupons: vec![CouponRecord { tier: CouponTier::Low, code: "C".into(), percent_off: Decimal::new(125, 1), expires_at: None }],
            created_at: now,
            updated_at: now,
            version: 0,
        };
        store.put_product(&p).await.unwrap();
    }
    let got = store.get_product(ids[3]).await.unwrap().unwrap();
    assert_eq!(got.price_usd, Decimal::new(19999, 2));
    assert_eq!(got.coupons[0].percent_off, Decimal::new(125, 1));
    let all = store.products().await.unwrap();
    for id in &ids {
        assert!(all.iter().any(|p| p.id == *id), "product {id} listed");
    }
    assert!(store.get_product(ids[19] + 100_000).await.unwrap().is_none());

    let promo = PromotionRecord {
        id: store.next_id(Sequence::Promotion).await.unwrap(),
        title: "Spring".into(),
        text: "25% off".into(),
        promotion_type: "Percentage Promotion".into(),
        percentage_off: Decimal::new(25, 0),
        ends_at: Some(now),
        bundle_ids: vec![ids[0]],
        created_at: now,
    };
    store.put_promotion(&promo).await.unwrap();
    assert!(store.promotions().await.unwrap().contains(&promo));
}

pub async fn blogs_and_profiles_are_kept_per_affiliate(store: SharedStore) {
    use hissaback::store::{BlogProfileRecord, BlogRecord};
    let now = Utc::now();
    let a = store.next_id(Sequence::Affiliate).await.unwrap();
    let b = store.next_id(Sequence::Affiliate).await.unwrap();
    let profile = BlogProfileRecord {
        id: store.next_id(Sequence::BlogProfile).await.unwrap(),
        affiliate_id: a,
        name: "P".into(),
        identifier: format!("p-{a}"),
        created_at: now,
    };
    store.put_blog_profile(&profile).await.unwrap();
    assert_eq!(store.blog_profiles(a).await.unwrap(), vec![profile.clone()]);
    assert!(store.blog_profiles(b).await.unwrap().is_empty());
    let mut blog = BlogRecord {
        id: store.next_id(Sequence::Blog).await.unwrap(),
        affiliate_id: a,
        author_user_id: 5,
        profile_id: profile.id,
        title: "T".into(),
        slug: format!("t-{a}"),
        content: "<p>x</p>".into(),
        category_slug: "design".into(),
        published: false,
        unpublished_reason: None,
        created_at: now,
        updated_at: now,
    };
    store.put_blog(&blog).await.unwrap();
    assert_eq!(store.get_blog(a, blog.id).await.unwrap(), Some(blog.clone()));
    assert_eq!(store.get_blog(b, blog.id).await.unwrap(), None, "another affiliate's blog is not found");
    blog.published = true;
    store.put_blog(&blog).await.unwrap();
    assert!(store.get_blog_by_id(blog.id).await.unwrap().unwrap().published);
    assert!(store.get_blog_by_id(blog.id + 100_000).await.unwrap().is_none());
}

pub async fn webhooks_are_kept_per_affiliate_and_indexed_by_event(store: SharedStore) {
    use hissaback::store::WebhookRecord;
    let now = Utc::now();
    let a = store.next_id(Sequence::Affiliate).await.unwrap();
    let b = store.next_id(Sequence::Affiliate).await.unwrap();
    let event = format!("suite.event.{a}");
    let mk = |id: u64, affiliate_id: u64| WebhookRecord {
        id,
        affiliate_id,
        event: event.clone(),
        url: format!("https://hooks.example.com/{id}"),
        secret: "s".repeat(64),
        created_at: now,
        updated_at: now,
        failing_since: None,
        disabled_at: None,
        disabled_reason: None,
    };
    let w1 = mk(store.next_id(Sequence::Webhook).await.unwrap(), a);
    let w2 = mk(store.next_id(Sequence::Webhook).await.unwrap(), b);
    store.put_webhook(&w1).await.unwrap();
    store.put_webhook(&w2).await.unwrap();
    assert_eq!(store.get_webhook(a, w1.id).await.unwrap(), Some(w1.clone()));
    assert_eq!(store.get_webhook(b, w1.id).await.unwrap(), None, "another affiliate's webhook is not found");
    assert_eq!(store.webhooks_of(a).await.unwrap(), vec![w1.clone()]);
    let ids: Vec<u64> = store.webhooks_for_event(&event).await.unwrap().iter().map(|w| w.id).collect();
    assert_eq!(ids, vec![w1.id, w2.id]);
    let mut disabled = w1.clone();
    disabled.disabled_at = Some(now);
    store.put_webhook(&disabled).await.unwrap();
    assert!(store.webhooks_for_event(&event).await.unwrap()[0].disabled_at.is_some(), "the index follows updates");
    store.delete_webhook(&w1).await.unwrap();
    assert_eq!(store.get_webhook(a, w1.id).await.unwrap(), None);
    let ids: Vec<u64> = store.webhooks_for_event(&event).await.unwrap().iter().map(|w| w.id).collect();
    assert_eq!(ids, vec![w2.id]);
}

pub async fn deliveries_are_listed_newest_first_and_pending_ones_indexed(store: SharedStore) {
    use hissaback::store::{DeliveryAttempt, DeliveryRecord, DeliveryState};
    let now = Utc::now();
    let webhook_id = store.next_id(Sequence::Webhook).await.unwrap();
    let mk = |n: u64| DeliveryRecord {
        id: format!("msg_{:013}_{n:04}", 1_700_000_000_000u64 + n),
        webhook_id,
        affiliate_id: 1,
        event: "product.updated".into(),
        payload: "{}".into(),
        state: DeliveryState::Pending,
        attempts: vec![],
        next_attempt_at: Some(now),
        created_at: now,
        updated_at: now,
        manual: false,
        owner: Some("suite".into()),
    };
    let (d1, d2, d3) = (mk(1), mk(2), mk(3));
    for d in [&d1, &d2, &d3] {
        store.put_delivery(d).await.unwrap();
    }
    let listed: Vec<String> = store.deliveries_of(webhook_id, 2).await.unwrap().into_iter().map(|d| d.id).collect();
    assert_eq!(listed, vec![d3.id.clone(), d2.id.clone()]);
    let mut done = d2.clone();
    done.state = DeliveryState::Succeeded;
    done.attempts.push(DeliveryAttempt { at: now, status_code: Some(200), latency_ms: 12, error: None });
    store.put_delivery(&done).await.unwrap();
    assert_eq!(store.get_delivery(webhook_id, &d2.id).await.unwrap(), Some(done));
    let pending: Vec<String> =
        store.pending_deliveries().await.unwrap().into_iter().filter(|d| d.webhook_id == webhook_id).map(|d| d.id).collect();
    assert_eq!(pending.len(), 2);
    assert!(pending.contains(&d1.id) && pending.contains(&d3.id));
    assert!(store.get_delivery(webhook_id, "msg_nope").await.unwrap().is_none());
}

/// The delivery log's retention: the embedded store's sweep deletes the finished deliveries
/// last attempted before the bound (never a pending one, never a recent one); ScyllaDB keeps
/// them under a TTL instead (see `scylla_deliveries_expire_by_their_ttl`) and its sweep
/// deletes nothing.
pub async fn finished_deliveries_past_the_retention_are_swept(store: SharedStore, sweeps: bool) {
    use hissaback::store::{DeliveryRecord, DeliveryState};
    let now = Utc::now();
    let old = now - Duration::days(40);
    let webhook_id = store.next_id(Sequence::Webhook).await.unwrap();
    let mk = |n: u64, at: chrono::DateTime<Utc>, updated: chrono::DateTime<Utc>, state: DeliveryState| DeliveryRecord {
        id: format!("msg_{:013}_{n:04}", at.timestamp_millis()),
        webhook_id,
        affiliate_id: 1,
        event: "reward.paid".into(),
        payload: "{}".into(),
        state,
        attempts: vec![],
        next_attempt_at: None,
        created_at: at,
        updated_at: updated,
        manual: false,
        owner: Some("suite".into()),
    };
    let old_done = mk(1, old, old, DeliveryState::Succeeded);
    let old_failed = mk(2, old, old + Duration::hours(30), DeliveryState::Failed);
    let old_pending = mk(3, old, old, DeliveryState::Pending);
    let old_but_redelivered = mk(4, old, now - Duration::days(1), DeliveryState::Succeeded);
    let recent = mk(5, now, now, DeliveryState::Succeeded);
    let all = [&old_done, &old_failed, &old_pending, &old_but_redelivered, &recent];
    for d in all {
        store.put_delivery(d).await.unwrap();
    }
    let bound = now - Duration::days(30);
    let mut deleted = 0;
    loop {
        let n = store.expire_deliveries(bound, 1).await.unwrap();
        deleted += n;
        if n == 0 {
            break;
        }
    }
    let left: Vec<String> = store.deliveries_of(webhook_id, 10).await.unwrap().into_iter().map(|d| d.id).collect();
    if sweeps {
        assert_eq!(deleted, 2, "the two finished deliveries last attempted 40 and 39 days ago");
        assert_eq!(left, vec![recent.id.clone(), old_but_redelivered.id.clone(), old_pending.id.clone()]);
        assert_eq!(store.expire_deliveries(bound, 100).await.unwrap(), 0, "nothing left to sweep");
    } else {
        assert_eq!(deleted, 0);
        assert_eq!(left.len(), all.len());
    }
    let pending: Vec<String> =
        store.pending_deliveries().await.unwrap().into_iter().filter(|d| d.webhook_id == webhook_id).map(|d| d.id).collect();
    assert_eq!(pending, vec![old_pending.id.clone()], "a pending delivery is never swept");
}

/// Concurrent token rotations of one network: whatever order they land in, exactly the token
/// the network holds (by id) resolves; the original and every superseded token do not.
pub async fn concurrent_network_token_rotations_leave_one_working_token(store: SharedStore) {
    use hissaback::store::NetworkRecord;
    let id = store.next_id(Sequence::Network).await.unwrap();
    let original = NetworkRecord { id, name: "N".into(), postback_token: format!("tok-{id}-orig"), created_at: Utc::now() };
    store.put_network(&original).await.unwrap();
    let tasks: Vec<_> = (0..8)
        .map(|n| {
            let store = store.clone();
            tokio::spawn(async move {
                let current = store.get_network(id).await.unwrap().unwrap();
                let token = format!("tok-{id}-{n}");
                store.put_network(&NetworkRecord { postback_token: token.clone(), ..current }).await.unwrap();
                token
            })
        })
        .collect();
    let mut tokens = vec![original.postback_token.clone()];
    for t in tasks {
        tokens.push(t.await.unwrap());
    }
    let current = store.get_network(id).await.unwrap().unwrap().postback_token;
    assert!(tokens.contains(&current));
    for t in &tokens {
        let resolved = store.network_by_token(t).await.unwrap();
        if *t == current {
            assert_eq!(resolved.map(|n| n.id), Some(id), "the network's own token resolves");
        } else {
            assert!(resolved.is_none(), "superseded token {t} still resolves (current {current})");
        }
    }
}

pub async fn partner_records_round_trip(store: SharedStore) {
    use hissaback::store::{BrandRecord, CampaignRecord, ClickRecord, LinkRecord, NetworkRecord, OfferRecord};
    use rust_decimal::Decimal;
    let now = Utc::now();
    let brand = BrandRecord { id: store.next_id(Sequence::Brand).await.unwrap(), name: "B".into(), created_at: now };
    store.put_brand(&brand).await.unwrap();
    assert!(store.brands().await.unwrap().contains(&brand));
    let offer = OfferRecord {
        id: store.next_id(Sequence::Offer).await.unwrap(),
        brand_id: brand.id,
        name: "O".into(),
        category: "finance".into(),
        base_commission: Decimal::new(125, 1),
        default_share_pct: Decimal::new(50, 0),
        tracking_url: "https://net.example/c?click={click_id}".into(),
        currency: "USD".into(),
        external_id: None,
        created_at: now,
        updated_at: now,
    };
    store.put_offer(&offer).await.unwrap();
    assert!(store.offers().await.unwrap().contains(&offer));
    let token = format!("tok-{}", offer.id);
    let network = NetworkRecord { id: store.next_id(Sequence::Network).await.unwrap(), name: "N".into(), postback_token: token.clone(), created_at: now };
    store.put_network(&network).await.unwrap();
    assert_eq!(store.network_by_token(&token).await.unwrap(), Some(network));
    assert_eq!(store.network_by_token("nope").await.unwrap(), None);
    let a = store.next_id(Sequence::Affiliate).await.unwrap();
    let campaign = CampaignRecord {
        id: store.next_id(Sequence::Campaign).await.unwrap(),
        affiliate_id: a,
        offer_id: offer.id,
        tenant_id: "t".into(),
        share_pct: Some(Decimal::new(40, 0)),
        flat_reward: None,
        created_at: now,
    };
    store.put_campaign(&campaign).await.unwrap();
    assert_eq!(store.get_campaign(a, campaign.id).await.unwrap(), Some(campaign.clone()));
    assert_eq!(store.get_campaign(a + 1, campaign.id).await.unwrap(), None, "another affiliate's campaign is not found");
    let code = format!("code{}", campaign.id);
    let link = LinkRecord { code: code.clone(), affiliate_id: a, campaign_id: campaign.id, offer_id: offer.id, tenant_id: "t".into(), created_at: now };
    store.put_link(&link).await.unwrap();
    assert_eq!(store.get_link(&code).await.unwrap(), Some(link));
    let click = ClickRecord {
        click_id: format!("clk{}", campaign.id),
        code,
        affiliate_id: a,
        campaign_id: campaign.id,
        offer_id: offer.id,
        tenant_id: "t".into(),
        user_id: Some("u-1".into()),
        ip: Some("203.0.113.9".into()),
        user_agent: Some("ua".into()),
        at: now,
    };
    store.put_click(&click).await.unwrap();
    assert_eq!(store.get_click(&click.click_id).await.unwrap(), Some(click));
    assert!(store.get_link("missing").await.unwrap().is_none());
}

pub async fn settings_round_trip(store: SharedStore) {
    assert!(store.get_setting("suite.x").await.unwrap().is_none());
    store.put_setting("suite.x", "1").await.unwrap();
    store.put_setting("suite.x", "2").await.unwrap();
    assert_eq!(store.get_setting("suite.x").await.unwrap().as_deref(), Some("2"));
    store.ping().await.unwrap();
}

pub async fn usage_counters_add_up_per_cell_and_are_read_by_range(store: SharedStore) {
    use hissaback::store::{UsageCell, UsageCounts};
    let a = store.next_id(Sequence::Affiliate).await.unwrap();
    let minute = |m: i64| chrono::DateTime::from_timestamp(1_795_000_000 / 60 * 60 + m * 60, 0).unwrap();
    let cell = |m: i64, key_id: u64, class: &str| UsageCell {
        affiliate_id: a,
        period: minute(m),
        key_id,
        route: "/api/v1/products".into(),
        status_class: class.into(),
    };
    let one = UsageCounts { requests: 1, rate_limited: 0 };
    store.add_usage(&[(cell(0, 1, "2xx"), one), (cell(0, 1, "4xx"), UsageCounts { requests: 3, rate_limited: 2 })]).await.unwrap();
    store.add_usage(&[(cell(0, 1, "2xx"), UsageCounts { requests: 4, rate_limited: 0 }), (cell(1, 2, "2xx"), one)]).await.unwrap();
    // A minute past midnight is in the next day's partition on ScyllaDB.
    let after_midnight = (minute(0).date_naive().succ_opt().unwrap().and_hms_opt(0, 1, 0).unwrap().and_utc() - minute(0)).num_minutes();
    store.add_usage(&[(cell(after_midnight, 2, "5xx"), one)]).await.unwrap();
    // Another affiliate's counters are not read.
    store
        .add_usage(&[(UsageCell { affiliate_id: a + 100_000, ..cell(0, 9, "2xx") }, one)])
        .await
        .unwrap();
    use hissaback::store::UsageResolution::{Day, Hour, Minute};
    let mut all = store.usage_of(a, Minute, minute(0), minute(after_midnight + 1)).await.unwrap();
    all.sort_by(|x, y| x.0.cmp(&y.0));
    assert_eq!(
        all,
        vec![
            (cell(0, 1, "2xx"), UsageCounts { requests: 5, rate_limited: 0 }),
            (cell(0, 1, "4xx"), UsageCounts { requests: 3, rate_limited: 2 }),
            (cell(1, 2, "2xx"), one),
            (cell(after_midnight, 2, "5xx"), one),
        ]
    );
    let first_minute = store.usage_of(a, Minute, minute(0), minute(1)).await.unwrap();
    assert_eq!(first_minute.len(), 2, "the end of the range is exclusive");
    assert!(store.usage_of(a, Minute, minute(-10), minute(0)).await.unwrap().is_empty());
    // The same requests, rolled up per hour and per day.
    for (resolution, second) in [(Hour, Hour.floor(minute(after_midnight))), (Day, Day.floor(minute(after_midnight)))] {
        let start = resolution.floor(minute(0));
        let mut rolled = store.usage_of(a, resolution, start, second + resolution.step()).await.unwrap();
        rolled.sort_by(|x, y| x.0.cmp(&y.0));
        let at = |period, key_id, class: &str| UsageCell { period, ..cell(0, key_id, class) };
        assert_eq!(
            rolled,
            vec![
                (at(start, 1, "2xx"), UsageCounts { requests: 5, rate_limited: 0 }),
                (at(start, 1, "4xx"), UsageCounts { requests: 3, rate_limited: 2 }),
                (at(start, 2, "2xx"), one),
                (at(second, 2, "5xx"), one),
            ],
            "{resolution:?}"
        );
    }
}

pub async fn click_counters_add_up_per_campaign_and_day(store: SharedStore) {
    use hissaback::store::ClickCell;
    let a = store.next_id(Sequence::Affiliate).await.unwrap();
    let day = chrono::NaiveDate::from_ymd_opt(2026, 11, 23).unwrap();
    let cell = |campaign_id: u64, day: chrono::NaiveDate| ClickCell { affiliate_id: a, campaign_id, day };
    store.add_clicks(&[(cell(5, day), 2), (cell(6, day), 1)]).await.unwrap();
    store.add_clicks(&[(cell(5, day), 3), (cell(5, day.succ_opt().unwrap()), 1)]).await.unwrap();
    let mut clicks = store.clicks_of(a).await.unwrap();
    clicks.sort();
    assert_eq!(clicks, vec![(cell(5, day), 5), (cell(5, day.succ_opt().unwrap()), 1), (cell(6, day), 1)]);
    assert!(store.clicks_of(a + 100_000).await.unwrap().is_empty());
}

fn audit_entry(affiliate_id: u64, at: chrono::DateTime<Utc>, n: u32) -> hissaback::store::AuditEntry {
    hissaback::store::AuditEntry {
        at,
        affiliate_id,
        key_id: Some(u64::from(n)),
        network_id: None,
        actor: hissaback::store::AuditActor::Key,
        method: "GET".into(),
        route: "/api/v1/products".into(),
        path: "/api/v1/products".into(),
        status: 200,
        latency_us: 1234,
        client_ip: Some("203.0.113.7".into()),
        request_id: format!("req-{n}"),
    }
}

pub async fn audit_rows_are_kept_per_affiliate_and_day_newest_first(store: SharedStore) {
    let a = store.next_id(Sequence::Affiliate).await.unwrap();
    let now = Utc::now();
    let day = now.date_naive();
    let at = |ms: i64| day.and_hms_opt(12, 0, 0).unwrap().and_utc() + Duration::milliseconds(ms);
    let rows = vec![audit_entry(a, at(0), 1), audit_entry(a, at(5), 2), audit_entry(a, at(5), 3), audit_entry(a + 100_000, at(1), 4)];
    store.append_audit(&rows, std::time::Duration::from_secs(3600)).await.unwrap();
    let yesterday = audit_entry(a, at(-86_400_000), 5);
    store.append_audit(&[yesterday.clone()], std::time::Duration::from_secs(3600 * 48)).await.unwrap();
    let got = store.audit_of(a, day, 10).await.unwrap();
    let ids: Vec<_> = got.iter().map(|e| e.request_id.as_str()).collect();
    assert_eq!(ids.len(), 3);
    assert_eq!(ids[2], "req-1", "newest first");
    assert_eq!(got[2], rows[0], "every field round-trips");
    assert_eq!(store.audit_of(a, day, 2).await.unwrap().len(), 2, "the limit applies");
    assert_eq!(store.audit_of(a, day.pred_opt().unwrap(), 10).await.unwrap(), vec![yesterday]);
}

pub async fn audit_rows_expire_after_their_retention(store: SharedStore) {
    let a = store.next_id(Sequence::Affiliate).await.unwrap();
    let now = Utc::now();
    store.append_audit(&[audit_entry(a, now, 1)], std::time::Duration::from_secs(1)).await.unwrap();
    store.append_audit(&[audit_entry(a, now, 2)], std::time::Duration::from_secs(3600)).await.unwrap();
    assert_eq!(store.audit_of(a, now.date_naive(), 10).await.unwrap().len(), 2);
    tokio::time::sleep(std::time::Duration::from_millis(2100)).await;
    let left: Vec<_> = store.audit_of(a, now.date_naive(), 10).await.unwrap().into_iter().map(|e| e.request_id).collect();
    assert_eq!(left, vec!["req-2"]);
}

pub async fn campaigns_and_conversions_are_listed_per_affiliate(store: SharedStore) {
    use hissaback::store::{CampaignRecord, ConversionRecord, RewardStatus};
    let a = store.next_id(Sequence::Affiliate).await.unwrap();
    let now = Utc::now();
    let campaign = |id: u64, affiliate_id: u64| CampaignRecord {
        id,
        affiliate_id,
        offer_id: 1,
        tenant_id: "t".into(),
        share_pct: None,
        flat_reward: Some(rust_decimal::Decimal::ONE),
        created_at: now,
    };
    let (c1, c2) = (store.next_id(Sequence::Campaign).await.unwrap(), store.next_id(Sequence::Campaign).await.unwrap());
    for c in [campaign(c2, a), campaign(c1, a), campaign(c1 + 50_000, a + 100_000)] {
        store.put_campaign(&c).await.unwrap();
    }
    let listed: Vec<_> = store.campaigns_of(a).await.unwrap().into_iter().map(|c| c.id).collect();
    assert_eq!(listed, vec![c1, c2]);
    let conversion = |id: u64, campaign_id: u64, status: RewardStatus| ConversionRecord {
        id,
        network_id: 1,
        txn_id: format!("t{id}"),
        click_id: format!("c{id}"),
        campaign_id,
        affiliate_id: a,
        tenant_id: "t".into(),
        offer_id: 1,
        user_id: "u".into(),
        currency: "USD".into(),
        payout_minor: 1000,
        reward_minor: 400,
        status,
        goal: None,
        created_at: now,
        updated_at: now,
        paid_at: None,
        split: None,
        held: None,
        recovered_minor: 0,
        clawback_minor: 0,
        payment: None,
        applied: None,
        outbox: vec![],
    };
    let base = a * 1_000_000;
    store.put_conversion(&conversion(base + 2, c2, RewardStatus::Pending)).await.unwrap();
    store.put_conversion(&conversion(base + 1, c1, RewardStatus::Pending)).await.unwrap();
    // A status change replaces the listed row rather than adding one.
    store.put_conversion(&conversion(base + 1, c1, RewardStatus::Queued)).await.unwrap();
    let got = store.conversions_of_affiliate(a).await.unwrap();
    let seen: Vec<_> = got.iter().map(|c| (c.id, c.campaign_id, c.status)).collect();
    assert_eq!(seen, vec![(base + 1, c1, RewardStatus::Queued), (base + 2, c2, RewardStatus::Pending)]);
    assert!(store.conversions_of_affiliate(a + 100_000).await.unwrap().is_empty());
    // The queued index follows the status: queued in, paid out.
    let queued = |store: SharedStore| async move {
        store.queued_conversions().await.unwrap().into_iter().filter(|c| c.affiliate_id == a).map(|c| c.id).collect::<Vec<_>>()
    };
    assert_eq!(queued(store.clone()).await, vec![base + 1]);
    store.put_conversion(&conversion(base + 2, c2, RewardStatus::Queued)).await.unwrap();
    assert_eq!(queued(store.clone()).await, vec![base + 1, base + 2]);
    store.put_conversion(&conversion(base + 1, c1, RewardStatus::Paid)).await.unwrap();
    store.put_conversion(&conversion(base + 2, c2, RewardStatus::Reversed)).await.unwrap();
    assert!(queued(store.clone()).await.is_empty());

    // The ledger writer's batch calls: several conversions read at once (unknown ids left
    // out), legs and conversions written together, the conversion's new fields kept.
    use hissaback::store::{OutboxItem, PaymentRecord, PostingRecord};
    let mut paying = conversion(base + 3, c1, RewardStatus::Paying);
    paying.split = Some(hissaback_actors::ledger::Split::Share(rust_decimal::Decimal::new(40, 0)));
    paying.held = Some(RewardStatus::Reversed);
    paying.payment = Some(PaymentRecord { request_id: "r1".into(), requested_at: now, outcome: None });
    paying.applied = Some((2, 41));
    paying.outbox = vec![OutboxItem::Payout { request_id: "r1".into() }];
    let leg = |conversion_id: u64, leg: &str, amount_minor: i64| PostingRecord {
        conversion_id,
        leg: leg.into(),
        account: leg.rsplit(':').next().unwrap().into(),
        amount_minor,
        currency: "USD".into(),
        at: now,
    };
    let legs = vec![leg(base + 3, "approve:network_receivable", 1000), leg(base + 3, "approve:user_reward_payable", -400), leg(base + 3, "approve:platform_revenue", -600)];
    store.write_ledger_batch(&legs, &[paying.clone(), conversion(base + 4, c2, RewardStatus::Pending)]).await.unwrap();
    // Written twice (a redelivered batch): the same rows.
    store.write_ledger_batch(&legs, &[paying.clone()]).await.unwrap();
    let mut got = store.get_conversions(&[base + 4, base + 3, base + 999]).await.unwrap();
    got.sort_by_key(|c| c.id);
    assert_eq!(got.iter().map(|c| c.id).collect::<Vec<_>>(), vec![base + 3, base + 4]);
    assert_eq!(got[0], paying);
    let mut posted = store.postings_of(base + 3).await.unwrap();
    posted.sort_by(|x, y| x.leg.cmp(&y.leg));
    assert_eq!(posted.iter().map(|p| p.amount_minor).sum::<i64>(), 0);
    assert_eq!(posted.len(), 3);
    assert!(queued(store.clone()).await.is_empty(), "paying is not queued");
}

/// `replace_*` writes only at the version read: a stale copy is refused, a fresh one lands at
/// the next version, and concurrent read-change-replace loops lose no change.
pub async fn replaces_are_conditional_on_the_version_read(store: SharedStore) {
    use hissaback::store::{CategoryRecord, ProductRecord};
    let now = Utc::now();
    // Affiliates.
    let a = affiliate(store.next_id(Sequence::Affiliate).await.unwrap());
    assert!(!store.replace_affiliate(&a).await.unwrap(), "nothing to replace yet");
    store.put_affiliate(&a).await.unwrap();
    let read = store.get_affiliate(a.id).await.unwrap().unwrap();
    assert_eq!(read.version, 0);
    assert!(store.replace_affiliate(&AffiliateRecord { name: "First".into(), ..read.clone() }).await.unwrap());
    assert!(!store.replace_affiliate(&AffiliateRecord { email: "stale@example.test".into(), ..read.clone() }).await.unwrap(), "a stale copy");
    let got = store.get_affiliate(a.id).await.unwrap().unwrap();
    assert_eq!((got.version, got.name.as_str(), got.email.as_str()), (1, "First", a.email.as_str()));
    // Keys, keeping last_used_at.
    let k = key(store.next_id(Sequence::ApiKey).await.unwrap(), a.id, &format!("hash-cas-{}", a.id));
    store.put_key(&k).await.unwrap();
    store.record_last_used(&[KeyLastUsed { key_id: k.id, at: now }]).await.unwrap();
    let read = store.key_by_id(k.id).await.unwrap().unwrap();
    assert!(store.replace_key(&ApiKeyRecord { revoked_at: Some(now), ..read.clone() }).await.unwrap());
    assert!(!store.replace_key(&ApiKeyRecord { rotated_to: Some(9), ..read.clone() }).await.unwrap(), "a stale copy");
    let got = store.key_by_hash(&k.hash).await.unwrap().unwrap();
    assert_eq!((got.version, got.rotated_to), (1, None));
    assert!(got.revoked_at.is_some() && got.last_used_at.is_some(), "{got:?}");
    // Categories and products.
    let c = CategoryRecord { id: store.next_id(Sequence::Category).await.unwrap(), name: "C".into(), slug: None, active: true, created_at: now, updated_at: now, deleted_at: None, version: 0 };
    store.put_category(&c).await.unwrap();
    assert!(store.replace_category(&CategoryRecord { deleted_at: Some(now), ..c.clone() }).await.unwrap());
    assert!(!store.replace_category(&CategoryRecord { name: "Back".into(), ..c.clone() }).await.unwrap(), "a stale copy");
    let got = store.get_category(c.id).await.unwrap().unwrap();
    assert_eq!((got.version, got.name.as_str(), got.deleted_at.is_some()), (1, "C", true));
    let p = ProductRecord {
        id: store.next_id(Sequence::Product).await.unwrap(),
        title: "P".into(),
        slug: "p".into(),
        description: String::new(),
        image: None,
        price_usd: rust_decimal::Decimal::new(100, 0),
        model_type: "App\\Models\\Course".into(),
        category_slug: None,
        published: false,
        introduction_video_url: None,
        bundle_product_ids: vec![],
        teachers: vec![],
        coupons: vec![],
        created_at: now,
        updated_at: now,
        version: 0,
    };
    store.put_product(&p).await.unwrap();

    // Concurrent edits of one product, each appending its own teacher: read, change, replace,
    // and again on a conflict. Every one lands.
    let tasks: Vec<_> = (1..=12u64)
        .map(|n| {
            let store = store.clone();
            let id = p.id;
            tokio::spawn(async move {
                for attempt in 0.. {
                    assert!(attempt < 500, "edit {n} kept losing");
                    let mut read = store.get_product(id).await.unwrap().unwrap();
                    read.teachers.push(hissaback::store::TeacherRecord { id: n, name: format!("T{n}") });
                    if store.replace_product(&read).await.unwrap() {
                        return;
                    }
                    tokio::time::sleep(std::time::Duration::from_millis(rand_ms(n, attempt))).await;
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    let got = store.get_product(p.id).await.unwrap().unwrap();
    let mut teachers: Vec<u64> = got.teachers.iter().map(|t| t.id).collect();
    teachers.sort();
    assert_eq!(teachers, (1..=12).collect::<Vec<_>>(), "a concurrent edit was lost");
    assert_eq!(got.version, 12);
}

/// A small spread-out pause for retries (no rand dependency in the tests).
fn rand_ms(n: u64, attempt: u64) -> u64 {
    1 + (n * 7 + attempt * 13) % 5
}

/// Instantiates every suite test for one backend; `$open` is an async expression giving
/// `(SharedStore, guard)`, the guard keeping the backend's resources alive.
macro_rules! store_suite {
    ($backend:ident, $open:expr) => {
        mod $backend {
            use super::*;
            store_suite!(@tests $open;
                ids_are_positive_unique_and_per_sequence,
                ids_stay_unique_under_concurrency,
                affiliates_round_trip_and_update,
                keys_are_found_by_hash_and_id_and_listed_per_affiliate,
                key_updates_replace_the_row,
                last_used_is_recorded_and_never_moves_back,
                settings_round_trip,
                categories_round_trip_including_soft_deletes,
                unique_claims_belong_to_one_owner,
                products_and_promotions_round_trip,
                blogs_and_profiles_are_kept_per_affiliate,
                webhooks_are_kept_per_affiliate_and_indexed_by_event,
                deliveries_are_listed_newest_first_and_pending_ones_indexed,
                partner_records_round_trip,
                usage_counters_add_up_per_cell_and_are_read_by_range,
                click_counters_add_up_per_campaign_and_day,
                audit_rows_are_kept_per_affiliate_and_day_newest_first,
                audit_rows_expire_after_their_retention,
                campaigns_and_conversions_are_listed_per_affiliate,
                replaces_are_conditional_on_the_version_read,
                concurrent_network_token_rotations_leave_one_working_token,
            );
            #[actix_web::test]
            async fn finished_deliveries_past_the_retention_are_swept() {
                let (store, _guard) = $open.await;
                super::finished_deliveries_past_the_retention_are_swept(store, stringify!($backend) == "embedded").await;
            }
        }
    };
    (@tests $open:expr; $($name:ident),* $(,)?) => {
        $(
            #[actix_web::test]
            async fn $name() {
                let (store, _guard) = $open.await;
                super::$name(store).await;
            }
        )*
    };
}

async fn open_embedded() -> (SharedStore, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let store = hissaback::store::embedded::EmbeddedStore::open(dir.path()).await.unwrap();
    (std::sync::Arc::new(store), dir)
}

store_suite!(embedded, open_embedded());

async fn open_scylla() -> (SharedStore, ()) {
    let settings = crate::helpers::scylla_settings().await;
    let store = hissaback::store::scylla::ScyllaStore::open(&settings).await.expect("open the CQL store");
    (std::sync::Arc::new(store), ())
}

store_suite!(scylla, open_scylla());

/// ScyllaDB keeps each delivery (and its pending index row) under the delivery log's TTL,
/// restarted by every write.
#[actix_web::test]
async fn scylla_deliveries_expire_by_their_ttl() {
    use hissaback::store::{DeliveryRecord, DeliveryState, Store};
    let settings = crate::helpers::scylla_settings().await;
    let store = hissaback::store::scylla::ScyllaStore::open(&settings).await.expect("open the CQL store");
    store.set_delivery_log_ttl(std::time::Duration::from_secs(2));
    let now = Utc::now();
    let webhook_id = store.next_id(Sequence::Webhook).await.unwrap();
    let mk = |n: u64, state: DeliveryState| DeliveryRecord {
        id: format!("msg_{:013}_{n:04}", now.timestamp_millis()),
        webhook_id,
        affiliate_id: 1,
        event: "reward.paid".into(),
        payload: "{}".into(),
        state,
        attempts: vec![],
        next_attempt_at: Some(now),
        created_at: now,
        updated_at: now,
        manual: false,
        owner: Some("suite".into()),
    };
    let (done, pending) = (mk(1, DeliveryState::Succeeded), mk(2, DeliveryState::Pending));
    store.put_deliveries(&[done.clone(), pending.clone()]).await.unwrap();
    assert_eq!(store.deliveries_of(webhook_id, 10).await.unwrap().len(), 2);
    tokio::time::sleep(std::time::Duration::from_millis(3500)).await;
    assert!(store.deliveries_of(webhook_id, 10).await.unwrap().is_empty(), "both rows outlived their TTL");
    assert!(store.pending_deliveries().await.unwrap().iter().all(|d| d.webhook_id != webhook_id));
}

#[actix_web::test]
async fn embedded_data_survives_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let id;
    {
        let store = hissaback::store::embedded::EmbeddedStore::open(dir.path()).await.unwrap();
        id = hissaback::store::Store::next_id(&store, Sequence::Affiliate).await.unwrap();
        hissaback::store::Store::put_affiliate(&store, &affiliate(id)).await.unwrap();
    }
    let store = hissaback::store::embedded::EmbeddedStore::open(dir.path()).await.unwrap();
    use hissaback::store::Store;
    assert!(store.get_affiliate(id).await.unwrap().is_some());
    assert!(store.next_id(Sequence::Affiliate).await.unwrap() > id);
}
