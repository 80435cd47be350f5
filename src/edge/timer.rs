//! A timer future (`setTimeout`) that wakes whichever task polled it last. `worker::Delay` keeps
//! the waker of its first poll only; the entry point polls the pipeline once with a waker of its
//! own before handing it to the executor (see `fetch` in `edge/mod.rs`), so every future the
//! pipeline awaits must take the newest waker on each poll, as this one and `JsFuture` do.

use std::cell::RefCell;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use worker::wasm_bindgen::closure::Closure;
use worker::wasm_bindgen::JsCast;
use worker::{js_sys, web_sys};

#[derive(Default)]
struct State {
    fired: bool,
    waker: Option<Waker>,
}

/// Resolves once `duration` has passed. Dropping it clears the timeout.
pub struct Timer {
    millis: i32,
    state: Rc<RefCell<State>>,
    armed: Option<(Closure<dyn FnMut()>, i32)>,
}

impl Timer {
    pub fn new(duration: Duration) -> Timer {
        Timer { millis: i32::try_from(duration.as_millis()).unwrap_or(i32::MAX), state: Rc::default(), armed: None }
    }
}

impl Future for Timer {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        {
            let mut state = self.state.borrow_mut();
            if state.fired {
                return Poll::Ready(());
            }
            state.waker = Some(cx.waker().clone());
        }
        if self.armed.is_none() {
            let state = Rc::clone(&self.state);
            let closure = Closure::wrap_assert_unwind_safe(Box::new(move || {
                let waker = {
                    let mut s = state.borrow_mut();
                    s.fired = true;
                    s.waker.take()
                };
                if let Some(w) = waker {
                    w.wake();
                }
            }) as Box<dyn FnMut()>);
            let global: web_sys::WorkerGlobalScope = js_sys::global().unchecked_into();
            match global.set_timeout_with_callback_and_timeout_and_arguments_0(closure.as_ref().unchecked_ref(), self.millis) {
                Ok(id) => self.armed = Some((closure, id)),
                // No timer: resolve now rather than never (the caller treats it as a timeout).
                Err(_) => return Poll::Ready(()),
            }
        }
        Poll::Pending
    }
}

impl Drop for Timer {
    fn drop(&mut self) {
        if let Some((_, id)) = &self.armed {
            if !self.state.borrow().fired {
                let global: web_sys::WorkerGlobalScope = js_sys::global().unchecked_into();
                global.clear_timeout_with_handle(*id);
            }
        }
    }
}
