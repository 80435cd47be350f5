//! What an isolate derives from its configuration and keeps: each route's 402 challenge layouts,
//! the `/.well-known/x402` document and the payment context's JWK Set. The configuration is data
//! ([`crate::config`]); these are HTTP artifacts built from it on first use, so they live in the isolate's state
//! ([`IsolateState::derived`](super::IsolateState)), each set tied to the configuration it was
//! built from.

use std::cell::{OnceCell, RefCell};
use std::rc::{Rc, Weak};

use crate::config::{Config, Route};
use crate::discovery::WellKnown;
use crate::x402::ChallengeLayout;

/// The derived state of every configuration this isolate serves (on the edge: the Worker's and,
/// for a moment at start-up, the warm-up's), found by the configuration's identity. An entry
/// holds a [`Weak`] reference, so a configuration's allocation is never reused while its entry
/// exists; entries of dropped configurations are removed when a new one is added.
#[derive(Debug, Default)]
pub struct Derived(RefCell<Vec<(Weak<Config>, Rc<ConfigState>)>>);

impl Derived {
    /// Most configurations kept at once (entries of live configurations beyond it are dropped,
    /// oldest first, and rebuilt on use).
    pub const MAX: usize = 8;

    /// The state derived from `config`, created empty on first use.
    pub fn of(&self, config: &Rc<Config>) -> Rc<ConfigState> {
        let ptr = Rc::as_ptr(config);
        if let Some((_, state)) = self.0.borrow().iter().find(|(c, _)| std::ptr::eq(c.as_ptr(), ptr)) {
            return Rc::clone(state);
        }
        let state = Rc::new(ConfigState::new(config));
        let mut entries = self.0.borrow_mut();
        entries.retain(|(c, _)| c.strong_count() > 0);
        if entries.len() >= Self::MAX {
            entries.remove(0);
        }
        entries.push((Rc::downgrade(config), Rc::clone(&state)));
        state
    }
}

/// What one isolate built from one configuration.
#[derive(Debug)]
pub struct ConfigState {
    /// Each route's challenge layouts, in configuration order.
    layouts: Vec<ChallengeLayouts>,
    /// The discovery document, built on its first request.
    well_known: OnceCell<WellKnown>,
    /// The payment context's JWK Set, built on its first request (`None` without a key).
    jwks: OnceCell<Option<WellKnown>>,
}

impl ConfigState {
    fn new(config: &Config) -> ConfigState {
        ConfigState { layouts: config.routes.iter().map(|_| ChallengeLayouts::default()).collect(), well_known: OnceCell::new(), jwks: OnceCell::new() }
    }

    /// The challenge layouts of `config.routes[index]`.
    pub fn layouts(&self, index: usize) -> Option<&ChallengeLayouts> {
        self.layouts.get(index)
    }

    /// The challenge layouts of `route`, one of `config.routes`.
    pub fn route_layouts(&self, config: &Config, route: &Route) -> Option<&ChallengeLayouts> {
        config.routes.iter().position(|r| std::ptr::eq(r, route)).and_then(|i| self.layouts(i))
    }

    /// The `/.well-known/x402` document of `config` (the configuration this state was derived
    /// from), built on first use.
    pub fn well_known(&self, config: &Config) -> &WellKnown {
        self.well_known.get_or_init(|| WellKnown::for_config(config))
    }

    /// The JWK Set with the public key of `config`'s `PAYMENT_CONTEXT_KEY`, served at
    /// [`crate::payment_context::JWKS_PATH`] like the discovery document; `None` without a key.
    pub fn jwks(&self, config: &Config) -> Option<&WellKnown> {
        self.jwks.get_or_init(|| config.payment_context.as_ref().map(|k| WellKnown::document(crate::payment_context::JWKS_PATH, k.jwks()))).as_ref()
    }
}

/// The route's 402 challenges (see [`crate::x402::ChallengeLayout`]), filled in on first use: one
/// per method with a challenge of its own (`Some(method)`: a method the configuration gives a
/// discovery extension) and one (`None`) that every other method shares, since their challenges
/// are the same bytes. So it holds at most the configured methods plus one entry, whatever
/// methods clients invent.
#[derive(Debug, Clone, Default)]
pub struct ChallengeLayouts(RefCell<Vec<(Option<http::Method>, Rc<ChallengeLayout>)>>);

impl ChallengeLayouts {
    /// The layout under `key`, built with `build` the first time (`None`: not built, not kept).
    pub fn get_or_build(&self, key: Option<&http::Method>, build: impl FnOnce() -> Option<ChallengeLayout>) -> Option<Rc<ChallengeLayout>> {
        if let Some((_, l)) = self.0.borrow().iter().find(|(m, _)| m.as_ref() == key) {
            return Some(Rc::clone(l));
        }
        let layout = Rc::new(build()?);
        self.0.borrow_mut().push((key.cloned(), Rc::clone(&layout)));
        Some(layout)
    }

    /// How many layouts are held.
    pub fn len(&self) -> usize {
        self.0.borrow().len()
    }

    /// Whether none is held yet.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::warm_up_vars;

    fn config() -> Rc<Config> {
        Rc::new(Config::from_vars(&warm_up_vars()).unwrap())
    }

    #[test]
    fn each_configuration_has_its_own_state_and_a_dropped_one_is_forgotten() {
        let derived = Derived::default();
        let (a, b) = (config(), config());
        let state = derived.of(&a);
        assert!(Rc::ptr_eq(&state, &derived.of(&a)), "found again");
        assert!(!Rc::ptr_eq(&state, &derived.of(&b)), "an equal configuration at another address has its own");
        assert!(Rc::ptr_eq(&state, &derived.of(&a)), "the first is kept while another is served (the start-up warm-up)");
        assert_eq!(state.layouts(0).map(ChallengeLayouts::len), Some(0));
        assert_eq!(state.layouts(1).map(ChallengeLayouts::len), None, "one entry per route");
        drop(b);
        let _ = derived.of(&config());
        assert_eq!(derived.0.borrow().len(), 2, "the dropped configuration's entry is removed when one is added");
    }
}
