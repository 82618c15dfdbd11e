//! A note's page: `content/<name>.md` rendered.

use std::path::Path;

use serde::Serialize;

use super::{render, Base, Input};
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

pub fn write(input: &Input, out: &Path) -> Result<usize> {
    let site = input.site;
    for n in &site.content.notes {
        let page = plan::note_page(&n.slug);
        let view = NoteView {
            base: Base::new(site, &page, &format!("{} · {}", n.title, site.config.site.title)),
            note: NoteBody {
                title: n.title.clone(),
                html: super::figure::resolve(input, n, &page)?,
            },
        };
        render(site, out, &page, "note.html", &view)?;
    }
    Ok(site.content.notes.len())
}
