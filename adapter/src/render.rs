//! Output rendering (placeholder until the renderer lands).
use crate::types::{AdapterError, BotOutput, RenderContext, RequestSpec};
pub fn render(_o: &BotOutput, _c: &RenderContext) -> Result<Vec<RequestSpec>, AdapterError> {
    Err(AdapterError::Unsupported("not implemented".into()))
}
