//! The engine's modules import each other without a cycle (docs/adr/0014-engine-layers.md).
//!
//! State types (connections, sessions, the SUBACK barrier, delivery buffers, MQTT-SN state...)
//! live in leaf modules that do not know the `Engine`; feature modules `impl Engine` above them;
//! `engine.rs` holds the `Engine` struct and the input dispatch, so it may import state modules
//! only. A cycle means a state type sits in a file that also works on the `Engine`, or a state
//! module reaches up into a feature: this test reads `src/**/*.rs` and fails on either.
//!
//! The graph: one node per source file (`sn/state.rs` is `sn::state`, `sn/mod.rs` is `sn`;
//! `lib.rs`, the crate root that declares and re-exports everything, is left out). An edge for
//! every `crate::`, `super::`, `self::` or child-module path, in `use` items and in code, resolved
//! to the longest file module it names (`crate::Action` through the crate root's re-exports),
//! and for every `impl Engine` (a dependency on `engine`). A `mod` declaration is containment,
//! not an import. Method calls through `self` are not imports and are not seen: `engine.rs`
//! dispatching to a feature's method is the layering, not a violation of it. Comments and
//! string literals are skipped; test modules inside a file count as the file.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

/// A module path below the crate root: `["sn", "state"]`.
type Module = Vec<String>;

/// Where an edge comes from, for the failure message.
#[derive(Debug, Clone)]
struct Evidence {
    file: String,
    line: usize,
    path: String,
}

/// The module graph: edges with the first place each was seen.
type Graph = BTreeMap<Module, BTreeMap<Module, Evidence>>;

#[test]
fn engine_modules_import_each_other_without_a_cycle() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let graph = module_graph(&src);
    assert!(graph.contains_key(&module("engine")), "no engine module found under {src:?}");
    for (from, to) in &graph {
        let targets: Vec<String> = to.keys().map(name).collect();
        println!("{} -> {}", name(from), targets.join(", "));
    }
    let cycles = cycles(&graph);
    let mut report = String::new();
    for component in &cycles {
        let names: Vec<String> = component.iter().map(name).collect();
        report += &format!("cycle among {}:\n", names.join(", "));
        for from in component {
            for (to, evidence) in &graph[from] {
                if component.contains(to) {
                    report += &format!(
                        "  {} -> {} ({}:{}: {})\n",
                        name(from),
                        name(to),
                        evidence.file,
                        evidence.line,
                        evidence.path
                    );
                }
            }
        }
    }
    assert!(
        cycles.is_empty(),
        "the engine's modules import each other in a cycle; move the state type into a leaf \
         module that does not know the Engine (docs/adr/0014-engine-layers.md)\n{report}"
    );
}

/// The checker finds what it is meant to find, on a small made-up crate.
#[test]
fn the_checker_sees_imports_impls_and_cycles() {
    let dir = std::env::temp_dir().join(format!("musqratt-layers-{}", std::process::id()));
    let files = [
        ("lib.rs", "mod engine; mod feature; mod state; mod sn; pub use engine::Engine;"),
        (
            "engine.rs",
            "use crate::state::State;\n/// `crate::feature::X` in a comment is no import.\n\
             pub struct Engine { s: State, t: crate::sn::state::Peer }\n\
             const S: &str = \"crate::feature::Y\";\n\
             #[cfg(test)] mod tests { use super::*; }",
        ),
        ("feature.rs", "use crate::Engine;\nimpl Engine { fn f(&self) { let c = '{'; } }"),
        ("state.rs", "pub struct State<'a>(&'a u8);"),
        ("sn/mod.rs", "pub(crate) mod state; mod inbound; pub use state::{self as st, Peer};"),
        ("sn/state.rs", "pub struct Peer;"),
        ("sn/inbound.rs", "use super::{state::Peer, *};\nimpl crate::Engine {}"),
    ];
    for (file, text) in files {
        let path = dir.join(file);
        fs::create_dir_all(path.parent().expect("a parent")).expect("temp dir");
        fs::write(path, text).expect("temp file");
    }
    let graph = module_graph(&dir);
    let edges = |m: &str| -> Vec<String> { graph[&module(m)].keys().map(name).collect() };
    assert_eq!(edges("engine"), ["sn::state", "state"]);
    assert_eq!(edges("feature"), ["engine"]);
    assert!(edges("state").is_empty());
    assert_eq!(edges("sn"), ["sn::state"]);
    assert_eq!(edges("sn::inbound"), ["engine", "sn", "sn::state"]);
    assert!(cycles(&graph).is_empty());
    // A state module reaching up into a feature closes a cycle: through the engine, and through
    // the glob import of the parent module, which re-exports the state module.
    fs::write(dir.join("sn/state.rs"), "pub struct Peer; use crate::sn::inbound as _;")
        .expect("temp file");
    let graph = module_graph(&dir);
    let expected = ["engine", "sn", "sn::inbound", "sn::state"].map(module);
    assert_eq!(cycles(&graph), [expected.to_vec()]);
    fs::remove_dir_all(&dir).expect("temp dir removed");
}

