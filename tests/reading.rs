//! What readers get beyond the pictures, through the real binary on a new gallery: notes in
//! two languages (pages under `zh/`, a switcher both ways, the theme's words in the page's
//! language), formulas as MathML, the search index of every page, previous/next links, and
//! the errors for a bad formula, a language without words, a bad translation table and a
//! bad `site.language`. The last test drives Chromium: search, zoom, compare, switch.

mod common;

use std::path::Path;

use common::cli::{init, node, run_err, run_ok};
use serde_json::Value;

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// A new gallery with a Chinese home and note, a Chinese-only note and an English note with
/// math.
fn bilingual() -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = init();
    let g = dir.path().join("g");
    let c = g.join("content");
    std::fs::write(
        c.join("reading.zh.md"),
        "---\ntitle: 读图\nweight: 1\n---\n\n# 读图\n\n权重 $w_k = \\frac{1}{Z}\\sum_{i,j} g_{ij}$。见[公式](../../../notes/formulas/index.html)。\n",
    )
    .unwrap();
    std::fs::write(
        c.join("index.zh.md"),
        "这是中文首页。先看[读图](notes/reading/index.html)。\n",
    )
    .unwrap();
    std::fs::write(
        c.join("only.zh.md"),
        "---\nweight: 9\n---\n# 只有中文\n\n没有英文版。\n",
    )
    .unwrap();
    std::fs::write(
        c.join("formulas.md"),
        "---\nweight: 2\n---\n# Formulas\n\nGrad-CAM:\n\n$$L = \\mathrm{relu}\\left(\\sum_k w_k A^k\\right)$$\n",
    )
    .unwrap();
    (dir, g)
}

#[test]
fn notes_in_two_languages_with_math_search_and_previous_next() {
    let (_dir, g) = bilingual();
    let cfg = g.join("gallery.yaml");
    run_ok(&["build", "-q"], &cfg);
    let p = g.join("public");

    // The Chinese note: its language, its words, its formula, the switch to English.
    let zh = read(&p.join("zh/notes/reading/index.html"));
    assert!(zh.contains("<html lang=\"zh\">"), "{zh}");
    assert!(
        zh.contains(">首页</a>") && zh.contains("搜索笔记"),
        "the theme's words in Chinese: {zh}"
    );
    assert!(zh.contains("<math><msub><mi>w</mi>") && !zh.contains("$w_k"), "{zh}");
    assert!(
        zh.contains("class=\"lang-switch\" lang=\"en\" hreflang=\"en\" href=\"../../../notes/reading/index.html\""),
        "{zh}"
    );
    // Its navigation leads to the Chinese notes, the English-only one and the Chinese-only one.
    assert!(
        zh.contains("href=\"../../../zh/notes/only/index.html\">只有中文</a>"),
        "{zh}"
    );
    assert!(
        zh.contains("href=\"../../../notes/formulas/index.html\">Formulas</a>"),
        "{zh}"
    );
    assert!(
        zh.contains("href=\"../../../zh/index.html\">"),
        "the brand leads to the Chinese home: {zh}"
    );

    // The English note switches back; the English-only note has no switch.
    let en = read(&p.join("notes/reading/index.html"));
    assert!(en.contains("<html lang=\"en\">"));
    assert!(
        en.contains("class=\"lang-switch\" lang=\"zh\" hreflang=\"zh\" href=\"../../zh/notes/reading/index.html\""),
        "{en}"
    );
    assert!(en.contains("<link rel=\"alternate\" hreflang=\"zh\" href=\"../../zh/notes/reading/index.html\">"));
    assert!(
        !en.contains("只有中文"),
        "the Chinese-only note stays out of the English navigation"
    );
    let formulas = read(&p.join("notes/formulas/index.html"));
    assert!(
        formulas.contains("<math display=\"block\">") && !formulas.contains("lang-switch"),
        "{formulas}"
    );

    // Notes link to their neighbours in reading order (weights 1 and 2).
    assert!(en.contains("rel=\"next\"><small>Next →</small> Formulas</a>"), "{en}");
    assert!(
        formulas.contains("rel=\"prev\"><small>← Previous</small> Reading the pictures</a>"),
        "{formulas}"
    );

    // Both homes.
    let home = read(&p.join("zh/index.html"));
    assert!(
        home.contains("这是中文首页") && home.contains("<h2>模型</h2>"),
        "{home}"
    );
    assert!(
        home.contains("href=\"../models/lenet/index.html\""),
        "model cards keep working from zh/: {home}"
    );
    assert!(read(&p.join("index.html")).contains("hreflang=\"zh\" href=\"zh/index.html\""));

    // The search index: every page, numbered, with its language; words and characters.
    let js = read(&p.join("search-index.js"));
    let json: Value = serde_json::from_str(
        js.trim()
            .strip_prefix("window.cnnscopeSearch = ")
            .and_then(|s| s.strip_suffix(';'))
            .unwrap(),
    )
    .unwrap();
    let docs = json["docs"].as_array().unwrap();
    let pages = walkdir::WalkDir::new(&p)
        .into_iter()
        .filter(|e| e.as_ref().unwrap().file_name() == "index.html")
        .count();
    assert_eq!(docs.len(), pages, "one document per page");
    let k = docs
        .iter()
        .position(|d| d["href"] == "zh/notes/reading/index.html")
        .unwrap();
    assert_eq!(docs[k]["lang"], "zh");
    assert_eq!(docs[k]["title"], "读图");
    let title = &json["index"]["index"]["title"]["root"];
    assert!(
        title["读"]["docs"].get(k.to_string()).is_some(),
        "Chinese characters are indexed one by one"
    );
    let body = &json["index"]["index"]["body"]["root"];
    let seven = &body["s"]["e"]["v"]["e"]["n"]["docs"];
    let seven_page = docs
        .iter()
        .position(|d| d["href"] == "models/lenet/images/seven/index.html")
        .unwrap();
    assert!(
        seven[seven_page.to_string()].is_object(),
        "class names are indexed: {seven}"
    );
    assert!(
        body["t"]["h"]["e"]["docs"].is_null(),
        "stop words stay out of the index"
    );
    assert!(json["stop"].as_array().unwrap().iter().any(|w| w == "the"));

    // `check` counts the translations and finds every link good; a broken link in a
    // translation is traced to its file and line.
    let check = run_ok(&["check"], &cfg);
    assert!(check.contains("note(s) (and 3 in `zh`)"), "{check}");
    std::fs::write(
        g.join("content/only.zh.md"),
        "# 只有中文\n\n[断了](../formulas/index.html)\n",
    )
    .unwrap();
    let e = common::cli::run_err(&["check"], &cfg);
    assert!(
        e.contains("only.zh.md:3") && e.contains("no file `zh/notes/formulas/index.html`"),
        "{e}"
    );
}

