//! Markdown notes: optional YAML front matter, then CommonMark with tables, footnotes,
//! strikethrough and math, rendered by pulldown-cmark; `$…$` and `$$…$$` become MathML at
//! build time (math-core), so formulas show without scripts or a network.

use std::path::Path;
use std::sync::OnceLock;

use math_core::{LatexToMathML, MathCoreConfig, MathDisplay};
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
        // The YAML starts on line 2 of the file.
        serde_yaml::from_str(&yaml).map_err(|e| Error::yaml(path, 2, &e, |m| format!("front matter: {m}")))?
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

/// A formula math-core cannot convert: where it starts in the markdown (byte offset) and why.
#[derive(Debug)]
pub struct MathError {
    pub offset: usize,
    pub message: String,
}

fn converter() -> &'static LatexToMathML {
    static CONVERTER: OnceLock<LatexToMathML> = OnceLock::new();
    CONVERTER.get_or_init(|| LatexToMathML::new(MathCoreConfig::default()).expect("no custom macros"))
}

/// One formula as MathML; the message names the formula and the error's position in it.
pub fn formula(latex: &str, block: bool) -> std::result::Result<String, String> {
    let display = if block { MathDisplay::Block } else { MathDisplay::Inline };
    converter()
        .convert_with_local_state(latex, display)
        .map(|r| r.mathml)
        .map_err(|e| {
            let mut m = String::new();
            e.to_message(&mut m, latex);
            format!("formula `{}`: at character {m}", latex.trim())
        })
}

// Formulas travel through the HTML (and ammonia, for safe notes) as private-use markers and
// are put in last: the MathML is generated, not written by the author, so it is never
// stripped.
const MATH_OPEN: char = '\u{E010}';
const MATH_CLOSE: char = '\u{E011}';

/// A note's markdown. Raw HTML is passed through (the author is trusted), unless
/// `safe_html` is set: then everything ammonia does not consider safe is stripped.
pub fn note_html(markdown: &str, safe_html: bool) -> std::result::Result<String, MathError> {
    let mut math = Vec::new();
    let mut error = None;
    let events = Parser::new_ext(markdown, options() | Options::ENABLE_MATH)
        .into_offset_iter()
        .map(|(e, at)| match e {
            Event::InlineMath(tex) | Event::DisplayMath(tex) => {
                let block = markdown[at.clone()].starts_with("$$");
                match formula(&tex, block) {
                    Ok(m) => math.push(m),
                    Err(message) => {
                        error.get_or_insert(MathError {
                            offset: at.start,
                            message,
                        });
                        math.push(String::new());
                    }
                }
                Event::Text(format!("{MATH_OPEN}{}{MATH_CLOSE}", math.len() - 1).into())
            }
            e => e,
        });
    let mut out = String::new();
    html::push_html(&mut out, events);
    if let Some(e) = error {
        return Err(e);
    }
    let out = if safe_html { sanitize(&out) } else { out };
    Ok(put_math(&out, &math))
}

fn put_math(html: &str, math: &[String]) -> String {
    if math.is_empty() {
        return html.to_string();
    }
    let mut out = String::with_capacity(html.len() + math.iter().map(String::len).sum::<usize>());
    let mut rest = html;
    while let Some(a) = rest.find(MATH_OPEN) {
        let Some(b) = rest[a..].find(MATH_CLOSE) else { break };
        out.push_str(&rest[..a]);
        let k: Option<usize> = rest[a + MATH_OPEN.len_utf8()..a + b].parse().ok();
        match k.and_then(|k| math.get(k)) {
            Some(m) => out.push_str(m),
            None => out.push_str(&rest[a..a + b + MATH_CLOSE.len_utf8()]),
        }
        rest = &rest[a + b + MATH_CLOSE.len_utf8()..];
    }
    out.push_str(rest);
    out
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
        let html = note_html(&body, false).unwrap();
        assert!(
            html.contains("<table>") && html.contains("<del>") && html.contains("footnote"),
            "{html}"
        );
    }

    #[test]
    fn headings_can_carry_ids() {
        for html in [
            to_html("## Chelsea {#chelsea}\n"),
            note_html("## Chelsea {#chelsea}\n", false).unwrap(),
            note_html("## Chelsea {#chelsea}\n", true).unwrap(),
        ] {
            assert!(html.contains("<h2 id=\"chelsea\">Chelsea</h2>"), "{html}");
        }
    }

    const NOTE: &str = "# T\n\n<script>alert(1)</script>\n\n<div class=\"x\">box</div>\n\nA <b>b</b> [l](javascript:alert(2)) and [ok](https://example.org/a).\n";

    #[test]
    fn raw_html_in_notes_passes_by_default() {
        let html = note_html(NOTE, false).unwrap();
        for part in ["<script>alert(1)</script>", "<div class=\"x\">box</div>", "<b>b</b>"] {
            assert!(html.contains(part), "{part} in {html}");
        }
    }

    #[test]
    fn safe_html_strips_scripts_and_unknown_attributes() {
        let html = note_html(NOTE, true).unwrap();
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
            note_html(md, true).unwrap(),
            note_html(md, false).unwrap().replace("text-align: ", "text-align:")
        );
    }

    #[test]
    fn math_becomes_mathml_in_both_modes() {
        let md = "Inline $w_k = \\frac{1}{Z}\\sum_{i,j} g_{ij}$ and\n\n$$L^c = \\mathrm{relu}\\Big(\\sum_k w_k A^k\\Big)$$\n";
        for safe in [false, true] {
            let html = note_html(md, safe).unwrap();
            assert!(html.contains("<math><msub><mi>w</mi>"), "{html}");
            assert!(html.contains("<math display=\"block\">"), "{html}");
            assert!(html.contains("<mfrac>") && !html.contains('$'), "{html}");
        }
        // Not math: a lone dollar, and dollars in code.
        let html = note_html("It costs $5.\n\nIn code: `$x$`; escaped: \\$y\\$.", false).unwrap();
        assert!(!html.contains("<math"), "{html}");
        assert!(
            html.contains("$5") && html.contains("<code>$x$</code>") && html.contains("$y$"),
            "{html}"
        );
    }

    #[test]
    fn a_bad_formula_names_itself_and_where_it_is() {
        let md = "line one\n\nsee $\\nosuchcommand{1}$ here\n";
        let e = note_html(md, false).unwrap_err();
        assert_eq!(md[..e.offset].matches('\n').count(), 2);
        assert!(e.message.contains("formula `\\nosuchcommand{1}`"), "{}", e.message);
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
