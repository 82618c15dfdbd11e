//! `cnnscope init`, `serve` and the publishing files, through the real binary: a new gallery
//! builds as it is; the server answers many requests at once with the right content types,
//! refuses paths outside the site, rebuilds on an edit, keeps the last good site when a
//! rebuild fails and shows the error; live reload works in Chromium; `--base-url` writes
//! the sitemap and canonical links; drafts stay out unless asked for.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use common::cli::{bin, init, run, run_ok};

/// One HTTP/1.0 request as sent, path untouched: (status, headers, body).
fn get(addr: &str, path: &str) -> (u16, String, Vec<u8>) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n").expect("a header");
    let head = String::from_utf8_lossy(&raw[..split]).to_string();
    let status = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    (status, head.to_lowercase(), raw[split + 4..].to_vec())
}

struct Server {
    child: Child,
    addr: String,
    /// What it has printed so far.
    log: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl Server {
    /// Whether a line it printed after the first `skip` contains `what`.
    /// Whether the server printed `what` after its first `skip` lines, waiting up to 10 s
    /// for it: the page can be served before the line that reports it is read.
    fn said_after(&self, skip: usize, what: &str) -> bool {
        let until = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            if self.log.lock().unwrap().iter().skip(skip).any(|l| l.contains(what)) {
                return true;
            }
            if std::time::Instant::now() > until {
                return false;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }
    fn lines(&self) -> usize {
        self.log.lock().unwrap().len()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn serve(config: &Path) -> Server {
    let mut child = bin()
        .args(["serve", "--port", "0", "-c"])
        .arg(config)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let addr = loop {
        let line = lines.next().expect("serve printed its address").unwrap();
        if let Some(rest) = line.split("at http://").nth(1) {
            break rest.split('/').next().unwrap().to_string();
        }
    };
    // Keep reading its output (shown with the test's) so that it never blocks on a full pipe.
    let log = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let kept = log.clone();
    std::thread::spawn(move || {
        for l in lines.map_while(Result::ok) {
            eprintln!("serve: {l}");
            kept.lock().unwrap().push(l);
        }
    });
    Server { child, addr, log }
}

fn status(addr: &str) -> Value {
    serde_json::from_slice(&get(addr, "/__cnnscope/status").2).unwrap()
}

/// Waits until the server's status satisfies `ok`.
fn wait_for(addr: &str, what: &str, ok: impl Fn(&Value) -> bool) -> Value {
    let start = Instant::now();
    loop {
        let s = status(addr);
        if ok(&s) {
            return s;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "waited a minute for {what}: {s}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn init_writes_a_gallery_that_builds_and_refuses_a_non_empty_folder() {
    let dir = init();
    let g = dir.path().join("g");
    for f in [
        "gallery.yaml",
        "content/index.md",
        "content/reading.md",
        "models/lenet5-mnist.safetensors",
        "images/misread.png",
        "themes/custom/base.html",
        "themes/custom/style.css",
    ] {
        assert!(g.join(f).is_file(), "init wrote no {f}");
    }
    let stderr = run_ok(&["build", "-q"], &g.join("gallery.yaml"));
    assert_eq!(
        stderr.lines().count(),
        1,
        "--quiet prints the final line only: {stderr}"
    );
    assert!(g
        .join("public/models/lenet/images/misread/attributions/index.html")
        .is_file());
    assert!(g.join("public/notes/reading/index.html").is_file());
    // The copied theme, once named, is what the site uses.
    std::fs::write(
        g.join("themes/custom/404.html"),
        "{% extends \"base.html\" %}{% block content %}custom 404{% endblock content %}",
    )
    .unwrap();
    common::edit_config(&g, "  # theme: custom", "  theme: custom");
    run_ok(&["build", "-q"], &g.join("gallery.yaml"));
    assert!(std::fs::read_to_string(g.join("public/404.html"))
        .unwrap()
        .contains("custom 404"));

    let again = bin().arg("init").arg(&g).output().unwrap();
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("the folder is not empty"));
}

#[test]
fn publishing_files_base_url_and_drafts() {
    let dir = init();
    let g = dir.path().join("g");
    std::fs::write(
        g.join("content/wip.md"),
        "---\ntitle: Not yet\ndraft: true\n---\n\nSoon.\n",
    )
    .unwrap();
    let cfg = g.join("gallery.yaml");
    run_ok(&["build", "-q"], &cfg);
    let public = g.join("public");
    assert!(public.join(".nojekyll").is_file() && public.join("404.html").is_file());
    assert!(!public.join("sitemap.xml").exists(), "a sitemap needs a base URL");
    assert!(!public.join("notes/wip").exists(), "a draft was published");
    run_ok(
        &["build", "-q", "--drafts", "--base-url", "https://example.org/gallery/"],
        &cfg,
    );
    assert!(
        public.join("notes/wip/index.html").is_file(),
        "--drafts publishes drafts"
    );
    let sitemap = std::fs::read_to_string(public.join("sitemap.xml")).unwrap();
    assert!(sitemap.contains("<loc>https://example.org/gallery/</loc>"));
    assert!(sitemap.contains("<loc>https://example.org/gallery/models/lenet/images/misread/attributions/</loc>"));
    let robots = std::fs::read_to_string(public.join("robots.txt")).unwrap();
    assert!(robots.contains("Sitemap: https://example.org/gallery/sitemap.xml"));
    let page = std::fs::read_to_string(public.join("models/lenet/index.html")).unwrap();
    assert!(page.contains("<link rel=\"canonical\" href=\"https://example.org/gallery/models/lenet/\">"));
    // Links stay relative.
    assert!(page.contains("href=\"../../static/style.css\""));
    let missing = std::fs::read_to_string(public.join("404.html")).unwrap();
    assert!(missing.contains("<base href=\"https://example.org/gallery/\">"));
    let bad = run(&["build", "--base-url", "example.org"], &cfg);
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("--base-url `example.org`: expected an absolute address"));
}

#[test]
fn serve_answers_many_requests_rebuilds_and_keeps_the_last_good_site() {
    let dir = init();
    let g = dir.path().join("g");
    let server = serve(&g.join("gallery.yaml"));
    let addr = server.addr.clone();
    let first = wait_for(&addr, "the first build", |s| s["version"].as_u64() >= Some(1));

    // Pages carry the live-reload script; files keep their types.
    let (code, head, body) = get(&addr, "/");
    assert_eq!(code, 200);
    assert!(head.contains("content-type: text/html; charset=utf-8"));
    assert!(String::from_utf8_lossy(&body).contains("<script src=\"/__cnnscope/live.js\"></script>"));
    assert!(
        !std::fs::read_to_string(g.join("public/index.html"))
            .unwrap()
            .contains("live.js"),
        "the file on disk has no script"
    );
    // Many at once, as a browser with many tabs asks.
    let paths = [
        ("/static/style.css", "text/css"),
        ("/manifest.json", "application/json"),
        ("/static/favicon.svg", "image/svg+xml"),
        ("/models/lenet/images/three/input.png", "image/png"),
        ("/models/lenet/images/three/logits.npy", "application/octet-stream"),
        ("/models/lenet/index.html", "text/html"),
    ];
    let handles: Vec<_> = (0..60)
        .map(|i| {
            let (addr, (path, ctype)) = (addr.clone(), paths[i % paths.len()]);
            std::thread::spawn(move || {
                let (code, head, _) = get(&addr, path);
                assert_eq!(code, 200, "{path}");
                assert!(head.contains(&format!("content-type: {ctype}")), "{path}: {head}");
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    assert_eq!(get(&addr, "/../gallery.yaml").0, 403);
    assert_eq!(get(&addr, "/static/%2e%2e/%2e%2e/gallery.yaml").0, 403);
    let (code, _, body) = get(&addr, "/no/such/page/");
    assert_eq!(code, 404);
    assert!(String::from_utf8_lossy(&body).contains("Page not found"));

    // An edited note is redrawn (its page and the search index, nothing else) and served.
    let v = first["version"].as_u64().unwrap();
    let note = g.join("content/reading.md");
    let text = std::fs::read_to_string(&note).unwrap();
    let seen = server.lines();
    std::fs::write(&note, text.clone() + "\nA freshly written sentence.\n").unwrap();
    let now = wait_for(&addr, "the redraw", |s| s["version"].as_u64() > Some(v));
    let page = String::from_utf8(get(&addr, "/notes/reading/").2).unwrap();
    assert!(page.contains("A freshly written sentence."));
    assert!(
        server.said_after(seen, "redrew 1 page(s)"),
        "{:?}",
        server.log.lock().unwrap()
    );
    let js = String::from_utf8(get(&addr, "/search-index.js").2).unwrap();
    let index: Value = serde_json::from_str(
        js.trim()
            .strip_prefix("window.cnnscopeSearch = ")
            .unwrap()
            .strip_suffix(';')
            .unwrap(),
    )
    .unwrap();
    let word = "freshly"
        .chars()
        .fold(&index["index"]["index"]["body"]["root"], |n, c| &n[c.to_string()]);
    assert!(word["docs"].is_object(), "the search index has the new word");
    // A new title shows in every page's navigation: that takes a rebuild.
    let v = now["version"].as_u64().unwrap();
    let seen = server.lines();
    std::fs::write(
        &note,
        text.replace("title: Reading the pictures", "title: Reading pictures closely"),
    )
    .unwrap();
    wait_for(&addr, "the rebuild", |s| s["version"].as_u64() > Some(v));
    assert!(server.said_after(seen, "rebuilding"));
    let home = String::from_utf8(get(&addr, "/models/lenet/").2).unwrap();
    assert!(home.contains("Reading pictures closely"), "{home}");
    // A formula that does not convert: the error, from the rebuild the redraw falls back to.
    std::fs::write(&note, text.clone() + "\n$\\nosuch{x}$\n").unwrap();
    let failed = wait_for(&addr, "the formula's error", |s| !s["error"].is_null());
    assert!(failed["error"].as_str().unwrap().contains("reading.md:"), "{failed}");
    std::fs::write(&note, &text).unwrap();
    wait_for(&addr, "the mended note", |s| s["error"].is_null());

    // A broken config: the error is reported, the last good site still served.
    let cfg = g.join("gallery.yaml");
    let good = std::fs::read_to_string(&cfg).unwrap();
    std::fs::write(&cfg, good.replace("arch: lenet5", "arch: lenet6")).unwrap();
    let failed = wait_for(&addr, "the error", |s| !s["error"].is_null());
    let e = failed["error"].as_str().unwrap();
    assert!(e.contains("models[0].arch") && e.contains("lenet6"), "{e}");
    assert_eq!(get(&addr, "/notes/reading/").0, 200, "the last good site is served");
    std::fs::write(&cfg, good).unwrap();
    wait_for(&addr, "the mended build", |s| s["error"].is_null());
}

#[test]
fn live_reload_in_chromium() {
    let dir = init();
    let g = dir.path().join("g");
    let server = serve(&g.join("gallery.yaml"));
    wait_for(&server.addr, "the first build", |s| s["version"].as_u64() >= Some(1));
    let browser = common::repo().join("tests/browser");
    assert!(
        browser.join("node_modules/playwright-core").is_dir(),
        "the browser tests' npm packages are missing: run tests/setup.sh"
    );
    let out = Command::new("node")
        .arg("live_reload.mjs")
        .arg(format!("http://{}/notes/reading/", server.addr))
        .arg(g.join("content/reading.md"))
        .arg(g.join("gallery.yaml"))
        .current_dir(&browser)
        .output()
        .expect("node runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r: Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    assert_eq!(r["errors"], serde_json::json!([]), "{r}");
    assert!(r["reload_ms"].as_u64().is_some(), "the edit never showed: {r}");
    assert!(r["overlay"].as_bool().unwrap(), "no error overlay: {r}");
    assert!(r["overlay_text"].as_str().unwrap().contains("lenet6"), "{r}");
    assert!(r["cleared"].as_bool().unwrap(), "the overlay stayed after the fix: {r}");
}

/// Runs the crawler on a site; its JSON report and whether it passed.
fn crawl(site: &Path, base: Option<&str>) -> (Value, bool) {
    let site = site.to_string_lossy();
    let mut args = vec![site.as_ref()];
    args.extend(base);
    common::cli::node("crawl.mjs", &args)
}

#[test]
fn every_page_opens_cleanly_from_files_and_over_serve_and_broken_links_are_found() {
    let dir = init();
    let g = dir.path().join("g");
    let server = serve(&g.join("gallery.yaml"));
    wait_for(&server.addr, "the first build", |s| s["version"].as_u64() >= Some(1));
    let public = g.join("public");
    let (files, ok) = crawl(&public, None);
    assert!(ok, "{files}");
    assert!(files["pages"].as_u64().unwrap() >= 20, "{files}");
    let (http, ok) = crawl(&public, Some(&format!("http://{}/", server.addr)));
    assert!(ok, "{http}");
    assert_eq!(files["pages"], http["pages"]);
    drop(server);

    // A note with a broken link and a missing anchor: both are reported.
    std::fs::write(
        g.join("content/broken.md"),
        "# Broken\n\n[gone](../../models/lenet/nope/index.html) and [no such section](../reading/index.html#nowhere)\n",
    )
    .unwrap();
    run_ok(&["build", "-q"], &g.join("gallery.yaml"));
    let (r, ok) = crawl(&public, None);
    assert!(!ok);
    let problems = r["problems"].to_string();
    assert!(
        problems.contains("broken link") && problems.contains("nope/index.html"),
        "{problems}"
    );
    assert!(
        problems.contains("missing anchor") && problems.contains("#nowhere"),
        "{problems}"
    );
}

#[test]
fn check_reports_every_broken_link_and_anchor_with_its_source_line() {
    let dir = init();
    let g = dir.path().join("g");
    let cfg = g.join("gallery.yaml");
    let check = |extra: &[&str]| run(&[&["check"], extra].concat(), &cfg);
    let ok = check(&[]);
    assert!(ok.status.success(), "{}", String::from_utf8_lossy(&ok.stderr));
    assert!(String::from_utf8_lossy(&ok.stderr).contains("every internal link and anchor leads somewhere"));

    std::fs::write(
        g.join("content/broken.md"),
        "# Broken\n\nSee [gone](../../models/lenet/nope/index.html) and\n[no section](../reading/index.html#nowhere), [fine](../reading/index.html).\n",
    )
    .unwrap();
    common::edit_config(
        &g,
        "(97.7% on 2,000 held-out ones).",
        "(97.7% on 2,000 held-out ones); [notes](../../notes/missing/index.html).",
    );
    let bad = check(&[]);
    assert!(!bad.status.success());
    let e = String::from_utf8_lossy(&bad.stderr);
    common::assert_has(
        &e,
        &[
            "3 broken internal link(s):",
            "1. ",
            "content/broken.md:3: `../../models/lenet/nope/index.html`: no file `models/lenet/nope/index.html` (on notes/broken/index.html)",
            "content/broken.md:4: `../reading/index.html#nowhere`: no anchor `#nowhere` in `notes/reading/index.html`",
            "gallery.yaml:17: `../../notes/missing/index.html`: no file `notes/missing/index.html` (on models/lenet/index.html)",
            "3. ",
        ],
    );
    // Validation alone builds nothing; neither run leaves its temporary site behind.
    assert!(check(&["--no-links"]).status.success());
    let left: Vec<_> = std::fs::read_dir(&g)
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with(".cnnscope-check"))
        .collect();
    assert!(left.is_empty(), "{left:?}");
}
