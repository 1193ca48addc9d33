"""The demo calls through the typed Python client that openapi-generator makes from the
service's OpenAPI document (issue 14, "OpenAPI"). scripts/client-check.sh generates and
installs the client (`hissaback_client`) and runs this file with the venv's Python.

Environment:
  HB_BASE_URL         the service, e.g. http://127.0.0.1:8080 (required)
  HB_API_KEY          a secret key (hb_sk_...) holding every scope, as `hissaback demo` prints
  HB_ADMIN_TOKEN      the admin token
  HB_PUBLISHABLE_KEY  a publishable key (hb_pk_...) of the same affiliate (optional: without
                      it, one is issued through the typed admin API and revoked at the end)

The service is expected to hold `hissaback demo`'s catalogue (categories, products and a
promotion); `GET /v1/offers` may be empty.

Every call goes through the generated API classes and their pydantic models: a response that
does not match the documented schema fails to deserialize, and a field the server sends but
the document does not declare (which the models would silently drop) is reported too.
Failures are answered with the documented `ErrorResponse`. Exits 1 on any mismatch.
"""

import json
import os
import sys

import hissaback_client as hc
from hissaback_client.exceptions import ApiException
from pydantic import BaseModel

failures = []


def check(ok, what):
    if not ok:
        failures.append(what)
        print(f"  FAIL {what}")
    return ok


def field_names(model):
    """JSON names of a generated model's fields, and whether it accepts undeclared ones."""
    fields = type(model).model_fields
    names = {(info.alias or name): name for name, info in fields.items()}
    return names, "additional_properties" in fields


def undocumented(raw, typed, path):
    """JSON paths present in `raw` that the typed value does not declare."""
    out = []
    if isinstance(typed, BaseModel) and "actual_instance" in type(typed).model_fields:
        return undocumented(raw, typed.actual_instance, path)  # oneOf/anyOf wrapper
    if isinstance(typed, BaseModel) and isinstance(raw, dict):
        names, open_ended = field_names(typed)
        for key, value in raw.items():
            if key in names:
                out += undocumented(value, getattr(typed, names[key]), f"{path}.{key}")
            elif not open_ended:
                out.append(f"{path}.{key}")
    elif isinstance(typed, list) and isinstance(raw, list):
        for i, (r, t) in enumerate(zip(raw, typed)):
            out += undocumented(r, t, f"{path}[{i}]")
    elif isinstance(typed, dict) and isinstance(raw, dict):
        for key, value in raw.items():
            if key in typed:
                out += undocumented(value, typed[key], f"{path}.{key}")
    return out


def call(api, operation, *args, expect=200, **kwargs):
    """Calls `operation` of the typed `api` and returns its typed answer (`data` of the
    envelope), checking the status, `success: true` and that nothing undocumented came back."""
    label = f"{type(api).__name__}.{operation}"
    try:
        res = getattr(api, operation + "_with_http_info")(*args, **kwargs)
    except ApiException as e:
        check(False, f"{label}: HTTP {e.status}: {e.body}")
        return None
    except Exception as e:  # pydantic ValidationError: the answer does not match the document
        check(False, f"{label}: the answer does not deserialize into the documented model: {type(e).__name__}: {e}")
        return None
    typed = res.data
    check(res.status_code == expect, f"{label}: status {res.status_code}, expected {expect}")
    check(isinstance(typed, BaseModel), f"{label}: untyped answer {type(typed).__name__}")
    raw = json.loads(res.raw_data) if res.raw_data else None
    extra = undocumented(raw, typed, "$")
    check(not extra, f"{label}: the server sent fields the document does not declare: {', '.join(extra[:20])}")
    check(getattr(typed, "success", None) is True, f"{label}: success is {getattr(typed, 'success', None)!r}")
    print(f"  ok   {label} -> {type(typed).__name__}")
    return getattr(typed, "data", typed)


def refused(api, operation, status, code, *args, **kwargs):
    """Calls `operation` expecting the documented failure envelope with this status and code."""
    label = f"{type(api).__name__}.{operation}"
    try:
        getattr(api, operation)(*args, **kwargs)
    except ApiException as e:
        check(e.status == status, f"{label}: status {e.status}, expected {status}: {e.body}")
        err = e.data if isinstance(e.data, hc.ErrorResponse) else None
        if err is None:
            try:
                err = hc.ErrorResponse.from_json(e.body)
            except Exception as parse:
                check(False, f"{label}: the {e.status} body is no ErrorResponse ({parse}): {e.body}")
                return
        check(err.success is False and err.code == code, f"{label}: {err.code!r} (success {err.success}), expected {code!r}")
        print(f"  ok   {label} -> {e.status} ErrorResponse(code={err.code!r})")
        return
    check(False, f"{label}: succeeded, expected {status} {code}")


def client(base, **auth):
    return hc.ApiClient(hc.Configuration(host=base, **auth))


