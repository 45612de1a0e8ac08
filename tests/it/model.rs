//! Model-based property tests of the domain, without I/O: random action sequences and
//! random creation inputs, each checked against a small model written from contract.md
//! (not from the crate's own table), step by step.

use std::collections::BTreeSet;

use chrono::{Duration, TimeZone, Utc};
use proptest::prelude::*;
use proptest::test_runner::{Config as ProptestConfig, RngSeed};
use shiplog::domain::{
    Action, ActionCommand, Deployment, DeploymentEvent, DeploymentRequest, EventKind,
    NewDeployment, ProductionEnvironments, Refusal, Status, Timestamp, ValidationErrors,
    MAX_IDEMPOTENCY_KEY_CHARS,
};
use uuid::Uuid;

/// Modest, deterministic runs that leave no regression files behind.
fn config(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases,
        rng_seed: RngSeed::Fixed(0x5_41_11_0c),
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

// ---------------------------------------------------------------------------------------
// The model: contract.md's tables, by hand
// ---------------------------------------------------------------------------------------

/// The lifecycle table of contract.md: where `action` goes from `from`, and the kind of
/// the event it appends; `None` for every other pair (a CONFLICT).
fn table(action: &str, from: &str) -> Option<(&'static str, &'static str)> {
    match (action, from) {
        ("approve", "PENDING_APPROVAL") => Some(("APPROVED", "APPROVED")),
        ("reject", "PENDING_APPROVAL") => Some(("REJECTED", "REJECTED")),
        ("start", "APPROVED") => Some(("STARTED", "STARTED")),
        ("succeed", "STARTED") => Some(("SUCCEEDED", "SUCCEEDED")),
        ("fail", "STARTED") => Some(("FAILED", "FAILED")),
        ("rollBack", "STARTED" | "SUCCEEDED" | "FAILED") => Some(("ROLLED_BACK", "ROLLED_BACK")),
        ("cancel", "PENDING_APPROVAL" | "APPROVED") => Some(("CANCELLED", "CANCELLED")),
        _ => None,
    }
}

/// The table's "note" column: reject, fail, rollBack and cancel must say why.
fn note_required(action: &str) -> bool {
    matches!(action, "reject" | "fail" | "rollBack" | "cancel")
}

/// Whether some row of the table moves a deployment from `from` to `to`.
fn table_allows(from: Option<&str>, to: &str) -> bool {
    match from {
        None => to == "PENDING_APPROVAL",
        Some(from) => [
            "approve", "reject", "start", "succeed", "fail", "rollBack", "cancel",
        ]
        .iter()
        .any(|a| table(a, from).map(|(t, _)| t) == Some(to)),
    }
}

/// "trimmed, 1 to `max` characters, no control characters".
fn one_line_ok(raw: &str, max: usize) -> bool {
    let value = raw.trim();
    let chars = value.chars().count();
    chars >= 1 && chars <= max && value.chars().all(|c| !c.is_control())
}

/// Free text: blank means absent. `Some(ok)` when present, `ok` when within 10,000.
fn free_text(raw: Option<&str>) -> Option<bool> {
    let value = raw?.trim();
    (!value.is_empty()).then(|| value.chars().count() <= 10_000)
}

fn same_person(a: &str, b: &str) -> bool {
    a.trim().to_lowercase() == b.trim().to_lowercase()
}

/// What the model expects of one action.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Predicted {
    /// The command is refused before the lifecycle sees it; these fields are wrong.
    Invalid(BTreeSet<String>),
    Conflict,
    SelfApproval,
    Moves {
        to: &'static str,
        kind: &'static str,
    },
}

struct Model {
    requester: String,
    status: &'static str,
}

impl Model {
    fn predict(&self, action: &str, actor: &str, note: Option<&str>) -> Predicted {
        let mut invalid = BTreeSet::new();
        if !one_line_ok(actor, 100) {
            invalid.insert("actor".to_owned());
        }
        match free_text(note) {
            Some(false) => {
                invalid.insert("note".to_owned());
            }
            None if note_required(action) => {
                invalid.insert("note".to_owned());
            }
            _ => {}
        }
        if !invalid.is_empty() {
            return Predicted::Invalid(invalid);
        }
        match table(action, self.status) {
            None => Predicted::Conflict,
            Some(_) if action == "approve" && same_person(actor, &self.requester) => {
                Predicted::SelfApproval
            }
            Some((to, kind)) => Predicted::Moves { to, kind },
        }
    }
}

