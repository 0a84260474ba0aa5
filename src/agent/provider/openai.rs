//! Placeholder until the wire format is implemented.

use super::Provider;
use super::http::ProxyHttp;
use crate::agent::model::{Cancel, ModelError, Request, Response, StreamEvent};

pub struct OpenAi {
    pub http: ProxyHttp,
}

impl OpenAi {
    pub fn new(http: ProxyHttp) -> OpenAi {
        OpenAi { http }
    }
}

impl Provider for OpenAi {
    fn name(&self) -> &'static str {
        "openai"
    }

    fn call(&mut self, _: &Request<'_>, _: &mut dyn FnMut(StreamEvent), _: &Cancel) -> Result<Response, ModelError> {
        Err(ModelError::Protocol("not implemented yet".into()))
    }
}
