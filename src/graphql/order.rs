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

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use async_graphql::extensions::{
    Extension, ExtensionContext, ExtensionFactory, NextParseQuery, NextPrepareRequest, NextRequest,
    NextSubscribe,
};
use async_graphql::parser::types::{
    Directive, DocumentOperations, ExecutableDocument, Field, OperationDefinition, OperationType,
    Selection, SelectionSet,
};
use async_graphql::registry::{MetaType, MetaTypeName, Registry};
use async_graphql::{Name, Positioned, Request, Response, ServerResult, Value, Variables};
use futures_util::stream::BoxStream;
use futures_util::StreamExt;

/// Puts every response's fields in document order. Registered on the schema.
pub struct ResponseOrder;

impl ExtensionFactory for ResponseOrder {
    fn create(&self) -> Arc<dyn Extension> {
        Arc::new(OrderExtension::default())
    }
}

/// What one request's response is ordered by: its document, variables (for `@skip` and
/// `@include`) and operation name, captured as the request is prepared and parsed.
#[derive(Default)]
struct Captured {
    operation_name: Option<String>,
    document: Option<(ExecutableDocument, Variables)>,
}

#[derive(Default)]
struct OrderExtension {
    // Shared with the stream of a subscription, which outlives the `subscribe` call.
    captured: Arc<Mutex<Captured>>,
}

#[async_trait::async_trait]
impl Extension for OrderExtension {
    async fn prepare_request(
        &self,
        ctx: &ExtensionContext<'_>,
        request: Request,
        next: NextPrepareRequest<'_>,
    ) -> ServerResult<Request> {
        if let Ok(mut captured) = self.captured.lock() {
            captured.operation_name = request.operation_name.clone();
        }
        next.run(ctx, request).await
    }

    async fn parse_query(
        &self,
        ctx: &ExtensionContext<'_>,
        query: &str,
        variables: &Variables,
        next: NextParseQuery<'_>,
    ) -> ServerResult<ExecutableDocument> {
        let document = next.run(ctx, query, variables).await?;
        if let Ok(mut captured) = self.captured.lock() {
            captured.document = Some((document.clone(), variables.clone()));
        }
        Ok(document)
    }

    async fn request(&self, ctx: &ExtensionContext<'_>, next: NextRequest<'_>) -> Response {
        let mut response = next.run(ctx).await;
        order_response(&ctx.schema_env.registry, &self.captured, &mut response);
        response
    }

    fn subscribe<'s>(
        &self,
        ctx: &ExtensionContext<'_>,
        stream: BoxStream<'s, Response>,
        next: NextSubscribe<'_>,
    ) -> BoxStream<'s, Response> {
        let env = ctx.schema_env.clone();
        let captured = self.captured.clone();
        next.run(ctx, stream)
            .map(move |mut response| {
                order_response(&env.registry, &captured, &mut response);
                response
            })
            .boxed()
    }
}

fn order_response(registry: &Registry, captured: &Mutex<Captured>, response: &mut Response) {
    let Ok(captured) = captured.lock() else {
        return;
    };
    let Some((document, variables)) = &captured.document else {
        return;
    };
    let Some(operation) = find_operation(document, captured.operation_name.as_deref()) else {
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

fn find_operation<'d>(
    document: &'d ExecutableDocument,
    name: Option<&str>,
) -> Option<&'d OperationDefinition> {
    match (&document.operations, name) {
        (DocumentOperations::Single(operation), _) => Some(&operation.node),
        (DocumentOperations::Multiple(operations), Some(name)) => {
            operations.get(name).map(|operation| &operation.node)
        }
        (DocumentOperations::Multiple(operations), None) if operations.len() == 1 => {
            operations.values().next().map(|operation| &operation.node)
        }
        _ => None,
    }
}

/// The fields of one response key in one object, in document order.
type Group<'d> = (&'d Name, Vec<&'d Field>);

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
                let mut unordered = std::mem::take(map);
                for (key, fields) in groups {
                    let Some(mut child) = unordered.swap_remove(key) else {
                        continue;
                    };
                    let child_sets: Vec<&SelectionSet> = fields
                        .iter()
                        .map(|field| &field.selection_set.node)
                        .filter(|set| !set.items.is_empty())
                        .collect();
                    if !child_sets.is_empty() {
                        let child_ty = ty
                            .and_then(|ty| ty.field_by_name(&fields[0].name.node))
                            .and_then(|field| {
                                self.registry
                                    .types
                                    .get(MetaTypeName::concrete_typename(&field.ty))
                            });
                        self.order(child_ty, &child_sets, &mut child);
                    }
                    map.insert(key.clone(), child);
                }
                // Nothing should be left; if something is, it keeps a place at the end.
                map.extend(unordered);
            }
            Value::List(items) => {
                for item in items {
                    self.order(ty, sets, item);
                }
            }
            _ => {}
        }
    }

    /// CollectFields of the spec: response keys in order of first occurrence, fragments
    /// expanded where they stand when they apply to `ty`, each named fragment once.
    fn collect(&self, ty: Option<&'d MetaType>, sets: &[&'d SelectionSet]) -> Vec<Group<'d>> {
        let mut groups = Vec::new();
        let mut visited = HashSet::new();
        for set in sets {
            self.collect_into(ty, set, &mut groups, &mut visited);
        }
        groups
    }

    fn collect_into(
        &self,
        ty: Option<&'d MetaType>,
        set: &'d SelectionSet,
        groups: &mut Vec<Group<'d>>,
        visited: &mut HashSet<&'d Name>,
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
                    if !self.included(&spread.directives) || visited.contains(name) {
                        continue;
                    }
                    let Some(fragment) = self.document.fragments.get(name) else {
                        continue;
                    };
                    let condition = &fragment.node.type_condition.node.on.node;
                    if self.applies(ty, Some(condition)) {
                        visited.insert(name);
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
        map: &async_graphql::indexmap::IndexMap<Name, Value>,
    ) -> Option<&'d MetaType> {
        let candidates = ty.possible_types()?;
        candidates
            .iter()
            .filter_map(|name| self.registry.types.get(name))
            .find(|candidate| {
                let groups = self.collect(Some(candidate), sets);
                groups.len() == map.len() && groups.iter().all(|(key, _)| map.contains_key(*key))
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
