//! Screening of affiliate-written HTML (blog content) for anything that could run script in
//! a reader's browser: the seed's "validated to disallow inline JavaScript".
//!
//! The content is parsed with html5ever (through `scraper`), the same HTML5 algorithm
//! browsers run, so what is checked is what a browser would build: entities are already
//! decoded (`&#106;avascript:`), names already lowercased (`<ScRiPt>`, `ONLOAD=`), SVG and
//! MathML already placed, and text that merely looks like markup stays text. A regex over the
//! raw string could be fooled by any of these; a parser cannot be, short of a parser
//! disagreement, which is why elements whose parsing depends on the scripting flag
//! (`<noscript>`) are refused as well.
//!
//! The content is stored as sent, never rewritten: it is accepted whole or refused whole.

use scraper::{Html, Node};

/// Elements that run or embed active content, refused wherever they appear.
const FORBIDDEN_ELEMENTS: [&str; 8] = ["script", "iframe", "frame", "frameset", "object", "embed", "applet", "noscript"];

/// Attributes that hold one URL (HTML, SVG and MathML), checked for a script scheme.
/// `xlink:href` arrives as `href` in the XLink namespace, so `href` covers it.
const URL_ATTRIBUTES: [&str; 18] = [
    "href", "src", "action", "formaction", "data", "poster", "background", "cite", "longdesc", "lowsrc", "dynsrc",
    "codebase", "classid", "manifest", "icon", "profile", "usemap", "archive",
];

/// Attributes that may hold several URLs or a URL inside other text (`srcset`, `ping`, SVG
/// animation values that can rewrite an `href`, a `<meta>` refresh): any script scheme
/// anywhere in them counts.
const URL_LIST_ATTRIBUTES: [&str; 7] = ["srcset", "ping", "values", "to", "from", "by", "content"];

/// Whether `html` carries script: a script-bearing element, an event-handler attribute, a
/// `srcdoc`, a URL with a script scheme, or script in CSS. See the module documentation.
///
/// The content is read twice, as a fragment of a `<body>` (where it will be shown) and as a
/// whole document, and refused if either reading finds script: a fragment parse drops
/// `<body onload=...>` and `<frameset>` tags that a browser would still apply to the page.
pub fn contains_script(html: &str) -> bool {
    if [Html::parse_fragment(html), Html::parse_document(html)].iter().any(has_script) {
        return true;
    }
    // A tag left open at the end is dropped by the parser but completed by a browser when
    // the content is placed before other markup: judge the content as if it were closed.
    if html.rfind('<').is_some_and(|lt| !html[lt..].contains('>')) {
        return ["\">", "'>", ">"].iter().any(|end| has_script(&Html::parse_fragment(&format!("{html}{end}"))));
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

fn has_script(document: &Html) -> bool {
    // Every node of the arena, including `<template>` contents.
    document.tree.nodes().any(|node| match node.value() {
        Node::Element(element) => {
            let name = element.name().to_ascii_lowercase();
            if FORBIDDEN_ELEMENTS.contains(&name.as_str()) {
                return true;
            }
            if name == "style" {
                let css: String = node.children().filter_map(|c| c.value().as_text().map(|t| t.to_string())).collect();
                if css_has_script(&css) {
                    return true;
                }
            }
            element.attrs().any(|(attr, value)| attribute_has_script(&attr.to_ascii_lowercase(), value))
        }
        _ => false,
    })
}

fn attribute_has_script(name: &str, value: &str) -> bool {
    // A prefix (`xlink:onclick`) does not make an event handler safe to let through.
    let local = name.rsplit(':').next().unwrap_or(name);
    if local.starts_with("on") || local == "srcdoc" {
        return true;
    }
    if local == "style" {
        return css_has_script(value);
    }
    let url = squeeze(value);
    if URL_ATTRIBUTES.contains(&local) {
        return is_script_url(&url);
    }
    if URL_LIST_ATTRIBUTES.contains(&local) {
        // A script URL starting anywhere in the value.
        return url.char_indices().any(|(i, _)| is_script_url(&url[i..]));
    }
    false
}

/// The value with ASCII white space and control characters removed, lowercased: browsers
/// drop tabs and newlines anywhere in a URL and spaces and controls around it, so
/// `java\tscript:` and `  javascript:` are both `javascript:` to them.
fn squeeze(value: &str) -> String {
    value.chars().filter(|c| !c.is_ascii_whitespace() && !c.is_ascii_control()).flat_map(char::to_lowercase).collect()
}

/// A squeezed URL with a scheme that runs script or renders a document of its own. Data URLs
/// are allowed only for raster images.
fn is_script_url(url: &str) -> bool {
    if url.starts_with("javascript:") || url.starts_with("vbscript:") || url.starts_with("livescript:") {
        return true;
    }
    match url.strip_prefix("data:") {
        Some(rest) => !rest.starts_with("image/") || rest.starts_with("image/svg"),
        None => false,
    }
}

/// Script in CSS: IE's `expression(...)`, `behavior:`/`-moz-binding` components, or a
/// script URL, after removing comments and escapes (`expr/**/ession(`, `\65xpression(`).
fn css_has_script(css: &str) -> bool {
    let css = squeeze(&unescape_css(&strip_css_comments(css)));
    ["expression(", "javascript:", "vbscript:", "behavior:", "-moz-binding"].iter().any(|bad| css.contains(bad))
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
            r#"<img src="data:image/png;base64,iVBORw0KGgo=">"#,
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
    fn malformed_input_never_panics() {
        for html in ["<", "<<<>>>", "<a href=", "<p style=\"\\", "<p style=\"\\110000\">", "/* <style>/*</style>", "\u{0}<a\u{0}>"] {
            let _ = contains_script(html);
        }
    }
}