def main():
    try:
        base = os.environ["HB_BASE_URL"].rstrip("/")
        key = os.environ["HB_API_KEY"]
        admin_token = os.environ["HB_ADMIN_TOKEN"]
    except KeyError as e:
        sys.exit(f"client_demo: {e.args[0]} is not set")
    publishable = os.environ.get("HB_PUBLISHABLE_KEY")

    with client(base) as anonymous, \
            client(base, api_key={"api_key_header": key}) as by_header, \
            client(base, access_token=key) as by_bearer, \
            client(base, access_token=admin_token) as as_admin:
        ops = hc.OperationsApi(anonymous)
        affiliate = hc.AffiliateApi(by_header)
        partner = hc.PartnerApi(by_header)
        admin = hc.AdminApi(as_admin)

        print("operations:")
        health = call(ops, "get_health")
        if health is not None:
            check(health.status == "ok", f"health status {health.status!r}")

        print("the secret key (X-Affiliate-Api-Key, then Authorization: Bearer):")
        me = call(affiliate, "test_api_key")
        affiliate_id = me.affiliate_id if me is not None else None
        if me is not None:
            check(len(me.scopes) > 0, "the demo key holds no scope")
        again = call(hc.AffiliateApi(by_bearer), "test_api_key")
        if me is not None and again is not None:
            check(again.affiliate_id == affiliate_id, f"bearer: affiliate {again.affiliate_id}, header: {affiliate_id}")

        print("catalogue:")
        cats = call(affiliate, "list_categories")
        if cats is not None:
            check(len(cats.categories) > 0 and all(c.name for c in cats.categories), f"categories {cats.categories}")
        page = call(affiliate, "list_products", per_page=2)
        first = None
        if page is not None:
            check(1 <= len(page.products) <= 2, f"{len(page.products)} products on a page of 2")
            check(page.pagination.per_page == 2 and page.pagination.total >= len(page.products), f"pagination {page.pagination}")
            first = page.products[0] if page.products else None
        eur = call(affiliate, "list_products", per_page=2, currency_code=hc.Currency.EUR)
        if eur is not None:
            check(all(p.currency == hc.Currency.EUR for p in eur.products), "products not in EUR")
        if first is not None:
            one = call(affiliate, "get_product", str(first.id))
            if one is not None:
                check(one.product.id == first.id and one.product.title == first.title, f"product {one.product.id}, expected {first.id}")
        promos = call(affiliate, "list_promotions")
        if promos is not None:
            check(promos.percentage_promotion is not None or len(promos.bundles) > 0, "no promotion")
        offers = call(partner, "list_offers", per_page=5)
        if offers is not None:
            check(len(offers.offers) <= 5, f"{len(offers.offers)} offers on a page of 5")
            print(f"       {len(offers.offers)} offers, {offers.pagination.total} in all")
        call(affiliate, "list_webhooks")

        print("admin:")
        if affiliate_id is not None:
            aff = call(admin, "admin_get_affiliate", affiliate_id)
            if aff is not None:
                check(aff.affiliate.id == affiliate_id, f"affiliate {aff.affiliate.id}")
            keys = call(admin, "admin_list_keys", affiliate_id)
            if keys is not None:
                check(any(key.startswith(k.prefix) for k in keys.keys), f"the key is not among {[k.prefix for k in keys.keys]}")
                check(all(k.key is None for k in keys.keys), "a listed key shows its plain key")
        issued_id = None
        if publishable is None and affiliate_id is not None:
            made = call(admin, "admin_create_key", affiliate_id, hc.CreateKey(kind="publishable"), expect=201)
            if made is not None:
                check(made.key.kind == hc.KeyKind.PUBLISHABLE and made.key.key, f"issued {made.key}")
                publishable, issued_id = made.key.key, made.key.id

        if publishable:
            print("the publishable key:")
            with client(base, api_key={"api_key_header": publishable}) as by_pk:
                pk = call(hc.AffiliateApi(by_pk), "test_api_key")
                if pk is not None and affiliate_id is not None:
                    check(pk.affiliate_id == affiliate_id, f"publishable key of affiliate {pk.affiliate_id}")
                call(hc.AffiliateApi(by_pk), "list_products", per_page=1)
                call(hc.PartnerApi(by_pk), "list_offers", per_page=1)
                refused(hc.AffiliateApi(by_pk), "list_webhooks", 403, "insufficient_scope")
                if issued_id is not None:
                    call(admin, "admin_revoke_key", issued_id)
                    refused(hc.AffiliateApi(by_pk), "test_api_key", 401, "unauthenticated")

        print("failures:")
        with client(base, api_key={"api_key_header": "hb_sk_" + "0" * 40}) as wrong:
            refused(hc.AffiliateApi(wrong), "test_api_key", 401, "unauthenticated")
        refused(hc.AffiliateApi(anonymous), "list_categories", 401, "unauthenticated")

    if failures:
        print(f"client_demo: {len(failures)} failed:", file=sys.stderr)
        for f in failures:
            print(f"  - {f}", file=sys.stderr)
        sys.exit(1)
    print("client_demo: every demo call answered as documented")


if __name__ == "__main__":
    main()
