//! Markdown notes: optional YAML front matter, then CommonMark with tables, footnotes and
//! strikethrough, rendered by pulldown-cmark.

use std::path::Path;

use pulldown_cmark::{html, Event, Options, Parser};
use serde::Deserialize;

use crate::error::{Error, Result};

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FrontMatter {
    pub title: Option<String>,
    /// Lower weights come first in the navigation; notes without one come last, by name.
    pub weight: Option<i64>,
    /// Left out of the site unless the build is run with `--drafts`.
    #[serde(default)]
    pub draft: bool,
}

/// Splits `---\n…\n---` front matter from the body. Returns the parsed front matter and
/// the body, with the number of lines the front matter took (for error lines).
pub fn split_front_matter(path: &Path, text: &str) -> Result<(FrontMatter, String)> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut lines = text.split_inclusive('\n');
    let first = lines.next().unwrap_or("");
    if first.trim_end() != "---" {
        return Ok((FrontMatter::default(), text.to_string()));
    }
    let mut yaml = String::new();
    let mut consumed = first.len();
    let mut closed = false;
    for line in lines {
        consumed += line.len();
        if line.trim_end() == "---" {
            closed = true;
            break;
        }
        yaml.push_str(line);
    }
    if !closed {
        return Err(Error::at_line(
            path,
            Some(1),
            "front matter opened with `---` is never closed by a `---` line",
        ));
    }
    let fm: FrontMatter = if yaml.trim().is_empty() {
        FrontMatter::default()
    } else {
        serde_yaml::from_str(&yaml).map_err(|e| {
            // The YAML starts on line 2 of the file.
            let line = e.location().map(|l| l.line() + 1);
            let msg = e.to_string();
            let msg = msg.split(" at line ").next().unwrap_or(&msg).to_string();
            Error::at_line(path, line, format!("front matter: {msg}"))
        })?
    };
    Ok((fm, text[consumed..].to_string()))
}

fn options() -> Options {
    Options::ENABLE_TABLES
        | Options::ENABLE_FOOTNOTES
        | Options::ENABLE_STRIKETHROUGH
        | Options::ENABLE_HEADING_ATTRIBUTES
}

/// Markdown from `gallery.yaml` (captions, model descriptions): raw HTML in it is shown as
/// text, not interpreted, and links are sanitized, since text from the config is escaped.
pub fn to_html(markdown: &str) -> String {
    let events = Parser::new_ext(markdown, options()).map(|e| match e {
        Event::Html(s) | Event::InlineHtml(s) => Event::Text(s),
        e => e,
    });
    let mut out = String::new();
    html::push_html(&mut out, events);
    sanitize(&out)
}

/// A note's markdown. Raw HTML is passed through (the author is trusted), unless
/// `safe_html` is set: then everything ammonia does not consider safe is stripped.
pub fn note_html(markdown: &str, safe_html: bool) -> String {
    let mut out = String::new();
    html::push_html(&mut out, Parser::new_ext(markdown, options()));
    if safe_html {
        sanitize(&out)
    } else {
        out
    }
}

/// ammonia's defaults, plus what pulldown-cmark itself writes: heading and footnote ids,
/// footnote and code-language classes, table-cell alignment.
fn sanitize(html: &str) -> String {
    use std::sync::OnceLock;
    static BUILDER: OnceLock<ammonia::Builder<'static>> = OnceLock::new();
    BUILDER
        .get_or_init(|| {
            let mut b = ammonia::Builder::default();
            for h in ["h1", "h2", "h3", "h4", "h5", "h6"] {
                b.add_tag_attributes(h, &["id"]);
            }
            b.add_tag_attributes("div", &["id", "class"])
                .add_tag_attributes("sup", &["class"])
                .add_tag_attributes("code", &["class"])
                .add_tag_attributes("th", &["style"])
                .add_tag_attributes("td", &["style"])
                .filter_style_properties(["text-align"].into_iter().collect())
                // Only the classes pulldown-cmark writes; any other class is dropped whole.
                .attribute_filter(|elem, attr, value| {
                    let ok = match (elem, attr) {
                        ("div", "class") => value == "footnote-definition",
                        ("sup", "class") => value == "footnote-reference" || value == "footnote-definition-label",
                        ("code", "class") => value.strip_prefix("language-").is_some_and(|l| {
                            !l.is_empty() && l.chars().all(|c| c.is_ascii_alphanumeric() || "+-_#.".contains(c))
                        }),
                        _ => true,
                    };
                    ok.then_some(value.into())
                })
                .link_rel(None);
            b
        })
        .clean(html)
        .to_string()
}

