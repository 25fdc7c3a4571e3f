//! The kernel's module structure, read from its source (no KVM needed): no import circle
//! between its modules, at the level of files (`arch::paging`, `trap`) and of the crate's
//! top-level rooms (`arch`, `mm`, `trap`), and no file longer than the style allows.
//!
//! An import is any `crate::`, `$crate::` or `super::` path outside a comment (`use` lines and
//! paths written inline); `print!`/`println!` are the console's.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

const KERNEL_SRC: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../guest/kernel/src");
/// STYLE.md: "a file stays under ~400 lines"; past this a file has become two rooms.
const MAX_LINES: usize = 450;

type Graph = BTreeMap<String, BTreeSet<String>>;

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The module a file defines, as the rest of the kernel names it: `arch/x86_64/paging.rs` is
/// `arch::paging` (arch/mod.rs re-exports x86_64's modules), `main.rs` is `main`.
fn module_of(rel: &Path) -> String {
    let mut parts: Vec<String> = rel.iter().map(|p| p.to_string_lossy().into_owned()).collect();
    let file = parts.pop().unwrap();
    let stem = file.trim_end_matches(".rs");
    if stem != "mod" {
        parts.push(stem.to_string());
    }
    parts.retain(|p| p != "x86_64");
    if parts.is_empty() {
        return "main".to_string();
    }
    parts.join("::")
}

/// The source without `//` comments (doc links are no imports).
fn code_only(text: &str) -> String {
    text.lines().map(|l| l.find("//").map_or(l, |i| &l[..i])).collect::<Vec<_>>().join("\n")
}

/// Expands the path that starts at `rest` (after `crate::`) into every full path it names:
/// `arch::{cpu, entry::{self, X}}` gives `arch::cpu`, `arch::entry::self`, `arch::entry::X`.
fn expand(prefix: &str, rest: &str, out: &mut Vec<String>) -> usize {
    let mut i = 0;
    let bytes = rest.as_bytes();
    let mut path = prefix.to_string();
    while i < bytes.len() {
        let c = bytes[i] as char;
        if c.is_alphanumeric() || c == '_' || c == ':' {
            path.push(c);
            i += 1;
        } else if c == '{' {
            i += 1;
            loop {
                while i < bytes.len() && (bytes[i] as char).is_whitespace() {
                    i += 1;
                }
                if i >= bytes.len() || bytes[i] == b'}' {
                    return i + 1;
                }
                i += expand(&path, &rest[i..], out);
                while i < bytes.len() && (bytes[i] == b',' || (bytes[i] as char).is_whitespace()) {
                    i += 1;
                }
            }
        } else {
            break;
        }
    }
    if !path.is_empty() {
        out.push(path);
    }
    i
}

/// The module a path names: its longest prefix that is a module; macros at the crate root
/// belong to the console.
fn target(path: &str, modules: &BTreeSet<String>) -> String {
    let segments: Vec<&str> = path.split("::").filter(|s| !s.is_empty()).collect();
    for n in (1..=segments.len()).rev() {
        let candidate = segments[..n].join("::");
        if modules.contains(&candidate) {
            return candidate;
        }
    }
    match segments.first() {
        Some(&("print" | "println")) => "console".to_string(),
        _ => "main".to_string(),
    }
}

/// The modules `code` (of module `module`) imports.
fn imports(module: &str, code: &str, modules: &BTreeSet<String>) -> BTreeSet<String> {
    let parent = module.rsplit_once("::").map_or("", |(p, _)| p);
    let mut found = BTreeSet::new();
    for (marker, base) in [("crate::", String::new()), ("super::", format!("{parent}::"))] {
        let mut from = 0;
        while let Some(at) = code[from..].find(marker) {
            let start = from + at;
            from = start + marker.len();
            let before = code[..start].chars().next_back();
            if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
                continue;
            }
            let mut paths = Vec::new();
            expand("", &code[from..], &mut paths);
            for path in paths {
                let path = format!("{base}{}", path.replace("::self", ""));
                let to = target(&path, modules);
                if to != module {
                    found.insert(to);
                }
            }
        }
    }
    found
}

fn kernel_graph() -> (Graph, Vec<(String, usize)>) {
    let root = PathBuf::from(KERNEL_SRC);
    let mut files = Vec::new();
    rust_files(&root, &mut files);
    files.sort();
    let named: Vec<(String, String)> =
        files.iter().map(|f| (module_of(f.strip_prefix(&root).unwrap()), fs::read_to_string(f).unwrap())).collect();
    let modules: BTreeSet<String> = named.iter().map(|(m, _)| m.clone()).collect();
    let mut graph = Graph::new();
    let mut lengths = Vec::new();
    for (module, text) in &named {
        lengths.push((module.clone(), text.lines().count()));
        if module == "main" {
            continue; // the crate root declares every module; nothing imports it
        }
        graph.entry(module.clone()).or_default().extend(imports(module, &code_only(text), &modules));
    }
    (graph, lengths)
}

