//! Table-driven tests of the lifecycle rules, without I/O.

use super::*;
use chrono::TimeZone;

fn at(seconds: i64) -> Timestamp {
    Utc.timestamp_opt(1_780_000_000 + seconds, 0).unwrap()
}

fn request(environment: &str) -> DeploymentRequest {
    DeploymentRequest {
        service: "billing".into(),
        environment: environment.into(),
        version: "v1.2.3".into(),
        requester: "alice".into(),
        work_refs: vec!["JIRA-1".into()],
        risk: Some("touches invoices".into()),
        rollback_plan: "redeploy v1.2.2".into(),
        idempotency_key: None,
    }
}

fn deployment_in(status: Status) -> Deployment {
    let new = NewDeployment::validate(&request("staging"), &ProductionEnvironments::default())
        .expect("valid request");
    let (mut d, _) = Deployment::create(new, Uuid::nil(), Uuid::nil(), at(0));
    d.status = status;
    d
}

fn command(action: Action, actor: &str) -> ActionCommand {
    ActionCommand::validate(action, actor, Some("because")).expect("valid command")
}

fn fields(result: Result<NewDeployment, ValidationErrors>) -> Vec<String> {
    match result {
        Ok(_) => vec![],
        Err(ValidationErrors(errors)) => errors.into_iter().map(|e| e.field).collect(),
    }
}

#[test]
fn the_transition_table_allows_exactly_the_documented_pairs() {
    use Action::*;
    use Status::*;
    let allowed = [
        (PendingApproval, Approve, Approved),
        (PendingApproval, Reject, Rejected),
        (Approved, Start, Started),
        (Started, Succeed, Succeeded),
        (Started, Fail, Failed),
        (Started, RollBack, RolledBack),
        (Succeeded, RollBack, RolledBack),
        (Failed, RollBack, RolledBack),
    ];
    for from in Status::ALL {
        for action in Action::ALL {
            let expected = allowed
                .iter()
                .find(|(f, a, _)| *f == from && *a == action)
                .map(|(_, _, to)| *to);
            assert_eq!(action.transition(from), expected, "{action} from {from}");
        }
    }
}

#[test]
fn every_disallowed_pair_is_a_conflict_naming_status_and_action() {
    for from in Status::ALL {
        for action in Action::ALL {
            let result = deployment_in(from).apply(&command(action, "bob"), Uuid::nil(), at(1));
            match action.transition(from) {
                Some(to) => assert_eq!(result.expect("allowed").0.status, to),
                None => assert_eq!(
                    result.unwrap_err(),
                    Refusal::Conflict {
                        status: from,
                        action
                    }
                ),
            }
        }
    }
}

#[test]
fn rejected_and_rolled_back_are_terminal_and_nothing_else_is() {
    for status in Status::ALL {
        let expected = matches!(status, Status::Rejected | Status::RolledBack);
        assert_eq!(status.is_terminal(), expected, "{status}");
    }
}

#[test]
fn succeeded_and_failed_allow_only_rollback() {
    for from in [Status::Succeeded, Status::Failed] {
        let allowed: Vec<Action> = Action::ALL
            .into_iter()
            .filter(|a| a.transition(from).is_some())
            .collect();
        assert_eq!(allowed, vec![Action::RollBack], "{from}");
    }
}

#[test]
fn rollback_after_success_and_after_failure_records_where_it_came_from() {
    for from in [Status::Succeeded, Status::Failed, Status::Started] {
        let (after, event) = deployment_in(from)
            .apply(&command(Action::RollBack, "carol"), Uuid::nil(), at(5))
            .expect("rollback allowed");
        assert_eq!(after.status, Status::RolledBack);
        assert_eq!(event.kind, EventKind::RolledBack);
        assert_eq!(event.from_status, Some(from));
        assert_eq!(event.to_status, Status::RolledBack);
        assert_eq!(event.note.as_deref(), Some("because"));
    }
}

#[test]
fn each_action_appends_an_event_of_its_own_kind() {
    let table = [
        (Action::Approve, EventKind::Approved),
        (Action::Reject, EventKind::Rejected),
        (Action::Start, EventKind::Started),
        (Action::Succeed, EventKind::Succeeded),
        (Action::Fail, EventKind::Failed),
        (Action::RollBack, EventKind::RolledBack),
    ];
    for (action, kind) in table {
        assert_eq!(action.event_kind(), kind);
    }
}

#[test]
fn self_approval_is_forbidden_trimmed_and_case_insensitively() {
    for actor in ["alice", " Alice ", "ALICE", "\talice"] {
        let result = deployment_in(Status::PendingApproval).apply(
            &command(Action::Approve, actor),
            Uuid::nil(),
            at(1),
        );
        assert_eq!(result.unwrap_err(), Refusal::SelfApproval, "{actor:?}");
    }
}

#[test]
fn the_requester_may_reject_their_own_deployment_and_others_may_approve() {
    let d = deployment_in(Status::PendingApproval);
    assert!(d
        .apply(&command(Action::Reject, "alice"), Uuid::nil(), at(1))
        .is_ok());
    assert!(d
        .apply(&command(Action::Approve, "alicia"), Uuid::nil(), at(1))
        .is_ok());
}

