//! Authentication cost: verifying an OIDC bearer token (RS256, ES256, EdDSA) with the gateway's
//! `Verifier`, keys cached (as after the first request), for a token seen before (the verified
//! token cache) and for a new one (signature checked), against the API-key path (one keyed
//! hash).
//!
//! `cargo run --release -p tenantgate-bench --bin auth`

use anyhow::Result;
use hdrhistogram::Histogram;
use std::time::Instant;
use tenantgate_gateway::config::OidcConfig;
use tenantgate_gateway::identity::keys::ServerSecret;
use tenantgate_gateway::identity::oidc::Verifier;

fn hist() -> Histogram<u64> {
    #[expect(clippy::expect_used, reason = "constant, valid bounds")]
    Histogram::new_with_bounds(1, 60_000_000, 3).expect("histogram bounds")
}

fn data(name: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../tenantgate-gateway/tests/data/oidc")
        .join(name)
}

fn print(name: &str, h: &Histogram<u64>) {
    println!(
        "{name:<28} p50 {:>7.1} us   p99 {:>7.1} us",
        h.value_at_quantile(0.5) as f64 / 1000.0,
        h.value_at_quantile(0.99) as f64 / 1000.0
    );
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<()> {
    let issuer = "https://idp.bench";
    // The test keys' public JWKs (a map by name) as a JWKS document.
    let by_name: serde_json::Map<String, serde_json::Value> =
        serde_json::from_slice(&std::fs::read(data("jwks.json"))?)?;
    let dir = tempfile::tempdir()?;
    let jwks = dir.path().join("jwks.json");
    let keys: Vec<_> = by_name.into_iter().map(|(_, v)| v).collect();
    std::fs::write(&jwks, serde_json::json!({ "keys": keys }).to_string())?;
    let cfg = OidcConfig {
        issuer: issuer.into(),
        audience: "tenantgate".into(),
        jwks_file: Some(jwks),
        ..Default::default()
    };
    let verifier = Verifier::new(&[cfg]);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs();
    let claims = serde_json::json!({"iss": issuer, "aud": "tenantgate", "sub": "u1",
        "tenant": "acme", "exp": now + 3600, "roles": ["member"]});
    use jsonwebtoken::{Algorithm, EncodingKey, Header};
    for (key, alg) in [
        ("rsa1", Algorithm::RS256),
        ("ec1", Algorithm::ES256),
        ("ed1", Algorithm::EdDSA),
    ] {
        let pem = std::fs::read(data(&format!("{key}.pem")))?;
        let enc = match alg {
            Algorithm::ES256 => EncodingKey::from_ec_pem(&pem)?,
            Algorithm::EdDSA => EncodingKey::from_ed_pem(&pem)?,
            _ => EncodingKey::from_rsa_pem(&pem)?,
        };
        let mut h = Header::new(alg);
        h.kid = Some(key.into());
        let token = jsonwebtoken::encode(&h, &claims, &enc)?;
        verifier
            .verify(&token)
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        let mut lat = hist();
        for _ in 0..5000 {
            let t = Instant::now();
            let v = verifier.verify(&token).await;
            lat.record(t.elapsed().as_nanos() as u64)?;
            std::hint::black_box(v.is_ok());
        }
        print(&format!("OIDC token, {alg:?}, cached"), &lat);
        let mut lat = hist();
        for i in 0..2000 {
            // a fresh token each time: the signature is checked
            let mut c = claims.clone();
            c["jti"] = serde_json::json!(i);
            let token = jsonwebtoken::encode(&h, &c, &enc)?;
            let t = Instant::now();
            let v = verifier.verify(&token).await;
            lat.record(t.elapsed().as_nanos() as u64)?;
            std::hint::black_box(v.is_ok());
        }
        print(&format!("OIDC token, {alg:?}, new"), &lat);
    }
    let secret = ServerSecret::from_bytes([7; 32]);
    let mut lat = hist();
    for i in 0..100_000 {
        let t = Instant::now();
        let h = secret.hash_key(&format!("tgk_benchkey{i:040}"));
        lat.record(t.elapsed().as_nanos() as u64)?;
        std::hint::black_box(h);
    }
    print("API key (HMAC-SHA-256)", &lat);
    Ok(())
}