// ---------------------------------------------------------------------------------------
// Random action sequences
// ---------------------------------------------------------------------------------------

const REQUESTERS: [&str; 3] = ["Alice", "  alice\t", "Bob"];

fn actor() -> impl Strategy<Value = String> {
    prop_oneof![
        8 => prop::sample::select(vec![
            "alice",
            "Alice",
            "  ALICE ",
            "\taLiCe\n",
            "\u{a0}alice\u{3000}",
            "bob",
            " Bob ",
            "BOB",
            "carol",
            "Carol Danvers",
        ])
        .prop_map(str::to_owned),
        1 => prop::sample::select(vec![
            "",
            "   ",
            "\n\t",
            "ali ce",
            "al\u{7}ice",
            "bob\u{0}",
            "alice\u{85}x",
        ])
        .prop_map(str::to_owned),
        1 => prop::sample::select(vec![99usize, 100, 101, 150]).prop_map(|n| "c".repeat(n)),
    ]
}

fn note() -> impl Strategy<Value = Option<String>> {
    prop_oneof![
        2 => Just(None),
        1 => Just(Some(String::new())),
        1 => Just(Some("  \n\t ".to_owned())),
        8 => prop::sample::select(vec![
            "because",
            "  error rate above 5%  ",
            "line one\nline two",
            "with a \u{0} control char",
        ])
        .prop_map(|s| Some(s.to_owned())),
        1 => prop::sample::select(vec![9_999usize, 10_000, 10_001])
            .prop_map(|n| Some(format!(" {} ", "n".repeat(n)))),
    ]
}

fn step() -> impl Strategy<Value = (Action, String, Option<String>, i64)> {
    (
        // Mostly the actions that move a deployment forward, so that sequences get far.
        prop_oneof![
            3 => Just(Action::Approve),
            1 => Just(Action::Reject),
            3 => Just(Action::Start),
            2 => Just(Action::Succeed),
            1 => Just(Action::Fail),
            2 => Just(Action::RollBack),
            1 => Just(Action::Cancel),
        ],
        actor(),
        note(),
        // Milliseconds since the previous step; the clock may step back.
        prop_oneof![1 => -5_000i64..0, 4 => 0i64..120_000],
    )
}

fn base_time() -> Timestamp {
    Utc.timestamp_millis_opt(1_780_000_000_000).unwrap()
}

fn new_deployment(requester: &str) -> NewDeployment {
    let request = DeploymentRequest {
        service: " billing ".into(),
        environment: "production".into(),
        version: "v1.2.3".into(),
        requester: requester.into(),
        work_refs: vec!["JIRA-1".into()],
        risk: Some("touches invoices".into()),
        rollback_plan: "redeploy v1.2.2".into(),
        idempotency_key: None,
        release_notes: None,
    };
    NewDeployment::validate(&request, &ProductionEnvironments::default()).expect("a valid request")
}

fn field_set(errors: &ValidationErrors) -> BTreeSet<String> {
    errors.0.iter().map(|e| e.field.clone()).collect()
}

