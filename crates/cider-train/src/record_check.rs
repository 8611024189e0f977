//! Checks a Burn record against the module it is about to be loaded into, before Burn loads it.
//!
//! Burn's `load_record` panics on a record of another architecture (a shape that does not
//! reshape, a list of another length, another enum variant). These checks read the record's
//! structure without its values — maps and their keys, lists and their lengths, every tensor's
//! `shape` and byte count — and compare it with the record of a freshly initialised module of
//! the configuration (weights), or with the module's parameter ids and shapes (Adam moments),
//! so that a mismatch is one line naming the parameter instead of a panic.

use std::collections::HashMap;
use std::fmt;

use burn::module::{Module, ModuleVisitor, Param};
use burn::tensor::Tensor;
use burn::tensor::backend::Backend;
use serde::de::{Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};

/// The structure of a MessagePack record: tensor bytes kept as their length, scalars dropped.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Node {
    /// A struct or map (an enum variant is a one-key map), keys in file order.
    Map(Vec<(String, Node)>),
    /// A list or tuple.
    Seq(Vec<Node>),
    /// Raw bytes (a tensor's data): their length.
    Bytes(usize),
    /// An unsigned integer (a tensor's shape holds these).
    Int(u64),
    /// Any other scalar (strings, floats, nil): its value is not compared.
    Scalar,
}