/// The text of the first `# heading`, if the body starts with one.
pub fn first_heading(markdown: &str) -> Option<String> {
    markdown
        .lines()
        .find(|l| !l.trim().is_empty())
        .and_then(|l| l.strip_prefix("# "))
        .map(|s| s.trim().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn front_matter_and_extensions() {
        let (fm, body) = split_front_matter(
            Path::new("n.md"),
            "---\ntitle: A\nweight: 2\n---\n| a |\n|---|\n| b |\n\n~~x~~[^1]\n\n[^1]: f\n",
        )
        .unwrap();
        assert_eq!(fm.title.as_deref(), Some("A"));
        assert_eq!(fm.weight, Some(2));
        let html = note_html(&body, false);
        assert!(
            html.contains("<table>") && html.contains("<del>") && html.contains("footnote"),
            "{html}"
        );
    }

    #[test]
    fn headings_can_carry_ids() {
        for html in [
            to_html("## Chelsea {#chelsea}\n"),
            note_html("## Chelsea {#chelsea}\n", false),
            note_html("## Chelsea {#chelsea}\n", true),
        ] {
            assert!(html.contains("<h2 id=\"chelsea\">Chelsea</h2>"), "{html}");
        }
    }

    const NOTE: &str = "# T\n\n<script>alert(1)</script>\n\n<div class=\"x\">box</div>\n\nA <b>b</b> [l](javascript:alert(2)) and [ok](https://example.org/a).\n";

    #[test]
    fn raw_html_in_notes_passes_by_default() {
        let html = note_html(NOTE, false);
        for part in ["<script>alert(1)</script>", "<div class=\"x\">box</div>", "<b>b</b>"] {
            assert!(html.contains(part), "{part} in {html}");
        }
    }

    #[test]
    fn safe_html_strips_scripts_and_unknown_attributes() {
        let html = note_html(NOTE, true);
        assert!(!html.contains("<script") && !html.contains("alert(1)"), "{html}");
        assert!(!html.contains("class=\"x\"") && !html.contains("javascript:"), "{html}");
        assert!(html.contains("<b>b</b>") && html.contains("<div>box</div>"), "{html}");
        assert!(html.contains("<a href=\"https://example.org/a\">ok</a>"), "{html}");
    }

    #[test]
    fn safe_html_keeps_what_markdown_writes() {
        let md = "| a | b |\n|:--|--:|\n| 1 | 2 |\n\nx[^n]\n\n[^n]: foot\n\n```rust\nlet x = 1;\n```\n";
        // ammonia rewrites the style attribute without the space.
        assert_eq!(
            note_html(md, true),
            note_html(md, false).replace("text-align: ", "text-align:")
        );
    }

    #[test]
    fn config_markdown_shows_raw_html_as_text() {
        let html = to_html("A *three* <script>alert(1)</script> [x](javascript:alert(2))");
        assert!(html.contains("<em>three</em>"), "{html}");
        assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"), "{html}");
        assert!(!html.contains("<script") && !html.contains("javascript:"), "{html}");
    }

    #[test]
    fn bad_front_matter_names_file_and_line() {
        let e = split_front_matter(Path::new("n.md"), "---\ntitle: A\nweight: [\n---\nbody").unwrap_err();
        let s = e.to_string();
        assert!(s.starts_with("n.md:"), "{s}");
        let e = split_front_matter(Path::new("n.md"), "---\ntitel: A\n---\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("unknown field `titel`"), "{e}");
    }
}
