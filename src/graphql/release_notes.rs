//! `Query.draftReleaseNotes`: the scope from the store, the text from the configured
//! language model when there is one and it answers well in time, else from the
//! template. A failing model never fails the query: it is logged (without the key) and
//! the template answers.

use std::collections::HashMap;
use std::sync::Arc;

use async_graphql::{Context, Enum, SimpleObject};

use super::error::ApiError;
use super::store;
use crate::domain::release_notes::{self, Bump, DraftRequest, DraftScope, MAX_PROMPT_DEPLOYMENTS};
use crate::llm;

/// A semantic-versioning bump.
#[derive(Enum, Clone, Copy, PartialEq, Eq, Debug)]
#[graphql(name = "SemverBump")]
pub enum SemverBump {
    Major,
    Minor,
    Patch,
    None,
}

impl From<Bump> for SemverBump {
    fn from(bump: Bump) -> Self {
        match bump {
            Bump::Major => SemverBump::Major,
            Bump::Minor => SemverBump::Minor,
            Bump::Patch => SemverBump::Patch,
            Bump::None => SemverBump::None,
        }
    }
}

/// Who wrote a draft.
#[derive(Enum, Clone, Copy, PartialEq, Eq, Debug)]
#[graphql(name = "ReleaseNotesSource")]
pub enum ReleaseNotesSource {
    /// Written by the configured language model.
    Model,
    /// Assembled from the work references and notes; used when no model is configured or it failed.
    Template,
}

/// Drafted release notes for promoting a version into an environment.
#[derive(SimpleObject)]
#[graphql(name = "ReleaseNotesDraft")]
pub struct ReleaseNotesDraftObject {
    text: String,
    suggested_bump: Option<SemverBump>,
    source: ReleaseNotesSource,
    /// The work references the draft covers, oldest first, without duplicates.
    work_refs: Vec<String>,
    /// The version it compares against (the target environment's live version); null when nothing is live there.
    base_version: Option<String>,
}

/// The language model that drafts release notes, if one is configured: schema data.
#[derive(Clone, Default)]
pub struct Drafter(pub Option<Arc<llm::Client>>);

fn model<'a>(ctx: &Context<'a>) -> Option<&'a llm::Client> {
    ctx.data_opt::<Drafter>().and_then(|d| d.0.as_deref())
}

/// Resolves `draftReleaseNotes`.
pub(super) async fn draft(
    ctx: &Context<'_>,
    service: &str,
    environment: &str,
    version: &str,
) -> Result<ReleaseNotesDraftObject, ApiError> {
    let request = DraftRequest::validate(service, environment, version).map_err(|errors| {
        ApiError::BadUserInput(errors.0.into_iter().map(|e| (e.field, e.message)).collect())
    })?;
    let store = store(ctx)?;
    let Some(scope) = store.release_notes_scope(&request).await? else {
        return Err(ApiError::bad_input(
            "version",
            "no deployment of this service has this version",
        ));
    };
    let drafted = match model(ctx) {
        Some(client) => ask(store, client, &scope).await,
        None => None,
    };
    let (text, suggested_bump, source) = match drafted {
        Some((text, bump)) => (text, Some(bump.into()), ReleaseNotesSource::Model),
        None => (
            release_notes::template(&scope),
            None,
            ReleaseNotesSource::Template,
        ),
    };
    Ok(ReleaseNotesDraftObject {
        text,
        suggested_bump,
        source,
        base_version: scope.base_version().map(str::to_owned),
        work_refs: scope.work_refs,
    })
}

/// The model's notes and bump, or `None` (logged) when it cannot give them.
async fn ask(
    store: &crate::store::Store,
    client: &llm::Client,
    scope: &DraftScope,
) -> Option<(String, Bump)> {
    // The notes of the events of the deployments the prompt shows: one statement.
    let shown: Vec<_> = scope
        .covered
        .iter()
        .rev()
        .take(MAX_PROMPT_DEPLOYMENTS)
        .map(|d| d.id)
        .collect();
    let events = if shown.is_empty() {
        HashMap::new()
    } else {
        match store.events_of(&shown).await {
            Ok(events) => events
                .into_iter()
                .map(|(id, stored)| (id, stored.into_iter().map(|s| s.event).collect()))
                .collect(),
            Err(err) => {
                tracing::warn!(error = %err, "cannot read the event notes for the prompt; asking without them");
                HashMap::new()
            }
        }
    };
    let prompt = release_notes::prompt(scope, &events);
    let answer = match client.complete(release_notes::SYSTEM_PROMPT, &prompt).await {
        Ok(answer) => answer,
        Err(err) => {
            tracing::warn!(error = %err, model = client.model(), "the model did not draft the release notes; answering with the template");
            return None;
        }
    };
    match release_notes::parse_answer(&answer) {
        Ok(drafted) => Some(drafted),
        Err(err) => {
            tracing::warn!(error = %err, model = client.model(), "the model's draft is malformed; answering with the template");
            None
        }
    }
}
