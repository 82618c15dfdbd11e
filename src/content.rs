//! The markdown notes of `content/`: `index.md` introduces the home page, every other
//! `*.md` becomes a note page linked from the navigation.

use std::path::{Path, PathBuf};

use crate::config::Config;
use crate::error::{read_to_string, Error, IoContext, Result};
use crate::render::markdown::{first_heading, note_html, split_front_matter};
use crate::render::shortcodes::{self, Shortcode};

#[derive(Debug, Clone)]
pub struct Note {
    pub slug: String,
    pub title: String,
    pub weight: Option<i64>,
    /// `draft: true` in the front matter: published only with `--drafts`.
    pub draft: bool,
    /// HTML with a marker for every `{{ figure(...) }}` (resolved by the note's page).
    pub html: String,
    pub figures: Vec<Shortcode>,
    pub source: PathBuf,
}

#[derive(Debug, Default)]
pub struct Content {
    /// `content/index.md`, rendered, for the home page.
    pub intro: Option<Note>,
    /// The other notes, ordered by weight, then by file name.
    pub notes: Vec<Note>,
}

fn slug_of(path: &Path) -> Result<String> {
    let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or_default();
    let slug: String = stem
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect();
    if slug.trim_matches('-').is_empty() {
        return Err(Error::at(path, "cannot make a page name from this file name"));
    }
    Ok(slug)
}

/// Reads one note; `safe_html` strips its raw HTML.
pub fn load_note(path: &Path, safe_html: bool) -> Result<Note> {
    let text = read_to_string(path)?;
    let (fm, body) = split_front_matter(path, &text)?;
    let first_line = text[..text.len() - body.len()].matches('\n').count() + 1;
    let (body, figures) =
        shortcodes::extract(&body, first_line).map_err(|(line, msg)| Error::at_line(path, Some(line), msg))?;
    let slug = slug_of(path)?;
    let title = fm
        .title
        .or_else(|| first_heading(&body))
        .unwrap_or_else(|| slug.clone());
    Ok(Note {
        slug,
        title,
        weight: fm.weight,
        draft: fm.draft,
        html: note_html(&body, safe_html),
        figures,
        source: path.to_path_buf(),
    })
}

/// Reads the `*.md` files directly inside the site's `content/` (a missing folder means no
/// notes). Symlinks are followed, but one that leads out of the site root is refused unless
/// `site.allow_outside_root` is set.
pub fn load(config: &Config) -> Result<Content> {
    let dir = config.root.join("content");
    let mut content = Content::default();
    if !dir.is_dir() {
        return Ok(content);
    }
    let allow = config.site.allow_outside_root;
    let root = config.root.canonicalize().at_path(&config.root)?;
    let inside = |p: &Path| -> Result<()> {
        let real = p.canonicalize().at_path(p)?;
        if allow || real.starts_with(&root) {
            return Ok(());
        }
        Err(Error::at(
            p,
            format!(
                "leads to `{}`, outside the site root `{}` (the folder holding {}); \
                 set `site.allow_outside_root: true` in the config to allow it",
                real.display(),
                root.display(),
                config.path.file_name().unwrap_or_default().to_string_lossy()
            ),
        ))
    };
    inside(&dir)?;
    let mut paths = Vec::new();
    for e in std::fs::read_dir(&dir).at_path(&dir)? {
        let p = e.at_path(&dir)?.path();
        if p.extension().is_none_or(|e| e != "md") {
            continue;
        }
        let meta = std::fs::symlink_metadata(&p).at_path(&p)?;
        if meta.file_type().is_symlink() {
            inside(&p)?;
        }
        if p.is_file() {
            paths.push(p);
        }
    }
    paths.sort();
    for p in paths {
        let note = load_note(&p, config.site.safe_html)?;
        if p.file_name().is_some_and(|n| n == "index.md") {
            content.intro = Some(note);
        } else {
            if let Some(other) = content.notes.iter().find(|n| n.slug == note.slug) {
                return Err(Error::at(
                    &p,
                    format!("gives the same page name `{}` as {}", note.slug, other.source.display()),
                ));
            }
            content.notes.push(note);
        }
    }
    content
        .notes
        .sort_by(|a, b| (a.weight.is_none(), a.weight, &a.slug).cmp(&(b.weight.is_none(), b.weight, &b.slug)));
    Ok(content)
}
