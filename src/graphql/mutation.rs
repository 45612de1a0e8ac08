use async_graphql::{Context, Object, ID};

use super::error::ApiError;
use super::types::{
    parse_id, ApproveDeploymentInput, CancelDeploymentInput, CreateDeploymentInput,
    DeploymentPayload, FailDeploymentInput, PromoteDeploymentInput, RejectDeploymentInput,
    RollBackDeploymentInput, StartDeploymentInput, SucceedDeploymentInput,
};
use super::types::{ConfigureEnvironmentInput, EnvironmentObject};
use super::{production, store};
use crate::domain::{
    Action, ActionCommand, DeploymentRequest, EnvironmentConfig, NewDeployment, Promotion,
    PromotionRequest, Tier,
};

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
            release_notes: input.release_notes,
        };
        let store = store(ctx)?;
        // The environment's tier decides whether the risk is required: its configured
        // tier, or for a new environment the naming rule's. (The store checks again
        // against the environment as it is inside the creation's transaction.)
        let tier = match store.environment(&request.environment).await? {
            Some(environment) => environment.tier,
            None => Tier::of_name(&request.environment, production(ctx)?),
        };
        let new = NewDeployment::validate_in(&request, tier)
            .map_err(|e| ApiError::invalid("input", e))?;
        Ok(store.create(new).await?.into())
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
        let command = ActionCommand::validate_start(
            &input.actor,
            input.note.as_deref(),
            input.override_freeze.unwrap_or(false),
        );
        act_with(ctx, input.id, command).await
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

    async fn cancel_deployment(
        &self,
        ctx: &Context<'_>,
        input: CancelDeploymentInput,
    ) -> Result<DeploymentPayload, ApiError> {
        act(
            ctx,
            Action::Cancel,
            input.id,
            &input.actor,
            Some(&input.note),
        )
        .await
    }

    /// A new PENDING_APPROVAL deployment of the source's service and version in a later environment.
    async fn promote_deployment(
        &self,
        ctx: &Context<'_>,
        input: PromoteDeploymentInput,
    ) -> Result<DeploymentPayload, ApiError> {
        let store = store(ctx)?;
        // A named target's tier decides at once whether the risk is required, as for
        // createDeployment; the store decides the default target, and checks again.
        let tier = match input.environment.as_deref() {
            None => None,
            Some(name) => Some(match store.environment(name).await? {
                Some(environment) => environment.tier,
                None => Tier::of_name(name, production(ctx)?),
            }),
        };
        let id = parse_id("input.id", &input.id);
        let request = PromotionRequest {
            // A malformed id is reported with the other problems below.
            source: id.as_ref().copied().unwrap_or_default(),
            environment: input.environment,
            requester: input.requester,
            work_refs: input.work_refs,
            risk: input.risk,
            rollback_plan: input.rollback_plan,
            release_notes: input.release_notes,
            idempotency_key: input.idempotency_key,
        };
        let promotion =
            Promotion::validate(&request, tier).map_err(|e| ApiError::invalid("input", e));
        let promotion = match (id, promotion) {
            (Ok(_), Ok(promotion)) => promotion,
            (id, promotion) => {
                let problems = [id.err(), promotion.err()]
                    .into_iter()
                    .flatten()
                    .flat_map(ApiError::into_fields)
                    .collect();
                return Err(ApiError::BadUserInput(problems));
            }
        };
        Ok(store
            .promote(promotion)
            .await
            .map_err(ApiError::of_promotion)?
            .into())
    }

    /// Registers the environment if it is new, then applies the given settings.
    async fn configure_environment(
        &self,
        ctx: &Context<'_>,
        input: ConfigureEnvironmentInput,
    ) -> Result<EnvironmentObject, ApiError> {
        let config = EnvironmentConfig::validate(&input.into())
            .map_err(|e| ApiError::invalid("input", e))?;
        Ok(EnvironmentObject(
            store(ctx)?.configure_environment(config).await?,
        ))
    }
    /// A one-off or recurring freeze window, for one environment or (null) every one.
    async fn create_freeze_window(
        &self,
        ctx: &Context<'_>,
        input: super::freeze::CreateFreezeWindowInput,
    ) -> Result<super::freeze::FreezeWindowObject, ApiError> {
        super::freeze::create(ctx, input).await
    }

    /// Removes a freeze window (it then covers nothing); needs a note.
    async fn remove_freeze_window(
        &self,
        ctx: &Context<'_>,
        input: super::freeze::RemoveFreezeWindowInput,
    ) -> Result<super::freeze::FreezeWindowObject, ApiError> {
        super::freeze::remove(ctx, input).await
    }

    async fn create_webhook(
        &self,
        ctx: &Context<'_>,
        input: super::integrations::CreateWebhookInput,
    ) -> Result<super::integrations::WebhookObject, ApiError> {
        super::integrations::create_webhook(ctx, input).await
    }

    async fn update_webhook(
        &self,
        ctx: &Context<'_>,
        input: super::integrations::UpdateWebhookInput,
    ) -> Result<super::integrations::WebhookObject, ApiError> {
        super::integrations::update_webhook(ctx, input).await
    }

    /// Deletes the webhook and its deliveries; pending ones are not sent.
    async fn delete_webhook(
        &self,
        ctx: &Context<'_>,
        input: super::integrations::DeleteWebhookInput,
    ) -> Result<super::integrations::WebhookObject, ApiError> {
        super::integrations::delete_webhook(ctx, input).await
    }

    /// Schedules one more attempt now, whatever its status.
    async fn redeliver_webhook_delivery(
        &self,
        ctx: &Context<'_>,
        input: super::integrations::RedeliverWebhookDeliveryInput,
    ) -> Result<super::integrations::DeliveryObject, ApiError> {
        super::integrations::redeliver(ctx, input).await
    }

    /// Creates or replaces the target of (service, environment).
    async fn configure_deployment_target(
        &self,
        ctx: &Context<'_>,
        input: super::integrations::ConfigureDeploymentTargetInput,
    ) -> Result<super::integrations::TargetObject, ApiError> {
        super::integrations::configure_target(ctx, input).await
    }

    async fn remove_deployment_target(
        &self,
        ctx: &Context<'_>,
        input: super::integrations::RemoveDeploymentTargetInput,
    ) -> Result<super::integrations::TargetObject, ApiError> {
        super::integrations::remove_target(ctx, input).await
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
    act_with(ctx, id, ActionCommand::validate(action, actor, note)).await
}

/// [`act`] with a command already checked (a start's, which has its own rules).
async fn act_with(
    ctx: &Context<'_>,
    id: ID,
    command: Result<ActionCommand, crate::domain::ValidationErrors>,
) -> Result<DeploymentPayload, ApiError> {
    let id = parse_id("input.id", &id);
    let command = command.map_err(|e| ApiError::invalid("input", e));
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
