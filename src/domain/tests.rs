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
        release_notes: None,
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
        (PendingApproval, Cancel, Cancelled),
        (Approved, Cancel, Cancelled),
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
fn rejected_rolled_back_and_cancelled_are_terminal_and_nothing_else_is() {
    for status in Status::ALL {
        let expected = matches!(
            status,
            Status::Rejected | Status::RolledBack | Status::Cancelled
        );
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
        (Action::Cancel, EventKind::Cancelled),
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
fn notes_are_required_exactly_for_reject_fail_rollback_and_cancel() {
    for action in Action::ALL {
        for note in [None, Some(""), Some("   \n ")] {
            let result = ActionCommand::validate(action, "bob", note);
            let required = matches!(
                action,
                Action::Reject | Action::Fail | Action::RollBack | Action::Cancel
            );
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
        release_notes: Some("n".repeat(10_001)),
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
            "idempotencyKey",
            "releaseNotes"
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
        release_notes: None,
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
    let changes: [Edit; 8] = [
        |r| r.service = "search".into(),
        |r| r.environment = "qa".into(),
        |r| r.version = "v9".into(),
        |r| r.requester = "bob".into(),
        |r| r.work_refs.push("JIRA-2".into()),
        |r| r.risk = None,
        |r| r.rollback_plan = "pray".into(),
        |r| r.release_notes = Some("first release".into()),
    ];
    for change in changes {
        let mut other = request("staging");
        change(&mut other);
        let other = NewDeployment::validate(&other, &prod).unwrap();
        assert!(!d.was_requested_by(&other), "{other:?}");
    }
}

#[test]
fn release_notes_are_stored_trimmed_with_blank_as_none_and_bounded() {
    let prod = ProductionEnvironments::default();
    let long = "n".repeat(10_000);
    // given, stored (None: refused, on releaseNotes alone)
    let table = [
        (None, Some(None)),
        (Some(String::new()), Some(None)),
        (Some(" \n\t ".to_owned()), Some(None)),
        (
            Some("  Fixes rounding.\n\n- JIRA-1  ".to_owned()),
            Some(Some("Fixes rounding.\n\n- JIRA-1")),
        ),
        (Some(format!(" {long} ")), Some(Some(long.as_str()))),
        (Some("n".repeat(10_001)), None),
    ];
    for (notes, expected) in table {
        let mut r = request("staging");
        r.release_notes = notes.clone();
        let result = NewDeployment::validate(&r, &prod);
        match expected {
            Some(stored) => assert_eq!(result.unwrap().release_notes(), stored, "{notes:?}"),
            None => assert_eq!(fields(result), vec!["releaseNotes"], "{notes:?}"),
        }
    }
}

#[test]
fn release_notes_are_kept_on_the_deployment_and_are_part_of_a_retry() {
    let prod = ProductionEnvironments::default();
    let mut r = request("staging");
    r.release_notes = Some(" notes ".into());
    let new = NewDeployment::validate(&r, &prod).unwrap();
    let (d, _) = Deployment::create(new.clone(), Uuid::nil(), Uuid::nil(), at(0));
    assert_eq!(d.release_notes.as_deref(), Some("notes"));
    assert!(d.was_requested_by(&new));

    r.release_notes = Some("notes".into());
    assert!(d.was_requested_by(&NewDeployment::validate(&r, &prod).unwrap()));
    for other in [None, Some("other notes")] {
        r.release_notes = other.map(str::to_owned);
        assert!(
            !d.was_requested_by(&NewDeployment::validate(&r, &prod).unwrap()),
            "{other:?}"
        );
    }
}

// ---------------------------------------------------------------------------------------
// Cancel
// ---------------------------------------------------------------------------------------

#[test]
fn cancel_withdraws_a_pending_or_approved_deployment_with_its_note() {
    for from in [Status::PendingApproval, Status::Approved] {
        let before = deployment_in(from);
        let (after, event) = before
            .apply(&command(Action::Cancel, "alice"), Uuid::nil(), at(5))
            .expect("cancel allowed");
        assert_eq!(after.status, Status::Cancelled);
        assert_eq!(event.kind, EventKind::Cancelled);
        assert_eq!(event.from_status, Some(from));
        assert_eq!(event.to_status, Status::Cancelled);
        assert_eq!(event.note.as_deref(), Some("because"));
        assert_eq!(
            (after.reviewed_by, after.reviewed_at),
            (before.reviewed_by, before.reviewed_at)
        );
    }
}

#[test]
fn nothing_at_all_is_allowed_after_a_cancel() {
    let d = deployment_in(Status::Cancelled);
    for action in Action::ALL {
        assert_eq!(
            d.apply(&command(action, "bob"), Uuid::nil(), at(1))
                .unwrap_err(),
            Refusal::Conflict {
                status: Status::Cancelled,
                action
            },
            "{action}"
        );
    }
}

#[test]
fn cancel_is_a_conflict_from_every_status_but_pending_and_approved() {
    for from in Status::ALL {
        let result = deployment_in(from).apply(&command(Action::Cancel, "bob"), Uuid::nil(), at(1));
        if matches!(from, Status::PendingApproval | Status::Approved) {
            assert!(result.is_ok(), "{from}");
        } else {
            assert_eq!(
                result.unwrap_err(),
                Refusal::Conflict {
                    status: from,
                    action: Action::Cancel
                },
                "{from}"
            );
        }
    }
}

// ---------------------------------------------------------------------------------------
// Approval rules
// ---------------------------------------------------------------------------------------

fn needing(required: u8) -> Deployment {
    let mut d = deployment_in(Status::PendingApproval);
    d.required_approvals = required;
    d
}

/// Approves `d` with each reviewer in turn, each seeing the approvals before it, as the
/// store does; returns the deployment and the events.
fn approve_all(mut d: Deployment, reviewers: &[&str]) -> (Deployment, Vec<DeploymentEvent>) {
    let mut events = Vec::new();
    for (i, reviewer) in reviewers.iter().enumerate() {
        let approvals = Approvals::new(events.iter().map(|e: &DeploymentEvent| e.actor.clone()));
        let (next, event) = d
            .apply_given(
                &command(Action::Approve, reviewer),
                &approvals,
                Uuid::nil(),
                at(i as i64 + 1),
            )
            .unwrap_or_else(|r| panic!("approval {i} by {reviewer}: {r}"));
        d = next;
        events.push(event);
    }
    (d, events)
}

#[test]
fn approvals_keep_the_deployment_pending_until_the_required_count_is_reached() {
    use Status::*;
    type Row<'a> = (u8, &'a [&'a str], &'a [(Status, Status)]);
    // required, reviewers, the (from, to) of each approval event
    let table: [Row; 6] = [
        (1, &["bob"], &[(PendingApproval, Approved)]),
        (2, &["bob"], &[(PendingApproval, PendingApproval)]),
        (
            2,
            &["bob", "carol"],
            &[
                (PendingApproval, PendingApproval),
                (PendingApproval, Approved),
            ],
        ),
        (
            3,
            &["bob", "carol"],
            &[(PendingApproval, PendingApproval); 2],
        ),
        (
            3,
            &["bob", "carol", "dave"],
            &[
                (PendingApproval, PendingApproval),
                (PendingApproval, PendingApproval),
                (PendingApproval, Approved),
            ],
        ),
        (
            10,
            &["b", "c", "d"],
            &[(PendingApproval, PendingApproval); 3],
        ),
    ];
    for (required, reviewers, expected) in table {
        let (d, events) = approve_all(needing(required), reviewers);
        let got: Vec<(Status, Status)> = events
            .iter()
            .map(|e| (e.from_status.expect("from"), e.to_status))
            .collect();
        assert_eq!(
            got, expected,
            "{required} required, approved by {reviewers:?}"
        );
        assert!(events.iter().all(|e| e.kind == EventKind::Approved));
        assert_eq!(
            d.status,
            expected.last().unwrap().1,
            "{required} required, {reviewers:?}"
        );
        let last = events.last().unwrap();
        assert_eq!(d.reviewed_by.as_deref(), Some(last.actor.as_str()));
        assert_eq!(d.reviewed_at, Some(last.occurred_at));
        assert_eq!(d.updated_at, last.occurred_at);
    }
}

#[test]
fn an_approval_after_the_count_is_reached_is_a_conflict() {
    for required in [1, 2, 3] {
        let reviewers = ["bob", "carol", "dave"];
        let (d, events) = approve_all(needing(required), &reviewers[..required as usize]);
        assert_eq!(d.status, Status::Approved);
        let approvals = Approvals::new(events.iter().map(|e| e.actor.clone()));
        assert_eq!(
            d.apply_given(
                &command(Action::Approve, "erin"),
                &approvals,
                Uuid::nil(),
                at(9)
            )
            .unwrap_err(),
            Refusal::Conflict {
                status: Status::Approved,
                action: Action::Approve
            },
            "{required} required"
        );
    }
}

#[test]
fn the_same_reviewer_cannot_approve_twice_whatever_the_case_or_spacing() {
    for required in [2, 3] {
        let (d, _) = approve_all(needing(required), &["Bob"]);
        let approvals = Approvals::new(["Bob"]);
        for again in ["Bob", "bob", " BOB ", "\tbOb\n"] {
            assert_eq!(
                d.apply_given(
                    &command(Action::Approve, again),
                    &approvals,
                    Uuid::nil(),
                    at(5)
                )
                .unwrap_err(),
                Refusal::AlreadyApproved,
                "{again:?} with {required} required"
            );
        }
        assert!(d
            .apply_given(
                &command(Action::Approve, "bobby"),
                &approvals,
                Uuid::nil(),
                at(5)
            )
            .is_ok());
    }
}

#[test]
fn the_requester_cannot_approve_even_when_several_approvals_are_needed() {
    for required in [1, 2, 3] {
        for (prior, actor) in [(&[][..], "alice"), (&["bob"][..], " ALICE ")] {
            let d = needing(required);
            let approvals = Approvals::new(prior.iter().copied());
            assert_eq!(
                d.apply_given(
                    &command(Action::Approve, actor),
                    &approvals,
                    Uuid::nil(),
                    at(1)
                )
                .unwrap_err(),
                Refusal::SelfApproval,
                "{required} required, after {prior:?}"
            );
        }
    }
}

#[test]
fn the_status_is_checked_before_who_approves() {
    for from in Status::ALL
        .into_iter()
        .filter(|s| *s != Status::PendingApproval)
    {
        let mut d = needing(2);
        d.status = from;
        for actor in ["alice", "bob"] {
            assert_eq!(
                d.apply_given(
                    &command(Action::Approve, actor),
                    &Approvals::new(["bob"]),
                    Uuid::nil(),
                    at(1)
                )
                .unwrap_err(),
                Refusal::Conflict {
                    status: from,
                    action: Action::Approve
                },
                "{actor} from {from}"
            );
        }
    }
}

#[test]
fn reject_and_cancel_work_after_a_partial_approval_and_reject_becomes_the_latest_review() {
    let (partly, _) = approve_all(needing(3), &["bob", "carol"]);
    assert_eq!(partly.status, Status::PendingApproval);
    let approvals = Approvals::new(["bob", "carol"]);
    let (rejected, event) = partly
        .apply_given(
            &command(Action::Reject, "dave"),
            &approvals,
            Uuid::nil(),
            at(10),
        )
        .expect("reject after partial approvals");
    assert_eq!(rejected.status, Status::Rejected);
    assert_eq!(event.from_status, Some(Status::PendingApproval));
    assert_eq!(rejected.reviewed_by.as_deref(), Some("dave"));
    assert_eq!(rejected.reviewed_at, Some(at(10)));
    // A reviewer who approved may still reject, and the requester too.
    for actor in ["bob", "alice"] {
        assert!(partly
            .apply_given(
                &command(Action::Reject, actor),
                &approvals,
                Uuid::nil(),
                at(10)
            )
            .is_ok());
    }
    let (cancelled, _) = partly
        .apply_given(
            &command(Action::Cancel, "alice"),
            &approvals,
            Uuid::nil(),
            at(10),
        )
        .expect("cancel after partial approvals");
    assert_eq!(cancelled.status, Status::Cancelled);
    assert_eq!(cancelled.reviewed_by.as_deref(), Some("carol"));
}

#[test]
fn approvals_count_distinct_people_trimmed_and_case_insensitively() {
    let table: [(&[&str], usize); 5] = [
        (&[], 0),
        (&["bob"], 1),
        (&["bob", "carol"], 2),
        (&["bob", " BOB ", "Carol"], 2),
        (&["b", "c", "d"], 3),
    ];
    for (approvers, distinct) in table {
        let approvals = Approvals::new(approvers.iter().copied());
        assert_eq!(approvals.distinct(), distinct, "{approvers:?}");
    }
    assert!(Approvals::new(["Bob"]).includes(" bob\t"));
    assert!(!Approvals::new(["Bob"]).includes("bobby"));
}

#[test]
fn with_one_required_approval_the_approvals_are_never_read() {
    for status in Status::ALL {
        for action in Action::ALL {
            let mut d = deployment_in(status);
            assert!(!d.needs_approvals(action), "{action} from {status}");
            d.required_approvals = 2;
            assert_eq!(
                d.needs_approvals(action),
                action == Action::Approve && status == Status::PendingApproval,
                "{action} from {status} with 2 required"
            );
        }
    }
}
