import { Miniflare } from 'miniflare';
import { startStandin, startBenchOrigin } from './standin.mjs';
const st = await startStandin(); const og = await startBenchOrigin();
const mf = new Miniflare({ host: '127.0.0.1', port: 0, modules: true, scriptPath: 'bench/.build/peer.js', compatibilityDate: '2026-07-30', compatibilityFlags: ['nodejs_compat'], cf: false,
  bindings: { ORIGIN_URL: og.url, FACILITATOR_URL: st.url, PAY_TO: '0x90F79bf6EB2c4f870365E785982E1f101E93b906' } });
const url = (await mf.ready).toString().replace(/\/$/, '');
const r = await fetch(url + '/weather'); console.log(r.status, [...r.headers.keys()]);
const pr = JSON.parse(Buffer.from(r.headers.get('payment-required'), 'base64')); console.log(JSON.stringify(pr.accepts[0]));
const f = await fetch(url + '/free'); console.log('free', f.status, await f.text());
await mf.dispose(); await st.stop(); await og.stop();
