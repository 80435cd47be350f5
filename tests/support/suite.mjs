// Registers the node:test hooks that start the local stack and the built Worker before a test
// file and stop them after it. Returns a context whose `stack` and `worker` are set by then.
// `stackOptions` go to startStack (e.g. {cdp: 'ed25519'}: a facilitator that requires CDP JWTs).
import { after, before } from 'node:test';
import { startStack, startWorker } from './stack.mjs';

export function useStackAndWorker(workerOptions = {}, stackOptions = {}) {
  const ctx = {};
  before(async () => {
    ctx.stack = await startStack(stackOptions);
    const extraBindings = { ...ctx.stack.workerBindings, ...workerOptions.extraBindings };
    ctx.worker = await startWorker({ originUrl: ctx.stack.origin.url, facilitatorUrl: ctx.stack.facilitator.url, payTo: ctx.stack.payTo, ...workerOptions, extraBindings });
  });
  after(async () => {
    await ctx.worker?.stop();
    await ctx.stack?.stop();
  });
  return ctx;
}
