//! Model providers behind one trait, chosen per agent by name: `anthropic` (Messages API),
//! `openai` (Chat Completions) and `mock` (deterministic, no network).
//!
//! A provider performs one model call: it translates a provider-neutral [`Request`] into its wire
//! format, streams the answer (reporting text deltas as they arrive) and translates the result
//! back. Network providers talk only to the host's credential proxy over the session's
//! `model.sock` ([`http::ProxyHttp`]); they never see an API key. Retrying is done here, once, for
//! every provider ([`call_with_retries`]).

pub mod anthropic;
pub mod http;
pub mod mock;
pub mod openai;
pub mod sse;

use std::path::PathBuf;
use std::time::Duration;

use anyhow::bail;

use super::model::{Cancel, ModelError, Request, Response, StreamEvent};

/// A model backend.
pub trait Provider: Send {
    fn name(&self) -> &'static str;

    /// One model call. Text deltas go to `on_event` as they arrive; `cancel` aborts at once.
    fn call(
        &mut self,
        req: &Request<'_>,
        on_event: &mut dyn FnMut(StreamEvent),
        cancel: &Cancel,
    ) -> Result<Response, ModelError>;
}

/// What the runner knows to build a provider.
#[derive(Debug, Clone)]
pub struct ProviderConfig {
    /// `anthropic`, `openai` or `mock`.
    pub name: String,
    /// The model name to ask for (the provider's default when `None`).
    pub model: Option<String>,
    /// The host's credential proxy for this session.
    pub proxy: PathBuf,
    /// How long the model may send nothing before the call fails.
    pub timeout: Duration,
}

/// The provider registered under `cfg.name`.
pub fn create(cfg: &ProviderConfig) -> anyhow::Result<Box<dyn Provider>> {
    let http = http::ProxyHttp::new(cfg.proxy.clone()).with_stall(cfg.timeout);
    match cfg.name.as_str() {
        "mock" => Ok(Box::new(mock::Mock)),
        "anthropic" => Ok(Box::new(anthropic::Anthropic::new(http).model(cfg.model.clone()))),
        "openai" => Ok(Box::new(openai::OpenAi::new(http).model(cfg.model.clone()))),
        other => bail!("unknown provider {other:?}: expected anthropic, openai or mock"),
    }
}

/// Attempts of one model call (first try included).
pub const ATTEMPTS_MAX: u32 = 5;
/// Longest pause between attempts, also when the server asks for more.
pub const RETRY_WAIT_MAX: Duration = Duration::from_secs(60);

/// The pause before attempt `attempt + 1`: the server's `retry-after` when given, else 1, 2, 4,
/// 8 s; capped at [`RETRY_WAIT_MAX`].
pub fn retry_wait(attempt: u32, err: &ModelError) -> Duration {
    let asked = match err {
        ModelError::Status { retry_after_s: Some(s), .. } => Some(Duration::from_secs(*s)),
        _ => None,
    };
    asked.unwrap_or(Duration::from_secs(1 << attempt.min(5))).min(RETRY_WAIT_MAX)
}

/// Calls the provider, retrying rate limits, overload, server errors and broken connections with
/// backoff — but only while nothing has been streamed yet (text already shown is not repeated).
/// `pause` waits between attempts and returns true if the user stopped meanwhile (production:
/// [`pause_or_cancel`], so a stop during a backoff is immediate); it is also how the turn learns
/// about the retry.
pub fn call_with_retries(
    provider: &mut dyn Provider,
    req: &Request<'_>,
    on_event: &mut dyn FnMut(StreamEvent),
    pause: &mut dyn FnMut(u32, &ModelError, Duration) -> bool,
    cancel: &Cancel,
) -> Result<Response, ModelError> {
    let mut attempt = 0;
    loop {
        let mut streamed = false;
        let res = provider.call(
            req,
            &mut |ev| {
                streamed = true;
                on_event(ev)
            },
            cancel,
        );
        match res {
            Err(e) if cancel.is_cancelled() => {
                log::debug!("model call ended by stop ({e})");
                return Err(ModelError::Cancelled);
            }
            Err(e) if e.retryable() && !streamed && attempt + 1 < ATTEMPTS_MAX => {
                let wait = retry_wait(attempt, &e);
                log::warn!("model call failed ({e}); retrying in {wait:?}");
                if pause(attempt + 1, &e, wait) {
                    return Err(ModelError::Cancelled);
                }
                attempt += 1;
            }
            other => return other,
        }
    }
}

