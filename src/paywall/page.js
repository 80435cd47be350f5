// The paywall page's script (src/paywall/page.js, inlined by src/paywall/mod.rs and allowed by the
// page's CSP by its SHA-256, which build.rs recomputes on every change).
// Pays the x402 challenge this page shows with the browser's injected EIP-1193 wallet:
// eth_requestAccounts; wallet_switchEthereumChain (wallet_addEthereumChain for known networks);
// eth_signTypedData_v4 of the EIP-3009 TransferWithAuthorization for the chosen requirement; the
// same request again with the x402 v2 PAYMENT-SIGNATURE header (same origin, cookies applied, so
// a pass's x402_pass cookie keeps working). Then shows the content, or says what went wrong.
// Reads its data from the JSON data element #x402-data; writes text only, never markup.
'use strict';
(() => {
  const $ = (id) => document.getElementById(id);
  const D = JSON.parse($('x402-data').textContent);
  const PR = D.paymentRequired;
  // Seconds to add to this device's clock to get the paywall's (the authorization's window is
  // checked against the paywall's clock).
  const skew = D.now - Math.floor(Date.now() / 1000);
  const now = () => Math.floor(Date.now() / 1000) + skew;
  const localTime = (unix) => new Date((unix - skew) * 1000).toLocaleString();
  const url = location.href.split('#')[0];
  const pay = $('pay');
  const button = $('pay-button');
  const status = $('status');
  const result = $('result');
  const qr = $('qr');
  const DOMAIN_TYPE = [
    { name: 'name', type: 'string' },
    { name: 'version', type: 'string' },
    { name: 'chainId', type: 'uint256' },
    { name: 'verifyingContract', type: 'address' },
  ];
  const TRANSFER_TYPE = [
    { name: 'from', type: 'address' },
    { name: 'to', type: 'address' },
    { name: 'value', type: 'uint256' },
    { name: 'validAfter', type: 'uint256' },
    { name: 'validBefore', type: 'uint256' },
    { name: 'nonce', type: 'bytes32' },
  ];
  let busy = false;
  // The signed payment being sent: {header, from, info, authorization, maybePaid}. Kept after an
  // unknown outcome or a paid but undelivered answer so that the same payment can be retried
  // (never a second one); maybePaid: an answer said it was, or may have been, settled.
  let pending = null;

  const el = (tag, className, content) => {
    const e = document.createElement(tag);
    if (className) e.className = className;
    if (content !== undefined) e.textContent = content;
    return e;
  };

  // Replaces the status: a title, lines of text, and optionally one action button.
  function say(kind, title, lines = [], action) {
    status.replaceChildren(el('strong', '', title));
    status.className = `status ${kind}`;
    status.dataset.kind = kind;
    for (const line of lines) if (line) status.append(el('p', '', line));
    if (action) {
      const b = el('button', 'secondary', action.label);
      b.type = 'button';
      b.id = 'retry-button';
      b.addEventListener('click', action.run);
      status.append(b);
    }
  }

  const b64 = (s) => btoa(Array.from(new TextEncoder().encode(s), (b) => String.fromCharCode(b)).join(''));
  function decode(header) {
    if (!header) return null;
    try {
      return JSON.parse(new TextDecoder().decode(Uint8Array.from(atob(header), (c) => c.charCodeAt(0))));
    } catch (_) {
      return null;
    }
  }
  const randomNonce = () => `0x${Array.from(crypto.getRandomValues(new Uint8Array(32)), (b) => b.toString(16).padStart(2, '0')).join('')}`;
  // Some wallets (hardware) return v as 0/1; the paywall wants 27/28.
  function normalizeV(sig) {
    if (typeof sig !== 'string' || sig.length !== 132) return sig;
    const v = parseInt(sig.slice(130), 16);
    return v < 27 ? sig.slice(0, 130) + (v + 27).toString(16) : sig;
  }
  const rejected = (e) => !!e && (e.code === 4001 || e.code === 'ACTION_REJECTED');
  const why = (e) => (e && (e.message || String(e))) || 'unknown error';

  function chosen() {
    const picked = document.querySelector('input[name="offer"]:checked');
    const i = picked ? Number(picked.value) : 0;
    return { req: PR.accepts[i], info: D.offers[i] };
  }

  // The phone wallet deep link as a QR code (SVG built in the DOM by lean-qr: no markup, no style
  // attribute, nothing the CSP must allow). A link too long for a code keeps only the links.
  function drawQr() {
    const box = $('qr-code');
    qr.hidden = false;
    if (!D.walletLink || box.firstChild || typeof LeanQR === 'undefined') return;
    try {
      const svg = LeanQR.toSvg(LeanQR.generate(D.walletLink, { minCorrectionLevel: LeanQR.correction.M }), document, { on: '#000', off: '#fff', width: 168, height: 168 });
      svg.setAttribute('role', 'img');
      svg.setAttribute('aria-label', 'QR code: opens this page in a phone wallet');
      box.append(svg);
      box.hidden = false;
    } catch (_) {}
  }

  function noWallet() {
    drawQr();
    say('error', 'No wallet found in this browser', [
      'Scan the QR code with your phone to pay from a mobile wallet, or install a browser wallet extension and reload this page.',
      'Nothing was paid.',
    ]);
  }

  async function switchChain(eth, info) {
    const want = `0x${info.chainId.toString(16)}`;
    const current = async () => parseInt(await eth.request({ method: 'eth_chainId' }), 16);
    if ((await current()) === info.chainId) return;
    try {
      await eth.request({ method: 'wallet_switchEthereumChain', params: [{ chainId: want }] });
    } catch (e) {
      const unknownChain = e && (e.code === 4902 || e.data?.originalError?.code === 4902);
      if (!unknownChain || !info.addChain) throw e;
      await eth.request({ method: 'wallet_addEthereumChain', params: [info.addChain] });
      if ((await current()) !== info.chainId) await eth.request({ method: 'wallet_switchEthereumChain', params: [{ chainId: want }] });
    }
    if ((await current()) !== info.chainId) throw new Error(`the wallet is still on another network`);
  }

  async function start() {
    if (busy) return;
    const eth = window.ethereum;
    if (!eth) return noWallet();
    const { req, info } = chosen();
    if (!info.chainId) return say('error', 'This page cannot pay on this network', [`${req.network} is not an EVM network. Pay from code as explained below.`]);
    if (req.scheme !== 'exact') return say('error', 'This price is metered', [`It is paid with a Permit2 authorization of at most ${info.price} (x402 "${req.scheme}"), which this page does not sign. Pay from code as explained below.`]);
    busy = true;
    button.disabled = true;
    result.hidden = true;
    try {
      say('info', 'Connecting to your wallet…', ['Approve the connection in your wallet.']);
      let from;
      try {
        from = (await eth.request({ method: 'eth_requestAccounts' }))?.[0];
      } catch (e) {
        if (rejected(e)) return say('error', 'You declined the connection in your wallet', ['Nothing was paid. Press "Pay with wallet" to try again.']);
        return say('error', 'Your wallet could not connect', [why(e), 'Nothing was paid.']);
      }
      if (!from) return say('error', 'Your wallet shared no account', ['Unlock your wallet and try again. Nothing was paid.']);

      say('info', `Switching your wallet to ${info.network}…`, ['Approve the network switch in your wallet.']);
      try {
        await switchChain(eth, info);
      } catch (e) {
        return say('error', `Your wallet is on the wrong network`, [
          rejected(e) ? `You declined switching to ${info.network}.` : `It did not switch to ${info.network} (chain id ${info.chainId}): ${why(e)}.`,
          `Switch your wallet to ${info.network} and press "Pay with wallet" again. Nothing was signed and nothing was paid.`,
        ]);
      }

      const t = now();
      const authorization = {
        from,
        to: req.payTo,
        value: req.amount,
        validAfter: String(t - 600),
        validBefore: String(t + req.maxTimeoutSeconds),
        nonce: randomNonce(),
      };
      const typedData = {
        types: { EIP712Domain: DOMAIN_TYPE, TransferWithAuthorization: TRANSFER_TYPE },
        primaryType: 'TransferWithAuthorization',
        domain: { name: req.extra.name, version: req.extra.version, chainId: info.chainId, verifyingContract: req.asset },
        message: authorization,
      };
      say('info', 'Sign the payment in your wallet…', [`Your wallet asks you to authorize ${info.price} to ${req.payTo} on ${info.network}.`]);
      let signature;
      try {
        signature = await eth.request({ method: 'eth_signTypedData_v4', params: [from, JSON.stringify(typedData)] });
      } catch (e) {
        if (rejected(e)) return say('error', 'You declined the payment in your wallet', ['Nothing was signed and nothing was paid.']);
        return say('error', 'Your wallet could not sign the payment', [why(e), 'Nothing was paid.']);
      }
      const payload = { x402Version: 2, resource: PR.resource, accepted: req, payload: { signature: normalizeV(signature), authorization } };
      pending = { header: b64(JSON.stringify(payload)), from, info, authorization };
      await send();
    } finally {
      busy = false;
      button.disabled = false;
    }
  }

  // Sends the pending payment and reads the answer. The page says "nothing was paid" only when
  // the answer shows that this payment was not sent to settlement (a challenge, a refusal before
  // settlement, or the paywall saying so); a PAYMENT-RESPONSE with success: true always means paid.
  async function send() {
    const p = pending;
    if (!p) return;
    say('info', 'Paying…', ['The payment settles on chain before the content is released; this takes a few seconds.']);
    let res;
    try {
      res = await fetch(url, { headers: { 'PAYMENT-SIGNATURE': p.header }, credentials: 'same-origin', cache: 'no-store', redirect: 'manual' });
    } catch (e) {
      return unknown(p, null, `The connection broke before an answer arrived (${why(e)}).`);
    }
    if (res.ok || res.type === 'opaqueredirect') return delivered(res, p);
    const body = await res.text().catch(() => '');
    let json = null;
    try {
      json = JSON.parse(body);
    } catch (_) {}
    const error = (json && typeof json.error === 'string' && json.error) || '';
    const message = (json && typeof json.message === 'string' && json.message) || '';
    const challenge = decode(res.headers.get('payment-required'));
    const settlement = decode(res.headers.get('payment-response') || res.headers.get('x-payment-response'));
    const retry = { label: 'Retry the same payment', run: send };
    const until = `before ${localTime(Number(p.authorization.validBefore))}`;
    // Settled, but the content did not come with it (a settle-first route whose origin failed,
    // or a redelivery that failed again): the same authorization retrieves it.
    if (settlement && settlement.success === true) {
      p.maybePaid = true;
      return say('error', 'Paid, but the content did not arrive', [
        `${p.info.price} paid from ${p.from} on ${p.info.network}${settlement.transaction ? ` (transaction ${settlement.transaction})` : ''}.`,
        error === 'origin_unavailable' && message ? message : `The service answered ${res.status} after your payment settled.`,
        error === 'origin_unavailable' ? '' : body.slice(0, 300),
        `Retry the same payment ${until}: you get the content without paying again. Do not sign a new payment for this page meanwhile.`,
      ], retry);
    }
    if (res.status === 402 && challenge) return refused(challenge.error || error, p);
    if (res.status === 402 && settlement) return settlementRefused(settlement.errorReason || error, message, p);
    if (res.status === 402) {
      // Neither a challenge nor a settlement answer from the paywall: the service's own 402,
      // answered before any settlement (the paywall settles only answers below 400).
      pending = null;
      return say('error', 'The service answered 402 Payment Required itself', [
        'Your payment was not settled: the paywall settles only when the service answers successfully, and it did not.',
        body.slice(0, 300),
      ]);
    }
    if (error === 'settlement_outcome_unknown') return unknown(p, json.payment, message);
    if (error === 'payment_in_flight') {
      return say('error', 'This payment is already being processed', ['Another request is using this authorization right now. Wait a few seconds, then retry it.'], retry);
    }
    if (error === 'ledger_unavailable') return say('error', 'The paywall is briefly unavailable', [message, 'Retry the same payment in a moment: it is never charged twice.'], retry);
    if (error === 'payment_for_other_resource') return say('error', 'This payment was for another page', [message]);
    if (error === 'origin_unavailable') {
      return say('error', 'The service could not be reached', [message, `Retry the same payment ${until}: it is charged only when the service answers.`], retry);
    }
    if (error === 'facilitator_unavailable') {
      pending = null;
      return say('error', 'The payment could not be checked', [message, 'Nothing was charged. Press "Pay with wallet" to try again.']);
    }
    if (res.status >= 500) {
      // Not an answer this page knows (perhaps the platform's own error page): the page cannot
      // tell whether the payment was sent, and a retry of the same payment is never charged twice.
      p.maybePaid = true;
      return say('error', `The service answered ${res.status}`, [
        'This answer carries no settlement, and a payment settles only when the service answers successfully.',
        `Retry the same payment ${until}: if it was charged after all, you get the content without paying again.`,
        body.slice(0, 300),
      ], retry);
    }
    pending = null;
    return say('error', `The service answered ${res.status}`, ['Nothing was charged: this answer carries no settlement, and a payment settles only when the service answers successfully.', body.slice(0, 300)]);
  }

  // A 402 with a fresh challenge: refused before settlement, or this authorization was settled
  // and its response already delivered to an earlier request.
  function refused(reason, p) {
    pending = null;
    const r = String(reason || 'refused');
    const spent = /already settled \(transaction ([^)]*)\)/.exec(r);
    if (spent) {
      return say('error', 'Already paid: the content went to an earlier request', [
        `This payment of ${p.info.price} from ${p.from} on ${p.info.network} was settled${spent[1] ? ` in transaction ${spent[1]}` : ''}, and its response was already delivered to an earlier request (another tab or client, or an answer that never reached this page).`,
        'It is not charged again, and it cannot be delivered twice: to see the content here, press "Pay with wallet" to sign a new payment.',
      ]);
    }
    if (/already holds this authorization/i.test(r)) {
      return say('error', 'This authorization was presented with another signature', [
        'The paywall holds this payment (same payer and nonce) from another request, under a different signature; only that request can receive its content. Check your wallet’s history before paying again.',
        `(${r})`,
      ]);
    }
    // A retry of a payment that may have been settled (its outcome was unknown, or it was paid
    // and not delivered) never claims that nothing was paid.
    const none = p.maybePaid
      ? `This authorization was sent for settlement earlier; check your wallet’s history for a transfer of ${p.info.price} to ${p.authorization.to} before paying again.`
      : 'Nothing was paid.';
    if (/insufficient/i.test(r)) {
      return say('error', 'Insufficient funds', [`The wallet ${p.from} does not hold ${p.info.price} on ${p.info.network}.`, p.maybePaid ? none : 'Nothing was paid. Add funds to this wallet or pay from another one.', `(${r})`]);
    }
    if (/nonce/i.test(r)) return say('error', 'This authorization was already used', [p.maybePaid ? none : 'Nothing more was paid. Press "Pay with wallet" to sign a new one.', `(${r})`]);
    if (/valid_(before|after)/i.test(r)) return say('error', 'The payment’s time window was refused', [p.maybePaid ? none : 'Check this device’s clock, then pay again. Nothing was paid.', `(${r})`]);
    if (/signature/i.test(r)) return say('error', 'The signature did not verify', [`Your wallet signed for another account, network or token. ${none}`, `(${r})`]);
    if (/payer_denied/.test(r)) return say('error', 'This wallet is not accepted here', [none]);
    return say('error', 'The payment was refused', [r, none]);
  }

  // A 402 with a PAYMENT-RESPONSE whose success is false: the nonce was used on chain by a
  // transaction that did not pay this page (the authorization is spent), or the facilitator
  // refused to settle. A refusal may follow a broadcast (the paywall then keeps its record), so the
  // same authorization is kept: retrying it reconciles the payment and never charges twice.
  function settlementRefused(reason, message, p) {
    const r = String(reason || 'settlement_failed');
    if (/nonce/i.test(r)) {
      pending = null;
      return say('error', 'Settlement refused', [
        `This authorization was used on chain by a transaction that did not pay for this page (${r}), so it cannot settle here and the content is withheld. Sign a new payment.`,
        message,
      ]);
    }
    p.maybePaid = true;
    return say('error', 'Settlement refused', [
      /insufficient/i.test(r) ? `The wallet ${p.from} does not hold ${p.info.price} on ${p.info.network}.` : '',
      `The facilitator refused to settle this payment (${r}); the content is withheld.`,
      `If the refusal came after its transaction was sent to the chain, retrying the same payment before ${localTime(Number(p.authorization.validBefore))} reconciles it: you get the content if it was paid, and it is never charged twice.`,
    ], { label: 'Retry the same payment', run: send });
  }

  // 502/504 naming the payment, or a broken connection: it may or may not have been settled.
  function unknown(p, payment, message) {
    p.maybePaid = true;
    const who = payment || { payer: p.from, nonce: p.authorization.nonce, network: PR.accepts[0]?.network, amount: p.authorization.value };
    return say('error', 'The outcome of this payment is unknown', [
      message,
      'It may or may not have been executed on chain; the content is withheld.',
      `Payment: payer ${who.payer}, nonce ${who.nonce}, ${who.amount} atomic units on ${who.network}.`,
      `What to do: retry the same payment before ${localTime(Number(p.authorization.validBefore))}. If it was settled you get the content without paying twice; if not, it is settled then. Do not sign a new payment for this page meanwhile.`,
    ], { label: 'Retry the same payment', run: send });
  }

  async function delivered(res, p) {
    pending = null;
    const settled = decode(res.headers.get('payment-response') || res.headers.get('x-payment-response'));
    const passUntil = Number(res.headers.get('x402-pass-expires')) || 0;
    button.hidden = true;
    say('ok', 'Paid', [
      `${p.info.price} paid from ${p.from} on ${p.info.network}.`,
      settled?.transaction ? `Transaction ${settled.transaction}` : '',
      passUntil ? `Your pass is active until ${localTime(passUntil)}${D.pass ? ` (${D.pass})` : ''}: in this browser, those pages open without paying again.` : '',
    ]);
    await show(res);
  }

  // Shows the paid content as its type says: JSON pretty-printed, HTML in a sandboxed frame (no
  // scripts), other text as text, anything else as a download.
  async function show(res) {
    const type = (res.headers.get('content-type') || '').split(';')[0].trim().toLowerCase();
    result.replaceChildren(el('h2', '', 'Your content'));
    if (res.type === 'opaqueredirect') {
      const a = el('a', '', 'The service answered with a redirect: open this page again to follow it.');
      a.href = url;
      result.append(a);
    } else if (type === 'application/json' || type.endsWith('+json')) {
      const body = await res.text();
      let pretty = body;
      try {
        pretty = JSON.stringify(JSON.parse(body), null, 2);
      } catch (_) {}
      result.append(el('pre', 'content', pretty));
    } else if (type === 'text/html') {
      const frame = el('iframe', 'content');
      frame.setAttribute('sandbox', '');
      frame.title = 'Paid content';
      frame.srcdoc = await res.text();
      result.append(frame);
    } else if (!type || type.startsWith('text/')) {
      result.append(el('pre', 'content', await res.text()));
    } else {
      const blob = await res.blob();
      const a = el('a', 'download', `Download the content (${type}, ${blob.size} bytes)`);
      a.href = URL.createObjectURL(blob);
      const last = new URL(url).pathname.split('/').filter(Boolean).pop() || 'content';
      // A path escape that is not UTF-8 (/files/r%E9sum%E9.pdf) makes decodeURIComponent throw:
      // the paid content is still offered, under its raw name.
      try { a.download = decodeURIComponent(last); } catch { a.download = last; }
      result.append(a);
    }
    result.hidden = false;
  }

  pay.hidden = false;
  button.addEventListener('click', start);
  if (window.ethereum) {
    qr.hidden = true;
  } else {
    drawQr();
    say('info', 'No wallet found in this browser', ['Scan the QR code with your phone to pay from a mobile wallet, or install a browser wallet and reload.']);
  }
  // Wallets that inject late announce themselves with this event.
  window.addEventListener('ethereum#initialized', () => {
    qr.hidden = true;
    status.replaceChildren();
  }, { once: true });
})();
