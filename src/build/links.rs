//! Internal links of a built site: every `href` and `src` of every page must name a file of
//! the site, and every `#anchor` an id of its page. Each broken link is traced to where it
//! was written — a note's line, a config key's line — or else to the template that draws
//! its page kind; the same link from one source is reported once, with its page count.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Component, Path, PathBuf};

use super::Site;
use crate::error::{IoContext, Result};

/// One broken link, where it was written, and on how many pages it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokenLink {
    /// `path:line` of the note or config that holds it, or the template's name.
    pub source: String,
    pub link: String,
    pub why: String,
    /// The first page it is on, and how many pages in all.
    pub page: String,
    pub pages: usize,
}

/// The value of every `attr="…"` in `html`.
fn attrs<'a>(html: &'a str, attr: &str) -> Vec<&'a str> {
    let pat = format!(" {attr}=\"");
    let mut out = Vec::new();
    let mut rest = html;
    while let Some(at) = rest.find(&pat) {
        rest = &rest[at + pat.len()..];
        if let Some(end) = rest.find('"') {
            out.push(&rest[..end]);
            rest = &rest[end..];
        }
    }
    out
}

fn unescape(s: &str) -> String {
    s.replace("&amp;", "&").replace("&quot;", "\"").replace("&#39;", "'")
}

/// A link's path decoded, or as written when it does not decode.
fn decoded(s: &str) -> String {
    crate::plan::percent_decode(s).unwrap_or_else(|| s.to_string())
}