fn module(name: &str) -> Module {
    name.split("::").map(String::from).collect()
}

fn name(module: &Module) -> String {
    module.join("::")
}

/// The module graph of the crate whose root is `src/lib.rs`.
fn module_graph(src: &Path) -> Graph {
    let mut files = Vec::new();
    rust_files(src, &mut files);
    let modules: BTreeMap<Module, PathBuf> =
        files.iter().map(|file| (module_of(src, file), file.clone())).collect();
    let known: BTreeSet<Module> = modules.keys().cloned().collect();
    let root = fs::read_to_string(src.join("lib.rs")).expect("src/lib.rs");
    let reexports = reexports(&tokens(&root), &known);
    let mut graph = Graph::new();
    for (module, file) in &modules {
        if module.is_empty() {
            continue; // the crate root
        }
        let text = fs::read_to_string(file).expect("a source file");
        let shown = file.strip_prefix(src).unwrap_or(file).display().to_string();
        let edges = graph.entry(module.clone()).or_default();
        for (line, path) in imports(module, &tokens(&text), &known) {
            let Some(target) = resolve(&path, &known, &reexports) else { continue };
            if &target != module {
                let evidence = Evidence { file: shown.clone(), line, path: path.join("::") };
                edges.entry(target).or_insert(evidence);
            }
        }
    }
    graph
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<_> = fs::read_dir(dir).expect("a source directory").flatten().collect();
    entries.sort_by_key(fs::DirEntry::path);
    for entry in entries {
        let path = entry.path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// `src/sn/state.rs` is `sn::state`, `src/sn/mod.rs` is `sn`, `src/lib.rs` the root.
fn module_of(src: &Path, file: &Path) -> Module {
    let relative = file.strip_prefix(src).expect("a file under src");
    let mut module: Module =
        relative.with_extension("").iter().map(|c| c.to_string_lossy().into_owned()).collect();
    if matches!(module.last().map(String::as_str), Some("mod" | "lib")) {
        module.pop();
    }
    module
}

/// A token of code and the line it is on: identifiers and punctuation, with `::` as one token.
/// Comments, string and character literals are dropped.
fn tokens(text: &str) -> Vec<(usize, String)> {
    let chars: Vec<char> = text.chars().collect();
    let mut out = Vec::new();
    let (mut i, mut line) = (0, 1);
    let at = |i: usize| chars.get(i).copied().unwrap_or('\0');
    while i < chars.len() {
        let c = chars[i];
        if c == '\n' {
            line += 1;
            i += 1;
        } else if c.is_whitespace() {
            i += 1;
        } else if c == '/' && at(i + 1) == '/' {
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
        } else if c == '/' && at(i + 1) == '*' {
            let mut depth = 0;
            while i < chars.len() {
                if chars[i] == '/' && at(i + 1) == '*' {
                    depth += 1;
                    i += 2;
                } else if chars[i] == '*' && at(i + 1) == '/' {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    line += usize::from(chars[i] == '\n');
                    i += 1;
                }
            }
        } else if let Some(end) = string_end(&chars, i) {
            line += chars[i..end].iter().filter(|&&c| c == '\n').count();
            i = end;
        } else if c == '\'' {
            // A character literal, or a lifetime (skipped, with the identifier after it).
            if at(i + 1) == '\\' {
                i += 2;
                while i < chars.len() && chars[i] != '\'' {
                    i += 1;
                }
                i += 1;
            } else if at(i + 2) == '\'' {
                i += 3;
            } else {
                i += 1;
                while at(i).is_alphanumeric() || at(i) == '_' {
                    i += 1;
                }
            }
        } else if c.is_alphanumeric() || c == '_' {
            let start = i;
            while at(i).is_alphanumeric() || at(i) == '_' {
                i += 1;
            }
            out.push((line, chars[start..i].iter().collect()));
        } else if c == ':' && at(i + 1) == ':' {
            out.push((line, "::".into()));
            i += 2;
        } else {
            out.push((line, c.to_string()));
            i += 1;
        }
    }
    out
}

/// Where the string literal starting at `i` ends, if one does: `"…"`, `b"…"`, `r#"…"#`, `br"…"`.
fn string_end(chars: &[char], i: usize) -> Option<usize> {
    let at = |i: usize| chars.get(i).copied().unwrap_or('\0');
    if i > 0 && (chars[i - 1].is_alphanumeric() || chars[i - 1] == '_') {
        return None; // inside an identifier
    }
    let mut j = i;
    if at(j) == 'b' {
        j += 1;
    }
    if at(j) == 'r' && (at(j + 1) == '"' || at(j + 1) == '#') {
        j += 1;
        let mut hashes = 0;
        while at(j) == '#' {
            hashes += 1;
            j += 1;
        }
        if at(j) != '"' {
            return None;
        }
        j += 1;
        loop {
            if j >= chars.len() {
                return Some(j);
            }
            if chars[j] == '"' && (1..=hashes).all(|k| at(j + k) == '#') {
                return Some(j + 1 + hashes);
            }
            j += 1;
        }
    }
    if at(j) != '"' {
        return None;
    }
    j += 1;
    while j < chars.len() {
        match chars[j] {
            '\\' => j += 2,
            '"' => return Some(j + 1),
            _ => j += 1,
        }
    }
    Some(j)
}

fn is_ident(token: &str) -> bool {
    token.chars().next().is_some_and(|c| c.is_alphabetic() || c == '_')
}

/// The paths a file names, made absolute (from the crate root), with their lines: those of its
/// `use` items, those in its code, and `engine::Engine` for each `impl Engine`.
fn imports(
    file: &Module,
    tokens: &[(usize, String)],
    known: &BTreeSet<Module>,
) -> Vec<(usize, Module)> {
    let mut out = Vec::new();
    // Inline modules (`mod tests { … }`): their names and the brace depth they close at.
    let mut inline: Vec<(String, usize)> = Vec::new();
    let mut depth = 0;
    let mut i = 0;
    while i < tokens.len() {
        let (line, token) = (&tokens[i].0, tokens[i].1.as_str());
        let current: Module =
            file.iter().cloned().chain(inline.iter().map(|(m, _)| m.clone())).collect();
        match token {
            "{" => depth += 1,
            "}" => {
                depth -= 1;
                if inline.last().is_some_and(|(_, d)| *d == depth) {
                    inline.pop();
                }
            }
            "mod" if tokens.get(i + 2).is_some_and(|(_, t)| t == "{") => {
                inline.push((tokens[i + 1].1.clone(), depth));
                depth += 1;
                i += 3;
                continue;
            }
            "use" => {
                let end =
                    tokens[i..].iter().position(|(_, t)| t == ";").map_or(tokens.len(), |p| i + p);
                let mut paths = Vec::new();
                use_tree(&tokens[i + 1..end], &[], &mut paths);
                for path in paths {
                    if let Some(path) = absolute(&current, &path, known) {
                        out.push((*line, path));
                    }
                }
                i = end + 1;
                continue;
            }
            "impl" => {
                // `impl Engine`, `impl<…> Engine`: the feature depends on the engine.
                let mut j = i + 1;
                if tokens.get(j).is_some_and(|(_, t)| t == "<") {
                    let mut angle = 0;
                    while j < tokens.len() {
                        match tokens[j].1.as_str() {
                            "<" => angle += 1,
                            ">" => angle -= 1,
                            _ => {}
                        }
                        j += 1;
                        if angle == 0 {
                            break;
                        }
                    }
                }
                if tokens.get(j).is_some_and(|(_, t)| t == "Engine") {
                    out.push((*line, module("engine::Engine")));
                }
            }
            _ if is_ident(token)
                && tokens.get(i + 1).is_some_and(|(_, t)| t == "::")
                && (i == 0 || tokens[i - 1].1 != "::") =>
            {
                let mut path = vec![token.to_string()];
                let mut j = i + 1;
                while tokens.get(j).is_some_and(|(_, t)| t == "::")
                    && tokens.get(j + 1).is_some_and(|(_, t)| is_ident(t))
                {
                    path.push(tokens[j + 1].1.clone());
                    j += 2;
                }
                if let Some(path) = absolute(&current, &path, known) {
                    out.push((*line, path));
                }
                i = j;
                continue;
            }
            _ => {}
        }
        i += 1;
    }
    out
}

/// The paths of a use tree (`a::{b, c::{self, d}, e as f, *}`), each under `prefix`.
fn use_tree(tokens: &[(usize, String)], prefix: &[String], out: &mut Vec<Vec<String>>) {
    let mut path = prefix.to_vec();
    let mut i = 0;
    while i < tokens.len() {
        match tokens[i].1.as_str() {
            "::" => {}
            "{" => {
                // Split the group at its top-level commas.
                let mut level = 0;
                let mut start = i + 1;
                let mut j = i + 1;
                while j < tokens.len() {
                    match tokens[j].1.as_str() {
                        "{" => level += 1,
                        "}" if level == 0 => break,
                        "}" => level -= 1,
                        "," if level == 0 => {
                            use_tree(&tokens[start..j], &path, out);
                            start = j + 1;
                        }
                        _ => {}
                    }
                    j += 1;
                }
                use_tree(&tokens[start..j], &path, out);
                return;
            }
            "as" => break,
            "self" if !path.is_empty() => {}
            segment => path.push(segment.to_string()),
        }
        i += 1;
    }
    if !path.is_empty() {
        out.push(path);
    }
}

/// A path as written in module `current`, from the crate root; `None` for another crate's.
fn absolute(current: &Module, path: &[String], known: &BTreeSet<Module>) -> Option<Module> {
    let mut base = current.clone();
    let mut rest = path;
    match path.first().map(String::as_str) {
        Some("crate") => {
            base.clear();
            rest = &path[1..];
        }
        Some("self") => rest = &path[1..],
        Some("super") => {
            while rest.first().is_some_and(|s| s == "super") {
                base.pop();
                rest = &rest[1..];
            }
        }
        Some(first) => {
            // A child module of the current one (a relative path); anything else is external.
            let mut child = current.clone();
            child.push(first.to_string());
            if !known.contains(&child) {
                return None;
            }
        }
        None => return None,
    }
    Some(base.into_iter().chain(rest.iter().filter(|s| *s != "*").cloned()).collect())
}

/// The file module an absolute path names: its longest prefix that is one, or for an item of
/// the crate root the module the root re-exports it from.
fn resolve(
    path: &Module,
    known: &BTreeSet<Module>,
    reexports: &BTreeMap<String, Module>,
) -> Option<Module> {
    let longest = (1..=path.len()).rev().map(|n| path[..n].to_vec()).find(|m| known.contains(m));
    match longest {
        Some(module) => Some(module),
        None => reexports.get(path.first()?).cloned(),
    }
}

/// The crate root's `pub use module::Item`: item name to file module.
fn reexports(root: &[(usize, String)], known: &BTreeSet<Module>) -> BTreeMap<String, Module> {
    let mut out = BTreeMap::new();
    let mut i = 0;
    while i < root.len() {
        if root[i].1 == "use" {
            let end = root[i..].iter().position(|(_, t)| t == ";").map_or(root.len(), |p| i + p);
            let mut paths = Vec::new();
            use_tree(&root[i + 1..end], &[], &mut paths);
            for path in paths {
                let Some(last) = path.last() else { continue };
                let path: Module = path.iter().filter(|s| *s != "crate").cloned().collect();
                let module =
                    (1..=path.len()).rev().map(|n| path[..n].to_vec()).find(|m| known.contains(m));
                if let Some(module) = module {
                    out.insert(last.clone(), module);
                }
            }
            i = end;
        }
        i += 1;
    }
    out
}

/// The strongly connected components of more than one module (Tarjan), each sorted.
fn cycles(graph: &Graph) -> Vec<Vec<Module>> {
    struct Tarjan<'g> {
        graph: &'g Graph,
        index: BTreeMap<&'g Module, usize>,
        low: BTreeMap<&'g Module, usize>,
        stack: Vec<&'g Module>,
        on_stack: BTreeSet<&'g Module>,
        found: Vec<Vec<Module>>,
    }
    impl<'g> Tarjan<'g> {
        fn visit(&mut self, node: &'g Module) {
            let n = self.index.len();
            self.index.insert(node, n);
            self.low.insert(node, n);
            self.stack.push(node);
            self.on_stack.insert(node);
            let targets = self.graph.get(node).into_iter().flat_map(BTreeMap::keys);
            for next in targets {
                if !self.index.contains_key(next) {
                    self.visit(next);
                    let low = self.low[node].min(self.low[next]);
                    self.low.insert(node, low);
                } else if self.on_stack.contains(next) {
                    let low = self.low[node].min(self.index[next]);
                    self.low.insert(node, low);
                }
            }
            if self.low[node] == self.index[node] {
                let mut component = Vec::new();
                while let Some(top) = self.stack.pop() {
                    self.on_stack.remove(top);
                    component.push(top.clone());
                    if top == node {
                        break;
                    }
                }
                if component.len() > 1 {
                    component.sort();
                    self.found.push(component);
                }
            }
        }
    }
    let mut tarjan = Tarjan {
        graph,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on_stack: BTreeSet::new(),
        found: Vec::new(),
    };
    for node in graph.keys() {
        if !tarjan.index.contains_key(node) {
            tarjan.visit(node);
        }
    }
    tarjan.found.sort();
    tarjan.found
}
