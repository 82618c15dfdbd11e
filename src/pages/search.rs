//! The search index: every page's title and text, as an elasticlunr index in
//! `search-index.js` (a script, since pages opened from `file://` cannot fetch JSON), read by
//! the theme's `search.js`. Built from the written pages, so every page kind is searchable
//! without telling the index about it.

use std::collections::BTreeSet;
use std::path::Path;

use elasticlunr::pipeline::Pipeline;
use elasticlunr::{IndexBuilder, Language};
use serde::Serialize;

use super::Input;
use crate::error::{read_to_string, Result};
use crate::plan;

/// The file the pages load when the search box is first used.
pub const INDEX_FILE: &str = "search-index.js";

/// Words as the index and `search.js` split them: runs of letters and digits, lowercased,
/// and every Chinese character on its own (Chinese has no spaces between words). No
/// stemming and no stop words, so the script needs no language rules to match.
pub fn tokens(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut word = String::new();
    for c in text.chars() {
        if is_han(c) {
            if !word.is_empty() {
                out.push(std::mem::take(&mut word));
            }
            out.push(c.to_string());
        } else if c.is_alphanumeric() || c == '_' {
            word.extend(c.to_lowercase());
        } else if !word.is_empty() {
            out.push(std::mem::take(&mut word));
        }
    }
    if !word.is_empty() {
        out.push(word);
    }
    out
}

/// The ranges `search.js` treats as Chinese characters too.
fn is_han(c: char) -> bool {
    matches!(c, '\u{3400}'..='\u{4DBF}' | '\u{4E00}'..='\u{9FFF}' | '\u{F900}'..='\u{FAFF}')
}

/// English function words ("the", "of", …) are left out of the index: they are on every
/// page and would make it several times larger. elasticlunr's own English list.
fn stop_words() -> Pipeline {
    let mut p = elasticlunr::lang::English::new().make_pipeline();
    p.queue.retain(|f| f.name() == "stopWordFilter");
    p
}

struct Words;

impl Language for Words {
    fn name(&self) -> String {
        // elasticlunr names the language in the index; ours is no lunr language.
        "cnnscope".into()
    }
    fn code(&self) -> String {
        "cnnscope".into()
    }
    fn tokenize(&self, text: &str) -> Vec<String> {
        tokens(text)
    }
    fn make_pipeline(&self) -> Pipeline {
        stop_words()
    }
}

/// What a result shows: the page's heading, where it is, its language, a line of its text.
/// Documents are numbered in the index (their page paths, on every posting, would make it
/// four times larger).
#[derive(Serialize)]
struct Doc {
    href: String,
    title: String,
    crumbs: String,
    lang: String,
    teaser: String,
}

/// The text of one page, as the index reads it.
#[derive(Debug, Default, PartialEq)]
pub struct PageText {
    pub lang: String,
    /// The `<h1>`, without its `<small>` aside.
    pub title: String,
    /// The breadcrumbs (`<p class="crumbs">`), without the page itself.
    pub crumbs: String,
    /// Everything else in `<main>`, without scripts and styles.
    pub body: String,
}

#[derive(PartialEq, Clone, Copy)]
enum Part {
    Body,
    Title,
    Crumbs,
    Skip,
}

const VOID: &[&str] = &[
    "img", "br", "hr", "input", "meta", "link", "source", "wbr", "col", "area",
];

/// Reads a page written by the theme: `<html lang>`, `<main>`'s `<h1>`, crumbs and text.
/// Only for the site's own pages (well-formed, generated), not for HTML at large.
pub fn page_text(html: &str) -> PageText {
    let mut t = PageText::default();
    if let Some(a) = html.find("<html lang=\"") {
        let rest = &html[a + 12..];
        t.lang = rest[..rest.find('"').unwrap_or(0)].to_string();
    }
    let main = match (html.find("<main"), html.rfind("</main>")) {
        (Some(a), Some(b)) if a < b => &html[a..b],
        _ => return t,
    };
    // Open elements and the part of the page their text belongs to.
    let mut stack: Vec<(&str, Part)> = Vec::new();
    let mut rest = main;
    loop {
        let part = stack.last().map(|s| s.1).unwrap_or(Part::Body);
        let next = rest.find('<').unwrap_or(rest.len());
        let sink = match part {
            Part::Body => Some(&mut t.body),
            Part::Title => Some(&mut t.title),
            Part::Crumbs => Some(&mut t.crumbs),
            Part::Skip => None,
        };
        if let Some(sink) = sink {
            sink.push_str(&decode(&rest[..next]));
            // Tags separate words (`<td>a</td><td>b</td>` is two).
            sink.push(' ');
        }
        rest = &rest[next..];
        let Some(end) = rest.find('>') else { break };
        let tag = &rest[1..end];
        rest = &rest[end + 1..];
        let name = name_of(tag);
        if tag.starts_with('/') {
            if let Some(k) = stack.iter().rposition(|(n, _)| *n == name) {
                stack.truncate(k);
            }
        } else if !tag.starts_with('!') && !VOID.contains(&name) && !tag.ends_with('/') {
            let inner = match name {
                "script" | "style" | "svg" | "noscript" => Part::Skip,
                "h1" if part == Part::Body => Part::Title,
                // A heading's aside ("lenet-mnist, 2 of 84") is text, not title: short
                // titles rank first.
                "small" if part == Part::Title => Part::Body,
                "p" if part == Part::Body && tag.contains("class=\"crumbs\"") => Part::Crumbs,
                _ => part,
            };
            stack.push((name, inner));
        }
    }
    let squash = |s: &str| s.split_whitespace().collect::<Vec<_>>().join(" ");
    t.title = squash(&t.title);
    t.crumbs = squash(&t.crumbs);
    t.body = squash(&t.body);
    t
}

