//! Markdown notes: optional YAML front matter, then CommonMark with tables, footnotes and
//! strikethrough, rendered by pulldown-cmark.

use std::path::Path;

use pulldown_cmark::{html, Options, Parser};
use serde::Deserialize;

use crate::error::{Error, Result};

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FrontMatter {
    pub title: Option<String>,
    /// Lower weights come first in the navigation; notes without one come last, by name.
    pub weight: Option<i64>,
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

pub fn to_html(markdown: &str) -> String {
    let opts = Options::ENABLE_TABLES
        | Options::ENABLE_FOOTNOTES
        | Options::ENABLE_STRIKETHROUGH
        | Options::ENABLE_HEADING_ATTRIBUTES;
    let mut out = String::new();
    html::push_html(&mut out, Parser::new_ext(markdown, opts));
    out
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
        let html = to_html(&body);
        assert!(
            html.contains("<table>") && html.contains("<del>") && html.contains("footnote"),
            "{html}"
        );
    }

    #[test]
    fn headings_can_carry_ids() {
        assert!(to_html("## Chelsea {#chelsea}\n").contains("<h2 id=\"chelsea\">Chelsea</h2>"));
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
