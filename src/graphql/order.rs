//! Response field order. The GraphQL spec serialises a response map in the order the
//! document selected its fields (CollectFields: fragments expanded in place, the first
//! occurrence of a response key fixing its place). async-graphql resolves the fields of an
//! object concurrently and inserts each as it finishes, so without this pass the order of
//! a response follows the order its resolvers happened to finish in.
//!
//! The pass runs once per response, after execution: it walks the document beside the
//! result and rebuilds each object's map in document order. Type conditions are decided
//! with the schema's registry; for an abstract type (`node` returns the `Node` interface)
//! the concrete type is the one whose collected fields are exactly the keys present.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use async_graphql::indexmap::IndexMap;
use async_graphql::parser::types::{
    Directive, ExecutableDocument, Field, OperationDefinition, OperationType, Selection,
    SelectionSet,
};
use async_graphql::registry::{MetaType, MetaTypeName, Registry};
use async_graphql::{Name, Positioned, Response, Value, Variables};

/// What one request's response is ordered by: its document, variables (for `@skip` and
/// `@include`) and operation name, captured as the request is prepared and parsed. The
/// request's `Hooks` hold one; a subscription's stream shares it, since it outlives them.
#[derive(Default, Clone)]
pub(super) struct Capture(Arc<Mutex<Captured>>);

#[derive(Default)]
struct Captured {
    operation_name: Option<String>,
    document: Option<(Arc<ExecutableDocument>, Variables)>,
}

/// Parsed documents by their exact text, shared by the requests and subscriptions that
/// send it: a client sends the same few documents over and over, so each is parsed and
/// checked against the document limits once, and a thousand dashboards subscribed with
/// one document hold one copy of it, not a thousand. Only documents that parsed and
/// passed the limits are kept. Bounded by count and by text size; when either would be
/// exceeded the remembered documents are forgotten and remembering starts over (those in
/// use stay alive with their users).
#[derive(Default)]
pub(super) struct SharedDocuments(Mutex<Documents>);

#[derive(Default)]
struct Documents {
    parsed: HashMap<Box<str>, Arc<ExecutableDocument>>,
    text_bytes: usize,
}

/// Distinct texts remembered at once.
const MAX_SHARED_DOCUMENTS: usize = 1024;
/// Their total length.
const MAX_SHARED_TEXT_BYTES: usize = 1 << 20;

impl SharedDocuments {
    fn lock(&self) -> std::sync::MutexGuard<'_, Documents> {
        // Each change is one insert or one clear: a panic elsewhere cannot tear it.
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The document parsed from exactly this text before, if it is remembered.
    pub(super) fn parsed(&self, query: &str) -> Option<Arc<ExecutableDocument>> {
        self.lock().parsed.get(query).cloned()
    }

    /// Remembers the document parsed from `query` (which passed the limits).
    pub(super) fn remember(
        &self,
        query: &str,
        document: ExecutableDocument,
    ) -> Arc<ExecutableDocument> {
        let document = Arc::new(document);
        let mut documents = self.lock();
        if documents.parsed.len() >= MAX_SHARED_DOCUMENTS
            || documents.text_bytes + query.len() > MAX_SHARED_TEXT_BYTES
        {
            documents.parsed.clear();
            documents.text_bytes = 0;
        }
        if query.len() <= MAX_SHARED_TEXT_BYTES
            && documents
                .parsed
                .insert(query.into(), document.clone())
                .is_none()
        {
            documents.text_bytes += query.len();
        }
        document
    }
}

impl Capture {
    fn lock(&self) -> std::sync::MutexGuard<'_, Captured> {
        // Plain data, each change one assignment: a panic elsewhere cannot tear it.
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(super) fn operation_name(&self, name: Option<String>) {
        self.lock().operation_name = name;
    }

    /// Keeps the request's document (shared with its other users, `SharedDocuments`).
    pub(super) fn document(&self, document: Arc<ExecutableDocument>, variables: &Variables) {
        self.lock().document = Some((document, variables.clone()));
    }

