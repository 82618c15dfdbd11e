//! What a host needs beside the pages: `.nojekyll` (GitHub Pages would otherwise drop
//! folders such as `_blocks.2`), a `404.html`, and with `--base-url` a `sitemap.xml` and a
//! `robots.txt` (both need absolute addresses).

use std::path::Path;

use serde::Serialize;

use super::{Base, Input};
use crate::error::{Error, IoContext, Result};

/// The absolute address of a page folder (`""` is the home page).
pub fn url(base: &str, page: &str) -> String {
    let base = base.trim_end_matches('/');
    if page.is_empty() {
        format!("{base}/")
    } else {
        format!("{base}/{}/", page.trim_matches('/'))
    }
}

#[derive(Serialize)]
struct NotFoundView {
    #[serde(flatten)]
    base: Base,
    /// `<base href>` for a page served at any depth: the site's root address.
    base_href: Option<String>,
}

/// Writes `.nojekyll`, `404.html` and, with a base URL, `sitemap.xml` and `robots.txt`;
/// returns the number of pages written (the 404 page). Runs after every other page.
pub fn write(input: &Input, out: &Path) -> Result<usize> {
    let site = input.site;
    let nojekyll = out.join(".nojekyll");
    std::fs::write(&nojekyll, "").at_path(&nojekyll)?;

    let mut base = Base::new(site, "", &format!("Page not found · {}", site.config.site.title));
    base.nav.current = None;
    base.canonical = None;
    let view = NotFoundView {
        base,
        base_href: site.base_url.as_ref().map(|b| url(b, "")),
    };
    let ctx = tera::Context::from_serialize(&view)
        .map_err(|e| Error::msg(format!("page `404.html`: the view of template `404.html`: {e}")))?;
    let html = site.theme.render("404.html", &ctx)?;
    let p = out.join("404.html");
    std::fs::write(&p, html).at_path(&p)?;

    if let Some(b) = &site.base_url {
        // Every page folder, in path order, so two builds give the same file.
        let pages = crate::build::output::page_folders(out);
        let mut xml = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<urlset xmlns=\"http://www.sitemaps.org/schemas/sitemap/0.9\">\n");
        for page in &pages {
            xml.push_str(&format!("  <url><loc>{}</loc></url>\n", escape(&url(b, page))));
        }
        xml.push_str("</urlset>\n");
        let p = out.join("sitemap.xml");
        std::fs::write(&p, xml).at_path(&p)?;
        let p = out.join("robots.txt");
        std::fs::write(
            &p,
            format!("User-agent: *\nAllow: /\nSitemap: {}sitemap.xml\n", url(b, "")),
        )
        .at_path(&p)?;
    }
    Ok(1)
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}
