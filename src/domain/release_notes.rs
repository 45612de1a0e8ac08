//! Drafted release notes for promoting one version of a service into an environment.
//! Pure: which deployments a draft covers (given what the store read), their work
//! references, the template text, the prompt a language model gets, and the strict
//! reading of its answer. The store reads; the API layer calls the model.
//!
//! The rule: the base is the deployment live in the target environment (the release
//! train's live rule). The draft covers the service's deployments, in any environment
//! and of any status, whose version differs from the base's, created after the base's
//! deployment and no later than the newest deployment of the target version (all of
//! those up to it when nothing is live). "After" and "no later" compare (creation
//! time, id), the order of every oldest-first list.

use std::cmp::Ordering;
use std::collections::{HashMap, HashSet};
use std::fmt::Write as _;

use uuid::Uuid;

use super::validation::Problems;
use super::{
    Deployment, DeploymentEvent, ValidationErrors, MAX_NAME_CHARS, MAX_TEXT_CHARS,
    MAX_VERSION_CHARS,
};

/// Most covered deployments the prompt describes one by one (the newest ones); the
/// older ones are counted, and their work references still listed.
pub const MAX_PROMPT_DEPLOYMENTS: usize = 100;
/// Most work references the prompt lists.
pub const MAX_PROMPT_WORK_REFS: usize = 500;
/// Longest piece of free text (risk, release notes, an event note) the prompt quotes;
/// longer ones are cut, with an ellipsis.
pub const MAX_PROMPT_TEXT_CHARS: usize = 2_000;
/// Longest notes accepted from the model (the limit of every text).
pub const MAX_MODEL_NOTES_CHARS: usize = MAX_TEXT_CHARS;

/// The arguments of a draft, checked: trimmed, each a line of the v1 limits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DraftRequest {
    pub service: String,
    pub environment: String,
    pub version: String,
}

impl DraftRequest {
    /// Checks the three arguments at once; problems are reported on `service`,
    /// `environment` and `version`.
    pub fn validate(
        service: &str,
        environment: &str,
        version: &str,
    ) -> Result<DraftRequest, ValidationErrors> {
        let mut problems = Problems::default();
        let request = DraftRequest {
            service: problems.line("service", service, MAX_NAME_CHARS),
            environment: problems.line("environment", environment, MAX_NAME_CHARS),
            version: problems.line("version", version, MAX_VERSION_CHARS),
        };
        problems.finish(request)
    }
}

/// A semantic-versioning bump, as the model suggests it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bump {
    Major,
    Minor,
    Patch,
    None,
}

impl Bump {
    pub const ALL: [Bump; 4] = [Bump::Major, Bump::Minor, Bump::Patch, Bump::None];

    pub fn as_str(self) -> &'static str {
        match self {
            Bump::Major => "MAJOR",
            Bump::Minor => "MINOR",
            Bump::Patch => "PATCH",
            Bump::None => "NONE",
        }
    }
}

/// What a draft covers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DraftScope {
    pub service: String,
    pub environment: String,
    pub version: String,
    /// The deployment live in the environment, if any.
    pub base: Option<Deployment>,
    /// The covered deployments, oldest first.
    pub covered: Vec<Deployment>,
    /// Their work references, oldest first, each once.
    pub work_refs: Vec<String>,
}

fn oldest_first(a: &Deployment, b: &Deployment) -> Ordering {
    a.created_at.cmp(&b.created_at).then(a.id.cmp(&b.id))
}

