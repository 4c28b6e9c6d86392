//! The code's shape, checked from its source:
//! - pools' modules import only downward: each module is on a floor of
//!   [`FLOORS`], and every `crate::` path in it names a module on a lower
//!   floor;
//! - no function is over [`MAX_LINES`] lines (from its `fn` line to its
//!   closing brace) in [`ROOTS`] (`.ci/long-functions` prints the list).
//!
//! The source is read as Rust tokens (`proc-macro2`), so comments and doc
//! text (where intra-doc links name modules above) are not references, and
//! `use crate::{a, b::c}` groups and paths inside expressions and macros are.

use std::path::{Path, PathBuf};

use proc_macro2::{Delimiter, Spacing, TokenStream, TokenTree};

/// pools' modules by floor, lowest first. A module may name only modules
/// on floors below its own: not its own floor's (siblings, such as two
/// pools, share nothing but what lies below them), never one above.
/// A module of `pools/src` that is on no floor fails the test: place it.
const FLOORS: &[&[&str]] = &[
    &["outcome", "task", "scoreboard", "floor"],
    &["wire"],
    &["fault"],
    // The pool's side of a batch: below the worker runtime and the processes.
    &["job"],
    &["process"],
    &["fork_server"],
    &["worker"],
    &["pool"],
    &["actor", "shared_queue"],
    &["naive", "seed_polling", "polling", "per_task", "supervised"],
    &["planted"],
    &["registry"],
    &["lib"],
];

/// The longest a function may be, in lines.
const MAX_LINES: usize = 80;
/// Trees where a long function fails the test.
const ROOTS: &[&str] = &["pools/src", "harness/src"];

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Every `.rs` file under `dir`, sorted.
fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut dirs = vec![dir.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
            let path = entry.expect("directory entry").path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                files.push(path);
            }
        }
    }
    files.sort();
    files
}

fn tokens(path: &Path) -> TokenStream {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    text.parse().unwrap_or_else(|e| panic!("{}: not Rust tokens: {e:?}", path.display()))
}

/// The module a file of `pools/src` belongs to: its first path component
/// (`fork_server/client.rs` is `fork_server`), `lib` for `lib.rs`; `None`
/// for the binaries (crates of their own, which see only `pools::`).
fn module_of(relative: &Path) -> Option<String> {
    let first = relative.components().next()?.as_os_str().to_str()?;
    if first == "bin" {
        return None;
    }
    Some(first.trim_end_matches(".rs").to_string())
}

fn floor_of(module: &str) -> Option<usize> {
    FLOORS.iter().position(|floor| floor.contains(&module))
}

/// Whether `trees[at..]` starts with `::`.
fn path_sep(trees: &[TokenTree], at: usize) -> bool {
    matches!(
        (trees.get(at), trees.get(at + 1)),
        (Some(TokenTree::Punct(a)), Some(TokenTree::Punct(b)))
            if a.as_char() == ':' && a.spacing() == Spacing::Joint && b.as_char() == ':'
    )
}

/// The modules each `crate::` path in `stream` names, with its line: the
/// segment after `crate::`, or each item's first segment of a
/// `crate::{...}` group.
fn crate_refs(stream: TokenStream, refs: &mut Vec<(String, usize)>) {
    let trees: Vec<TokenTree> = stream.into_iter().collect();
    for (i, tree) in trees.iter().enumerate() {
        match tree {
            TokenTree::Ident(id) if id == "crate" && path_sep(&trees, i + 1) => {
                let line = id.span().start().line;
                match trees.get(i + 3) {
                    Some(TokenTree::Ident(module)) => refs.push((module.to_string(), line)),
                    Some(TokenTree::Group(group)) if group.delimiter() == Delimiter::Brace => {
                        let mut first = true;
                        for item in group.stream() {
                            match item {
                                TokenTree::Ident(module) if first => {
                                    refs.push((module.to_string(), line));
                                    first = false;
                                }
                                TokenTree::Punct(p) if p.as_char() == ',' => first = true,
                                _ => first = false,
                            }
                        }
                    }
                    _ => {}
                }
            }
            TokenTree::Group(group) => crate_refs(group.stream(), refs),
            _ => {}
        }
    }
}

