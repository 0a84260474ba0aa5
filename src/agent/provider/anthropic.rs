//! Placeholder until the wire format is implemented.

use super::Provider;
use super::http::ProxyHttp;
use crate::agent::model::{Cancel, ModelError, Request, Response, StreamEvent};

pub struct Anthropic {
    pub http: ProxyHttp,
}

impl Anthropic {
    pub fn new(http: ProxyHttp) -> Anthropic {
        Anthropic { http }
    }
}

impl Provider for Anthropic {
    fn name(&self) -> &'static str {
        "anthropic"
    }

    fn call(&mut self, _: &Request<'_>, _: &mut dyn FnMut(StreamEvent), _: &Cancel) -> Result<Response, ModelError> {
        Err(ModelError::Protocol("not implemented yet".into()))
    }
}
