//! Native cost of the paywall's signature check: EIP-712 digest of the EIP-3009 message plus k256
//! recovery and comparison with `from` (the x402 specification's example payment).

use criterion::{criterion_group, criterion_main, Criterion};
use std::hint::black_box;
use x402_edge_paywall::evm::{decode_hex_0x, parse_bytes32, parse_uint256, recover_signer, Address, Eip712Domain, TransferWithAuthorization};

include!("../bench/spec_vector.rs");

fn verify(c: &mut Criterion) {
    let (from, separator, message, signature) = spec_example();
    c.bench_function("eip3009_verify", |b| {
        b.iter(|| {
            let digest = black_box(&message).digest(black_box(&separator));
            assert_eq!(recover_signer(&digest, black_box(&signature)), Ok(from));
        })
    });
    c.bench_function("eip712_digest", |b| b.iter(|| black_box(&message).digest(black_box(&separator))));
}

criterion_group!(benches, verify);
criterion_main!(benches);
