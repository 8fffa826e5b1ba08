//! `/v1/models`: the models the caller's tenant may call (exactly what authorization admits).

use super::{annotate, CallInfo};
use crate::error::{GatewayError, Wire};
use crate::identity::TenantContext;
use crate::state::AppState;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};
use std::time::Duration;

fn model_object(id: &str) -> Value {
    json!({"id": id, "object": "model", "created": 0, "owned_by": "tenantgate"})
}

pub(super) async fn list_models(State(app): State<AppState>, headers: HeaderMap) -> Response {
    let run = async || -> Result<Response, GatewayError> {
        let ctx: TenantContext = app.tenant_context(&headers).await?;
        let data: Vec<Value> = app
            .visible_models(&ctx)
            .iter()
            .map(|m| model_object(m))
            .collect();
        Ok(annotate(
            Json(json!({"object":"list","data":data})).into_response(),
            Duration::ZERO,
            CallInfo {
                tenant: ctx.tenant.slug.clone(),
                model: "-".into(),
                usage: None,
            },
        ))
    };
    run().await.unwrap_or_else(|e| e.render(Wire::OpenAi))
}

/// A model the tenant may not use answers 404, exactly like one that does not exist.
pub(super) async fn get_model(
    State(app): State<AppState>,
    Path(model): Path<String>,
    headers: HeaderMap,
) -> Response {
    let run = async || -> Result<Response, GatewayError> {
        let ctx = app.tenant_context(&headers).await?;
        if app.visible_models(&ctx).contains(&model) {
            Ok(Json(model_object(&model)).into_response())
        } else {
            Err(GatewayError::ModelNotFound(crate::bounds::echo(&model)))
        }
    };
    run().await.unwrap_or_else(|e| e.render(Wire::OpenAi))
}
