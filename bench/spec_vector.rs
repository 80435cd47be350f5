// The x402 specification's example payment, shared by the native (criterion) and wasm
// micro-benchmarks through `include!`: (from, domain separator, message, 65-byte signature).
fn spec_example() -> (Address, [u8; 32], TransferWithAuthorization, Vec<u8>) {
    let addr = |s: &str| Address::parse(s).unwrap_or(Address([0; 20]));
    let separator = Eip712Domain { name: "USDC".into(), version: "2".into(), chain_id: 84532, verifying_contract: addr("0x036CbD53842c5426634e7929541eC2318f3dCF7e") }.separator();
    let from = addr("0x857b06519E91e3A54538791bDbb0E22373e36b66");
    let message = TransferWithAuthorization {
        from,
        to: addr("0x209693Bc6afc0C5328bA36FaF03C514EF312287C"),
        value: parse_uint256("10000").unwrap_or_default(),
        valid_after: parse_uint256("1740672089").unwrap_or_default(),
        valid_before: parse_uint256("1740672154").unwrap_or_default(),
        nonce: parse_bytes32("0xf3746613c2d920b5fdabc0856f2aeb2d4f88ee6037b8cc5d04a71a4462f13480").unwrap_or_default(),
    };
    let signature = decode_hex_0x(
        "0x2d6a7588d6acca505cbf0d9a4a227e0c52c6c34008c8e8986a1283259764173608a2ce6496642e377d6da8dbbf5836e9bd15092f9ecab05ded3d6293af148b571c",
        65,
    )
    .unwrap_or_default();
    (from, separator, message, signature)
}
