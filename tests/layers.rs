//! The crate's files import each other without loops: every `crate::…` path in a library file
//! (in `use` items and inline) is resolved to the file that defines that module, and the
//! resulting graph must be acyclic. A loop means two modules can only be understood together;
//! the layers are listed in `src/lib.rs`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Module path (`data::encoding`) → file, for every library file under `src/` (not `bin/`).
fn modules(src: &Path) -> BTreeMap<String, PathBuf> {
    let mut out = BTreeMap::new();
    let mut stack = vec![src.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).expect("read src") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                if path.file_name().is_some_and(|n| n != "bin") {
                    stack.push(path);
                }
                continue;
            }
            if path.extension().is_none_or(|e| e != "rs") {
                continue;
            }
            let rel = path.strip_prefix(src).expect("under src");
            let mut parts: Vec<String> = rel
                .with_extension("")
                .iter()
                .map(|p| p.to_string_lossy().into_owned())
                .collect();
            if parts.last().is_some_and(|l| l == "mod" || l == "lib") {
                parts.pop();
            }
            out.insert(parts.join("::"), path);
        }
    }
    out
}

/// The `crate::a::b::c` paths a file's code mentions, with `use crate::a::{b, c::d}` groups
/// expanded to `a::b` and `a::c` (the first segment after a brace is enough to name a module).
fn crate_paths(text: &str) -> Vec<String> {
    let is_path_char = |c: char| c.is_alphanumeric() || c == '_' || c == ':';
    let mut out = Vec::new();
    for (i, _) in text.match_indices("crate::") {
        let line_start = text[..i].rfind('\n').map_or(0, |k| k + 1);
        if text[line_start..].trim_start().starts_with("//") {
            continue; // comments and doc comments are not code
        }
        let rest = &text[i + "crate::".len()..];
        let end = rest.find(|c: char| !is_path_char(c)).unwrap_or(rest.len());
        let path = rest[..end].trim_end_matches(':');
        if rest[end..].starts_with('{') && rest[..end].ends_with("::") {
            let group = &rest[end + 1..];
            let close = group.find('}').unwrap_or(group.len());
            for item in group[..close].split(',') {
                let first: String = item
                    .trim()
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect();
                if !first.is_empty() && first != "self" {
                    out.push(format!("{path}::{first}"));
                }
            }
        }
        if !path.is_empty() {
            out.push(path.to_string());
        }
    }
    out
}

/// The module a path lives in: its longest prefix that names a module file.
fn resolve(path: &str, modules: &BTreeMap<String, PathBuf>) -> Option<String> {
    let parts: Vec<&str> = path.split("::").collect();
    (1..=parts.len())
        .rev()
        .map(|k| parts[..k].join("::"))
        .find(|m| modules.contains_key(m))
}

#[test]
fn no_module_imports_a_module_that_imports_it_back() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let modules = modules(&src);
    assert!(modules.len() > 20, "found only {} modules", modules.len());
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (module, file) in &modules {
        let text = std::fs::read_to_string(file).expect("read module");
        let deps = graph.entry(module.clone()).or_default();
        for path in crate_paths(&text) {
            if let Some(target) = resolve(&path, &modules) {
                if &target != module && !target.is_empty() {
                    deps.insert(target);
                }
            }
        }
    }
    // Depth-first search for a back edge; report the loop it closes.
    fn visit(
        node: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        state: &mut BTreeMap<String, u8>,
        stack: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        state.insert(node.to_string(), 1);
        stack.push(node.to_string());
        for next in graph.get(node).into_iter().flatten() {
            match state.get(next.as_str()).copied().unwrap_or(0) {
                1 => {
                    let from = stack.iter().position(|s| s == next).unwrap_or(0);
                    let mut cycle = stack[from..].to_vec();
                    cycle.push(next.clone());
                    return Some(cycle);
                }
                0 => {
                    if let Some(cycle) = visit(next, graph, state, stack) {
                        return Some(cycle);
                    }
                }
                _ => {}
            }
        }
        stack.pop();
        state.insert(node.to_string(), 2);
        None
    }
    let mut state = BTreeMap::new();
    for module in graph.keys() {
        if state.get(module.as_str()).copied().unwrap_or(0) == 0 {
            if let Some(cycle) = visit(module, &graph, &mut state, &mut Vec::new()) {
                panic!("import loop: {}", cycle.join(" → "));
            }
        }
    }
}

#[test]
fn the_path_reader_expands_groups() {
    let text = "use crate::data::{dataset::Dataset, labels};\nfn f() { crate::ops::scalar(x) }\n";
    let paths = crate_paths(text);
    assert!(paths.contains(&"data::dataset".to_string()), "{paths:?}");
    assert!(paths.contains(&"data::labels".to_string()), "{paths:?}");
    assert!(paths.contains(&"ops::scalar".to_string()), "{paths:?}");
}
