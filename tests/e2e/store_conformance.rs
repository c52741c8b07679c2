//! The `Store` conformance suite: the same assertions against whichever
//! backend the environment selects, through the trait only.

use std::sync::Arc;

use tributary_core::{
    DefinitionLimits, TaskDefinition, WorkflowDefinition, WorkflowSpec, validate,
};
use tributary_e2e::TestDatabase;
use tributary_server::store::{self, Backend, Store, StoreError, VersionSelector};

fn spec(name: &str, task_ids: &[&str], retry_attempts: i64) -> WorkflowSpec {
    let input = WorkflowDefinition {
        name: name.to_owned(),
        description: String::new(),
        tasks: task_ids
            .iter()
            .map(|id| TaskDefinition {
                id: (*id).to_owned(),
                retry_attempts: Some(retry_attempts),
                ..TaskDefinition::default()
            })
            .collect(),
        concurrency: None,
    };
    validate(&input, 0, DefinitionLimits::default()).expect("valid")
}

pub(crate) async fn open() -> (TestDatabase, Arc<dyn Store>) {
    let database = TestDatabase::fresh().await;
    let store = store::connect(database.url()).await.expect("connects");
    let expected = if database.is_postgres() {
        Backend::Postgres
    } else {
        Backend::Sqlite
    };
    assert_eq!(store.backend(), expected);
    (database, store)
}

#[tokio::test]
async fn register_new_then_same_then_changed_then_rollback() {
    let (_database, store) = open().await;
    let v1 = spec("etl", &["a", "b"], 0);
    let v2 = spec("etl", &["a", "b"], 3);

    let first = store
        .register_workflow("default", &v1, 1_000)
        .await
        .expect("first");
    assert!(first.created);
    assert_eq!(first.workflow.sequence, 1);
    assert_eq!(first.workflow.version, v1.version());
    assert!(first.workflow.latest);
    assert_eq!(first.workflow.spec, v1);
    assert_eq!(first.workflow.created_at_ms, 1_000);

    let again = store
        .register_workflow("default", &v1, 2_000)
        .await
        .expect("again");
    assert!(!again.created);
    assert_eq!(again.workflow.sequence, 1);
    assert_eq!(
        again.workflow.created_at_ms, 1_000,
        "first registration time kept"
    );

    let changed = store
        .register_workflow("default", &v2, 3_000)
        .await
        .expect("changed");
    assert!(changed.created);
    assert_eq!(changed.workflow.sequence, 2);
    assert_ne!(changed.workflow.version, v1.version());

    let latest = store
        .get_workflow("default", "etl", &VersionSelector::Latest)
        .await
        .expect("latest");
    assert_eq!(latest.version, v2.version());

    // Registering the older definition again rolls back without a new sequence.
    let rollback = store
        .register_workflow("default", &v1, 4_000)
        .await
        .expect("rollback");
    assert!(!rollback.created);
    assert_eq!(rollback.workflow.sequence, 1);
    assert!(rollback.workflow.latest);
    let latest = store
        .get_workflow("default", "etl", &VersionSelector::Latest)
        .await
        .expect("latest");
    assert_eq!(latest.version, v1.version());
    let old = store
        .get_workflow("default", "etl", &VersionSelector::Sequence(2))
        .await
        .expect("by sequence");
    assert_eq!(old.version, v2.version());
    assert!(!old.latest);
    let by_version = store
        .get_workflow("default", "etl", &VersionSelector::Version(v2.version()))
        .await
        .expect("by version");
    assert_eq!(by_version.spec, v2);

    // A third definition gets sequence 3, not 2 again.
    let v3 = spec("etl", &["a"], 0);
    let third = store
        .register_workflow("default", &v3, 5_000)
        .await
        .expect("third");
    assert_eq!(third.workflow.sequence, 3);
}

#[tokio::test]
async fn missing_workflows_and_versions_are_not_found_with_a_name() {
    let (_database, store) = open().await;
    let error = store
        .get_workflow("default", "nope", &VersionSelector::Latest)
        .await
        .expect_err("missing");
    assert!(
        matches!(&error, StoreError::NotFound(what) if what == "workflow \"nope\""),
        "{error}"
    );
    store
        .register_workflow("default", &spec("etl", &["a"], 0), 1)
        .await
        .expect("registers");
    let error = store
        .get_workflow(
            "default",
            "etl",
            &VersionSelector::Version("0123456789abcdef".into()),
        )
        .await
        .expect_err("missing version");
    assert!(
        matches!(&error, StoreError::NotFound(what) if what == "version \"0123456789abcdef\" of workflow \"etl\""),
        "{error}"
    );
    let error = store
        .get_workflow("default", "etl", &VersionSelector::Sequence(9))
        .await
        .expect_err("missing sequence");
    assert!(matches!(error, StoreError::NotFound(_)), "{error}");
}