impl DraftScope {
    /// The scope of a draft for `request`, given the deployment live in its environment
    /// and deployments of the service: any superset of those created from the base's
    /// creation on (all, when nothing is live) up to the newest deployment of the
    /// version, that one included. Deployments of other services are left out.
    ///
    /// `None` when no deployment given has the requested version (the store reads the
    /// newest one of it, so that means the service has none).
    pub fn assemble(
        request: &DraftRequest,
        base: Option<Deployment>,
        deployments: impl IntoIterator<Item = Deployment>,
    ) -> Option<DraftScope> {
        let mut deployments: Vec<Deployment> = deployments
            .into_iter()
            .filter(|d| d.service == request.service)
            .collect();
        deployments.sort_by(oldest_first);
        deployments.dedup_by(|a, b| a.id == b.id);
        let target = deployments
            .iter()
            .rev()
            .find(|d| d.version == request.version)?
            .clone();
        let covered: Vec<Deployment> = deployments
            .into_iter()
            .filter(|d| oldest_first(d, &target).is_le())
            .filter(|d| match &base {
                Some(base) => d.version != base.version && oldest_first(d, base).is_gt(),
                None => true,
            })
            .collect();
        let work_refs = distinct_work_refs(&covered);
        Some(DraftScope {
            service: request.service.clone(),
            environment: request.environment.clone(),
            version: request.version.clone(),
            base,
            covered,
            work_refs,
        })
    }

    pub fn base_version(&self) -> Option<&str> {
        self.base.as_ref().map(|b| b.version.as_str())
    }

    /// The covered versions, each once, in the order they first appear (oldest first).
    pub fn versions(&self) -> Vec<&str> {
        let mut seen = HashSet::new();
        self.covered
            .iter()
            .map(|d| d.version.as_str())
            .filter(|v| seen.insert(*v))
            .collect()
    }
}

/// The work references of `deployments` (oldest first), in order, each once.
pub fn distinct_work_refs(deployments: &[Deployment]) -> Vec<String> {
    let mut seen = HashSet::new();
    deployments
        .iter()
        .flat_map(|d| d.work_refs.iter())
        .filter(|r| seen.insert(r.as_str()))
        .cloned()
        .collect()
}

/// The draft assembled without a model: a heading, the covered versions (each with the
/// release notes of its newest deployment that has some) and the work references.
pub fn template(scope: &DraftScope) -> String {
    let mut text = String::new();
    let _ = write!(
        text,
        "Release notes: {} {} to {}",
        scope.service, scope.version, scope.environment
    );
    match scope.base_version() {
        Some(base) => {
            let _ = writeln!(text, " (live there: {base})");
        }
        None => {
            let _ = writeln!(text, " (nothing live there yet)");
        }
    }
    if scope.covered.is_empty() {
        let _ = writeln!(
            text,
            "\nNo deployment of {} since the live version.",
            scope.service
        );
        return text;
    }
    let _ = writeln!(text, "\nVersions:");
    for version in scope.versions() {
        let _ = writeln!(text, "- {version}");
        let notes = scope
            .covered
            .iter()
            .rev()
            .filter(|d| d.version == version)
            .find_map(|d| d.release_notes.as_deref());
        if let Some(notes) = notes {
            for line in notes.lines() {
                let _ = writeln!(text, "  {line}");
            }
        }
    }
    let _ = writeln!(text, "\nWork references:");
    for work_ref in &scope.work_refs {
        let _ = writeln!(text, "- {work_ref}");
    }
    text
}

/// The system prompt: what the model is, what it must answer, and in which form.
pub const SYSTEM_PROMPT: &str = "\
You write release notes for a software deployment record. You are given the service, the \
target environment, the version live there (the base), the version being promoted, the \
work references (ticket or pull-request ids) the promotion brings, and the deployments it \
covers with their risk statements, release notes and reviewers' notes. Write concise \
release notes for the people who approve the promotion: what changes, grouped sensibly, \
mentioning the work references, and any risk worth knowing. Do not invent changes that \
the material does not support. Also judge the semantic-versioning bump from the base to \
the target: MAJOR for breaking changes, MINOR for new features, PATCH for fixes only, \
NONE when nothing changes.