#[test]
fn a_second_review_is_a_conflict_not_a_self_approval() {
    let result = deployment_in(Status::Approved).apply(
        &command(Action::Approve, "alice"),
        Uuid::nil(),
        at(1),
    );
    assert!(matches!(result, Err(Refusal::Conflict { .. })));
}

#[test]
fn reviews_set_reviewer_and_time_to_the_event_and_other_actions_leave_them() {
    let (approved, event) = deployment_in(Status::PendingApproval)
        .apply(&command(Action::Approve, " bob "), Uuid::nil(), at(7))
        .expect("approve");
    assert_eq!(approved.reviewed_by.as_deref(), Some("bob"));
    assert_eq!(approved.reviewed_at, Some(event.occurred_at));
    assert_eq!(approved.updated_at, event.occurred_at);

    let (started, event) = approved
        .apply(&command(Action::Start, "ops"), Uuid::nil(), at(9))
        .expect("start");
    assert_eq!(started.reviewed_by.as_deref(), Some("bob"));
    assert_eq!(started.reviewed_at, Some(at(7)));
    assert_eq!(started.updated_at, event.occurred_at);
}

#[test]
fn an_event_never_predates_the_last_change_when_the_clock_steps_back() {
    let mut d = deployment_in(Status::Approved);
    d.updated_at = at(100);
    let (after, event) = d
        .apply(&command(Action::Start, "ops"), Uuid::nil(), at(50))
        .expect("start");
    assert_eq!(event.occurred_at, at(100));
    assert_eq!(after.updated_at, at(100));
}

#[test]
fn creation_starts_pending_with_a_created_event_by_the_requester() {
    let new = NewDeployment::validate(&request("staging"), &ProductionEnvironments::default())
        .expect("valid");
    let id = Uuid::now_v7();
    let (d, e) = Deployment::create(new, id, Uuid::now_v7(), at(3));
    assert_eq!(d.status, Status::PendingApproval);
    assert_eq!(e.kind, EventKind::Created);
    assert_eq!(e.actor, "alice");
    assert_eq!(e.from_status, None);
    assert_eq!(e.to_status, Status::PendingApproval);
    assert_eq!(e.deployment_id, id);
    assert_eq!((d.created_at, d.updated_at), (at(3), at(3)));
}

#[test]
fn notes_are_required_exactly_for_reject_fail_and_rollback() {
    for action in Action::ALL {
        for note in [None, Some(""), Some("   \n ")] {
            let result = ActionCommand::validate(action, "bob", note);
            let required = matches!(action, Action::Reject | Action::Fail | Action::RollBack);
            match result {
                Ok(c) => {
                    assert!(!required, "{action} accepted {note:?}");
                    assert_eq!(c.note(), None, "a blank optional note is stored as null");
                }
                Err(ValidationErrors(errors)) => {
                    assert!(required, "{action} refused {note:?}");
                    assert_eq!(errors[0].field, "note");
                }
            }
        }
    }
}

#[test]
fn action_inputs_are_trimmed_and_bounded() {
    let ok = ActionCommand::validate(Action::Fail, "  bob ", Some("  disk full  ")).unwrap();
    assert_eq!((ok.actor(), ok.note()), ("bob", Some("disk full")));

    let cases: [(&str, Option<String>, &[&str]); 4] = [
        ("", None, &["actor"]),
        (&"x".repeat(101), None, &["actor"]),
        ("bo\u{7}b", Some("n".repeat(10_001)), &["actor", "note"]),
        ("bob", Some("n".repeat(10_000)), &[]),
    ];
    for (actor, note, expected) in cases {
        let got: Vec<String> =
            match ActionCommand::validate(Action::Approve, actor, note.as_deref()) {
                Ok(_) => vec![],
                Err(ValidationErrors(e)) => e.into_iter().map(|e| e.field).collect(),
            };
        assert_eq!(got, expected, "actor {actor:?}");
    }
}

#[test]
fn production_deployments_require_risk_and_others_do_not() {
    let prod = ProductionEnvironments::default();
    let table: [(&str, Option<&str>, bool); 7] = [
        ("production", Some("risky"), true),
        ("production", None, false),
        ("production", Some("  "), false),
        (" Production ", None, false),
        ("PRODUCTION", Some("ok"), true),
        ("staging", None, true),
        ("staging", Some(""), true),
    ];
    for (environment, risk, valid) in table {
        let mut r = request(environment);
        r.risk = risk.map(str::to_owned);
        let result = NewDeployment::validate(&r, &prod);
        assert_eq!(result.is_ok(), valid, "{environment:?} risk {risk:?}");
        if !valid {
            assert_eq!(fields(result), vec!["risk"]);
        }
    }
}

#[test]
fn the_set_of_production_environments_is_configurable() {
    let prod = ProductionEnvironments::new(["prod-eu", " PROD-US "]);
    for (environment, is_prod) in [
        ("prod-eu", true),
        ("prod-us", true),
        ("Prod-US", true),
        ("production", false),
    ] {
        assert_eq!(prod.contains(environment), is_prod, "{environment}");
    }
    let mut r = request("prod-us");
    r.risk = None;
    assert_eq!(fields(NewDeployment::validate(&r, &prod)), vec!["risk"]);
}