#[test]
fn pools_modules_import_only_from_lower_floors() {
    let src = workspace().join("pools/src");
    let mut wrong = Vec::new();
    let mut seen = 0;
    for path in rust_files(&src) {
        let relative = path.strip_prefix(&src).expect("under pools/src");
        let Some(module) = module_of(relative) else { continue };
        let Some(floor) = floor_of(&module) else {
            wrong.push(format!("pools/src/{}: module `{module}` is on no floor of FLOORS", relative.display()));
            continue;
        };
        let mut refs = Vec::new();
        crate_refs(tokens(&path), &mut refs);
        seen += refs.len();
        for (target, line) in refs {
            match floor_of(&target) {
                Some(to) if to < floor || target == module => {}
                Some(to) => wrong.push(format!(
                    "pools/src/{}:{line}: `{module}` (floor {floor}) imports `{target}` (floor {to})",
                    relative.display()
                )),
                None => wrong.push(format!(
                    "pools/src/{}:{line}: `{module}` names `crate::{target}`, on no floor",
                    relative.display()
                )),
            }
        }
    }
    assert!(seen > 50, "only {seen} crate:: paths found: the scan is broken");
    assert!(wrong.is_empty(), "imports that do not point down:\n{}", wrong.join("\n"));
}

/// Every function in `stream` over `max` lines: (name, its `fn` line, lines).
fn long_functions(stream: TokenStream, max: usize, found: &mut Vec<(String, usize, usize)>) {
    let trees: Vec<TokenTree> = stream.into_iter().collect();
    for (i, tree) in trees.iter().enumerate() {
        match tree {
            TokenTree::Ident(id) if id == "fn" => {
                let Some(TokenTree::Ident(name)) = trees.get(i + 1) else { continue };
                // Its body: the first brace group before a `;` (a declaration has none).
                let body = trees[i + 2..]
                    .iter()
                    .take_while(|t| !matches!(t, TokenTree::Punct(p) if p.as_char() == ';'))
                    .find_map(|t| match t {
                        TokenTree::Group(g) if g.delimiter() == Delimiter::Brace => Some(g),
                        _ => None,
                    });
                if let Some(body) = body {
                    let (from, to) = (id.span().start().line, body.span_close().end().line);
                    if to - from + 1 > max {
                        found.push((name.to_string(), from, to - from + 1));
                    }
                }
            }
            TokenTree::Group(group) => long_functions(group.stream(), max, found),
            _ => {}
        }
    }
}

#[test]
fn no_function_is_over_80_lines() {
    let root = workspace();
    let mut failing = Vec::new();
    for tree in ROOTS {
        let mut listed = Vec::new();
        for path in rust_files(&root.join(tree)) {
            let mut found = Vec::new();
            long_functions(tokens(&path), MAX_LINES, &mut found);
            let relative = path.strip_prefix(&root).expect("under the workspace").display().to_string();
            listed.extend(
                found.into_iter().map(|(name, line, lines)| format!("{relative}:{line}: {name}: {lines} lines")),
            );
        }
        println!("{tree}: {} function(s) over {MAX_LINES} lines", listed.len());
        for line in &listed {
            println!("  {line}");
        }
        failing.extend(listed);
    }
    assert!(failing.is_empty(), "functions over {MAX_LINES} lines:\n{}", failing.join("\n"));
}

#[test]
fn the_scans_see_what_they_look_for() {
    let source: TokenStream = "
        //! crate::doc is not a reference
        use crate::{a, b::{c, d}, e as f};
        fn g() { let x = crate::h::i(); m!(crate::j); }
        fn short();
    "
    .parse()
    .expect("tokens");
    let mut refs = Vec::new();
    crate_refs(source, &mut refs);
    let names: Vec<_> = refs.iter().map(|(m, _)| m.as_str()).collect();
    assert_eq!(names, ["a", "b", "e", "h", "j"]);
    let long: TokenStream =
        format!("fn long() {{\n{}}}\nfn short() {{}}", "x();\n".repeat(80)).parse().expect("tokens");
    let mut found = Vec::new();
    long_functions(long, MAX_LINES, &mut found);
    assert_eq!(found, [("long".to_string(), 1, 82)]);
}
