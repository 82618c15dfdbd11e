//! The markdown notes of `content/`: `index.md` introduces the home page, every other
//! `*.md` becomes a note page linked from the navigation. `name.<lang>.md` (say
//! `photographs.zh.md`) is the note in another language: its pages are under `<lang>/`.

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
    /// The notes in other languages, by language code.
    pub translations: Vec<Translation>,
}

/// The notes of one other language: `index.<lang>.md` and `<name>.<lang>.md`.
#[derive(Debug)]
pub struct Translation {
    pub lang: String,
    pub intro: Option<Note>,
    /// Ordered as the site's notes; notes that exist only in this language come last.
    pub notes: Vec<Note>,
}

impl Content {
    pub fn translation(&self, lang: &str) -> Option<&Translation> {
        self.translations.iter().find(|t| t.lang == lang)
    }

    /// Whether `other` has the same notes in every language, with the same titles, order,
    /// drafts and figures: then only note text differs, and no page but the notes' own
    /// (their navigation lists every note's title) needs redrawing.
    pub fn same_outline(&self, other: &Content) -> bool {
        // A figure's arguments, not its line: text may move it.
        fn outline(n: &Note) -> String {
            let figures: Vec<_> = n.figures.iter().map(|f| &f.args).collect();
            format!(
                "{}|{}|{:?}|{}|{:?}|{}",
                n.slug,
                n.title,
                n.weight,
                n.draft,
                figures,
                n.source.display()
            )
        }
        fn notes(intro: &Option<Note>, list: &[Note]) -> Vec<String> {
            intro.iter().chain(list).map(outline).collect()
        }
        notes(&self.intro, &self.notes) == notes(&other.intro, &other.notes)
            && self.translations.len() == other.translations.len()
            && self
                .translations
                .iter()
                .zip(&other.translations)
                .all(|(a, b)| a.lang == b.lang && notes(&a.intro, &a.notes) == notes(&b.intro, &b.notes))
    }

    /// Drops the notes marked `draft: true`, in every language.
    pub fn drop_drafts(&mut self) {
        self.notes.retain(|n| !n.draft);
        self.intro = self.intro.take().filter(|n| !n.draft);
        for t in &mut self.translations {
            t.notes.retain(|n| !n.draft);
            t.intro = t.intro.take().filter(|n| !n.draft);
        }
        self.translations.retain(|t| t.intro.is_some() || !t.notes.is_empty());
    }
}

/// A language code as a note's file name may end in: `zh`, `pt-br`.
pub fn is_language_code(s: &str) -> bool {
    let mut parts = s.split('-');
    let first = parts.next().unwrap_or("");
    (2..=3).contains(&first.len())
        && first.bytes().all(|b| b.is_ascii_lowercase())
        && parts.all(|p| (2..=8).contains(&p.len()) && p.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit()))
}

/// `name.zh.md` → (`name`, Some(`zh`)); `name.md` → (`name`, None).
fn split_language(path: &Path) -> (String, Option<String>) {
    let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or_default();
    match stem.rsplit_once('.') {
        Some((name, lang)) if !name.is_empty() && is_language_code(lang) => (name.to_string(), Some(lang.to_string())),
        _ => (stem.to_string(), None),
    }
}

fn slug_of(path: &Path) -> Result<String> {
    let (stem, _) = split_language(path);
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
        html: note_html(&body, safe_html).map_err(|e| {
            let line = first_line + body[..e.offset].matches('\n').count();
            Error::at_line(path, Some(line), e.message)
        })?,
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
        let (name, lang) = split_language(&p);
        let (intro, notes) = match lang {
            Some(lang) if lang != config.site.language => {
                let k = match content.translations.iter().position(|t| t.lang == lang) {
                    Some(k) => k,
                    None => {
                        content.translations.push(Translation {
                            lang,
                            intro: None,
                            notes: Vec::new(),
                        });
                        content.translations.len() - 1
                    }
                };
                let t = &mut content.translations[k];
                (&mut t.intro, &mut t.notes)
            }
            _ => (&mut content.intro, &mut content.notes),
        };
        if name == "index" {
            if let Some(other) = intro {
                return Err(Error::at(
                    &p,
                    format!("is a second home page note beside {}", other.source.display()),
                ));
            }
            *intro = Some(note);
        } else {
            if let Some(other) = notes.iter().find(|n| n.slug == note.slug) {
                return Err(Error::at(
                    &p,
                    format!("gives the same page name `{}` as {}", note.slug, other.source.display()),
                ));
            }
            notes.push(note);
        }
    }
    let order =
        |a: &Note, b: &Note| (a.weight.is_none(), a.weight, &a.slug).cmp(&(b.weight.is_none(), b.weight, &b.slug));
    content.notes.sort_by(order);
    // A translation follows the site's order; its own notes come after, in their order.
    let rank = |n: &Note, notes: &[Note]| notes.iter().position(|m| m.slug == n.slug).unwrap_or(usize::MAX);
    for t in &mut content.translations {
        t.notes.sort_by(|a, b| {
            rank(a, &content.notes)
                .cmp(&rank(b, &content.notes))
                .then_with(|| order(a, b))
        });
    }
    content.translations.sort_by(|a, b| a.lang.cmp(&b.lang));
    Ok(content)
}
