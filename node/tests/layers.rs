//! The dependency rule of `node/src` (`docs/ARCHITECTURE.md`, "Layers"): a module imports only
//! modules of lower layers. Reads every source file, finds its `crate::` paths (production
//! code: a file's `#[cfg(test)]` part and its comments are left out) and fails on any import of
//! the same or a higher layer that is not one of the [`EXCEPTIONS`], each listed with its
//! reason, so no new one can appear unnoticed. An exception that is no longer needed fails too,
//! so the list only shrinks.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::Path;

/// The layers, bottom first: each module of `node/src` (its first path segment) in one.
const LAYERS: &[(&str, &[&str])] = &[
    ("foundation", &["ids", "clock", "random", "codec", "wal"]),
    ("storage", &["storage"]),
    ("regions", &["region"]),
    ("configuration", &["config"]),
    ("shard layout", &["layout"]),
    ("placement", &["placement"]),
    ("connections", &["mac", "net"]),
    ("transport", &["rpc"]),
    ("membership", &["membership"]),
    ("observation", &["events", "topology"]),
    ("metrics", &["metrics"]),
    ("shard engine", &["shard"]),
    ("wire protocol", &["protocol"]),
    ("node", &["node"]),
    ("routing", &["routing"]),
    ("services", &["services"]),
    ("node tasks", &["handoff", "precopy", "dashboard"]),
    ("edge", &["api"]),
    ("boot", &["boot"]),
    ("command line", &["cli"]),
];

/// Imports against the rule that are allowed, each `(importer, imported, why)`. None today
/// (decision 030 removed the last); add one only with a decision record saying why, and
/// remove it when its import goes.
const EXCEPTIONS: &[(&str, &str, &str)] = &[];

fn layer_of(module: &str) -> Option<usize> {
    LAYERS
        .iter()
        .position(|(_, modules)| modules.contains(&module))
}

/// The module of a file under `node/src`: its first path segment, without `.rs`.
fn module_of(relative: &Path) -> Option<String> {
    let first = relative.components().next()?.as_os_str().to_str()?;
    Some(first.trim_end_matches(".rs").to_owned())
}

fn source_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    let entries = fs::read_dir(dir).unwrap_or_else(|e| panic!("cannot read {dir:?}: {e}"));
    for entry in entries {
        let path = entry.expect("a directory entry").path();
        if path.is_dir() {
            source_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The production code of a file, without comments.
fn code(text: &str) -> String {
    let production = text.split("#[cfg(test)]").next().unwrap_or_default();
    production
        .lines()
        .map(|line| match line.find("//") {
            Some(at) => &line[..at],
            None => line,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The modules `code` names through `crate::`: `crate::shard::Epoch`, and the first segment
/// of each path of a group, `crate::{ids::NodeId, shard}`.
fn imported(code: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut rest = code;
    while let Some(at) = rest.find("crate::") {
        rest = &rest[at + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let end = group.find('}').unwrap_or(group.len());
            for path in group[..end].split(',') {
                out.insert(first_segment(path.trim()));
            }
        } else {
            out.insert(first_segment(rest));
        }
    }
    out
}

fn first_segment(path: &str) -> String {
    path.chars()
        .take_while(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_')
        .collect()
}

/// Every import between modules of `node/src`: (importer, imported) → files.
fn imports() -> BTreeMap<(String, String), BTreeSet<String>> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    source_files(&root, &mut files);
    let mut out: BTreeMap<(String, String), BTreeSet<String>> = BTreeMap::new();
    for file in files {
        let relative = file.strip_prefix(&root).expect("under src").to_path_buf();
        let Some(from) = module_of(&relative) else {
            continue;
        };
        if from == "lib" || from == "main" {
            continue;
        }
        let text = fs::read_to_string(&file).unwrap_or_else(|e| panic!("{file:?}: {e}"));
        for to in imported(&code(&text)) {
            if to != from && layer_of(&to).is_some() {
                out.entry((from.clone(), to))
                    .or_default()
                    .insert(relative.display().to_string());
            }
        }
    }
    out
}

#[test]
fn every_module_of_node_src_has_a_layer() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    source_files(&root, &mut files);
    let unplaced: BTreeSet<String> = files
        .iter()
        .filter_map(|f| module_of(f.strip_prefix(&root).ok()?))
        .filter(|m| m != "lib" && m != "main" && layer_of(m).is_none())
        .collect();
    assert!(
        unplaced.is_empty(),
        "modules with no layer in tests/layers.rs: {unplaced:?}; add each to LAYERS"
    );
}

#[test]
fn no_module_imports_its_own_layer_or_a_higher_one_beyond_the_listed_exceptions() {
    let mut wrong = Vec::new();
    let mut used = BTreeSet::new();
    for ((from, to), files) in imports() {
        let (Some(low), Some(high)) = (layer_of(&to), layer_of(&from)) else {
            panic!("{from} or {to} has no layer");
        };
        if low < high {
            continue;
        }
        match EXCEPTIONS.iter().find(|(f, t, _)| *f == from && *t == to) {
            Some(exception) => {
                used.insert(*exception);
            }
            None => wrong.push(format!(
                "{from} ({}) imports {to} ({}) in {files:?}",
                LAYERS[high].0, LAYERS[low].0
            )),
        }
    }
    assert!(
        wrong.is_empty(),
        "imports against the layer rule (docs/ARCHITECTURE.md, \"Layers\"):\n{}",
        wrong.join("\n")
    );
    let stale: Vec<_> = EXCEPTIONS.iter().filter(|e| !used.contains(*e)).collect();
    assert!(
        stale.is_empty(),
        "exceptions no longer needed, remove them from EXCEPTIONS: {stale:?}"
    );
}

#[test]
fn the_import_finder_sees_single_paths_and_groups_and_skips_comments_and_tests() {
    let text = "use crate::shard::Epoch;\n\
                use crate::{ids::NodeId, protocol};\n\
                // crate::services in a comment\n\
                fn f() { crate::clock::unix_millis(); }\n\
                #[cfg(test)]\nmod tests { use crate::boot; }\n";
    let found = imported(&code(text));
    let expected: BTreeSet<String> = ["shard", "ids", "protocol", "clock"]
        .into_iter()
        .map(String::from)
        .collect();
    assert_eq!(found, expected);
}