#[tokio::test]
async fn namespaces_are_isolated() {
    let (_database, store) = open().await;
    let mine = spec("etl", &["a"], 0);
    let theirs = spec("etl", &["a", "b"], 0);
    store
        .register_workflow("team-a", &mine, 1)
        .await
        .expect("a");
    store
        .register_workflow("team-b", &theirs, 1)
        .await
        .expect("b");
    let in_a = store
        .get_workflow("team-a", "etl", &VersionSelector::Latest)
        .await
        .expect("a sees its own");
    assert_eq!(in_a.spec, mine);
    assert_eq!(in_a.sequence, 1);
    let error = store
        .get_workflow("team-a", "etl", &VersionSelector::Version(theirs.version()))
        .await
        .expect_err("a cannot read b's version");
    assert!(matches!(error, StoreError::NotFound(_)));
    assert!(
        store
            .list_workflows("team-c", None, 10)
            .await
            .expect("lists")
            .is_empty()
    );
}

#[tokio::test]
async fn listing_pages_by_name_with_latest_versions() {
    let (_database, store) = open().await;
    for name in ["delta", "alpha", "charlie", "bravo", "echo"] {
        store
            .register_workflow("default", &spec(name, &["a"], 0), 1)
            .await
            .expect("registers");
    }
    store
        .register_workflow("default", &spec("charlie", &["a", "b"], 0), 2)
        .await
        .expect("second version");
    let first = store
        .list_workflows("default", None, 2)
        .await
        .expect("page 1");
    let names: Vec<&str> = first.iter().map(|w| w.spec.name.as_str()).collect();
    assert_eq!(names, ["alpha", "bravo"]);
    let second = store
        .list_workflows("default", Some("bravo"), 2)
        .await
        .expect("page 2");
    let names: Vec<&str> = second.iter().map(|w| w.spec.name.as_str()).collect();
    assert_eq!(names, ["charlie", "delta"]);
    assert_eq!(second[0].sequence, 2, "latest version of charlie");
    assert!(second.iter().all(|w| w.latest));
    let last = store
        .list_workflows("default", Some("delta"), 2)
        .await
        .expect("page 3");
    assert_eq!(last.len(), 1);
    assert_eq!(last[0].spec.name, "echo");
}

#[tokio::test]
async fn concurrent_registrations_of_distinct_versions_get_distinct_sequences() {
    let (_database, store) = open().await;
    let mut handles = Vec::new();
    for attempts in 0..8 {
        let store = store.clone();
        handles.push(tokio::spawn(async move {
            store
                .register_workflow("default", &spec("busy", &["a"], attempts), 1)
                .await
                .expect("registers")
                .workflow
                .sequence
        }));
    }
    let mut sequences = Vec::new();
    for handle in handles {
        sequences.push(handle.await.expect("task"));
    }
    sequences.sort_unstable();
    assert_eq!(sequences, (1..=8).collect::<Vec<u64>>());
}

#[tokio::test]
async fn data_survives_reopening_the_database() {
    let database = TestDatabase::fresh().await;
    let registered = {
        let store = store::connect(database.url()).await.expect("connects");
        let registration = store
            .register_workflow("default", &spec("kept", &["a", "b"], 2), 7)
            .await
            .expect("registers");
        store.close().await;
        registration.workflow
    };
    let store = store::connect(database.url())
        .await
        .expect("reconnects, migrations idempotent");
    let read = store
        .get_workflow("default", "kept", &VersionSelector::Latest)
        .await
        .expect("still there");
    assert_eq!(read, registered);
}

#[tokio::test]
async fn unsupported_urls_are_rejected_by_name() {
    let error = store::connect("mysql://localhost/db")
        .await
        .err()
        .expect("rejected");
    assert!(
        error.to_string().contains("mysql://localhost/db"),
        "{error}"
    );
}
