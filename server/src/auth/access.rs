//! Which calls each role may make, written once: the gRPC method path is
//! looked up here before any handler runs. Admin keys may make every call;
//! a method missing from the table is open to admin keys only, so a new RPC
//! is closed until someone decides who may call it (a test checks that every
//! method of the API is listed).

use super::Role;

/// Who may make a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rule {
    /// Anyone, with or without a key (health checks).
    Open,
    /// Any valid key, whatever its role (reflection: the schema is public,
    /// but it tells a stranger nothing they need).
    AnyKey,
    /// Admin keys and these roles.
    Roles(&'static [Role]),
}

/// What the layer needs to know about a method.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Access {
    pub rule: Rule,
    /// Long-lived streams, which end when their key is revoked or expires.
    pub streaming: bool,
}

const READ: &[Role] = &[Role::Client, Role::Viewer];
const WRITE: &[Role] = &[Role::Client];
const EXECUTE: &[Role] = &[Role::Executor];
const ADMIN: &[Role] = &[];

/// Every method of the `tributary.v1` API with the roles that may call it.
pub const METHODS: &[(&str, &[Role], bool)] = &[
    (
        "/tributary.v1.WorkflowService/RegisterWorkflow",
        WRITE,
        false,
    ),
    ("/tributary.v1.WorkflowService/GetWorkflow", READ, false),
    ("/tributary.v1.WorkflowService/ListWorkflows", READ, false),
    ("/tributary.v1.RunService/StartRun", WRITE, false),
    ("/tributary.v1.RunService/GetRun", READ, false),
    ("/tributary.v1.RunService/ListRuns", READ, false),
    ("/tributary.v1.RunService/CancelRun", WRITE, false),
    ("/tributary.v1.RunService/RetryRun", WRITE, false),
    ("/tributary.v1.RunService/WatchRun", READ, true),
    ("/tributary.v1.RunService/WatchEvents", READ, true),
    ("/tributary.v1.ExecutorService/Connect", EXECUTE, true),
    ("/tributary.v1.ExecutorService/ListExecutors", READ, false),
    ("/tributary.v1.ExecutorService/WatchExecutors", READ, true),
    ("/tributary.v1.ScheduleService/CreateSchedule", WRITE, false),
    ("/tributary.v1.ScheduleService/GetSchedule", READ, false),
    ("/tributary.v1.ScheduleService/ListSchedules", READ, false),
    ("/tributary.v1.ScheduleService/PauseSchedule", WRITE, false),
    ("/tributary.v1.ScheduleService/ResumeSchedule", WRITE, false),
    ("/tributary.v1.ScheduleService/DeleteSchedule", WRITE, false),
    ("/tributary.v1.KeyService/CreateKey", ADMIN, false),
    ("/tributary.v1.KeyService/ListKeys", ADMIN, false),
    ("/tributary.v1.KeyService/RevokeKey", ADMIN, false),
];

/// The access rule of a request path.
pub fn access_of(path: &str) -> Access {
    if path.starts_with("/grpc.health.v1.Health/") {
        return Access {
            rule: Rule::Open,
            streaming: false,
        };
    }
    if path.starts_with("/grpc.reflection.v1.ServerReflection/")
        || path.starts_with("/grpc.reflection.v1alpha.ServerReflection/")
    {
        return Access {
            rule: Rule::AnyKey,
            streaming: false,
        };
    }
    match METHODS.iter().find(|(method, _, _)| *method == path) {
        Some((_, roles, streaming)) => Access {
            rule: Rule::Roles(roles),
            streaming: *streaming,
        },
        None => Access {
            rule: Rule::Roles(ADMIN),
            streaming: false,
        },
    }
}

/// Whether `role` may make a call under `rule`.
pub fn allows(rule: Rule, role: Role) -> bool {
    match rule {
        Rule::Open | Rule::AnyKey => true,
        Rule::Roles(roles) => role == Role::Admin || roles.contains(&role),
    }
}

#[cfg(test)]
mod tests {
    use prost::Message;

    use super::*;

    #[test]
    fn every_method_of_the_api_has_an_entry_and_no_entry_is_stale() {
        let set = prost_types::FileDescriptorSet::decode(tributary_proto::FILE_DESCRIPTOR_SET)
            .expect("descriptor set");
        let mut paths = Vec::new();
        for file in &set.file {
            for service in &file.service {
                for method in &service.method {
                    paths.push(format!(
                        "/{}.{}/{}",
                        file.package(),
                        service.name(),
                        method.name()
                    ));
                }
            }
        }
        paths.sort();
        let mut listed: Vec<String> = METHODS
            .iter()
            .map(|(path, _, _)| path.to_string())
            .collect();
        listed.sort();
        assert_eq!(paths, listed);
    }

    #[test]
    fn executors_may_only_connect_and_viewers_only_read() {
        let allowed = |role: Role| -> Vec<&str> {
            METHODS
                .iter()
                .filter(|(_, roles, _)| allows(Rule::Roles(roles), role))
                .map(|(path, _, _)| *path)
                .collect()
        };
        assert_eq!(
            allowed(Role::Executor),
            ["/tributary.v1.ExecutorService/Connect"]
        );
        for path in allowed(Role::Viewer) {
            let method = path.rsplit('/').next().unwrap_or_default();
            assert!(
                ["Get", "List", "Watch"]
                    .iter()
                    .any(|verb| method.starts_with(verb)),
                "viewers may call {path}"
            );
        }
        assert_eq!(allowed(Role::Admin).len(), METHODS.len());
        assert!(
            !allowed(Role::Client)
                .iter()
                .any(|path| path.contains("KeyService"))
        );
        assert!(!allows(
            access_of("/tributary.v1.Unknown/Call").rule,
            Role::Client
        ));
    }
}