#[test]
fn a_blank_risk_outside_production_is_stored_as_null() {
    let mut r = request("staging");
    r.risk = Some("   ".into());
    let new = NewDeployment::validate(&r, &ProductionEnvironments::default()).unwrap();
    assert_eq!(new.risk(), None);
}

#[test]
fn creation_reports_every_problem_at_once_with_field_paths() {
    let r = DeploymentRequest {
        service: " ".into(),
        environment: "production".into(),
        version: "v".repeat(201),
        requester: "a\u{0}b".into(),
        work_refs: vec!["ok".into(), "  ".into(), "r".repeat(501)],
        risk: None,
        rollback_plan: "\n".into(),
        idempotency_key: Some(" ".into()),
    };
    assert_eq!(
        fields(NewDeployment::validate(
            &r,
            &ProductionEnvironments::default()
        )),
        vec![
            "service",
            "version",
            "requester",
            "workRefs[1]",
            "workRefs[2]",
            "risk",
            "rollbackPlan",
            "idempotencyKey"
        ]
    );
}

#[test]
fn limits_are_inclusive_and_counted_in_characters() {
    type Edit = fn(&mut DeploymentRequest);
    let table: [(&str, Edit, &[&str]); 10] = [
        ("100-char service", |r| r.service = "é".repeat(100), &[]),
        (
            "101-char service",
            |r| r.service = "é".repeat(101),
            &["service"],
        ),
        ("200-char version", |r| r.version = "v".repeat(200), &[]),
        (
            "201-char version",
            |r| r.version = "v".repeat(201),
            &["version"],
        ),
        ("no work refs", |r| r.work_refs.clear(), &["workRefs"]),
        ("50 work refs", |r| r.work_refs = vec!["x".into(); 50], &[]),
        (
            "51 work refs",
            |r| r.work_refs = vec!["x".into(); 51],
            &["workRefs"],
        ),
        ("500-char ref", |r| r.work_refs = vec!["x".repeat(500)], &[]),
        (
            "10,000-char plan",
            |r| r.rollback_plan = "p".repeat(10_000),
            &[],
        ),
        (
            "10,001-char risk",
            |r| r.risk = Some("p".repeat(10_001)),
            &["risk"],
        ),
    ];
    for (name, edit, expected) in table {
        let mut r = request("staging");
        edit(&mut r);
        assert_eq!(
            fields(NewDeployment::validate(
                &r,
                &ProductionEnvironments::default()
            )),
            expected,
            "{name}"
        );
    }
}

#[test]
fn stored_strings_are_the_trimmed_values() {
    let r = DeploymentRequest {
        service: "  billing ".into(),
        environment: " staging".into(),
        version: "v2 ".into(),
        requester: " alice ".into(),
        work_refs: vec![" PR-9 ".into()],
        risk: Some(" low ".into()),
        rollback_plan: "\n revert \n".into(),
        idempotency_key: Some(" key-1 ".into()),
    };
    let new = NewDeployment::validate(&r, &ProductionEnvironments::default()).unwrap();
    assert_eq!(
        (
            new.service(),
            new.environment(),
            new.version(),
            new.requester(),
            new.work_refs(),
            new.risk(),
            new.rollback_plan()
        ),
        (
            "billing",
            "staging",
            "v2",
            "alice",
            &["PR-9".to_owned()][..],
            Some("low"),
            "revert"
        )
    );
}

#[test]
fn names_round_trip_through_their_stored_form() {
    for s in Status::ALL {
        assert_eq!(s.as_str().parse::<Status>(), Ok(s));
    }
    for k in EventKind::ALL {
        assert_eq!(k.as_str().parse::<EventKind>(), Ok(k));
    }
    assert!("pending_approval".parse::<Status>().is_err());
}

#[test]
fn a_retry_is_recognised_by_its_trimmed_content_whatever_its_key() {
    let prod = ProductionEnvironments::default();
    let original = NewDeployment::validate(&request("staging"), &prod).unwrap();
    let (d, _) = Deployment::create(original, Uuid::nil(), Uuid::nil(), at(0));

    let mut retry = request("staging");
    retry.service = " billing ".into();
    retry.idempotency_key = Some("k".into());
    assert!(d.was_requested_by(&NewDeployment::validate(&retry, &prod).unwrap()));

    type Edit = fn(&mut DeploymentRequest);
    let changes: [Edit; 7] = [
        |r| r.service = "search".into(),
        |r| r.environment = "qa".into(),
        |r| r.version = "v9".into(),
        |r| r.requester = "bob".into(),
        |r| r.work_refs.push("JIRA-2".into()),
        |r| r.risk = None,
        |r| r.rollback_plan = "pray".into(),
    ];
    for change in changes {
        let mut other = request("staging");
        change(&mut other);
        let other = NewDeployment::validate(&other, &prod).unwrap();
        assert!(!d.was_requested_by(&other), "{other:?}");
    }
}