Answer with exactly one JSON object and nothing else (no code fence, no text before or \
after): {\"bump\": \"MAJOR\" | \"MINOR\" | \"PATCH\" | \"NONE\", \"notes\": \"<the release \
notes as plain text or Markdown>\"}. The object has exactly these two keys.";

/// The user message of the prompt: the facts of the draft, as plain labelled text.
/// `events` are events of the covered deployments (any superset); their notes are
/// quoted. Bounded: the newest `MAX_PROMPT_DEPLOYMENTS` deployments, at most
/// `MAX_PROMPT_WORK_REFS` references, each text cut at `MAX_PROMPT_TEXT_CHARS`.
pub fn prompt(scope: &DraftScope, events: &HashMap<Uuid, Vec<DeploymentEvent>>) -> String {
    let mut text = String::new();
    let _ = writeln!(text, "Service: {}", scope.service);
    let _ = writeln!(text, "Target environment: {}", scope.environment);
    let _ = writeln!(
        text,
        "Base version (live in the target environment): {}",
        scope
            .base_version()
            .unwrap_or("none (nothing is live there yet)")
    );
    let _ = writeln!(text, "Target version: {}", scope.version);
    let _ = writeln!(text, "\nWork references (oldest first):");
    if scope.work_refs.is_empty() {
        let _ = writeln!(text, "(none)");
    }
    for work_ref in scope.work_refs.iter().take(MAX_PROMPT_WORK_REFS) {
        let _ = writeln!(text, "- {work_ref}");
    }
    if scope.work_refs.len() > MAX_PROMPT_WORK_REFS {
        let _ = writeln!(
            text,
            "- ... and {} more",
            scope.work_refs.len() - MAX_PROMPT_WORK_REFS
        );
    }
    let _ = writeln!(text, "\nCovered deployments (oldest first):");
    if scope.covered.is_empty() {
        let _ = writeln!(text, "(none: nothing changed since the base version)");
    }
    let skipped = scope.covered.len().saturating_sub(MAX_PROMPT_DEPLOYMENTS);
    if skipped > 0 {
        let _ = writeln!(text, "({skipped} older deployments are not shown)");
    }
    for d in scope.covered.iter().skip(skipped) {
        let _ = writeln!(
            text,
            "\n## {} in {} ({}, created {})",
            d.version,
            d.environment,
            d.status,
            d.created_at.format("%Y-%m-%d %H:%M UTC")
        );
        let _ = writeln!(text, "Work references: {}", d.work_refs.join(", "));
        if let Some(risk) = &d.risk {
            let _ = writeln!(text, "Risk: {}", cut(risk));
        }
        if let Some(notes) = &d.release_notes {
            let _ = writeln!(text, "Release notes:\n{}", cut(notes));
        }
        let noted = events
            .get(&d.id)
            .into_iter()
            .flatten()
            .filter_map(|e| e.note.as_deref().map(|note| (e, note)));
        for (event, note) in noted {
            let _ = writeln!(
                text,
                "Note on {} by {}: {}",
                event.kind,
                event.actor,
                cut(note)
            );
        }
    }
    let _ = writeln!(
        text,
        "\nAnswer with the JSON object only: {{\"bump\": ..., \"notes\": ...}}."
    );
    text
}

fn cut(text: &str) -> String {
    if text.chars().count() <= MAX_PROMPT_TEXT_CHARS {
        return text.to_owned();
    }
    let mut cut: String = text.chars().take(MAX_PROMPT_TEXT_CHARS).collect();
    cut.push('…');
    cut
}

/// Why a model's answer was not taken.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Malformed {
    #[error("the answer is not a JSON object")]
    NotAnObject,
    #[error("the answer has key {0:?}; only \"bump\" and \"notes\" are expected")]
    UnexpectedKey(String),
    #[error("the answer has no {0:?}")]
    Missing(&'static str),
    #[error("\"bump\" is not one of MAJOR, MINOR, PATCH, NONE")]
    BadBump,
    #[error("\"notes\" is not a string")]
    NotesNotText,
    #[error("\"notes\" is blank")]
    BlankNotes,
    #[error("\"notes\" is longer than {MAX_MODEL_NOTES_CHARS} characters")]
    NotesTooLong,
    #[error("\"notes\" holds control characters")]
    ControlCharacters,
}

/// The model's answer, read strictly: one JSON object with exactly the keys `bump`
/// (one of the four names) and `notes` (a non-blank string of at most
/// `MAX_MODEL_NOTES_CHARS`, no control characters but line breaks and tabs), with
/// nothing around it but blanks. Returns the trimmed notes and the bump.
pub fn parse_answer(answer: &str) -> Result<(String, Bump), Malformed> {
    let value: serde_json::Value =
        serde_json::from_str(answer.trim()).map_err(|_| Malformed::NotAnObject)?;
    let serde_json::Value::Object(fields) = value else {
        return Err(Malformed::NotAnObject);
    };
    if let Some(key) = fields.keys().find(|k| *k != "bump" && *k != "notes") {
        return Err(Malformed::UnexpectedKey(key.chars().take(50).collect()));
    }
    let bump = match fields.get("bump") {
        None => return Err(Malformed::Missing("bump")),
        Some(serde_json::Value::String(name)) => Bump::ALL
            .into_iter()
            .find(|b| b.as_str() == name)
            .ok_or(Malformed::BadBump)?,
        Some(_) => return Err(Malformed::BadBump),
    };
    let notes = match fields.get("notes") {
        None => return Err(Malformed::Missing("notes")),
        Some(serde_json::Value::String(notes)) => notes.trim(),
        Some(_) => return Err(Malformed::NotesNotText),
    };
    if notes.is_empty() {
        return Err(Malformed::BlankNotes);
    }
    if notes.chars().count() > MAX_MODEL_NOTES_CHARS {
        return Err(Malformed::NotesTooLong);
    }
    if notes
        .chars()
        .any(|c| c.is_control() && !matches!(c, '\n' | '\r' | '\t'))
    {
        return Err(Malformed::ControlCharacters);
    }
    Ok((notes.to_owned(), bump))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{EventKind, Status, Timestamp};

    fn at(ms: i64) -> Timestamp {
        Timestamp::from_timestamp_millis(1_700_000_000_000 + ms).expect("a time")
    }

    /// Deployment number `n` of `billing`, created at n.
    fn dep(n: u128, environment: &str, version: &str, refs: &[&str]) -> Deployment {
        Deployment {
            id: Uuid::from_u128(n),
            service: "billing".to_owned(),
            environment: environment.to_owned(),
            version: version.to_owned(),
            requester: "alice".to_owned(),
            work_refs: refs.iter().map(|r| (*r).to_owned()).collect(),
            risk: None,
            rollback_plan: "redeploy".to_owned(),
            status: Status::Succeeded,
            reviewed_by: None,
            reviewed_at: None,
            created_at: at(n as i64),
            updated_at: at(n as i64),
            required_approvals: 1,
            promoted_from: None,
            release_notes: None,
            started_at: None,
            start_deadline: None,
        }
    }

    fn request(version: &str) -> DraftRequest {
        DraftRequest {
            service: "billing".to_owned(),
            environment: "production".to_owned(),
            version: version.to_owned(),
        }
    }

    #[test]
    fn the_draft_covers_what_came_after_the_base_up_to_the_newest_target() {
        type Case = (
            &'static str,
            &'static str,
            Option<Deployment>,
            Vec<Deployment>,
            Option<(Vec<u128>, Vec<&'static str>)>,
        );
        let cases: Vec<Case> = vec![
            (
                "nothing live: everything up to the target",
                "v3",
                None,
                vec![
                    dep(1, "dev", "v1", &["A"]),
                    dep(2, "dev", "v2", &["B"]),
                    dep(3, "dev", "v3", &["C"]),
                    dep(4, "dev", "v4", &["D"]),
                ],
                Some((vec![1, 2, 3], vec!["A", "B", "C"])),
            ),
            (
                "after the base only, in any environment",
                "v3",
                Some(dep(2, "production", "v2", &["B"])),
                vec![
                    dep(1, "dev", "v1", &["A"]),
                    dep(2, "production", "v2", &["B"]),
                    dep(3, "staging", "v3", &["C"]),
                    dep(5, "dev", "v3", &["E"]),
                    dep(6, "dev", "v4", &["F"]),
                ],
                Some((vec![3, 5], vec!["C", "E"])),
            ),
            (
                "the base version's own redeployments are left out",
                "v4",
                Some(dep(2, "production", "v2", &["B"])),
                vec![
                    dep(2, "production", "v2", &["B"]),
                    dep(3, "dev", "v2", &["B2"]),
                    dep(4, "dev", "v4", &["D"]),
                ],
                Some((vec![4], vec!["D"])),
            ),
            (
                "work refs: each once, oldest first",
                "v4",
                None,
                vec![
                    dep(4, "dev", "v4", &["C", "A"]),
                    dep(1, "dev", "v1", &["A", "B"]),
                    dep(2, "staging", "v1", &["B"]),
                ],
                Some((vec![1, 2, 4], vec!["A", "B", "C"])),
            ),
            (
                "the target is the live version: nothing to cover",
                "v2",
                Some(dep(2, "production", "v2", &["B"])),
                vec![
                    dep(1, "dev", "v1", &["A"]),
                    dep(2, "production", "v2", &["B"]),
                ],
                Some((vec![], vec![])),
            ),
            (
                "the target is older than the base: nothing to cover",
                "v1",
                Some(dep(2, "production", "v2", &["B"])),
                vec![
                    dep(1, "dev", "v1", &["A"]),
                    dep(2, "production", "v2", &["B"]),
                ],
                Some((vec![], vec![])),
            ),
            (
                "no deployment of the version",
                "v9",
                None,
                vec![dep(1, "dev", "v1", &["A"])],
                None,
            ),
            (
                "another service's deployment of the version does not count",
                "v1",
                None,
                vec![Deployment {
                    service: "payroll".to_owned(),
                    ..dep(1, "dev", "v1", &["A"])
                }],
                None,
            ),
        ];
        for (case, version, base, deployments, expected) in cases {
            let scope = DraftScope::assemble(&request(version), base, deployments);
            let got = scope.map(|s| {
                (
                    s.covered.iter().map(|d| d.id.as_u128()).collect::<Vec<_>>(),
                    s.work_refs.clone(),
                )
            });
            let expected = expected
                .map(|(ids, refs)| (ids, refs.into_iter().map(str::to_owned).collect::<Vec<_>>()));
            assert_eq!(got, expected, "{case}");
        }
    }

    #[test]
    fn same_millisecond_deployments_are_ordered_by_id() {
        let mut early = dep(1, "dev", "v2", &["X"]);
        let mut base = dep(2, "production", "v1", &["B"]);
        let mut late = dep(3, "dev", "v2", &["Y"]);
        for d in [&mut early, &mut base, &mut late] {
            d.created_at = at(0);
        }
        let scope = DraftScope::assemble(&request("v2"), Some(base.clone()), [early, base, late])
            .expect("a scope");
        assert_eq!(scope.work_refs, vec!["Y".to_owned()]);
    }

    #[test]
    fn the_arguments_follow_the_rules_of_names_and_versions() {
        let long_name = "s".repeat(MAX_NAME_CHARS + 1);
        let long_version = "v".repeat(MAX_VERSION_CHARS + 1);
        let ok_version = "v".repeat(MAX_VERSION_CHARS);
        type Expected<'a> = Result<[&'a str; 3], Vec<(&'a str, &'a str)>>;
        let cases: Vec<(&str, [&str; 3], Expected)> = vec![
            (
                "plain, trimmed",
                [" billing ", "production\t", " v1 "],
                Ok(["billing", "production", "v1"]),
            ),
            (
                "a version of 200 characters",
                ["billing", "dev", &ok_version],
                Ok(["billing", "dev", &ok_version]),
            ),
            (
                "every problem at once",
                ["  ", &long_name, "v\u{0}1"],
                Err(vec![
                    ("service", "must not be blank"),
                    ("environment", "must be at most 100 characters"),
                    ("version", "must not contain control characters"),
                ]),
            ),
            (
                "a version too long",
                ["billing", "dev", &long_version],
                Err(vec![("version", "must be at most 200 characters")]),
            ),
        ];
        for (case, [s, e, v], expected) in cases {
            let got = DraftRequest::validate(s, e, v);
            match expected {
                Ok([s, e, v]) => assert_eq!(
                    got,
                    Ok(DraftRequest {
                        service: s.to_owned(),
                        environment: e.to_owned(),
                        version: v.to_owned(),
                    }),
                    "{case}"
                ),
                Err(problems) => {
                    let errors = got.expect_err(case).0;
                    let errors: Vec<_> = errors
                        .iter()
                        .map(|e| (e.field.as_str(), e.message.as_str()))
                        .collect();
                    assert_eq!(errors, problems, "{case}");
                }
            }
        }
    }

    #[test]
    fn the_answer_is_read_strictly() {
        let long = format!(
            r#"{{"bump":"MAJOR","notes":"{}"}}"#,
            "n".repeat(MAX_MODEL_NOTES_CHARS + 1)
        );
        type Expected<'a> = Result<(&'a str, Bump), Malformed>;
        let cases: Vec<(&str, &str, Expected)> = vec![
            (
                "the expected object",
                r#"{"bump":"MINOR","notes":"Adds invoices (JIRA-1)."}"#,
                Ok(("Adds invoices (JIRA-1).", Bump::Minor)),
            ),
            (
                "blanks around it and in the notes are trimmed",
                " \n{\"notes\": \"  - fix\\n- more \", \"bump\": \"PATCH\"}\n ",
                Ok(("- fix\n- more", Bump::Patch)),
            ),
            (
                "NONE is a bump",
                r#"{"bump":"NONE","notes":"Nothing changes."}"#,
                Ok(("Nothing changes.", Bump::None)),
            ),
            (
                "prose",
                "Here are your notes: ...",
                Err(Malformed::NotAnObject),
            ),
            (
                "prose before the object",
                r#"Sure! {"bump":"MINOR","notes":"x"}"#,
                Err(Malformed::NotAnObject),
            ),
            (
                "a code fence",
                "```json\n{\"bump\":\"MINOR\",\"notes\":\"x\"}\n```",
                Err(Malformed::NotAnObject),
            ),
            (
                "an array",
                r#"[{"bump":"MINOR"}]"#,
                Err(Malformed::NotAnObject),
            ),
            ("empty", "", Err(Malformed::NotAnObject)),
            (
                "two objects",
                r#"{"bump":"MINOR","notes":"x"}{"bump":"MINOR","notes":"x"}"#,
                Err(Malformed::NotAnObject),
            ),
            (
                "an extra key",
                r#"{"bump":"MINOR","notes":"x","why":"y"}"#,
                Err(Malformed::UnexpectedKey("why".to_owned())),
            ),
            (
                "no bump",
                r#"{"notes":"x"}"#,
                Err(Malformed::Missing("bump")),
            ),
            (
                "no notes",
                r#"{"bump":"MAJOR"}"#,
                Err(Malformed::Missing("notes")),
            ),
            (
                "a lower-case bump",
                r#"{"bump":"minor","notes":"x"}"#,
                Err(Malformed::BadBump),
            ),
            (
                "a null bump",
                r#"{"bump":null,"notes":"x"}"#,
                Err(Malformed::BadBump),
            ),
            (
                "notes not a string",
                r#"{"bump":"MAJOR","notes":["x"]}"#,
                Err(Malformed::NotesNotText),
            ),
            (
                "blank notes",
                r#"{"bump":"MAJOR","notes":"  \n "}"#,
                Err(Malformed::BlankNotes),
            ),
            ("notes too long", &long, Err(Malformed::NotesTooLong)),
            (
                "a control character",
                r#"{"bump":"MAJOR","notes":"a\u0007b"}"#,
                Err(Malformed::ControlCharacters),
            ),
        ];
        for (case, answer, expected) in cases {
            let got = parse_answer(answer);
            let expected = expected.map(|(notes, bump)| (notes.to_owned(), bump));
            assert_eq!(got, expected, "{case}");
        }
    }

    fn scope_with_two_versions() -> DraftScope {
        let mut v2 = dep(2, "staging", "v2", &["JIRA-2", "JIRA-1"]);
        v2.release_notes = Some("Faster invoices.\nSecond line.".to_owned());
        v2.risk = Some("medium: schema change".to_owned());
        let mut v3 = dep(3, "dev", "v3", &["JIRA-3"]);
        v3.status = Status::Started;
        DraftScope::assemble(
            &request("v3"),
            Some(dep(1, "production", "v1", &["JIRA-1"])),
            [dep(1, "production", "v1", &["JIRA-1"]), v2, v3],
        )
        .expect("a scope")
    }

    #[test]
    fn the_template_lists_the_versions_and_work_references() {
        let scope = scope_with_two_versions();
        assert_eq!(
            template(&scope),
            "Release notes: billing v3 to production (live there: v1)\n\
             \n\
             Versions:\n\
             - v2\n  Faster invoices.\n  Second line.\n\
             - v3\n\
             \n\
             Work references:\n\
             - JIRA-2\n- JIRA-1\n- JIRA-3\n"
        );
        let nothing = DraftScope::assemble(&request("v1"), None, [dep(1, "dev", "v1", &[])])
            .expect("a scope");
        assert!(template(&nothing).contains("nothing live there yet"));
        let empty = DraftScope {
            covered: vec![],
            work_refs: vec![],
            ..scope
        };
        assert!(template(&empty).contains("No deployment of billing since the live version."));
    }

    #[test]
    fn the_prompt_gives_the_model_every_fact_and_the_answer_form() {
        let scope = scope_with_two_versions();
        let v2 = scope.covered[0].id;
        let event = DeploymentEvent {
            id: Uuid::from_u128(99),
            deployment_id: v2,
            service: "billing".to_owned(),
            environment: "staging".to_owned(),
            kind: EventKind::Approved,
            actor: "bob".to_owned(),
            note: Some("watch the invoice queue".to_owned()),
            from_status: Some(Status::PendingApproval),
            to_status: Status::Approved,
            occurred_at: at(5),
            overrides: vec![],
        };
        let silent = DeploymentEvent {
            note: None,
            kind: EventKind::Created,
            ..event.clone()
        };
        let events = HashMap::from([(v2, vec![silent, event])]);
        let text = prompt(&scope, &events);
        for expected in [
            "Service: billing",
            "Target environment: production",
            "Base version (live in the target environment): v1",
            "Target version: v3",
            "- JIRA-2\n- JIRA-1\n- JIRA-3\n",
            "## v2 in staging (SUCCEEDED,",
            "## v3 in dev (STARTED,",
            "Risk: medium: schema change",
            "Release notes:\nFaster invoices.\nSecond line.",
            "Note on APPROVED by bob: watch the invoice queue",
        ] {
            assert!(text.contains(expected), "{expected:?} in:\n{text}");
        }
        assert_eq!(text.matches("Note on").count(), 1, "{text}");
        assert!(SYSTEM_PROMPT.contains(r#"{"bump": "MAJOR" | "MINOR" | "PATCH" | "NONE""#));
    }

    #[test]
    fn the_prompt_is_bounded() {
        let many: Vec<Deployment> = (1..=(MAX_PROMPT_DEPLOYMENTS as u128 + 5))
            .map(|n| {
                let mut d = dep(n, "dev", &format!("v{n}"), &[&format!("R-{n}")]);
                d.release_notes = Some("x".repeat(MAX_PROMPT_TEXT_CHARS + 10));
                d
            })
            .collect();
        let last = format!("v{}", MAX_PROMPT_DEPLOYMENTS + 5);
        let scope = DraftScope::assemble(&request(&last), None, many).expect("a scope");
        let text = prompt(&scope, &HashMap::new());
        assert!(text.contains("(5 older deployments are not shown)"));
        assert!(!text.contains("## v5 in"));
        assert!(text.contains("## v6 in"));
        assert!(text.contains("- R-1\n"), "every work reference is listed");
        assert!(text.contains(&format!("{}…", "x".repeat(MAX_PROMPT_TEXT_CHARS))));
        assert!(!text.contains(&"x".repeat(MAX_PROMPT_TEXT_CHARS + 1)));
    }
}
