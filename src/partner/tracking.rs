//! Tracking-URL macros: `{click_id}`, `{pid}`, `{offer_id}`, `{tenant_id}`, `{user_id}` are
//! replaced by their URL-encoded values; a macro without a value becomes empty.

/// Values for a tracking URL's macros.
#[derive(Default)]
pub struct Macros<'a> {
    pub click_id: Option<&'a str>,
    pub pid: Option<u64>,
    pub offer_id: Option<u64>,
    pub tenant_id: Option<&'a str>,
    pub user_id: Option<&'a str>,
}

fn encode(v: &str) -> String {
    url::form_urlencoded::byte_serialize(v.as_bytes()).collect()
}

/// Fills the macros that have a value; `keep_click_id` leaves `{click_id}` for the network
/// (the `raw_url` of a link).
pub fn fill(template: &str, m: &Macros<'_>, keep_click_id: bool) -> String {
    let mut out = template.to_string();
    let pid = m.pid.map(|v| v.to_string());
    let offer = m.offer_id.map(|v| v.to_string());
    let pairs: [(&str, Option<&str>); 5] = [
        ("{click_id}", if keep_click_id { None } else { Some(m.click_id.unwrap_or("")) }),
        ("{pid}", Some(pid.as_deref().unwrap_or(""))),
        ("{offer_id}", Some(offer.as_deref().unwrap_or(""))),
        ("{tenant_id}", Some(m.tenant_id.unwrap_or(""))),
        ("{user_id}", Some(m.user_id.unwrap_or(""))),
    ];
    for (name, value) in pairs {
        if let Some(v) = value {
            out = out.replace(name, &encode(v));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn macros_are_filled_and_encoded() {
        let t = "https://net.example/c?aff={pid}&o={offer_id}&click={click_id}&s1={user_id}&t={tenant_id}";
        let m = Macros { click_id: Some("c1"), pid: Some(7), offer_id: Some(9), tenant_id: Some("acme co"), user_id: Some("u&1") };
        assert_eq!(fill(t, &m, false), "https://net.example/c?aff=7&o=9&click=c1&s1=u%261&t=acme+co");
        assert_eq!(fill(t, &m, true), "https://net.example/c?aff=7&o=9&click={click_id}&s1=u%261&t=acme+co");
        assert_eq!(fill("x?u={user_id}", &Macros::default(), false), "x?u=");
    }
}
