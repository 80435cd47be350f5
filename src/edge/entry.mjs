// The Worker's entry module: what the runtime loads (scripts/build.sh bundles it with esbuild into
// build/index.js). It exports the module-worker `fetch` handler and the `PaymentLedger` Durable
// Object class (wrangler.toml's `LEDGER` binding), both calling the wasm through wasm-bindgen's
// JS bindings (`--target module`), which the build places beside this file as `./index.js`.
// The Durable Object class derives from `DurableObject` (`cloudflare:workers`), so that the
// Worker calls its methods through the stub as JS RPC (`stub.applyOp(json)`, one string each
// way) instead of `stub.fetch` with a `Request` and a `Response` around the JSON.
//
// Panic recovery. The release wasm is built with panic=abort: a Rust panic runs the `worker`
// crate's panic hook, which logs it and sets `criticalError` on the crate's shared state object
// (`__worker_init_state()`, also `globalThis.__worker_init_state`), then traps. The bindings are
// generated with `--experimental-reset-state-function` (the `__wbg_reset_state` export:
// instantiate the module afresh and reset the bindings' caches) and `--force-enable-abort-handler`
// (a trap marks the instance terminated and runs the `worker` crate's abort handler, which
// schedules that reset for the next call into the wasm). On top of that this module:
// - before each call, re-instantiates the wasm if the previous one broke it (`criticalError`),
//   logging "Reinitializing Wasm application" (tests/panic.test.mjs counts that line);
// - marks the instance broken when a call throws a `WebAssembly.RuntimeError` (a trap), and
//   when such an error reaches the global `error` event;
// - gives each Durable Object a wasm-side object of the current instance: after a reset the old
//   one points into the discarded instance, so it is constructed again with the same arguments.
// A panic after I/O (in a promise callback) is covered by the panic hook's `criticalError`.
//
// The `fetch` handler is a plain object: no `WorkerEntrypoint` class constructed per request, no
// proxies (those cost about 10 µs per request, docs/benchmarks.md).
import { DurableObject } from 'cloudflare:workers';
import * as wasm from './index.js';

// Longer stack traces in the panic and error logs (V8's default keeps 10 frames).
Error.stackTraceLimit = 100;

const state = wasm.__worker_init_state();

/** Re-instantiates the wasm if the previous call left it broken. */
function recoverIfBroken() {
  if (state.criticalError) {
    console.log('Reinitializing Wasm application');
    wasm.__wbg_reset_state();
    state.criticalError = false;
    state.instanceId++;
  }
}

/** Marks the instance broken if `error` is a trap (what a panic=abort panic ends in). */
function noteTrap(error) {
  if (error instanceof WebAssembly.RuntimeError) {
    console.error('Critical', error);
    state.criticalError = true;
  }
}

/** `call()` after recovery, marking a trap it throws (the error is rethrown as it is). */
function guarded(call) {
  recoverIfBroken();
  try {
    return call();
  } catch (error) {
    noteTrap(error);
    throw error;
  }
}

addEventListener('error', (event) => noteTrap(event.error));

/**
 * A Durable Object class around the wasm-bindgen class `Inner`, deriving from `DurableObject`:
 * the runtime constructs it with `(ctx, env)` and calls its methods (`applyOp` through RPC stubs,
 * `alarm`: every method of `Inner` except the bindings' own `free` and `__…`), each forwarded to
 * the wasm-side object of the current instance.
 */
function durableObject(Inner) {
  const methods = Object.getOwnPropertyNames(Inner.prototype).filter(
    (name) => name !== 'constructor' && name !== 'free' && !name.startsWith('__') && typeof Inner.prototype[name] === 'function',
  );
  return class extends DurableObject {
    #args;
    #inner;
    #instanceId;

    constructor(...args) {
      super(...args);
      this.#args = args;
      guarded(() => this.#current());
    }

    /** The wasm-side object, constructed again if the wasm was re-instantiated since. */
    #current() {
      if (this.#inner === undefined || this.#instanceId !== state.instanceId) {
        this.#inner = new Inner(...this.#args);
        this.#instanceId = state.instanceId;
      }
      return this.#inner;
    }

    static {
      for (const name of methods) {
        Object.defineProperty(this.prototype, name, {
          value(...args) {
            return guarded(() => this.#current()[name](...args));
          },
          writable: true,
          configurable: true,
        });
      }
    }
  };
}

export default {
  // What `guarded` does, written out: this runs on every request.
  fetch(request, env, ctx) {
    recoverIfBroken();
    try {
      return wasm.fetch(request, env, ctx);
    } catch (error) {
      noteTrap(error);
      throw error;
    }
  },
};

export const PaymentLedger = durableObject(wasm.PaymentLedger);
