//! The shape every refusal reason shares: an x402 reason code and a readable message
//! ([`Invalid`]). Local payment verification ([`crate::x402::exact`]) and wallet sign-in
//! ([`crate::x402::siwx`]) return it; the gateway's one refusal type (`gateway::refusal::Refusal`)
//! carries it into the answer (the 402's `error`, `code: message`) and into the decision (the
//! code). Data only: it knows no HTTP status and no transport, so it depends on nothing in the
//! crate.

use std::fmt;

/// A refusal with its reason code (x402 §9, or this paywall's own: `payer_denied`, `pass_*`,
/// `siwx_*`) and a readable message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid {
    /// The reason code (snake_case), as decisions record it.
    pub reason: &'static str,
    pub message: String,
}

impl Invalid {
    pub fn new(reason: &'static str, message: impl Into<String>) -> Invalid {
        Invalid { reason, message: message.into() }
    }
}

/// `code: message`, as the 402's `error` field carries it.
impl fmt::Display for Invalid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.reason, self.message)
    }
}
