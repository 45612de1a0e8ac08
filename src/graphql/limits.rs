//! Limits on the shape of a document that depth and complexity do not catch: how many
//! root fields an operation may select and how many aliases a document may use. Both
//! let one small request do the work of many (a thousand aliased mutations, say).

use std::collections::HashSet;

use async_graphql::parser::types::{ExecutableDocument, Selection, SelectionSet};
use async_graphql::{Name, Positioned, ServerError};

/// Root fields one operation may select (after expanding fragments at the root).
pub const MAX_ROOT_FIELDS: usize = 20;
/// Aliased fields one document may contain.
pub const MAX_ALIASES: usize = 100;

pub fn check(doc: &ExecutableDocument) -> Result<(), ServerError> {
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
