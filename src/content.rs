//! The markdown notes of `content/`: `index.md` introduces the home page, every other
//! `*.md` becomes a note page linked from the navigation.

use std::path::{Path, PathBuf};

use crate::error::{read_to_string, Error, Result};
use crate::render::markdown::{first_heading, split_front_matter, to_html};

#[derive(Debug, Clone)]
pub struct Note {
    pub slug: String,
    pub title: String,
    pub weight: Option<i64>,
    pub html: String,
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

pub fn load_note(path: &Path) -> Result<Note> {
    let text = read_to_string(path)?;
    let (fm, body) = split_front_matter(path, &text)?;
    let slug = slug_of(path)?;
    let title = fm
        .title
        .or_else(|| first_heading(&body))
        .unwrap_or_else(|| slug.clone());
    Ok(Note {
        slug,
        title,
        weight: fm.weight,
        html: to_html(&body),
        source: path.to_path_buf(),
    })
}

/// Reads the `*.md` files directly inside `dir` (a missing folder means no notes).
pub fn load(dir: &Path) -> Result<Content> {
    let mut content = Content::default();
    if !dir.is_dir() {
        return Ok(content);
    }
    let mut paths: Vec<PathBuf> = walkdir::WalkDir::new(dir)
        .min_depth(1)
        .max_depth(1)
        .into_iter()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_type().is_file())
        .map(|e| e.into_path())
        .filter(|p| p.extension().is_some_and(|e| e == "md"))
        .collect();
    paths.sort();
    for p in paths {
        let note = load_note(&p)?;
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
