//! Text from `gallery.yaml` is escaped in the pages; raw HTML in notes is passed through,
//! or stripped with `site.safe_html: true`.

mod common;

use std::path::Path;

use cnnscope::build::Site;

const SCRIPT: &str = "<script>alert(1)</script>";

/// Builds the fixture (with one cheap method) and returns every page's text.
fn build_pages(dir: &Path) -> Vec<(String, String)> {
    let cfg = dir.join("gallery.yaml");
    let text = std::fs::read_to_string(&cfg).unwrap();
    std::fs::write(
        &cfg,
        format!(
            "{}\nmethods: [{{name: saliency}}]\ntargets: [predicted]\n",
            text.trim_end()
        ),
    )
    .unwrap();
    let site = Site::load(&cfg).unwrap();
    let out = dir.join("public");
    site.build(&out, &|_| {}).unwrap();
    walkdir::WalkDir::new(&out)
        .into_iter()
        .map(|e| e.unwrap())
        .filter(|e| e.path().extension().is_some_and(|x| x == "html"))
        .map(|e| {
            (
                e.path().strip_prefix(&out).unwrap().display().to_string(),
                std::fs::read_to_string(e.path()).unwrap(),
            )
        })
        .collect()
}

fn page<'a>(pages: &'a [(String, String)], name: &str) -> &'a str {
    &pages
        .iter()
        .find(|(n, _)| n == name)
        .unwrap_or_else(|| panic!("no page {name}"))
        .1
}

#[test]
fn scripts_in_the_config_are_escaped_everywhere() {
    let dir = common::fixture("basic");
    common::edit_config(
        dir.path(),
        "title: \"Fixture <site> & co\"",
        &format!("title: \"Site {SCRIPT}\""),
    );
    common::edit_config(
        dir.path(),
        "caption: \"A *three* <b>bold</b>\"",
        &format!("caption: \"A *three* {SCRIPT} [x](javascript:alert(2))\""),
    );
    common::edit_config(
        dir.path(),
        "  description: \"A small site",
        &format!("  description: \"{SCRIPT} A small site"),
    );
    let pages = build_pages(dir.path());
    for (name, html) in &pages {
        // The theme's own scripts are fine; no script from the config may come through.
        assert!(
            !html.contains(SCRIPT) && !html.contains("<script>alert"),
            "{name} holds a raw <script>"
        );
        let theirs = html.matches("<script").count();
        let ours = html.matches("<script src=\"").count() + html.matches("<script>\n(function () {").count();
        assert_eq!(theirs, ours, "{name} holds a script that is not the theme's");
        assert!(!html.contains("javascript:"), "{name} holds a javascript: link");
    }
    let home = page(&pages, "index.html");
    assert!(home.contains("Site &lt;script&gt;alert(1)&lt;/script&gt;"), "{home}");
    let image = page(&pages, "models/lenet/images/three/index.html");
    assert!(
        image.contains("A <em>three</em> &lt;script&gt;alert(1)&lt;/script&gt;"),
        "the caption is markdown with raw HTML shown as text"
    );
}

const NOTE: &str = "# Raw\n\n<script>alert(1)</script>\n\n<div class=\"x\">boxed</div>\n\nText with <b>bold</b>.\n";

#[test]
fn raw_html_in_notes_passes_through_by_default() {
    let dir = common::fixture("basic");
    std::fs::write(dir.path().join("content/raw.md"), NOTE).unwrap();
    let pages = build_pages(dir.path());
    let note = page(&pages, "notes/raw/index.html");
    assert!(note.contains(SCRIPT), "{note}");
    assert!(note.contains("<div class=\"x\">boxed</div>"), "{note}");
}

#[test]
fn safe_html_strips_scripts_from_notes() {
    let dir = common::fixture("basic");
    std::fs::write(dir.path().join("content/raw.md"), NOTE).unwrap();
    std::fs::write(
        dir.path().join("content/index.md"),
        format!("Intro {SCRIPT}\n\n## Anchor {{#here}}\n"),
    )
    .unwrap();
    common::edit_config(dir.path(), "  description:", "  safe_html: true\n  description:");
    let pages = build_pages(dir.path());
    let note = page(&pages, "notes/raw/index.html");
    // The note's own content (the theme's scripts are outside <main>).
    let body = note
        .split("<main")
        .nth(1)
        .and_then(|b| b.split("</main>").next())
        .unwrap();
    assert!(!body.contains("<script") && !note.contains("alert(1)"), "{note}");
    assert!(note.contains("<div>boxed</div>"), "unknown classes are dropped: {note}");
    assert!(note.contains("<b>bold</b>"), "{note}");
    let home = page(&pages, "index.html");
    assert!(!home.contains("alert(1)"), "the intro is a note too");
    assert!(home.contains("<h2 id=\"here\">Anchor</h2>"), "heading ids stay: {home}");
    let second = page(&pages, "notes/second/index.html");
    assert!(
        second.contains("<table>") && second.contains("footnote-definition"),
        "{second}"
    );
}
