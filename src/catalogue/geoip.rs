//! `currency_from_ip`: an IP address to a country (a MaxMind-format database read with the
//! `maxminddb` crate; `scripts/fetch-geoip.sh` fetches the freely licensed
//! `@ip-location-db/geo-whois-asn-country-mmdb` from npm) and the country to a currency.

use hissaback_topics::CurrencyCode;
use serde::Deserialize;
use std::net::IpAddr;
use std::path::Path;

/// Euro-area countries (ISO 3166-1 alpha-2).
const EURO_AREA: [&str; 20] = [
    "AT", "BE", "HR", "CY", "EE", "FI", "FR", "DE", "GR", "IE", "IT", "LV", "LT", "LU", "MT", "NL", "PT", "SK", "SI", "ES",
];

/// The currency hissaback prices in for a country, if it has one of its own.
pub fn currency_for_country(iso: &str) -> Option<CurrencyCode> {
    let iso = iso.to_ascii_uppercase();
    match iso.as_str() {
        "GB" => Some(CurrencyCode::GBP),
        "IN" => Some(CurrencyCode::INR),
        "BG" => Some(CurrencyCode::BGN),
        c if EURO_AREA.contains(&c) => Some(CurrencyCode::EUR),
        _ => None,
    }
}

/// Both record shapes in circulation: ip-location-db's `country_code` and MaxMind's
/// `country.iso_code`.
#[derive(Deserialize)]
struct CountryRecord<'a> {
    #[serde(borrow)]
    country_code: Option<&'a str>,
    #[serde(borrow)]
    country: Option<MaxMindCountry<'a>>,
}

#[derive(Deserialize)]
struct MaxMindCountry<'a> {
    iso_code: Option<&'a str>,
}

/// A loaded country database.
pub struct GeoIp {
    reader: maxminddb::Reader<Vec<u8>>,
}

impl GeoIp {
    pub fn open(path: &Path) -> anyhow::Result<Self> {
        let reader = maxminddb::Reader::open_readfile(path)
            .map_err(|e| anyhow::anyhow!("opening the GeoIP database {}: {e}", path.display()))?;
        Ok(Self { reader })
    }

    /// The country of an address, when the database knows it.
    pub fn country(&self, ip: IpAddr) -> Option<String> {
        let result = self.reader.lookup(ip).ok()?;
        let record: CountryRecord = result.decode().ok()??;
        record
            .country_code
            .or_else(|| record.country.and_then(|c| c.iso_code))
            .map(str::to_string)
    }

    /// The currency for an address, when its country has one of hissaback's currencies.
    pub fn currency(&self, ip: IpAddr) -> Option<CurrencyCode> {
        self.country(ip).as_deref().and_then(currency_for_country)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn countries_map_to_their_currency() {
        assert_eq!(currency_for_country("GB"), Some(CurrencyCode::GBP));
        assert_eq!(currency_for_country("de"), Some(CurrencyCode::EUR));
        assert_eq!(currency_for_country("IN"), Some(CurrencyCode::INR));
        assert_eq!(currency_for_country("BG"), Some(CurrencyCode::BGN));
        assert_eq!(currency_for_country("US"), None);
        assert_eq!(currency_for_country("CH"), None);
    }

    /// Runs on the real database when `HISSABACK_GEOIP_DB` names it (scripts/test.sh does).
    #[test]
    fn the_fetched_database_resolves_known_addresses() {
        let Some(path) = std::env::var_os("HISSABACK_GEOIP_DB") else {
            eprintln!("HISSABACK_GEOIP_DB unset: run scripts/test.sh (or export it from scripts/fetch-geoip.sh)");
            return;
        };
        let db = GeoIp::open(Path::new(&path)).unwrap();
        assert_eq!(db.country("8.8.8.8".parse().unwrap()).as_deref(), Some("US"));
        assert_eq!(db.currency("8.8.8.8".parse().unwrap()), None);
        assert_eq!(db.currency("81.2.69.142".parse().unwrap()), Some(CurrencyCode::GBP));
        assert_eq!(db.currency("5.9.0.1".parse().unwrap()), Some(CurrencyCode::EUR));
        assert_eq!(db.country("127.0.0.1".parse().unwrap()), None);
        assert_eq!(db.country("2001:4860:4860::8888".parse().unwrap()).as_deref(), Some("US"));
    }
}