    /// Puts the fields of `response.data` in document order.
    pub(super) fn order(&self, registry: &Registry, response: &mut Response) {
        if response.data == Value::Null {
            return;
        }
        let captured = self.lock();
        let Some((document, variables)) = &captured.document else {
            return;
        };
        let Some((_, operation)) =
            super::select_operation(document, captured.operation_name.as_deref())
        else {
            return;
        };
        let root = match operation.ty {
            OperationType::Query => Some(registry.query_type.as_str()),
            OperationType::Mutation => registry.mutation_type.as_deref(),
            OperationType::Subscription => registry.subscription_type.as_deref(),
        }
        .and_then(|name| registry.types.get(name));
        let orderer = Orderer {
            registry,
            document,
            variables,
            operation,
        };
        orderer.order(root, &[&operation.selection_set.node], &mut response.data);
    }
}

/// One response key of an object: its fields in document order (several when the
/// document selects the key more than once), with what its value is ordered by.
struct Group<'d> {
    key: &'d Name,
    /// The type of the key's value (None when unknown or a leaf).
    ty: Option<&'d MetaType>,
    /// The selection sets of its fields, merged: what the value's own fields follow.
    sets: Vec<&'d SelectionSet>,
}

struct Orderer<'d> {
    registry: &'d Registry,
    document: &'d ExecutableDocument,
    variables: &'d Variables,
    operation: &'d OperationDefinition,
}