/// Waits `d` unless cancelled first; true if cancelled.
pub fn pause_or_cancel(cancel: &Cancel, d: Duration) -> bool {
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    let _hook = cancel.on_cancel(move || {
        let _ = tx.send(());
    });
    rx.recv_timeout(d).is_ok() || cancel.is_cancelled()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agent::model::{Message, Stop};

    struct Scripted(Vec<Result<Response, ModelError>>, Vec<bool>);

    impl Provider for Scripted {
        fn name(&self) -> &'static str {
            "scripted"
        }
        fn call(
            &mut self,
            _: &Request<'_>,
            on_event: &mut dyn FnMut(StreamEvent),
            _: &Cancel,
        ) -> Result<Response, ModelError> {
            if self.1.remove(0) {
                on_event(StreamEvent::TextDelta("partial".into()));
            }
            self.0.remove(0)
        }
    }

    fn ok() -> Result<Response, ModelError> {
        Ok(Response { message: Message::assistant_text("done"), stop: Stop::EndTurn, usage: None })
    }

    fn status(s: u16, after: Option<u64>) -> Result<Response, ModelError> {
        Err(ModelError::Status { status: s, message: "x".into(), retry_after_s: after })
    }

    /// Runs with a pause that records the waits asked for instead of waiting.
    fn run(
        script: Vec<Result<Response, ModelError>>,
        streams: Vec<bool>,
    ) -> (Result<Response, ModelError>, Vec<Duration>) {
        let mut p = Scripted(script, streams);
        let req = Request { model: "m", system: "", messages: &[], tools: &[], max_tokens: 10 };
        let mut waits = Vec::new();
        let res = call_with_retries(
            &mut p,
            &req,
            &mut |_| {},
            &mut |_, _, w| {
                waits.push(w);
                false
            },
            &Cancel::default(),
        );
        (res, waits)
    }

    #[test]
    fn retry_waits_follow_retry_after_then_backoff() {
        assert_eq!(retry_wait(0, &status(429, Some(7)).unwrap_err()), Duration::from_secs(7));
        assert_eq!(retry_wait(0, &status(500, None).unwrap_err()), Duration::from_secs(1));
        assert_eq!(retry_wait(3, &status(500, None).unwrap_err()), Duration::from_secs(8));
        assert_eq!(retry_wait(0, &status(429, Some(3600)).unwrap_err()), RETRY_WAIT_MAX);
    }

    #[test]
    fn does_not_retry_client_errors_or_after_streaming() {
        let (res, waits) = run(vec![status(401, None), ok()], vec![false, false]);
        assert!(matches!(res, Err(ModelError::Status { status: 401, .. })));
        assert!(waits.is_empty());
        let (res, waits) = run(vec![status(529, None), ok()], vec![true, false]);
        assert!(matches!(res, Err(ModelError::Status { status: 529, .. })), "text already streamed");
        assert!(waits.is_empty());
    }

    #[test]
    fn retries_transient_failures_with_backoff() {
        let (res, waits) = run(
            vec![status(429, Some(3)), status(529, None), Err(ModelError::Transport("reset".into())), ok()],
            vec![false; 4],
        );
        assert_eq!(res.unwrap().message.text(), "done");
        assert_eq!(waits, [Duration::from_secs(3), Duration::from_secs(2), Duration::from_secs(4)]);
        let (res, waits) =
            run(vec![status(500, None); ATTEMPTS_MAX as usize], vec![false; ATTEMPTS_MAX as usize]);
        assert!(matches!(res, Err(ModelError::Status { status: 500, .. })), "gives up after {ATTEMPTS_MAX}");
        assert_eq!(waits.len() as u32, ATTEMPTS_MAX - 1);
    }

    #[test]
    fn a_stop_during_a_backoff_pause_ends_the_call_at_once() {
        let cancel = Cancel::default();
        let c2 = cancel.clone();
        let waiter = std::thread::spawn(move || pause_or_cancel(&c2, Duration::from_secs(3600)));
        cancel.cancel();
        assert!(waiter.join().unwrap(), "woke on cancel, not after an hour");
    }
}