fn name_of(tag: &str) -> &str {
    let tag = tag.trim_start_matches('/');
    let end = tag.find(|c: char| c.is_whitespace() || c == '/').unwrap_or(tag.len());
    &tag[..end]
}

/// The entities the theme's escaping writes, and numeric ones.
fn decode(s: &str) -> String {
    if !s.contains('&') {
        return s.to_string();
    }
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(a) = rest.find('&') {
        out.push_str(&rest[..a]);
        rest = &rest[a..];
        let end = rest.find(';').filter(|&e| e <= 10);
        let decoded = end.and_then(|e| match &rest[1..e] {
            "amp" => Some('&'),
            "lt" => Some('<'),
            "gt" => Some('>'),
            "quot" => Some('"'),
            "#39" | "apos" => Some('\''),
            "nbsp" => Some(' '),
            n => n
                .strip_prefix("#x")
                .and_then(|h| u32::from_str_radix(h, 16).ok())
                .or_else(|| n.strip_prefix('#').and_then(|d| d.parse().ok()))
                .and_then(char::from_u32),
        });
        match (decoded, end) {
            (Some(c), Some(e)) => {
                out.push(c);
                rest = &rest[e + 1..];
            }
            _ => {
                out.push('&');
                rest = &rest[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// The first words of a text, cut at a word boundary.
fn teaser(body: &str, title: &str) -> String {
    let body = body.strip_prefix(title).unwrap_or(body).trim();
    let mut out = String::new();
    for w in body.split(' ') {
        if out.chars().count() + w.chars().count() > 160 {
            out.push('…');
            break;
        }
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(w);
    }
    out
}

fn to_json(v: &impl Serialize) -> Result<String> {
    serde_json::to_string(v).map_err(|e| crate::error::Error::msg(format!("search index: {e}")))
}

/// Indexes every `index.html` under `out` (the pages just written) into `search-index.js`.
/// Returns the number of pages indexed.
pub fn write(input: &Input, out: &Path) -> Result<usize> {
    let pages: Vec<String> = crate::build::output::page_folders(out)
        .iter()
        .map(|folder| plan::href(folder))
        .collect();
    let mut index = IndexBuilder::with_language(Box::new(Words))
        .save_docs(false)
        .add_fields(&["title", "body"])
        .build();
    let mut docs = Vec::new();
    // The stop words met, so that the script can drop them from queries too.
    let mut stop = BTreeSet::new();
    let filter = stop_words();
    for (k, page) in pages.iter().enumerate() {
        let p = out.join(page);
        let text = page_text(&read_to_string(&p)?);
        let title = if text.title.is_empty() {
            input.site.config.site.title.clone()
        } else {
            text.title.clone()
        };
        for t in tokens(&title).into_iter().chain(tokens(&text.body)) {
            if filter.run(vec![t.clone()]).is_empty() {
                stop.insert(t);
            }
        }
        index.add_doc(&k.to_string(), [title.as_str(), text.body.as_str()]);
        docs.push(Doc {
            href: page.clone(),
            teaser: teaser(&text.body, &text.title),
            title,
            crumbs: text.crumbs,
            lang: text.lang,
        });
    }
    let text = format!(
        "{{\"index\":{},\"docs\":{},\"stop\":{}}}",
        index.to_json(),
        to_json(&docs)?,
        to_json(&stop)?
    );
    // A script, not JSON: `file://` pages may load scripts but not fetch files.
    crate::build::output::write_whole(&out.join(INDEX_FILE), format!("window.cnnscopeSearch = {text};\n"))?;
    Ok(pages.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_split_words_and_chinese_characters() {
        assert_eq!(
            tokens("Grad-CAM on `relu4`: tabby cat, 祖母神经元 x2"),
            ["grad", "cam", "on", "relu4", "tabby", "cat", "祖", "母", "神", "经", "元", "x2"]
        );
    }

    #[test]
    fn page_text_reads_title_crumbs_and_body() {
        let html = "<!DOCTYPE html><html lang=\"zh\"><head><title>x</title></head><body><header>nav</header>\
            <main class=\"wide\"><p class=\"crumbs\"><a href=\"a\">Home</a> › m</p><h1>Tabby &amp; <small>cat</small></h1>\
            <table><tr><td>a</td><td>b</td></tr></table><script>var s = 1;</script><img src=x alt=y><p>A&#39;s 5&lt;6</p></main><footer>f</footer></body></html>";
        let t = page_text(html);
        assert_eq!(t.lang, "zh");
        assert_eq!(t.title, "Tabby &");
        assert_eq!(t.crumbs, "Home › m");
        assert_eq!(t.body, "cat a b A's 5<6");
    }

    #[test]
    fn teaser_cuts_at_a_word() {
        let long = "word ".repeat(60);
        let t = teaser(&long, "");
        assert!(t.ends_with('…') && t.chars().count() <= 162, "{t}");
    }
}