/// The history explains the current state: a chain from CREATED to `current.status`,
/// each link a row of the table, in time order, with the review fields set by the one
/// review event.
fn check_chain(
    current: &Deployment,
    events: &[DeploymentEvent],
    kinds: &[&str],
) -> Result<(), TestCaseError> {
    let first = &events[0];
    prop_assert_eq!(first.kind, EventKind::Created);
    prop_assert_eq!(first.from_status, None);
    prop_assert_eq!(first.to_status, Status::PendingApproval);
    prop_assert_eq!(&first.actor, &current.requester);
    prop_assert_eq!(first.occurred_at, current.created_at);
    prop_assert_eq!(events.len(), kinds.len() + 1);
    for (event, kind) in events[1..].iter().zip(kinds) {
        prop_assert_eq!(event.kind.as_str(), *kind);
    }
    for e in events {
        prop_assert!(
            table_allows(e.from_status.map(Status::as_str), e.to_status.as_str()),
            "the table has no row {:?} -> {}",
            e.from_status,
            e.to_status
        );
        prop_assert_eq!(e.deployment_id, current.id);
        prop_assert_eq!(&e.service, &current.service);
        prop_assert_eq!(&e.environment, &current.environment);
    }
    for pair in events.windows(2) {
        prop_assert_eq!(pair[1].from_status, Some(pair[0].to_status));
        prop_assert!(pair[1].occurred_at >= pair[0].occurred_at);
    }
    let last = events.last().unwrap();
    prop_assert_eq!(last.to_status, current.status);
    prop_assert_eq!(current.updated_at, last.occurred_at);

    let reviews: Vec<&DeploymentEvent> = events
        .iter()
        .filter(|e| matches!(e.kind, EventKind::Approved | EventKind::Rejected))
        .collect();
    prop_assert!(reviews.len() <= 1, "a second review: {:?}", reviews);
    match reviews.first() {
        Some(review) => {
            prop_assert_eq!(current.reviewed_by.as_deref(), Some(review.actor.as_str()));
            prop_assert_eq!(current.reviewed_at, Some(review.occurred_at));
        }
        None => {
            prop_assert_eq!(&current.reviewed_by, &None);
            prop_assert_eq!(current.reviewed_at, None);
        }
    }
    let ids: BTreeSet<Uuid> = events.iter().map(|e| e.id).collect();
    prop_assert_eq!(ids.len(), events.len());
    Ok(())
}

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn random_action_sequences_follow_the_contract_table_and_the_history_explains_the_status(
        requester in prop::sample::select(REQUESTERS.to_vec()),
        steps in prop::collection::vec(step(), 0..30),
    ) {
        let mut now = base_time();
        let (mut current, created) =
            Deployment::create(new_deployment(requester), Uuid::now_v7(), Uuid::now_v7(), now);
        prop_assert_eq!(&current.requester, requester.trim());
        prop_assert_eq!(&current.service, "billing");
        let mut events = vec![created];
        let mut kinds: Vec<&str> = vec![];
        let mut model = Model { requester: requester.to_owned(), status: "PENDING_APPROVAL" };
        check_chain(&current, &events, &kinds)?;

        for (i, (action, actor, note, delta)) in steps.iter().enumerate() {
            now += Duration::milliseconds(*delta);
            let predicted = model.predict(action.as_str(), actor, note.as_deref());
            let context = format!("step {i}: {action} by {actor:?} note {note:?} from {}", model.status);
            let command = match (ActionCommand::validate(*action, actor, note.as_deref()), &predicted) {
                (Err(errors), Predicted::Invalid(fields)) => {
                    prop_assert_eq!(&field_set(&errors), fields, "{}", context);
                    continue;
                }
                (Ok(command), p) if !matches!(p, Predicted::Invalid(_)) => command,
                (result, _) => {
                    return Err(TestCaseError::fail(format!(
                        "{context}: model predicts {predicted:?}, validation gave {result:?}"
                    )));
                }
            };
            prop_assert_eq!(command.actor(), actor.trim());
            prop_assert_eq!(command.note(), note.as_deref().map(str::trim).filter(|n| !n.is_empty()));

            let before = current.clone();
            let event_id = Uuid::now_v7();
            match (current.apply(&command, event_id, now), predicted) {
                (Err(Refusal::Conflict { status, action: refused }), Predicted::Conflict) => {
                    prop_assert_eq!(status, current.status, "{}", context);
                    prop_assert_eq!(refused, *action, "{}", context);
                }
                (Err(Refusal::SelfApproval), Predicted::SelfApproval) => {}
                (Ok((next, event)), Predicted::Moves { to, kind }) => {
                    prop_assert_eq!(next.status.as_str(), to, "{}", context);
                    prop_assert_eq!(event.kind.as_str(), kind, "{}", context);
                    prop_assert_eq!(event.id, event_id);
                    prop_assert_eq!(event.from_status, Some(before.status));
                    prop_assert_eq!(event.to_status, next.status);
                    prop_assert_eq!(&event.actor, command.actor());
                    prop_assert_eq!(event.note.as_deref(), command.note());
                    // Server time, except that a history never goes back in time.
                    prop_assert!(event.occurred_at >= before.updated_at);
                    if now >= before.updated_at {
                        prop_assert_eq!(event.occurred_at, now);
                    }
                    // Only status, updated_at, the review fields and (at the start)
                    // started_at change.
                    let mut unchanged = next.clone();
                    unchanged.status = before.status;
                    unchanged.updated_at = before.updated_at;
                    unchanged.reviewed_by = before.reviewed_by.clone();
                    unchanged.reviewed_at = before.reviewed_at;
                    unchanged.started_at = before.started_at;
                    prop_assert_eq!(&unchanged, &before);
                    if kind == "STARTED" {
                        prop_assert_eq!(next.started_at, Some(event.occurred_at));
                    } else {
                        prop_assert_eq!(next.started_at, before.started_at);
                    }
                    if !matches!(kind, "APPROVED" | "REJECTED") {
                        prop_assert_eq!(&next.reviewed_by, &before.reviewed_by);
                        prop_assert_eq!(next.reviewed_at, before.reviewed_at);
                    }
                    model.status = to;
                    kinds.push(kind);
                    events.push(event);
                    current = next;
                }
                (result, predicted) => {
                    return Err(TestCaseError::fail(format!(
                        "{context}: model predicts {predicted:?}, apply gave {result:?}"
                    )));
                }
            }
            prop_assert_eq!(current.status.as_str(), model.status, "{}", context);
            check_chain(&current, &events, &kinds)?;
        }
    }
}