impl Node {
    fn get(&self, key: &str) -> Option<&Node> {
        match self {
            Node::Map(entries) => entries.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    /// The shape of a serialised tensor (`TensorData`: `bytes`, `shape`, `dtype`), if this is one.
    fn tensor_shape(&self) -> Option<Vec<u64>> {
        let (Some(Node::Seq(dims)), Some(Node::Bytes(_))) = (self.get("shape"), self.get("bytes"))
        else {
            return None;
        };
        dims.iter()
            .map(|d| match d {
                Node::Int(v) => Some(*v),
                _ => None,
            })
            .collect()
    }

    /// Every serialised tensor below this node, with its shape.
    fn tensors(&self, out: &mut Vec<Vec<u64>>) {
        if let Some(shape) = self.tensor_shape() {
            out.push(shape);
            return;
        }
        match self {
            Node::Map(entries) => entries.iter().for_each(|(_, v)| v.tensors(out)),
            Node::Seq(items) => items.iter().for_each(|v| v.tensors(out)),
            _ => {}
        }
    }
}

impl<'de> Deserialize<'de> for Node {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(NodeVisitor)
    }
}

struct NodeVisitor;

impl<'de> Visitor<'de> for NodeVisitor {
    type Value = Node;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a Burn record")
    }
    fn visit_bool<E>(self, _: bool) -> Result<Node, E> {
        Ok(Node::Scalar)
    }
    fn visit_i64<E>(self, v: i64) -> Result<Node, E> {
        Ok(u64::try_from(v).map_or(Node::Scalar, Node::Int))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Node, E> {
        Ok(Node::Int(v))
    }
    fn visit_f64<E>(self, _: f64) -> Result<Node, E> {
        Ok(Node::Scalar)
    }
    fn visit_str<E>(self, _: &str) -> Result<Node, E> {
        Ok(Node::Scalar)
    }
    fn visit_bytes<E>(self, v: &[u8]) -> Result<Node, E> {
        Ok(Node::Bytes(v.len()))
    }
    fn visit_none<E>(self) -> Result<Node, E> {
        Ok(Node::Scalar)
    }
    fn visit_unit<E>(self) -> Result<Node, E> {
        Ok(Node::Scalar)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Node, D::Error> {
        Node::deserialize(d)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Node, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element()? {
            items.push(item);
        }
        Ok(Node::Seq(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Node, A::Error> {
        let mut entries = Vec::new();
        while let Some(key) = map.next_key::<KeyName>()? {
            entries.push((key.0, map.next_value()?));
        }
        Ok(Node::Map(entries))
    }
}

/// A map key: a string, or any other key written as text.
struct KeyName(String);

impl<'de> Deserialize<'de> for KeyName {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl Visitor<'_> for KeyVisitor {
            type Value = KeyName;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a map key")
            }
            fn visit_str<E>(self, v: &str) -> Result<KeyName, E> {
                Ok(KeyName(v.to_string()))
            }
            fn visit_u64<E>(self, v: u64) -> Result<KeyName, E> {
                Ok(KeyName(v.to_string()))
            }
            fn visit_i64<E>(self, v: i64) -> Result<KeyName, E> {
                Ok(KeyName(v.to_string()))
            }
        }
        deserializer.deserialize_any(KeyVisitor)
    }
}

/// The dotted name of a record position, without Burn's wrappers (`item`, `param`).
fn dotted(path: &[String]) -> String {
    let kept: Vec<&str> = path
        .iter()
        .map(String::as_str)
        .filter(|p| !matches!(*p, "item" | "param"))
        .collect();
    if kept.is_empty() {
        "the record".into()
    } else {
        format!("`{}`", kept.join("."))
    }
}

fn shape_text(shape: &[u64]) -> String {
    let dims: Vec<String> = shape.iter().map(u64::to_string).collect();
    format!("[{}]", dims.join(", "))
}

/// The first difference between the structure of a record file (`found`) and that of the
/// module it is loaded into (`expected`), as "`PARAM` …": a tensor of another shape, a list of
/// another length, a missing or extra field, another enum variant. `None` when they agree.
pub(crate) fn first_difference(found: &Node, expected: &Node) -> Option<String> {
    difference(found, expected, &mut vec![])
}

fn difference(found: &Node, expected: &Node, path: &mut Vec<String>) -> Option<String> {
    if let (Some(f), Some(shape)) = (found.tensor_shape(), expected.tensor_shape()) {
        if f != shape {
            return Some(format!(
                "{} has shape {} in the file, the configuration expects {}",
                dotted(path),
                shape_text(&f),
                shape_text(&shape)
            ));
        }
        return match (found.get("bytes"), expected.get("bytes")) {
            (Some(Node::Bytes(f)), Some(Node::Bytes(e))) if f != e => Some(format!(
                "{} holds {f} bytes of data, expected {e} for shape {}",
                dotted(path),
                shape_text(&shape)
            )),
            _ => None,
        };
    }
    match (found, expected) {
        (Node::Map(f), Node::Map(e)) => {
            if let ([(fk, _)], [(ek, _)]) = (f.as_slice(), e.as_slice())
                && fk != ek
            {
                return Some(format!(
                    "{} is `{fk}` in the file, the configuration expects `{ek}`",
                    dotted(path)
                ));
            }
            for (key, e_value) in e {
                path.push(key.clone());
                let found_value = found.get(key);
                let diff = match found_value {
                    None => Some(format!("{} is missing from the file", dotted(path))),
                    Some(f_value) => difference(f_value, e_value, path),
                };
                path.pop();
                if diff.is_some() {
                    return diff;
                }
            }
            f.iter()
                .find(|(k, _)| expected.get(k).is_none())
                .map(|(k, _)| {
                    path.push(k.clone());
                    let message = format!(
                        "{} is in the file but not in the configured model",
                        dotted(path)
                    );
                    path.pop();
                    message
                })
        }
        (Node::Seq(f), Node::Seq(e)) => {
            if f.len() != e.len() {
                return Some(format!(
                    "{} has {} entries in the file, the configuration expects {}",
                    dotted(path),
                    f.len(),
                    e.len()
                ));
            }
            f.iter().zip(e).enumerate().find_map(|(i, (f, e))| {
                path.push(i.to_string());
                let diff = difference(f, e, path);
                path.pop();
                diff
            })
        }
        (Node::Map(_) | Node::Seq(_), _) | (_, Node::Map(_) | Node::Seq(_)) => Some(format!(
            "{} has another structure in the file than in the configured model",
            dotted(path)
        )),
        _ => None,
    }
}

/// Every float parameter of a module: its id (as records write it), dotted name and shape.
pub(crate) fn parameters<B: Backend, M: Module<B>>(
    module: &M,
) -> HashMap<String, (String, Vec<u64>)> {
    struct Collect {
        path: Vec<String>,
        params: HashMap<String, (String, Vec<u64>)>,
    }
    impl<B: Backend> ModuleVisitor<B> for Collect {
        fn enter_module(&mut self, name: &str, _container_type: &str) {
            self.path.push(name.to_string());
        }
        fn exit_module(&mut self, _name: &str, _container_type: &str) {
            self.path.pop();
        }
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
            let shape = param
                .shape()
                .dims::<D>()
                .iter()
                .map(|&d| d as u64)
                .collect();
            self.params
                .insert(param.id.serialize(), (self.path.join("."), shape));
        }
    }
    let mut collect = Collect {
        path: Vec::new(),
        params: HashMap::new(),
    };
    module.visit(&mut collect);
    collect.params
}

/// The first entry of an optimiser record (`found`: per group, Adam state by parameter id)
/// that does not belong to the module's parameters: an id the module does not have, or a
/// moment of another shape than its parameter. `None` when every entry fits.
pub(crate) fn optimizer_difference(
    found: &Node,
    params: &HashMap<String, (String, Vec<u64>)>,
) -> Option<String> {
    let groups = match found.get("item") {
        Some(Node::Seq(groups)) => groups,
        _ => return Some("the record is not a grouped Adam state".into()),
    };
    for group in groups {
        let Node::Map(entries) = group else {
            return Some("the record is not a grouped Adam state".into());
        };
        for (id, state) in entries {
            let Some((name, shape)) = params.get(id) else {
                return Some(format!(
                    "it holds Adam moments of parameter id {id}, which the model does not have \
                     (a state of another model or run)"
                ));
            };
            let mut shapes = Vec::new();
            state.tensors(&mut shapes);
            if let Some(other) = shapes.iter().find(|s| *s != shape) {
                return Some(format!(
                    "the Adam moments of `{name}` have shape {}, the parameter has {}",
                    shape_text(other),
                    shape_text(shape)
                ));
            }
        }
    }
    None
}
