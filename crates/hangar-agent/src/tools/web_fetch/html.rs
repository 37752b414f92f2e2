//! HTML to readable text for `WebFetch`: `html2text`'s layout with links written as
//! `text (url)` (absolute), scripts and styles dropped, and nesting bounded so a hostile page
//! cannot make the layout recurse deeply.

use html2text::render::{TaggedLine, TextDecorator};
use reqwest::Url;

/// Column width HTML is laid out in: wide, so paragraphs stay on one line (tables and lists are
/// still laid out in columns; nothing is padded to this width).
const RENDER_WIDTH: usize = 10_000;
/// Elements nested deeper than this are flattened before the layout, which recurses into nested
/// tables.
const MAX_HTML_DEPTH: usize = 128;

/// Readable text from an HTML page; links become `text (url)`, with `url` absolute.
pub(super) fn html_to_text(html: &str, base: &Url) -> String {
    let config = html2text::config::with_decorator(LinkDecorator::new(base.clone()))
        .do_decorate()
        .link_footnotes(false)
        .no_link_wrapping()
        .allow_width_overflow()
        .no_table_borders();
    let Ok(dom) = config.parse_html(html.as_bytes()) else {
        return String::new();
    };
    flatten_deep(&dom.document);
    config
        .dom_to_render_tree(&dom)
        .and_then(|tree| config.render_to_string(tree, RENDER_WIDTH))
        .map(|text| tidy(&text))
        .unwrap_or_default()
}

/// Bounds the nesting the layout sees: an element [`MAX_HTML_DEPTH`] levels down (or the first
/// one below that may hold text: a cell rather than a table or row) gets the leaves (text,
/// images, line breaks) under it as its children, without the elements between them (scripts
/// and styles dropped). Iterative: a page may nest elements thousands deep.
fn flatten_deep(root: &html2text::Handle) {
    let mut stack = vec![(root.clone(), 0)];
    while let Some((node, level)) = stack.pop() {
        let children: Vec<html2text::Handle> = node.children.borrow().clone();
        if level < MAX_HTML_DEPTH || structural(&node) {
            stack.extend(children.into_iter().map(|child| (child, level + 1)));
            continue;
        }
        if children.iter().all(|child| child.children.borrow().is_empty()) {
            continue;
        }
        let mut leaves = Vec::new();
        let mut pending: Vec<html2text::Handle> = children.into_iter().rev().collect();
        while let Some(next) = pending.pop() {
            if hidden(&next) {
                continue;
            }
            let grandchildren = next.children.borrow();
            if grandchildren.is_empty() {
                leaves.push(next.clone());
            } else {
                pending.extend(grandchildren.iter().rev().cloned());
            }
        }
        *node.children.borrow_mut() = leaves;
    }
}

/// Elements whose content is laid out only inside particular children (cells, items).
fn structural(node: &html2text::Handle) -> bool {
    matches!(
        &node.data,
        html2text::Element { name, .. }
            if matches!(
                &*name.local,
                "table" | "thead" | "tbody" | "tfoot" | "tr" | "colgroup" | "ul" | "ol" | "dl" | "select"
            )
    )
}

fn hidden(node: &html2text::Handle) -> bool {
    matches!(
        &node.data,
        html2text::Element { name, .. }
            if matches!(&*name.local, "script" | "style" | "template" | "head")
    )
}

/// Drops trailing spaces and runs of more than one blank line.
fn tidy(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut blank = 0;
    for line in text.lines().map(str::trim_end) {
        if line.is_empty() {
            blank += 1;
            if blank > 1 || out.is_empty() {
                continue;
            }
        } else {
            blank = 0;
        }
        out.push_str(line);
        out.push('\n');
    }
    out.trim_end().to_owned() + "\n"
}

/// Plain-text decoration with links written as `text (url)`.
#[derive(Clone)]
struct LinkDecorator {
    base: Url,
    /// The URL to print at the end of each open link (`None`: nothing to print).
    open: Vec<Option<String>>,
}

impl LinkDecorator {
    fn new(base: Url) -> Self {
        Self {
            base,
            open: Vec::new(),
        }
    }

    /// The absolute form of `href`, or `None` for links not worth printing (in-page anchors,
    /// `javascript:`).
    fn target(&self, href: &str) -> Option<String> {
        let href = href.trim();
        if href.is_empty() || href.starts_with('#') {
            return None;
        }
        let url = self.base.join(href).ok()?;
        match url.scheme() {
            "http" | "https" | "mailto" | "ftp" => Some(url.to_string()),
            _ => None,
        }
    }
}