/// The same graph with each module folded into its top-level room (`arch::paging` → `arch`).
fn rooms(graph: &Graph) -> Graph {
    let room = |m: &str| m.split("::").next().unwrap().to_string();
    let mut out = Graph::new();
    for (from, tos) in graph {
        let entry = out.entry(room(from)).or_default();
        entry.extend(tos.iter().map(|t| room(t)).filter(|t| *t != room(from)));
    }
    out
}

/// Every import circle, each as the path that closes it (`a -> b -> a`).
fn cycles(graph: &Graph) -> Vec<String> {
    fn visit(node: &str, graph: &Graph, stack: &mut Vec<String>, done: &mut BTreeSet<String>, out: &mut Vec<String>) {
        if let Some(i) = stack.iter().position(|n| n == node) {
            let mut circle = stack[i..].to_vec();
            circle.push(node.to_string());
            out.push(circle.join(" -> "));
            return;
        }
        if done.contains(node) {
            return;
        }
        stack.push(node.to_string());
        for next in graph.get(node).into_iter().flatten() {
            visit(next, graph, stack, done, out);
        }
        stack.pop();
        done.insert(node.to_string());
    }
    let mut out = Vec::new();
    let mut done = BTreeSet::new();
    for node in graph.keys() {
        visit(node, graph, &mut Vec::new(), &mut done, &mut out);
    }
    out
}

#[test]
fn the_checker_finds_a_circle_and_reads_grouped_imports() {
    let modules: BTreeSet<String> =
        ["arch::entry", "arch::cpu", "trap", "doors", "console"].iter().map(|s| s.to_string()).collect();
    let code = "use crate::arch::{cpu, entry::{self, TrapFrame}};\nuse crate::{doors, println};\n";
    let found = imports("trap", code, &modules);
    let expect: BTreeSet<String> =
        ["arch::cpu", "arch::entry", "doors", "console"].iter().map(|s| s.to_string()).collect();
    assert_eq!(found, expect);
    let mut graph = Graph::new();
    graph.insert("trap".into(), ["doors".to_string()].into());
    graph.insert("doors".into(), ["arch::entry".to_string()].into());
    assert!(cycles(&graph).is_empty());
    graph.insert("arch::entry".into(), ["trap".to_string()].into());
    assert_eq!(cycles(&graph), ["arch::entry -> trap -> doors -> arch::entry"]);
    assert_eq!(cycles(&rooms(&graph)), ["arch -> trap -> doors -> arch"]);
}

#[test]
fn no_import_circle_between_kernel_modules() {
    let (graph, _) = kernel_graph();
    assert!(graph.len() > 20, "the kernel's modules were not found: {graph:?}");
    assert!(graph["trap"].contains("syscall"), "imports are not read: {:?}", graph["trap"]);
    let files = cycles(&graph);
    assert!(files.is_empty(), "import circles between kernel files:\n{}", files.join("\n"));
    let rooms = cycles(&rooms(&graph));
    assert!(rooms.is_empty(), "import circles between the kernel's top-level modules:\n{}", rooms.join("\n"));
}

#[test]
fn no_kernel_file_is_longer_than_the_style_allows() {
    let (_, lengths) = kernel_graph();
    let long: Vec<String> =
        lengths.iter().filter(|(_, n)| *n > MAX_LINES).map(|(m, n)| format!("{m}: {n} lines")).collect();
    assert!(long.is_empty(), "kernel files over {MAX_LINES} lines:\n{}", long.join("\n"));
}

#[test]
fn no_rust_file_of_the_project_is_longer_than_the_style_allows() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut files = Vec::new();
    for dir in ["vmm/src", "vmm/build.rs", "guest", "tests"] {
        let path = root.join(dir);
        if path.is_dir() {
            rust_files(&path, &mut files);
        } else if path.is_file() {
            files.push(path);
        }
    }
    // Build output of the guest crates lives under guest/*/target: not the project's own.
    files.retain(|f| !f.components().any(|c| c.as_os_str() == "target"));
    assert!(files.len() > 100, "the sources are here: {}", files.len());
    let long: Vec<String> = files
        .iter()
        .map(|f| (f, fs::read_to_string(f).unwrap().lines().count()))
        .filter(|(_, n)| *n > MAX_LINES)
        .map(|(f, n)| format!("{}: {n} lines", f.display()))
        .collect();
    assert!(long.is_empty(), "files over {MAX_LINES} lines:\n{}", long.join("\n"));
}
