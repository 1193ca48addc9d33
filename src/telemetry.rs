//! Logging: `tracing` to stderr, filtered by `RUST_LOG` (default [`DEFAULT_FILTER`]).
//!
//! - `HISSABACK_LOG_FORMAT=json`: one JSON object per line (`timestamp`, `level`, `target`,
//!   the event's fields flattened beside `message`, and `span` with the current span's
//!   fields, e.g. the `request_id` of the request being answered). Anything else (or unset):
//!   human-readable text.
//! - Colours only when stderr is a terminal (and `NO_COLOR` is unset).
//! - One access line per request, target `hissaback::access` (INFO): request id, method,
//!   route pattern, status, latency and the caller's key, affiliate or network id (never a
//!   credential). `RUST_LOG=info,hissaback::access=off` turns it off. Each request also runs
//!   in a span `request{request_id}` (target `hissaback::request`) so whatever its handler
//!   logs carries the id; `hissaback::request=off` turns that off.
//! - A client sending a malformed request (a header line that does not parse, say) is not a
//!   server error: actix-http's `stream error` line for it, logged at ERROR, is left out
//!   unless `RUST_LOG` names `actix_http`.

use std::io::IsTerminal;
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

/// The filter without `RUST_LOG`: INFO, with actix-server's per-worker start and stop lines
/// left out.
pub const DEFAULT_FILTER: &str = "info,actix_server=warn";

/// The environment variable that picks the log format (`json` or `text`).
pub const FORMAT_VAR: &str = "HISSABACK_LOG_FORMAT";

/// Log line format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Text,
    Json,
}

impl Format {
    /// From [`FORMAT_VAR`]: `json` (any case) is JSON, anything else text.
    pub fn from_env() -> Self {
        Self::parse(std::env::var(FORMAT_VAR).ok().as_deref())
    }

    pub fn parse(value: Option<&str>) -> Self {
        match value {
            Some(v) if v.trim().eq_ignore_ascii_case("json") => Format::Json,
            _ => Format::Text,
        }
    }
}

/// Installs the subscriber once; later calls (tests) are no-ops.
pub fn init() {
    let rust_log = std::env::var("RUST_LOG").ok().filter(|v| !v.trim().is_empty());
    let filter = rust_log.as_deref().and_then(|v| EnvFilter::try_new(v).ok()).unwrap_or_else(|| EnvFilter::new(DEFAULT_FILTER));
    let quiet = QuietClientErrors { enabled: !rust_log.as_deref().is_some_and(|v| v.contains("actix_http")) };
    let ansi = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    let fmt = tracing_subscriber::fmt::layer().with_writer(std::io::stderr).with_ansi(ansi);
    let fmt = match Format::from_env() {
        Format::Json => fmt.json().flatten_event(true).with_current_span(true).with_span_list(false).boxed(),
        Format::Text => fmt.boxed(),
    };
    let _ = tracing_subscriber::registry().with(filter).with(quiet).with(fmt).try_init();
}

/// Leaves out actix-http's ERROR line for a connection whose request did not parse (the
/// client's fault; it was answered 400) or that broke off mid-request.
struct QuietClientErrors {
    enabled: bool,
}

/// actix-http's module that logs them, and their message's start.
const ACTIX_H1_DISPATCHER: &str = "actix_http::h1::dispatcher";
const STREAM_ERROR: &str = "stream error";

impl<S: tracing::Subscriber> Layer<S> for QuietClientErrors {
    fn event_enabled(&self, event: &tracing::Event<'_>, _: Context<'_, S>) -> bool {
        let meta = event.metadata();
        if !self.enabled || meta.target() != ACTIX_H1_DISPATCHER {
            return true;
        }
        let mut message = StartsWith { prefix: STREAM_ERROR, matched: false };
        event.record(&mut message);
        !message.matched
    }
}

/// Whether an event's message starts with `prefix` (formatted into a small stack buffer).
struct StartsWith {
    prefix: &'static str,
    matched: bool,
}

impl tracing::field::Visit for StartsWith {
    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        if field.name() == "message" {
            self.matched = value.starts_with(self.prefix);
        }
    }

    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        if field.name() != "message" {
            return;
        }
        use std::fmt::Write;
        // Only the prefix matters: stop writing once there is enough to compare.
        struct Prefix<'a> {
            want: &'a str,
            got: usize,
            ok: bool,
        }
        impl Write for Prefix<'_> {
            fn write_str(&mut self, s: &str) -> std::fmt::Result {
                let rest = &self.want[self.got..];
                let n = rest.len().min(s.len());
                if !self.ok || rest.as_bytes()[..n] != s.as_bytes()[..n] {
                    self.ok = false;
                    return Err(std::fmt::Error);
                }
                self.got += n;
                if self.got == self.want.len() {
                    return Err(std::fmt::Error); // enough
                }
                Ok(())
            }
        }
        let mut p = Prefix { want: self.prefix, got: 0, ok: true };
        let _ = write!(p, "{value:?}");
        self.matched = p.ok && p.got == self.prefix.len();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn matches(message: std::fmt::Arguments<'_>) -> bool {
        struct Arg<'a>(std::fmt::Arguments<'a>);
        impl std::fmt::Debug for Arg<'_> {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_fmt(self.0)
            }
        }
        let mut v = StartsWith { prefix: STREAM_ERROR, matched: false };
        // A field named `message` as the tracing macros make it.
        struct Cs;
        impl tracing::callsite::Callsite for Cs {
            fn set_interest(&self, _: tracing::subscriber::Interest) {}
            fn metadata(&self) -> &tracing::Metadata<'_> {
                &META
            }
        }
        static CS: Cs = Cs;
        static META: tracing::Metadata<'static> = tracing::Metadata::new(
            "test",
            "test",
            tracing::Level::ERROR,
            None,
            None,
            None,
            tracing::field::FieldSet::new(&["message"], tracing::callsite::Identifier(&CS)),
            tracing::metadata::Kind::EVENT,
        );
        let field = META.fields().field("message").unwrap();
        tracing::field::Visit::record_debug(&mut v, &field, &Arg(message));
        v.matched
    }

    #[test]
    fn only_stream_errors_are_recognised() {
        assert!(matches(format_args!("stream error: {}", "Invalid Header provided")));
        assert!(matches(format_args!("{}{}", "stream ", "error: split across writes")));
        assert!(!matches(format_args!("Response payload stream error: {}", "x")));
        assert!(!matches(format_args!("stream")));
        assert!(!matches(format_args!("Internal server error: unexpected eof")));
    }

    #[test]
    fn the_format_is_json_only_when_asked() {
        assert_eq!(Format::parse(Some("json")), Format::Json);
        assert_eq!(Format::parse(Some(" JSON ")), Format::Json);
        assert_eq!(Format::parse(Some("text")), Format::Text);
        assert_eq!(Format::parse(Some("")), Format::Text);
        assert_eq!(Format::parse(None), Format::Text);
    }
}
