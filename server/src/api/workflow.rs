//! `tributary.v1.WorkflowService`: register, get and list workflow versions.

use std::sync::Arc;

use prost::Message;
use tonic::{Request, Response, Status};
use tributary_core::{DefinitionLimits, WorkflowDefinition, validate};
use tributary_proto::v1 as pb;
use tributary_proto::v1::workflow_service_server::WorkflowService;

use super::convert::{decode_page_token, encode_page_token, page_size, workflow_to_proto};
use super::error::{ApiError, ApiResult};
use super::namespace::namespace_of;
use super::text::check_no_nul;
use crate::clock::now_unix_ms;
use crate::store::{Store, VersionSelector};

pub struct WorkflowApi {
    store: Arc<dyn Store>,
    limits: DefinitionLimits,
}

impl WorkflowApi {
    pub fn new(store: Arc<dyn Store>, limits: DefinitionLimits) -> WorkflowApi {
        WorkflowApi { store, limits }
    }

    async fn register(
        &self,
        request: Request<pb::RegisterWorkflowRequest>,
    ) -> ApiResult<pb::RegisterWorkflowResponse> {
        let namespace = namespace_of(&request)?;
        let definition = request
            .into_inner()
            .definition
            .ok_or_else(|| ApiError::InvalidArgument("definition is missing".to_owned()))?;
        let encoded_bytes = definition.encoded_len();
        let input = WorkflowDefinition::from(definition);
        let spec = validate(&input, encoded_bytes, self.limits)?;
        let registration = self
            .store
            .register_workflow(&namespace, &spec, now_unix_ms())
            .await?;
        tracing::info!(
            namespace,
            workflow = spec.name,
            version = registration.workflow.version,
            created = registration.created,
            "workflow registered"
        );
        Ok(pb::RegisterWorkflowResponse {
            workflow: Some(workflow_to_proto(&registration.workflow)),
            created: registration.created,
        })
    }

    async fn get(
        &self,
        request: Request<pb::GetWorkflowRequest>,
    ) -> ApiResult<pb::GetWorkflowResponse> {
        let namespace = namespace_of(&request)?;
        let request = request.into_inner();
        if request.name.is_empty() {
            return Err(ApiError::InvalidArgument("name is missing".to_owned()));
        }
        check_no_nul("name", &request.name)?;
        if let Some(pb::get_workflow_request::Selector::Version(version)) = &request.selector {
            check_no_nul("version", version)?;
        }
        let selector = match request.selector {
            None => VersionSelector::Latest,
            Some(pb::get_workflow_request::Selector::Version(version)) if version.is_empty() => {
                VersionSelector::Latest
            }
            Some(pb::get_workflow_request::Selector::Version(version)) => {
                VersionSelector::Version(version)
            }
            Some(pb::get_workflow_request::Selector::Sequence(sequence)) => {
                VersionSelector::Sequence(sequence)
            }
        };
        let workflow = self
            .store
            .get_workflow(&namespace, &request.name, &selector)
            .await?;
        Ok(pb::GetWorkflowResponse {
            workflow: Some(workflow_to_proto(&workflow)),
        })
    }

    async fn list(
        &self,
        request: Request<pb::ListWorkflowsRequest>,
    ) -> ApiResult<pb::ListWorkflowsResponse> {
        let namespace = namespace_of(&request)?;
        let request = request.into_inner();
        let after_name = decode_page_token(&request.page_token)?;
        let limit = page_size(request.page_size);
        // One row more than asked tells whether another page exists.
        let mut workflows = self
            .store
            .list_workflows(&namespace, after_name.as_deref(), limit + 1)
            .await?;
        let next_page_token = if workflows.len() > limit as usize {
            workflows.truncate(limit as usize);
            workflows
                .last()
                .map(|last| encode_page_token(&last.spec.name))
                .unwrap_or_default()
        } else {
            String::new()
        };
        Ok(pb::ListWorkflowsResponse {
            workflows: workflows.iter().map(workflow_to_proto).collect(),
            next_page_token,
        })
    }
}

#[tonic::async_trait]
impl WorkflowService for WorkflowApi {
    async fn register_workflow(
        &self,
        request: Request<pb::RegisterWorkflowRequest>,
    ) -> Result<Response<pb::RegisterWorkflowResponse>, Status> {
        Ok(Response::new(self.register(request).await?))
    }

    async fn get_workflow(
        &self,
        request: Request<pb::GetWorkflowRequest>,
    ) -> Result<Response<pb::GetWorkflowResponse>, Status> {
        Ok(Response::new(self.get(request).await?))
    }

    async fn list_workflows(
        &self,
        request: Request<pb::ListWorkflowsRequest>,
    ) -> Result<Response<pb::ListWorkflowsResponse>, Status> {
        Ok(Response::new(self.list(request).await?))
    }
}