// ---------------------------------------------------------------------------------------
// Random creation inputs
// ---------------------------------------------------------------------------------------

/// Whitespace that trimming removes, ASCII and not.
fn padding() -> impl Strategy<Value = &'static str> {
    prop::sample::select(vec![
        "", "", "", " ", "  ", "\t", "\n", "\r\n", "\u{a0}", "\u{3000}", "\u{2003}",
    ])
}

/// The core of a value for a field limited to `limit` characters.
fn body(limit: usize) -> impl Strategy<Value = String> {
    let word = "[a-zA-Z0-9][a-zA-Z0-9 ._/:#-]{0,12}[a-zA-Z0-9]";
    prop_oneof![
        24 => word.prop_map(String::from),
        1 => Just(String::new()),
        1 => (
            word,
            prop::sample::select(vec!["\u{0}", "\u{7}", "\u{1b}", "\t", "\n", "\u{7f}", "\u{85}", "\u{9f}"]),
            word,
        )
            .prop_map(|(a, c, b)| format!("{a}{c}{b}")),
        2 => (
            prop::sample::select(vec!["x", "é", "日", "🚀"]),
            limit.saturating_sub(2)..=limit + 2,
        )
            .prop_map(|(c, n)| c.repeat(n)),
        1 => any::<String>(),
    ]
}

fn field(limit: usize) -> impl Strategy<Value = String> {
    (padding(), body(limit), padding()).prop_map(|(a, b, c)| format!("{a}{b}{c}"))
}

/// A work ref: mostly fine, so that the odd bad entry stands out.
fn work_ref() -> impl Strategy<Value = String> {
    prop_oneof![
        8 => "(JIRA|PR|GH)-[0-9]{1,5}".prop_map(String::from),
        2 => field(500),
    ]
}

fn work_refs() -> impl Strategy<Value = Vec<String>> {
    prop_oneof![
        3 => prop::collection::vec(work_ref(), 0..4),
        1 => prop::collection::vec(work_ref(), 48..53),
        1 => prop::collection::vec(work_ref(), 0..60),
    ]
}

fn environment() -> impl Strategy<Value = String> {
    prop_oneof![
        2 => prop::sample::select(vec![
            "production",
            " Production ",
            "PRODUCTION",
            "\tproduction\n",
            "prod-eu",
            "PROD-US",
            "staging",
            "production-eu",
            "produc tion",
        ])
        .prop_map(str::to_owned),
        1 => field(100),
    ]
}

fn optional_text() -> impl Strategy<Value = Option<String>> {
    prop_oneof![
        1 => Just(None),
        4 => field(10_000).prop_map(Some),
    ]
}

fn request() -> impl Strategy<Value = DeploymentRequest> {
    (
        (field(100), environment(), field(200), field(100)),
        work_refs(),
        optional_text(),
        field(10_000),
        prop::option::of(field(MAX_IDEMPOTENCY_KEY_CHARS)),
        optional_text(),
    )
        .prop_map(
            |(
                (service, environment, version, requester),
                work_refs,
                risk,
                rollback_plan,
                key,
                release_notes,
            )| {
                DeploymentRequest {
                    service,
                    environment,
                    version,
                    requester,
                    work_refs,
                    risk,
                    rollback_plan,
                    idempotency_key: key,
                    release_notes,
                }
            },
        )
}

