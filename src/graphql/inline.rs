//! Objects whose fields are resolved one after another in a single future.
//!
//! async-graphql resolves each selected field of an object as a boxed future of its own,
//! polled through a `FuturesUnordered` and wrapped in the schema's extension chain (which
//! looks the field up in the registry each time). For a dashboard page that is about
//! 2,000 fields, almost all of them a string or a timestamp already in memory: the
//! machinery cost more than the answers (BENCHMARKS.md). `Inline<T>` is the same GraphQL
//! type as `T` (same name, same fields, same introspection) but answers its selection
//! field after field, awaiting each in turn. A field that waits (a DataLoader) still
//! waits together with the same field of the list's other items, since a list polls its
//! items together.
//!
//! What is kept from async-graphql's own resolution: the response keys (aliases), fields
//! selected twice merge, fragments and inline fragments apply by type condition
//! (including interfaces the type implements), `__typename`, and a field that fails is
//! left out of its object with its error recorded, as `resolve_container` does. What is
//! skipped: the extensions' `resolve` hook, which the schema's one extension does not use
//! (see hooks.rs); a schema that adds one must not use `Inline`.

use std::borrow::Cow;

use async_graphql::indexmap::IndexMap;
use async_graphql::parser::types::{Field, Selection, SelectionSet};
use async_graphql::registry::Registry;
use async_graphql::{
    ContainerType, ContextSelectionSet, Name, OutputType, Positioned, ServerError, ServerResult,
    Value,
};
use futures_util::future::BoxFuture;

/// `T`, resolved field after field (see the module's comment).
pub struct Inline<T>(pub T);

impl<T> From<T> for Inline<T> {
    fn from(inner: T) -> Self {
        Inline(inner)
    }
}

impl<T: ContainerType> OutputType for Inline<T> {
    fn type_name() -> Cow<'static, str> {
        T::type_name()
    }

    fn qualified_type_name() -> String {
        T::qualified_type_name()
    }

    fn introspection_type_name(&self) -> Cow<'static, str> {
        self.0.introspection_type_name()
    }

    fn create_type_info(registry: &mut Registry) -> String {
        T::create_type_info(registry)
    }

    async fn resolve(
        &self,
        ctx: &ContextSelectionSet<'_>,
        _field: &Positioned<Field>,
    ) -> ServerResult<Value> {
        let mut answered = IndexMap::new();
        collect(ctx, &self.0, &mut answered).await?;
        Ok(Value::Object(answered))
    }
}

/// Answers the selection set of `ctx` on `root` into `answered`, in document order.
fn collect<'a, T: ContainerType>(
    ctx: &'a ContextSelectionSet<'a>,
    root: &'a T,
    answered: &'a mut IndexMap<Name, Value>,
) -> BoxFuture<'a, ServerResult<()>> {
    Box::pin(async move {
        for selection in &ctx.item.node.items {
            match &selection.node {
                Selection::Field(field) => {
                    let key = field.node.response_key().node.clone();
                    if field.node.name.node == "__typename" {
                        let name = root.introspection_type_name().into_owned();
                        merge(answered, key, Value::String(name));
                        continue;
                    }
                    let ctx_field = ctx.with_field(field);
                    match root.resolve_field(&ctx_field).await {
                        Ok(value) => merge(answered, key, value.unwrap_or_default()),
                        Err(err) => ctx.add_error(err),
                    }
                }
                Selection::FragmentSpread(spread) => {
                    let name = &spread.node.fragment_name.node;
                    let Some(fragment) = ctx.query_env.fragments.get(name) else {
                        return Err(ServerError::new(
                            format!(r#"Unknown fragment "{name}"."#),
                            Some(spread.pos),
                        ));
                    };
                    let condition = Some(fragment.node.type_condition.node.on.node.as_str());
                    apply(ctx, root, condition, &fragment.node.selection_set, answered).await?;
                }
                Selection::InlineFragment(fragment) => {
                    let condition = fragment
                        .node
                        .type_condition
                        .as_ref()
                        .map(|condition| condition.node.on.node.as_str());
                    apply(ctx, root, condition, &fragment.node.selection_set, answered).await?;
                }
            }
        }
        Ok(())
    })
}

/// A fragment's selection, if its type condition holds for `root`: none, the type itself,
/// or an interface the type implements.
async fn apply<'a, T: ContainerType>(
    ctx: &'a ContextSelectionSet<'a>,
    root: &'a T,
    condition: Option<&str>,
    selection_set: &'a Positioned<SelectionSet>,
    answered: &'a mut IndexMap<Name, Value>,
) -> ServerResult<()> {
    let holds = condition.is_none_or(|condition| {
        let name = root.introspection_type_name();
        name == condition
            || ctx
                .schema_env
                .registry
                .implements
                .get(name.as_ref())
                .is_some_and(|interfaces| interfaces.contains(condition))
    });
    if holds {
        collect(&ctx.with_selection_set(selection_set), root, answered).await?;
    }
    Ok(())
}

/// Adds a field's answer; a response key selected twice merges the objects it selects
/// (the same field, by GraphQL's validation rules, so lists have the same length).
fn merge(answered: &mut IndexMap<Name, Value>, key: Name, value: Value) {
    let Some(existing) = answered.get_mut(&key) else {
        answered.insert(key, value);
        return;
    };
    match (existing, value) {
        (Value::Object(existing), Value::Object(more)) => {
            for (key, value) in more {
                merge(existing, key, value);
            }
        }
        (Value::List(existing), Value::List(more)) => {
            for (existing, more) in existing.iter_mut().zip(more) {
                if let (Value::Object(existing), Value::Object(more)) = (existing, more) {
                    for (key, value) in more {
                        merge(existing, key, value);
                    }
                }
            }
        }
        _ => {}
    }
}
