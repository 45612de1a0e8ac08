//! Limits on the shape of a document, checked right after parsing: how deep its
//! selections nest, how many root fields an operation may select and how many aliases a
//! document may use. The last two let one small request do the work of many (a thousand
//! aliased mutations, say). Complexity is left to async-graphql's validation, which knows
//! each field's cost.
//!
//! Depth is ours rather than async-graphql's because introspection needs more of it: the
//! standard introspection query every client and code generator sends (graphql-js
//! `getIntrospectionQuery()`) nests 15 levels, most of them `ofType` of a type reference.
//! A root `__schema` or `__type` field may nest [`MAX_INTROSPECTION_DEPTH`] levels;
//! every other root field [`MAX_DEPTH`]. Both are counted the same way: fragments
//! expanded where they are spread, the root field being level 1.

use std::collections::{HashMap, HashSet};

use async_graphql::parser::types::{ExecutableDocument, Selection, SelectionSet};
use async_graphql::{Name, Positioned, ServerError};

/// Deepest selection a document may have. The deepest useful query (a page of deployments,
/// their events, each event's deployment and its fields) is 7 levels.
pub const MAX_DEPTH: usize = 12;
/// Deepest selection under a root `__schema` or `__type` field: the standard introspection
/// query's 15 levels and a little room, far short of what an abusive `ofType` chain needs.
pub const MAX_INTROSPECTION_DEPTH: usize = 20;

/// Root fields one operation may select (after expanding fragments at the root).
pub const MAX_ROOT_FIELDS: usize = 20;
/// Aliased fields one document may contain.
pub const MAX_ALIASES: usize = 100;

pub fn check(doc: &ExecutableDocument) -> Result<(), ServerError> {
    let mut depths = Depths {
        doc,
        fragments: HashMap::new(),
    };
    for (_, operation) in doc.operations.iter() {
        for (field, depth) in depths.root_fields(&operation.node.selection_set.node) {
            let limit = match field.as_str() {
                "__schema" | "__type" => MAX_INTROSPECTION_DEPTH,
                _ => MAX_DEPTH,
            };
            if depth > limit {
                return Err(ServerError::new(
                    format!(
                        "Query is nested too deep: `{field}` nests {depth} levels; the limit is {limit}"
                    ),
                    Some(operation.pos),
                ));
            }
        }
    }
    for (_, operation) in doc.operations.iter() {
        let roots = count_fields(doc, &operation.node.selection_set, &mut HashSet::new());
        if roots > MAX_ROOT_FIELDS {
            return Err(ServerError::new(
                format!(
                    "An operation may select at most {MAX_ROOT_FIELDS} root fields; this one selects {roots}"
                ),
                Some(operation.pos),
            ));
        }
    }
    let mut aliases = 0;
    for (_, operation) in doc.operations.iter() {
        aliases += count_aliases(&operation.node.selection_set);
    }
    for fragment in doc.fragments.values() {
        aliases += count_aliases(&fragment.node.selection_set);
    }
    if aliases > MAX_ALIASES {
        return Err(ServerError::new(
            format!("A document may use at most {MAX_ALIASES} aliases; this one uses {aliases}"),
            None,
        ));
    }
    Ok(())
}

/// Fields selected directly by `set`, looking through fragments (each named fragment
/// once: a cycle is a validation error reported later).
fn count_fields<'a>(
    doc: &'a ExecutableDocument,
    set: &'a Positioned<SelectionSet>,
    seen: &mut HashSet<&'a Name>,
) -> usize {
    set.node
        .items
        .iter()
        .map(|item| match &item.node {
            Selection::Field(_) => 1,
            Selection::InlineFragment(inline) => {
                count_fields(doc, &inline.node.selection_set, seen)
            }
            Selection::FragmentSpread(spread) => {
                let name = &spread.node.fragment_name.node;
                match doc.fragments.get(name) {
                    Some(fragment) if seen.insert(name) => {
                        count_fields(doc, &fragment.node.selection_set, seen)
                    }
                    _ => 0,
                }
            }
        })
        .sum()
}

fn count_aliases(set: &Positioned<SelectionSet>) -> usize {
    set.node
        .items
        .iter()
        .map(|item| match &item.node {
            Selection::Field(field) => {
                usize::from(field.node.alias.is_some()) + count_aliases(&field.node.selection_set)
            }
            Selection::InlineFragment(inline) => count_aliases(&inline.node.selection_set),
            Selection::FragmentSpread(_) => 0,
        })
        .sum()
}

/// Depths of selection sets, each named fragment measured once (a fragment spread many
/// times must not make the check itself exponential).
struct Depths<'a> {
    doc: &'a ExecutableDocument,
    /// Depth of each fragment's selection set; None while it is being measured, so a
    /// cycle (a validation error reported later) counts as depth 0 instead of looping.
    fragments: HashMap<&'a Name, Option<usize>>,
}

impl<'a> Depths<'a> {
    /// Each root field's name and depth, looking through fragments at the root.
    fn root_fields(&mut self, set: &'a SelectionSet) -> Vec<(&'a Name, usize)> {
        let mut out = Vec::new();
        self.collect_roots(set, &mut out, &mut HashSet::new());
        out
    }

    fn collect_roots(
        &mut self,
        set: &'a SelectionSet,
        out: &mut Vec<(&'a Name, usize)>,
        seen: &mut HashSet<&'a Name>,
    ) {
        for item in &set.items {
            match &item.node {
                Selection::Field(field) => {
                    let depth = 1 + self.depth(&field.node.selection_set.node);
                    out.push((&field.node.name.node, depth));
                }
                Selection::InlineFragment(inline) => {
                    self.collect_roots(&inline.node.selection_set.node, out, seen)
                }
                Selection::FragmentSpread(spread) => {
                    let name = &spread.node.fragment_name.node;
                    if let Some(fragment) = self.doc.fragments.get(name) {
                        if seen.insert(name) {
                            self.collect_roots(&fragment.node.selection_set.node, out, seen);
                        }
                    }
                }
            }
        }
    }

    /// Levels of fields below a field whose selection set is `set` (0 for a leaf).
    fn depth(&mut self, set: &'a SelectionSet) -> usize {
        let mut deepest = 0;
        for item in &set.items {
            let depth = match &item.node {
                Selection::Field(field) => 1 + self.depth(&field.node.selection_set.node),
                Selection::InlineFragment(inline) => self.depth(&inline.node.selection_set.node),
                Selection::FragmentSpread(spread) => {
                    self.fragment_depth(&spread.node.fragment_name.node)
                }
            };
            deepest = deepest.max(depth);
        }
        deepest
    }

    fn fragment_depth(&mut self, name: &'a Name) -> usize {
        match self.fragments.get(name) {
            Some(Some(depth)) => return *depth,
            Some(None) => return 0,
            None => {}
        }
        let Some(fragment) = self.doc.fragments.get(name) else {
            return 0;
        };
        self.fragments.insert(name, None);
        let depth = self.depth(&fragment.node.selection_set.node);
        self.fragments.insert(name, Some(depth));
        depth
    }
}