/// The field paths contract.md says are wrong: those that must be reported, and those
/// that may be (entries past the 50th of a list that is too long anyway).
fn predicted_problems(
    r: &DeploymentRequest,
    production: &[&str],
) -> (BTreeSet<String>, BTreeSet<String>) {
    let mut must = BTreeSet::new();
    let mut may = BTreeSet::new();
    let mut check = |ok: bool, field: &str| {
        if !ok {
            must.insert(field.to_owned());
        }
    };
    check(one_line_ok(&r.service, 100), "service");
    check(one_line_ok(&r.environment, 100), "environment");
    check(one_line_ok(&r.version, 200), "version");
    check(one_line_ok(&r.requester, 100), "requester");
    check((1..=50).contains(&r.work_refs.len()), "workRefs");
    let is_production = production
        .iter()
        .any(|p| p.trim().to_lowercase() == r.environment.trim().to_lowercase());
    check(
        match free_text(r.risk.as_deref()) {
            Some(within_limit) => within_limit,
            None => !is_production,
        },
        "risk",
    );
    check(
        free_text(Some(&r.rollback_plan)) == Some(true),
        "rollbackPlan",
    );
    // Not in contract.md: the key follows the one-line rules, up to 200 characters.
    if let Some(key) = &r.idempotency_key {
        check(
            one_line_ok(key, MAX_IDEMPOTENCY_KEY_CHARS),
            "idempotencyKey",
        );
    }
    // Version 2: optional free text, like risk.
    check(
        free_text(r.release_notes.as_deref()) != Some(false),
        "releaseNotes",
    );
    for (i, work_ref) in r.work_refs.iter().enumerate() {
        if !one_line_ok(work_ref, 500) {
            if i < 50 {
                must.insert(format!("workRefs[{i}]"));
            } else {
                may.insert(format!("workRefs[{i}]"));
            }
        }
    }
    (must, may)
}

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn creation_is_valid_exactly_when_the_model_says_and_names_every_wrong_field(
        r in request(),
        custom_production in any::<bool>(),
    ) {
        let production: &[&str] = if custom_production { &["prod-eu", " PROD-US "] } else { &["production"] };
        let (must, may) = predicted_problems(&r, production);
        match NewDeployment::validate(&r, &ProductionEnvironments::new(production)) {
            Ok(new) => {
                prop_assert!(must.is_empty(), "accepted, but the model expects {:?}", must);
                // Stored strings are the trimmed values; a blank risk is no risk.
                prop_assert_eq!(new.service(), r.service.trim());
                prop_assert_eq!(new.environment(), r.environment.trim());
                prop_assert_eq!(new.version(), r.version.trim());
                prop_assert_eq!(new.requester(), r.requester.trim());
                let refs: Vec<&str> = r.work_refs.iter().map(|w| w.trim()).collect();
                prop_assert_eq!(new.work_refs().iter().map(String::as_str).collect::<Vec<_>>(), refs);
                prop_assert_eq!(new.risk(), r.risk.as_deref().map(str::trim).filter(|s| !s.is_empty()));
                prop_assert_eq!(new.rollback_plan(), r.rollback_plan.trim());
                prop_assert_eq!(new.idempotency_key(), r.idempotency_key.as_deref().map(str::trim));
                prop_assert_eq!(new.release_notes(), r.release_notes.as_deref().map(str::trim).filter(|s| !s.is_empty()));
            }
            Err(errors) => {
                prop_assert!(!must.is_empty(), "refused, but the model accepts: {}", errors);
                let got = field_set(&errors);
                prop_assert_eq!(got.len(), errors.0.len(), "a field reported twice: {}", errors);
                prop_assert!(errors.0.iter().all(|e| !e.message.trim().is_empty()));
                let missing: Vec<_> = must.difference(&got).collect();
                let extra: Vec<_> = got.difference(&must).filter(|f| !may.contains(*f)).collect();
                prop_assert!(
                    missing.is_empty() && extra.is_empty(),
                    "not reported: {:?}; reported but fine: {:?}; all: {}",
                    missing,
                    extra,
                    errors
                );
            }
        }
    }
}