/// `page`'s folder joined with a relative `link` path, normalised; `None` if it climbs out
/// of the site.
fn join(page: &str, link: &str) -> Option<String> {
    let mut parts: Vec<String> = Path::new(page)
        .parent()
        .map(|p| {
            p.components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    for c in Path::new(link).components() {
        match c {
            Component::Normal(s) => parts.push(s.to_string_lossy().into_owned()),
            Component::ParentDir => {
                parts.pop()?;
            }
            Component::CurDir => {}
            _ => return None,
        }
    }
    Some(parts.join("/"))
}

/// The template a page path is drawn by (for links no note or config holds).
fn template_of(page: &str) -> &'static str {
    let p: Vec<&str> = page.split('/').collect();
    match p.as_slice() {
        ["index.html"] => "index.html",
        ["404.html"] => "404.html",
        ["notes", _, _] => "note.html",
        ["models", _, "index.html"] => "model.html",
        ["models", _, "images", _, "index.html"] => "image.html",
        ["models", _, "images", _, "attributions", _] => "attributions.html",
        ["models", _, "images", _, "gradients", _] => "gradients.html",
        ["models", _, "images", _, "randomisation", _] => "randomisation.html",
        ["models", _, "images", _, "overview", _] => "overview.html",
        ["models", _, "methods", _, _] => "method.html",
        ["models", _, "leaderboard", _] => "leaderboard.html",
        ["models", _, "playground", _] => "playground.html",
        ["models", _, "feature-visualization", _] => "featurevis.html",
        ["models", _, "layers", _, "units", _, _] => "unit.html",
        ["models", _, "layers", _, "embedding", _] => "embedding.html",
        ["models", _, "layers", _, "directions", _] => "directions.html",
        ["models", _, "layers", _, _] => "layer.html or fv_layer.html",
        _ => "a template",
    }
}

/// The 1-based line of the first occurrence of `needle` in `text`.
fn line_of(text: &str, needle: &str) -> Option<usize> {
    text.find(needle).map(|at| text[..at].matches('\n').count() + 1)
}

/// Where a link on `page` was written: the note or intro of that page, the config, or the
/// page's template.
fn source_of(site: &Site, page: &str, link: &str, notes: &HashMap<String, (PathBuf, String)>) -> String {
    if let Some((path, text)) = notes.get(page) {
        if let Some(line) = line_of(text, link) {
            return format!("{}:{line}", path.display());
        }
    }
    if let Some(line) = line_of(&site.config.text, link) {
        return format!("{}:{line}", site.config.path.display());
    }
    // A translation's pages are drawn by the same templates.
    let neutral = site
        .content
        .translations
        .iter()
        .find_map(|t| page.strip_prefix(&format!("{}/", t.lang)))
        .unwrap_or(page);
    format!("template {}", template_of(neutral))
}

/// Checks every internal link and anchor of the site built in `out`.
pub fn check(site: &Site, out: &Path) -> Result<Vec<BrokenLink>> {
    let mut pages: Vec<String> = Vec::new();
    for e in walkdir::WalkDir::new(out).sort_by_file_name() {
        let e = e.map_err(|e| crate::Error::msg(e.to_string()))?;
        if e.file_type().is_file() && e.path().extension().is_some_and(|x| x == "html") {
            let rel = e.path().strip_prefix(out).expect("under out");
            pages.push(rel.to_string_lossy().replace('\\', "/"));
        }
    }
    let mut html: HashMap<String, String> = HashMap::new();
    for p in &pages {
        let path = out.join(p);
        html.insert(p.clone(), std::fs::read_to_string(&path).at_path(&path)?);
    }
    let ids: HashMap<&str, HashSet<String>> = html
        .iter()
        .map(|(p, h)| {
            let mut set: HashSet<String> = attrs(h, "id").into_iter().map(unescape).collect();
            set.extend(attrs(h, "name").into_iter().map(unescape));
            (p.as_str(), set)
        })
        .collect();
    // Note sources, by the page they are drawn on (the intros on the home pages).
    let mut notes = HashMap::new();
    let c = &site.content;
    let languages = std::iter::once(("", &c.intro, &c.notes))
        .chain(c.translations.iter().map(|t| (t.lang.as_str(), &t.intro, &t.notes)));
    for (lang, intro, list) in languages {
        let pages = intro
            .iter()
            .map(|n| (n, String::new()))
            .chain(list.iter().map(|n| (n, crate::plan::note_page(&n.slug))));
        for (n, page) in pages {
            if let Ok(text) = std::fs::read_to_string(&n.source) {
                notes.insert(
                    crate::plan::href(&crate::plan::in_language(lang, &page)),
                    (n.source.clone(), text),
                );
            }
        }
    }
    // (source, link, why) → (first page, count)
    let mut broken: BTreeMap<(String, String, String), (String, usize)> = BTreeMap::new();
    for page in &pages {
        let h = &html[page];
        for raw in attrs(h, "href").into_iter().chain(attrs(h, "src")) {
            let link = unescape(raw);
            if link.is_empty()
                || link.contains("://")
                || link.starts_with("mailto:")
                || link.starts_with("data:")
                || link.starts_with("javascript:")
                || link.starts_with('/')
            {
                continue;
            }
            let (path, fragment) = match link.split_once('#') {
                Some((p, f)) => (p, Some(f)),
                None => (link.as_str(), None),
            };
            let path = path.split('?').next().unwrap_or_default();
            let target = if path.is_empty() {
                Some(page.clone())
            } else {
                join(page, &decoded(path)).map(|t| {
                    if out.join(&t).is_dir() {
                        format!("{t}/index.html").trim_start_matches('/').to_string()
                    } else {
                        t
                    }
                })
            };
            let why = match &target {
                None => Some("leads out of the site".to_string()),
                Some(t) if !out.join(t).is_file() => Some(format!("no file `{t}`")),
                Some(t) => match (fragment, ids.get(t.as_str())) {
                    (Some(f), Some(set)) if !f.is_empty() && !set.contains(&decoded(f)) => {
                        Some(format!("no anchor `#{f}` in `{t}`"))
                    }
                    _ => None,
                },
            };
            if let Some(why) = why {
                let source = source_of(site, page, &link, &notes);
                broken
                    .entry((source, link.clone(), why))
                    .and_modify(|(_, n)| *n += 1)
                    .or_insert((page.clone(), 1));
            }
        }
    }
    Ok(broken
        .into_iter()
        .map(|((source, link, why), (page, pages))| BrokenLink {
            source,
            link,
            why,
            page,
            pages,
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_resolve_against_their_page() {
        assert_eq!(
            join("notes/a/index.html", "../../models/m/index.html").as_deref(),
            Some("models/m/index.html")
        );
        assert_eq!(
            join("index.html", "static/style.css").as_deref(),
            Some("static/style.css")
        );
        assert_eq!(join("index.html", "../x.html"), None);
        assert_eq!(
            attrs(r#"<a href="a.html">x</a> <img src="b.png" id="c">"#, "href"),
            vec!["a.html"]
        );
        assert_eq!(decoded("a%20b"), "a b");
        assert_eq!(decoded("100%"), "100%");
        assert_eq!(line_of("one\ntwo [x](y.html)\n", "y.html"), Some(2));
        assert_eq!(
            template_of("models/m/images/i/attributions/index.html"),
            "attributions.html"
        );
    }
}