impl<'d> Orderer<'d> {
    /// Orders `value`, the result of `sets` (the selection sets of every field merged into
    /// one response key) over a value of type `ty` (None when unknown).
    fn order(&self, ty: Option<&'d MetaType>, sets: &[&'d SelectionSet], value: &mut Value) {
        match value {
            Value::Object(map) => {
                let ty = match ty {
                    Some(ty) if ty.is_abstract() => self.concrete_type(ty, sets, map),
                    ty => ty,
                };
                let groups = self.collect(ty, sets);
                self.order_object(&groups, map);
            }
            Value::List(items) => {
                // The items of a list share their selection, so an object type's fields
                // are collected once for all of them.
                let shared = match ty {
                    Some(ty) if ty.is_abstract() => None,
                    _ if items.iter().any(|item| matches!(item, Value::Object(_))) => {
                        Some(self.collect(ty, sets))
                    }
                    _ => None,
                };
                for item in items {
                    match (item, &shared) {
                        (Value::Object(map), Some(groups)) => self.order_object(groups, map),
                        (item, _) => self.order(ty, sets, item),
                    }
                }
            }
            _ => {}
        }
    }

    fn order_object(&self, groups: &[Group<'d>], map: &mut IndexMap<Name, Value>) {
        // Resolvers that finished in document order (most do) leave nothing to move.
        let in_order = map.len() == groups.len()
            && map.keys().zip(groups).all(|(key, group)| key == group.key);
        if !in_order {
            let mut unordered = std::mem::take(map);
            map.reserve(unordered.len());
            for group in groups {
                if let Some(child) = unordered.swap_remove(group.key) {
                    map.insert(group.key.clone(), child);
                }
            }
            // Nothing should be left; if something is, it keeps a place at the end.
            map.extend(unordered);
        }
        for group in groups {
            if group.sets.is_empty() {
                continue;
            }
            if let Some(child) = map.get_mut(group.key) {
                self.order(group.ty, &group.sets, child);
            }
        }
    }

    /// CollectFields of the spec: response keys in order of first occurrence, fragments
    /// expanded where they stand when they apply to `ty`, each named fragment once.
    fn collect(&self, ty: Option<&'d MetaType>, sets: &[&'d SelectionSet]) -> Vec<Group<'d>> {
        let mut fields: Vec<(&'d Name, Vec<&'d Field>)> = Vec::new();
        let mut visited = Vec::new();
        for set in sets {
            self.collect_into(ty, set, &mut fields, &mut visited);
        }
        fields
            .into_iter()
            .map(|(key, fields)| {
                let sets: Vec<&SelectionSet> = fields
                    .iter()
                    .map(|field| &field.selection_set.node)
                    .filter(|set| !set.items.is_empty())
                    .collect();
                let child_ty = if sets.is_empty() {
                    None
                } else {
                    ty.and_then(|ty| ty.field_by_name(&fields[0].name.node))
                        .and_then(|field| {
                            self.registry
                                .types
                                .get(MetaTypeName::concrete_typename(&field.ty))
                        })
                };
                Group {
                    key,
                    ty: child_ty,
                    sets,
                }
            })
            .collect()
    }

    fn collect_into(
        &self,
        ty: Option<&'d MetaType>,
        set: &'d SelectionSet,
        groups: &mut Vec<(&'d Name, Vec<&'d Field>)>,
        visited: &mut Vec<&'d Name>,
    ) {
        for selection in &set.items {
            match &selection.node {
                Selection::Field(field) => {
                    let field = &field.node;
                    if !self.included(&field.directives) {
                        continue;
                    }
                    let key = &field.response_key().node;
                    match groups.iter_mut().find(|(k, _)| *k == key) {
                        Some((_, fields)) => fields.push(field),
                        None => groups.push((key, vec![field])),
                    }
                }
                Selection::InlineFragment(fragment) => {
                    let fragment = &fragment.node;
                    let condition = fragment.type_condition.as_ref().map(|c| &c.node.on.node);
                    if self.included(&fragment.directives) && self.applies(ty, condition) {
                        self.collect_into(ty, &fragment.selection_set.node, groups, visited);
                    }
                }
                Selection::FragmentSpread(spread) => {
                    let spread = &spread.node;
                    let name = &spread.fragment_name.node;
                    if !self.included(&spread.directives) || visited.contains(&name) {
                        continue;
                    }
                    let Some(fragment) = self.document.fragments.get(name) else {
                        continue;
                    };
                    let condition = &fragment.node.type_condition.node.on.node;
                    if self.applies(ty, Some(condition)) {
                        visited.push(name);
                        self.collect_into(ty, &fragment.node.selection_set.node, groups, visited);
                    }
                }
            }
        }
    }

    /// Whether a fragment on `condition` applies to a value of type `ty`. When the type
    /// is unknown, every fragment is taken to apply.
    fn applies(&self, ty: Option<&MetaType>, condition: Option<&Name>) -> bool {
        let (Some(ty), Some(condition)) = (ty, condition) else {
            return true;
        };
        if ty.is_abstract() || ty.name() == condition.as_str() {
            return true;
        }
        self.registry
            .types
            .get(condition.as_str())
            .is_some_and(|condition| condition.is_possible_type(ty.name()))
    }

    /// The object type a value of abstract type `ty` has: the one possible type whose
    /// collected response keys are exactly the keys the value has.
    fn concrete_type(
        &self,
        ty: &'d MetaType,
        sets: &[&'d SelectionSet],
        map: &IndexMap<Name, Value>,
    ) -> Option<&'d MetaType> {
        let candidates = ty.possible_types()?;
        candidates
            .iter()
            .filter_map(|name| self.registry.types.get(name))
            .find(|candidate| {
                let groups = self.collect(Some(candidate), sets);
                groups.len() == map.len() && groups.iter().all(|g| map.contains_key(g.key))
            })
    }

    /// `@skip(if:)` and `@include(if:)`, with variables and their defaults.
    fn included(&self, directives: &[Positioned<Directive>]) -> bool {
        directives.iter().all(|directive| {
            let directive = &directive.node;
            let condition = directive.get_argument("if").map(|value| {
                value
                    .node
                    .clone()
                    .into_const_with(|name| Ok::<_, ()>(self.variable(&name)))
                    .is_ok_and(|value| value == Value::Boolean(true))
            });
            match (directive.name.node.as_str(), condition) {
                ("skip", Some(skip)) => !skip,
                ("include", Some(include)) => include,
                _ => true,
            }
        })
    }

    fn variable(&self, name: &Name) -> Value {
        if let Some(value) = self.variables.get(name) {
            return value.clone();
        }
        self.operation
            .variable_definitions
            .iter()
            .find(|definition| definition.node.name.node == *name)
            .and_then(|definition| definition.node.default_value())
            .cloned()
            .unwrap_or(Value::Null)
    }
}
