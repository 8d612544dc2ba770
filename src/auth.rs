//! Authentication of multi-host peers before any payload is decoded: HMAC-SHA256
//! challenge-response over the run's shared token.
//!
//! Mutual: each side sends a fresh random nonce and the other answers HMAC(token, role || nonce).
//! The role label (client / server) differs per direction, so a peer cannot reflect a challenge
//! back to its sender; comparison is constant-time. The token never crosses the wire.

use hmac::{Hmac, Mac};
use sha2::Sha256;

pub const NONCE_LEN: usize = 32;
pub const TOKEN_LEN: usize = 32;
/// Label of proofs made by connecting peers (bridges, a remote main).
pub const ROLE_CLIENT: &[u8] = b"pytest-mproc client v1";
/// Label of proofs made by the coordinator that accepted the connection.
pub const ROLE_SERVER: &[u8] = b"pytest-mproc server v1";

type HmacSha256 = Hmac<Sha256>;

fn mac(token: &[u8], role: &[u8], nonce: &[u8]) -> HmacSha256 {
    let mut m = HmacSha256::new_from_slice(token).expect("HMAC takes keys of any length");
    m.update(&(role.len() as u32).to_le_bytes());
    m.update(role);
    m.update(nonce);
    m
}

fn random<const N: usize>() -> [u8; N] {
    let mut b = [0u8; N];
    getrandom::getrandom(&mut b).expect("the OS random source is available");
    b
}

/// A fresh challenge.
pub fn new_nonce() -> [u8; NONCE_LEN] {
    random()
}

/// A fresh random run token (printed by the main for manual multi-host runs).
pub fn random_token() -> [u8; TOKEN_LEN] {
    random()
}

/// The answer to `nonce` for a peer acting as `role`.
pub fn prove(token: &[u8], role: &[u8], nonce: &[u8]) -> Vec<u8> {
    mac(token, role, nonce).finalize().into_bytes().to_vec()
}

/// Checks an answer in constant time.
pub fn verify(token: &[u8], role: &[u8], nonce: &[u8], proof: &[u8]) -> bool {
    mac(token, role, nonce).verify_slice(proof).is_ok()
}

/// Parses a token given as hex (e.g. from PTMPROC_AUTH_TOKEN), with a one-line error.
pub fn token_from_hex(s: &str) -> Result<Vec<u8>, String> {
    let s = s.trim();
    if s.is_empty() || !s.len().is_multiple_of(2) {
        return Err(format!("auth token must be an even number of hex digits, got {} characters", s.len()));
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).map_err(|_| format!("auth token is not hex near position {i}")))
        .collect()
}

pub fn token_to_hex(t: &[u8]) -> String {
    t.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn right_token_passes_wrong_token_and_reflection_fail() {
        let token = random_token();
        let nonce = new_nonce();
        let p = prove(&token, ROLE_CLIENT, &nonce);
        assert!(verify(&token, ROLE_CLIENT, &nonce, &p));
        assert!(!verify(&random_token(), ROLE_CLIENT, &nonce, &p), "wrong token");
        assert!(!verify(&token, ROLE_SERVER, &nonce, &p), "a proof for one role is no proof for the other");
        assert!(!verify(&token, ROLE_CLIENT, &new_nonce(), &p), "a proof answers one nonce only");
        assert!(!verify(&token, ROLE_CLIENT, &nonce, &p[..31]), "truncated proof");
    }

    #[test]
    fn hex_roundtrip_and_errors() {
        let t = random_token();
        assert_eq!(token_from_hex(&token_to_hex(&t)).unwrap(), t.to_vec());
        assert!(token_from_hex("abc").unwrap_err().contains("even number"));
        assert!(token_from_hex("zz").unwrap_err().contains("not hex"));
        assert!(token_from_hex("").is_err());
    }

    #[test]
    fn nonces_differ() {
        assert_ne!(new_nonce(), new_nonce());
    }
}
