//! Output in the Go tool's formats: `json.Encoder` lines, `%q` quoting, `%v` of int slices,
//! the `layers -t` tree, and error lines (optionally as JSON, a layerstore extension).

use std::collections::HashMap;
use std::io::{self, Write};

use serde::Serialize;

/// Writes `value` as Go's `json.NewEncoder(w).Encode(value)` does: compact, `<>&` escaped,
/// one trailing newline.
pub fn write_json<T: Serialize + ?Sized>(out: &mut dyn Write, value: &T) -> io::Result<()> {
    let bytes = layerstore_model::to_go_json(value).map_err(io::Error::other)?;
    out.write_all(&bytes)?;
    out.write_all(b"\n")
}

/// Go's `%v` of an integer slice: `[0 1000]`.
pub fn go_int_list(values: &[u32]) -> String {
    let items: Vec<String> = values.iter().map(u32::to_string).collect();
    format!("[{}]", items.join(" "))
}

pub use layerstore_model::go_quote;

/// One line of `layers -t`: a layer under its parent, with notes.
#[derive(Debug, Clone)]
pub struct TreeNode {
    /// The parent's ID, or `(base)`.
    pub left: String,
    /// The layer's ID.
    pub right: String,
    /// Lines printed under the layer (`name: ...`, `mount: ...`).
    pub notes: Vec<String>,
}

/// The root to print next: a parent that is nobody's child, with the fewest children (Go's
/// `selectRoot`; Go breaks ties by map order, we by first appearance).
fn select_root(nodes: &[TreeNode]) -> String {
    let mut order: Vec<&str> = Vec::new();
    let mut children: HashMap<&str, usize> = HashMap::new();
    for node in nodes {
        let count = children.entry(node.left.as_str()).or_insert(0);
        if *count == 0 {
            order.push(node.left.as_str());
        }
        *count += 1;
    }
    let is_child: std::collections::HashSet<&str> =
        nodes.iter().map(|n| n.right.as_str()).collect();
    let mut favorite: Option<&str> = None;
    for left in order {
        if is_child.contains(left) {
            continue;
        }
        match favorite {
            None => favorite = Some(left),
            Some(f) if children[left] < children[f] => favorite = Some(left),
            _ => {}
        }
    }
    favorite.unwrap_or_default().to_string()
}

/// One parent being printed: its children still to print, and how its lines are indented.
struct Frame {
    children: std::vec::IntoIter<TreeNode>,
    count: usize,
    next: usize,
    indent: usize,
    continued: Vec<usize>,
}

impl Frame {
    fn new(children: Vec<TreeNode>, indent: usize, continued: Vec<usize>) -> Self {
        Frame {
            count: children.len(),
            children: children.into_iter(),
            next: 0,
            indent,
            continued,
        }
    }
}

/// Prints the layers below `root`, depth first, with an explicit stack (a chain of layers can
/// be as long as the store holds); answers the nodes not printed.
fn print_subtree(
    out: &mut dyn Write,
    root: &str,
    nodes: Vec<TreeNode>,
) -> io::Result<Vec<TreeNode>> {
    let (children, mut leftovers): (Vec<TreeNode>, Vec<TreeNode>) =
        nodes.into_iter().partition(|n| n.left == root);
    let mut stack = vec![Frame::new(children, 0, Vec::new())];
    while let Some(frame) = stack.last_mut() {
        let Some(child) = frame.children.next() else {
            stack.pop();
            continue;
        };
        let n = frame.next;
        frame.next += 1;
        let mut prefix: Vec<char> = vec![' '; frame.indent];
        for &column in &frame.continued {
            if let Some(slot) = prefix.get_mut(column) {
                *slot = '\u{2502}';
            }
        }
        let prefix: String = prefix.into_iter().collect();
        let mut sub = frame.continued.clone();
        let (header, note_header) = if n + 1 < frame.count {
            sub.push(frame.indent);
            ("\u{251c}", "\u{2502}")
        } else {
            ("\u{2514}", " ")
        };
        writeln!(out, "{prefix}{header}\u{2500}{}", child.right)?;
        for note in &child.notes {
            writeln!(out, "{prefix}{note_header} {note}")?;
        }
        let indent = frame.indent + 2;
        let (grandchildren, rest): (Vec<TreeNode>, Vec<TreeNode>) =
            leftovers.into_iter().partition(|n| n.left == child.right);
        leftovers = rest;
        stack.push(Frame::new(grandchildren, indent, sub));
    }
    Ok(leftovers)
}

/// Prints the forest as the Go tool's `printTree` does.
pub fn print_tree(out: &mut dyn Write, mut nodes: Vec<TreeNode>) -> io::Result<()> {
    while !nodes.is_empty() {
        let root = select_root(&nodes);
        writeln!(out, "{root}")?;
        let before = nodes.len();
        nodes = print_subtree(out, &root, nodes)?;
        if nodes.len() == before {
            break;
        }
    }
    Ok(())
}

/// Writes an error line: the text, or `{"error":"text"}` when JSON errors were asked for.
pub fn write_error(err: &mut dyn Write, json: bool, text: &str) -> io::Result<()> {
    if json {
        write_json(err, &serde_json::json!({ "error": text }))
    } else {
        writeln!(err, "{text}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(left: &str, right: &str, notes: &[&str]) -> TreeNode {
        TreeNode {
            left: left.into(),
            right: right.into(),
            notes: notes.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn tree_matches_the_go_tool() {
        // The shape observed from containers-storage 1.43 `layers -t`.
        let nodes = vec![
            node("(base)", "a", &[]),
            node("(base)", "b", &["name: base", "name: base2"]),
            node("b", "c", &["name: child"]),
            node("(base)", "d", &["name: jsonlayer"]),
            node("(base)", "e", &["name: alias1"]),
        ];
        let mut out = Vec::new();
        print_tree(&mut out, nodes).expect("prints");
        let expected = "(base)\n├─a\n├─b\n│ name: base\n│ name: base2\n│ └─c\n│   name: child\n├─d\n│ name: jsonlayer\n└─e\n  name: alias1\n";
        assert_eq!(String::from_utf8(out).expect("utf8"), expected);
    }

    #[test]
    fn tree_of_nothing_is_empty() {
        let mut out = Vec::new();
        print_tree(&mut out, Vec::new()).expect("prints");
        assert!(out.is_empty());
    }

    #[test]
    fn json_is_go_encoder_output() {
        let mut out = Vec::new();
        write_json(&mut out, &serde_json::json!({"a<b": ["x&y"]})).expect("writes");
        assert_eq!(out, b"{\"a\\u003cb\":[\"x\\u0026y\"]}\n");
        assert_eq!(go_int_list(&[0, 1000]), "[0 1000]");
        let mut err = Vec::new();
        write_error(&mut err, true, "layer not known").expect("writes");
        assert_eq!(err, b"{\"error\":\"layer not known\"}\n");
    }
}
