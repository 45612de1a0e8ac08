use async_graphql::{Context, Object, ID};

use super::error::ApiError;
use super::types::{
    parse_id, ApproveDeploymentInput, CreateDeploymentInput, DeploymentPayload,
    FailDeploymentInput, RejectDeploymentInput, RollBackDeploymentInput, StartDeploymentInput,
    SucceedDeploymentInput,
};
use super::{production, store};
use crate::domain::{Action, ActionCommand, DeploymentRequest, NewDeployment};

pub struct Mutation;

#[Object]
impl Mutation {
    async fn create_deployment(
        &self,
        ctx: &Context<'_>,
        input: CreateDeploymentInput,
    ) -> Result<DeploymentPayload, ApiError> {
        let request = DeploymentRequest {
            service: input.service,
            environment: input.environment,
            version: input.version,
            requester: input.requester,
            work_refs: input.work_refs,
            risk: input.risk,
            rollback_plan: input.rollback_plan,
            idempotency_key: input.idempotency_key,
        };
        let new = NewDeployment::validate(&request, production(ctx)?)
            .map_err(|e| ApiError::invalid("input", e))?;
        Ok(store(ctx)?.create(new).await?.into())
    }

    async fn approve_deployment(
        &self,
        ctx: &Context<'_>,
        input: ApproveDeploymentInput,
    ) -> Result<DeploymentPayload, ApiError> {
        act(
            ctx,
            Action::Approve,
            input.id,
            &input.actor,
            input.note.as_deref(),
        )
        .await
    }

    async fn reject_deployment(
        &self,
        ctx: &Context<'_>,
        input: RejectDeploymentInput,
    ) -> Result<DeploymentPayload, ApiError> {
        act(
            ctx,
            Action::Reject,
            input.id,
            &input.actor,
            Some(&input.note),
        )
        .await
    }

    async fn start_deployment(
        &self,
        ctx: &Context<'_>,
        input: StartDeploymentInput,
    ) -> Result<DeploymentPayload, ApiError> {
        act(
            ctx,
            Action::Start,
            input.id,
            &input.actor,
            input.note.as_deref(),
        )
        .await
    }

    async fn succeed_deployment(
        &self,
        ctx: &Context<'_>,
        input: SucceedDeploymentInput,
    ) -> Result<DeploymentPayload, ApiError> {
        act(
            ctx,
            Action::Succeed,
            input.id,
            &input.actor,
            input.note.as_deref(),
        )
        .await
    }

    async fn fail_deployment(
        &self,
        ctx: &Context<'_>,
        input: FailDeploymentInput,
    ) -> Result<DeploymentPayload, ApiError> {
        act(ctx, Action::Fail, input.id, &input.actor, Some(&input.note)).await
    }

    async fn roll_back_deployment(
        &self,
        ctx: &Context<'_>,
        input: RollBackDeploymentInput,
    ) -> Result<DeploymentPayload, ApiError> {
        act(
            ctx,
            Action::RollBack,
            input.id,
            &input.actor,
            Some(&input.note),
        )
        .await
    }
}

/// Every lifecycle mutation: check the input (all problems at once), then let the store
/// run the action in one transaction.
async fn act(
    ctx: &Context<'_>,
    action: Action,
    id: ID,
    actor: &str,
    note: Option<&str>,
) -> Result<DeploymentPayload, ApiError> {
    // Both the id and the rest are checked before answering, so that every problem is
    // reported at once.
    let id = parse_id("input.id", &id);
    let command =
        ActionCommand::validate(action, actor, note).map_err(|e| ApiError::invalid("input", e));
    let (id, command) = match (id, command) {
        (Ok(id), Ok(command)) => (id, command),
        (id, command) => {
            let problems = [id.err(), command.err()]
                .into_iter()
                .flatten()
                .flat_map(ApiError::into_fields)
                .collect();
            return Err(ApiError::BadUserInput(problems));
        }
    };
    Ok(store(ctx)?.transition(id, &command).await?.into())
}
