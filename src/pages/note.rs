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

/// The notes of one language, in reading order, each linked to its neighbours.
fn write_language(input: &Input, out: &Path, notes: &[Note], lang: Option<&str>) -> Result<usize> {
    let site = input.site;
    let pages: Vec<(String, String)> = notes
        .iter()
        .map(|n| (n.title.clone(), plan::in_language(lang.unwrap_or(""), &plan::note_page(&n.slug))))
        .collect();
    for (k, n) in notes.iter().enumerate() {
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
    Ok(notes.len())
}

pub fn write(input: &Input, out: &Path) -> Result<usize> {
    let content = &input.site.content;
    let mut count = write_language(input, out, &content.notes, None)?;
    for t in &content.translations {
        count += write_language(input, out, &t.notes, Some(&t.lang))?;
    }
    Ok(count)
}