#[test]
fn bad_formulas_languages_and_translation_tables_are_named() {
    let (_dir, g) = bilingual();
    let cfg = g.join("gallery.yaml");
    let c = g.join("content");
    run_ok(&["build", "-q"], &cfg);
    let before = read(&g.join("public/notes/formulas/index.html"));

    // A formula math-core cannot read: the note's file and line, the formula.
    std::fs::write(
        c.join("formulas.md"),
        "---\nweight: 2\n---\n# Formulas\n\nText.\n\n$$\\nosuch{x}$$\n",
    )
    .unwrap();
    let e = run_err(&["build", "-q"], &cfg);
    assert!(
        e.contains("formulas.md:8:") && e.contains("formula `\\nosuch{x}`"),
        "{e}"
    );
    assert_eq!(
        read(&g.join("public/notes/formulas/index.html")),
        before,
        "the last site stays"
    );
    std::fs::remove_file(c.join("formulas.md")).unwrap();

    // A note in a language the theme has no words for.
    std::fs::write(c.join("reading.fr.md"), "# Lire les images\n").unwrap();
    let e = run_err(&["build", "-q"], &cfg);
    assert!(
        e.contains("reading.fr.md")
            && e.contains("language `fr`")
            && e.contains("translations.yaml")
            && e.contains("en, zh"),
        "{e}"
    );
    // The site's table adds French word by word over the built-in one.
    let yaml = read(&cfg);
    std::fs::write(&cfg, yaml.replace("  # theme: custom", "  theme: custom")).unwrap();
    let table = g.join("themes/custom/translations.yaml");
    std::fs::write(&table, "fr:\n  home: Accueil\n  language_name: Français\n").unwrap();
    run_ok(&["build", "-q"], &cfg);
    let fr = read(&g.join("public/fr/notes/reading/index.html"));
    assert!(
        fr.contains(">Accueil</a>") && fr.contains("Search notes"),
        "French words, English for the rest: {fr}"
    );
    assert!(read(&g.join("public/notes/reading/index.html")).contains(">Français</a>"));

    // A table that is not a table of words: its file and line.
    std::fs::write(&table, "fr:\n  home: Accueil\n  next: [a, b]\n").unwrap();
    let e = run_err(&["build", "-q"], &cfg);
    assert!(
        e.contains("translations.yaml:3") && e.contains("translation table"),
        "{e}"
    );
    std::fs::remove_file(&table).unwrap();
    std::fs::remove_file(c.join("reading.fr.md")).unwrap();
    std::fs::write(&cfg, &yaml).unwrap();

    // `site.language` must be a language code with words.
    let yaml = read(&cfg);
    let title_line = yaml.lines().position(|l| l.trim_start().starts_with("title:")).unwrap() + 1;
    std::fs::write(&cfg, yaml.replacen("  title:", "  language: EN\n  title:", 1)).unwrap();
    let e = run_err(&["build", "-q"], &cfg);
    assert!(
        e.contains(&format!("gallery.yaml:{title_line}")) && e.contains("site.language") && e.contains("`EN`"),
        "{e}"
    );
    std::fs::write(&cfg, yaml.replacen("  title:", "  language: de\n  title:", 1)).unwrap();
    let e = run_err(&["build", "-q"], &cfg);
    assert!(e.contains("site.language") && e.contains("`de` has no words"), "{e}");
}

#[test]
fn search_zoom_compare_and_language_switch_in_chromium() {
    let (_dir, g) = bilingual();
    run_ok(&["build", "-q"], &g.join("gallery.yaml"));
    let site = g.join("public");
    let site = site.to_string_lossy();
    let (r, ok) = node(
        "interactions.mjs",
        &[
            &site,
            "notes/reading/index.html",
            "models/lenet/images/seven/index.html",
            "models/lenet/images/misread/attributions/index.html",
            "seven=>models/lenet/images/seven/index.html",
        ],
    );
    assert!(ok, "{r}");
    assert!(r["checks"].as_u64().unwrap() >= 30, "{r}");
    // Every page, both languages, and searches in both.
    let (r, ok) = node(
        "crawl.mjs",
        &[
            &site,
            "--search",
            "gradient input=>models/lenet/methods/gradient-x-input/index.html",
            "--search",
            "读图=>zh/notes/reading/index.html",
        ],
    );
    assert!(ok, "{r}");
    assert!(r["switches"].as_u64().unwrap() >= 4, "{r}");
}