impl TextDecorator for LinkDecorator {
    type Annotation = ();

    fn decorate_link_start(&mut self, url: &str) -> (String, Self::Annotation) {
        let target = self.target(url);
        self.open.push(target);
        (String::new(), ())
    }

    fn decorate_link_end(&mut self) -> String {
        match self.open.pop().flatten() {
            Some(url) => format!(" ({url})"),
            None => String::new(),
        }
    }

    fn decorate_em_start(&self) -> (String, Self::Annotation) {
        (String::new(), ())
    }

    fn decorate_em_end(&self) -> String {
        String::new()
    }

    fn decorate_strong_start(&self) -> (String, Self::Annotation) {
        (String::new(), ())
    }

    fn decorate_strong_end(&self) -> String {
        String::new()
    }

    fn decorate_strikeout_start(&self) -> (String, Self::Annotation) {
        (String::new(), ())
    }

    fn decorate_strikeout_end(&self) -> String {
        String::new()
    }

    fn decorate_code_start(&self) -> (String, Self::Annotation) {
        (String::new(), ())
    }

    fn decorate_code_end(&self) -> String {
        String::new()
    }

    fn decorate_preformat_first(&self) -> Self::Annotation {}

    fn decorate_preformat_cont(&self) -> Self::Annotation {}

    fn decorate_image(&mut self, _src: &str, title: &str) -> (String, Self::Annotation) {
        (format!("[image: {title}]"), ())
    }

    fn header_prefix(&self, level: usize) -> String {
        "#".repeat(level) + " "
    }

    fn quote_prefix(&self) -> String {
        "> ".to_owned()
    }

    fn unordered_item_prefix(&self) -> String {
        "- ".to_owned()
    }

    fn ordered_item_prefix(&self, i: i64) -> String {
        format!("{i}. ")
    }

    fn make_subblock_decorator(&self) -> Self {
        Self::new(self.base.clone())
    }

    fn finalise(&mut self, _urls: Vec<String>) -> Vec<TaggedLine<()>> {
        Vec::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> Url {
        Url::parse("https://docs.example.test/guide/index.html").unwrap()
    }

    #[test]
    fn html_keeps_structure_and_absolute_links() {
        let html = r##"<html><head><style>p { x: y }</style></head><body>
            <h2>Section</h2><p>Read <a href="../api/">the API</a>, <a href="#top">top</a>,
            <a href="javascript:go()">go</a>.</p>
            <ol><li>one</li><li>two</li></ol><pre>  keep   spacing</pre>
            <table><tr><th>k</th><th>v</th></tr><tr><td>a</td><td>1</td></tr></table>
            <noscript>enable scripts</noscript><script>var secret = 1;</script></body></html>"##;
        let text = html_to_text(html, &base());
        for expected in [
            "## Section",
            "Read the API (https://docs.example.test/api/), top, go.",
            "1. one\n2. two",
            "  keep   spacing",
        ] {
            assert!(text.contains(expected), "{expected:?} missing from:\n{text}");
        }
        assert!(!text.contains("secret") && !text.contains("x: y"), "{text}");
        assert!(!text.contains("\n\n\n"), "{text:?}");
    }

    #[test]
    fn deeply_nested_html_is_flattened_and_keeps_its_text() {
        for (open, close) in [
            ("<table><tr><td>", "</td></tr></table>"),
            ("<ul><li>", "</li></ul>"),
            (
                "<div><table><tbody><tr><td><blockquote>",
                "</blockquote></td></tr></tbody></table></div>",
            ),
        ] {
            let depth = 5_000;
            let mut html = String::from("<p>before</p>");
            html.push_str(&open.repeat(depth));
            html.push_str("deep <b>text</b><script>hidden()</script>");
            html.push_str(&close.repeat(depth));
            html.push_str("<p>after</p>");
            // A small stack: recursion over the nesting would overflow it.
            let text = std::thread::Builder::new()
                .stack_size(256 * 1024)
                .spawn(move || html_to_text(&html, &base()))
                .unwrap()
                .join()
                .unwrap();
            for expected in ["before", "deep", "text", "after"] {
                assert!(text.contains(expected), "{open}: {expected:?} missing");
            }
            assert!(!text.contains("hidden()"), "{open}");
        }
    }
}
