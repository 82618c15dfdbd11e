//! A note's page: `content/<name>.md` rendered, and `content/<name>.<lang>.md` under
//! `<lang>/`.

use std::path::Path;

use serde::Serialize;

use super::{render, Base, Input, Pager};
use crate::content::Note;
use crate::error::Result;
use crate::plan;

#[derive(Serialize)]
pub struct NoteView {
    #[serde(flatten)]
    pub base: Base,
    pub note: NoteBody,
}

#[derive(Serialize)]
pub struct NoteBody {
    pub title: String,
    pub html: String,
}

/// The notes of one language, in reading order, each linked to its neighbours; only those
/// `keep` picks.
fn write_language(
    input: &Input,
    out: &Path,
    notes: &[Note],
    lang: Option<&str>,
    keep: &dyn Fn(&Note) -> bool,
) -> Result<usize> {
    let site = input.site;
    let pages: Vec<(String, String)> = notes
        .iter()
        .map(|n| {
            (
                n.title.clone(),
                plan::in_language(lang.unwrap_or(""), &plan::note_page(&n.slug)),
            )
        })
        .collect();
    let mut written = 0;
    for (k, n) in notes.iter().enumerate() {
        if !keep(n) {
            continue;
        }
        written += 1;
        let page = &pages[k].1;
        let mut base = Base::in_language(site, page, &format!("{} · {}", n.title, site.config.site.title), lang);
        base.pager = Pager::of(&pages, k);
        let view = NoteView {
            base,
            note: NoteBody {
                title: n.title.clone(),
                html: super::figure::resolve(input, n, page)?,
            },
        };
        render(site, out, page, "note.html", &view)?;
    }
    Ok(written)
}

fn write_some(input: &Input, out: &Path, keep: &dyn Fn(&Note) -> bool) -> Result<usize> {
    let content = &input.site.content;
    let mut count = write_language(input, out, &content.notes, None, keep)?;
    for t in &content.translations {
        count += write_language(input, out, &t.notes, Some(&t.lang), keep)?;
    }
    Ok(count)
}

pub fn write(input: &Input, out: &Path) -> Result<usize> {
    write_some(input, out, &|_| true)
}

/// Rewrites the pages of the notes read from `sources`, and the home page of a language
/// whose introduction is one of them.
pub fn redraw(input: &Input, out: &Path, sources: &[std::path::PathBuf]) -> Result<usize> {
    let picked = |n: &Note| sources.iter().any(|s| same_file(s, &n.source));
    let mut count = write_some(input, out, &picked)?;
    let c = &input.site.content;
    if c.intro.as_ref().is_some_and(picked) {
        count += super::home::write_one(input, out, None)?;
    }
    for t in &c.translations {
        if t.intro.as_ref().is_some_and(picked) {
            count += super::home::write_one(input, out, Some(&t.lang))?;
        }
    }
    Ok(count)
}

fn same_file(a: &Path, b: &Path) -> bool {
    a == b || matches!((a.canonicalize(), b.canonicalize()), (Ok(x), Ok(y)) if x == y)
}
