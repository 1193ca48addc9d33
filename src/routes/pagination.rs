//! Paging shared by every listing (`/api/v1/products`, `/v1/offers`): `page` and `per_page`
//! read and checked the same way, and the seed's `pagination` block whose links keep the
//! other query parameters (never `api_key`).

use crate::error::FieldErrors;
use crate::routes::products::QueryParams;
use serde_json::{json, Value};

const DEFAULT_PER_PAGE: u64 = 15;
const MAX_PER_PAGE: u64 = 100;

/// A positive integer parameter within `min..=max`; a bad value is noted in `errors`.
pub fn int_param(q: &QueryParams, key: &str, min: u64, max: u64, errors: &mut FieldErrors) -> Option<u64> {
    let raw = q.one(key)?;
    match raw.parse::<u64>() {
        Ok(v) if (min..=max).contains(&v) => Some(v),
        _ => {
            let human = key.replace('_', " ");
            let range = if max == u64::MAX { format!("of at least {min}") } else { format!("between {min} and {max}") };
            errors.insert(key.into(), vec![format!("The {human} field must be an integer {range}.")]);
            None
        }
    }
}

/// `page` and `per_page` as the OpenAPI document shows them (read by [`Page::parse`], which
/// answers 422 outside these bounds).
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub struct PageParams {
    /// Page, from 1 (default 1).
    #[param(minimum = 1)]
    pub page: Option<u64>,
    /// Items per page, 1 to 100 (default 15).
    #[param(minimum = 1, maximum = 100)]
    pub per_page: Option<u64>,
}

/// A requested page: 1-based, with 1 to 100 items (15 by default).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Page {
    pub page: usize,
    pub per_page: usize,
}

impl Page {
    pub fn parse(q: &QueryParams, errors: &mut FieldErrors) -> Page {
        let page = int_param(q, "page", 1, u64::MAX, errors).unwrap_or(1);
        let per_page = int_param(q, "per_page", 1, MAX_PER_PAGE, errors).unwrap_or(DEFAULT_PER_PAGE);
        Page { page: usize::try_from(page).unwrap_or(usize::MAX), per_page: per_page as usize }
    }

    pub fn offset(&self) -> usize {
        (self.page - 1).saturating_mul(self.per_page)
    }

    /// The `pagination` block; links point at `{base}{path}` with the caller's parameters.
    pub fn block(&self, total: usize, base: &str, path: &str, q: &QueryParams) -> Value {
        let last_page = total.div_ceil(self.per_page).max(1);
        let link = |n: usize| format!("{base}{path}?{}", q.with_page(n));
        json!({
            "current_page": self.page,
            "per_page": self.per_page,
            "total": total,
            "last_page": last_page,
            "next_page_url": (self.page < last_page).then(|| link(self.page + 1)),
            "prev_page_url": (self.page > 1).then(|| link((self.page - 1).min(last_page))),
        })
    }
}
