// Registers the node:test hooks that start the local stack and the built Worker before a test
// file and stop them after it. Returns a context whose `stack` and `worker` are set by then.
import { after, before } from 'node:test';
import { startStack, startWorker } from './stack.mjs';

export function useStackAndWorker(workerOptions = {}) {
  const ctx = {};
  before(async () => {
    ctx.stack = await startStack();
    ctx.worker = await startWorker({ originUrl: ctx.stack.origin.url, facilitatorUrl: ctx.stack.facilitator.url, payTo: ctx.stack.payTo, ...workerOptions });
  });
  after(async () => {
    await ctx.worker?.stop();
    await ctx.stack?.stop();
  });
  return ctx;
}
