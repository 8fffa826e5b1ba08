//! Credentials the gateway must refuse: none, garbage, tampered API keys, and JWTs forged every
//! known way (alg none, key confusion, edited claims, a foreign issuer's key, and with the
//! IdP's key when the run has it: expired, wrong audience, not yet valid).

use super::Ctx;
use crate::report::{Family, Verdict};
use crate::target::Cred;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use serde_json::{json, Value};

/// Routes a forged credential is tried on: a model call, the tenant API, the platform API.
const PROBES: [&str; 3] = ["/v1/models", "/tenant/v1/me", "/admin/v1/tenants"];

pub async fn run(c: &mut Ctx<'_>) -> anyhow::Result<()> {
    let v = c.victim;
    let mut forged: Vec<(String, Cred)> = vec![
        ("none".into(), Cred::None),
        ("garbage-bearer".into(), Cred::Bearer("not-a-key".into())),
        ("empty-bearer".into(), Cred::Bearer(String::new())),
        (
            "victim-key-last-char-flipped".into(),
            Cred::Bearer(flip_last(&v.admin_key)),
        ),
        (
            "victim-key-truncated".into(),
            Cred::Bearer(v.admin_key[..v.admin_key.len() - 4].to_owned()),
        ),
        (
            "victim-key-prefix-attacker-secret".into(),
            Cred::Bearer(splice(&v.admin_key, &c.attacker.admin_key)),
        ),
        (
            "victim-key-x-api-key-flipped".into(),
            Cred::XApiKey(flip_last(&v.admin_key)),
        ),
    ];
    if let Cred::Bearer(token) = c.platform {
        if let Some(jwt) = Jwt::parse(token) {
            forged.extend(jwt_forgeries(c, &jwt).await);
        } else {
            c.report.push(
                Family::Credential,
                "jwt-forgeries",
                Verdict::Skip("the platform credential is not a JWT".into()),
            );
        }
    }
    for (name, cred) in forged {
        for probe in PROBES {
            let a = c.t.get(probe, &cred).await?;
            let verdict = if a.status == 401 {
                Verdict::Pass
            } else {
                Verdict::Fail(format!("{probe} answered {} (expected 401)", a.status))
            };
            c.report
                .push(Family::Credential, format!("{name} {probe}"), verdict);
        }
    }
    Ok(())
}

fn flip_last(s: &str) -> String {
    let mut b = s.as_bytes().to_vec();
    if let Some(x) = b.last_mut() {
        *x = if *x == b'a' { b'b' } else { b'a' };
    }
    String::from_utf8(b).unwrap_or_default()
}

/// The victim's key up to its secret part, the attacker's secret after it.
fn splice(victim: &str, attacker: &str) -> String {
    let cut = victim.len() / 2;
    format!("{}{}", &victim[..cut], &attacker[cut.min(attacker.len())..])
}

struct Jwt {
    header: Value,
    claims: Value,
    signature: String,
}

impl Jwt {
    fn parse(token: &str) -> Option<Jwt> {
        let mut parts = token.split('.');
        let (h, c, s) = (parts.next()?, parts.next()?, parts.next()?);
        let header = serde_json::from_slice(&B64.decode(h).ok()?).ok()?;
        let claims = serde_json::from_slice(&B64.decode(c).ok()?).ok()?;
        Some(Jwt {
            header,
            claims,
            signature: s.to_owned(),
        })
    }
}

fn enc(v: &Value) -> String {
    B64.encode(serde_json::to_vec(v).unwrap_or_default())
}

/// The original signature over different header or claims: any edit must break it.
fn resigned_with_old(header: &Value, claims: &Value, sig: &str) -> String {
    format!("{}.{}.{sig}", enc(header), enc(claims))
}

async fn jwt_forgeries(c: &mut Ctx<'_>, jwt: &Jwt) -> Vec<(String, Cred)> {
    let now = now();
    let mut out = Vec::new();
    let edit = |f: &dyn Fn(&mut Value)| {
        let mut claims = jwt.claims.clone();
        f(&mut claims);
        resigned_with_old(&jwt.header, &claims, &jwt.signature)
    };
    let mut none_header = jwt.header.clone();
    none_header["alg"] = json!("none");
    out.push((
        "jwt-alg-none".into(),
        Cred::Bearer(format!("{}.{}.", enc(&none_header), enc(&jwt.claims))),
    ));
    out.push((
        "jwt-signature-stripped".into(),
        Cred::Bearer(format!("{}.{}.", enc(&jwt.header), enc(&jwt.claims))),
    ));
    let victim = c.victim.slug.clone();
    let victim_id = c.victim.id.clone();
    out.push((
        "jwt-edited-tenant-claim".into(),
        Cred::Bearer(edit(&|cl| {
            cl["tenant"] = json!(victim);
            cl["tenant_id"] = json!(victim_id);
        })),
    ));
    out.push((
        "jwt-edited-expiry".into(),
        Cred::Bearer(edit(&|cl| cl["exp"] = json!(now + 86_400 * 365))),
    ));
    out.push((
        "jwt-edited-audience".into(),
        Cred::Bearer(edit(&|cl| cl["aud"] = json!("another-audience"))),
    ));
    out.push((
        "jwt-edited-roles".into(),
        Cred::Bearer(edit(&|cl| {
            cl["roles"] = json!(["platform_admin", "tenant_admin"])
        })),
    ));
    // Key confusion: HS256 keyed with the issuer's public key material (the JWK as published,
    // and its modulus), so a verifier that takes `alg` from the token would accept it.
    for (i, secret) in public_key_material(c, jwt).await.into_iter().enumerate() {
        let mut h = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
        h.kid = jwt.header["kid"].as_str().map(str::to_owned);
        if let Ok(t) = jsonwebtoken::encode(
            &h,
            &jwt.claims,
            &jsonwebtoken::EncodingKey::from_secret(&secret),
        ) {
            out.push((format!("jwt-key-confusion-hs256-{i}"), Cred::Bearer(t)));
        }
    }
    // A foreign key: a fresh Ed25519 key the issuer never published, under the issuer's
    // `kid` and `iss`, and under a foreign issuer.
    let foreign = foreign_key();
    for (name, iss) in [
        ("jwt-foreign-key-same-issuer", jwt.claims["iss"].clone()),
        ("jwt-foreign-issuer", json!("https://bleed.invalid/")),
    ] {
        let mut claims = jwt.claims.clone();
        claims["iss"] = iss;
        let mut h = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::EdDSA);
        h.kid = jwt.header["kid"].as_str().map(str::to_owned);
        if let Ok(t) = jsonwebtoken::encode(&h, &claims, &foreign) {
            out.push((name.into(), Cred::Bearer(t)));
        }
    }
    // With the IdP's own key (a test deployment's): genuinely signed but invalid tokens.
    if let Some(key) = &c.idp_key {
        let alg = match jwt.header["alg"].as_str() {
            Some("ES256") => jsonwebtoken::Algorithm::ES256,
            Some("EdDSA") => jsonwebtoken::Algorithm::EdDSA,
            _ => jsonwebtoken::Algorithm::RS256,
        };
        let mut h = jsonwebtoken::Header::new(alg);
        h.kid = jwt.header["kid"].as_str().map(str::to_owned);
        let signed = |f: &dyn Fn(&mut Value)| {
            let mut claims = jwt.claims.clone();
            f(&mut claims);
            jsonwebtoken::encode(&h, &claims, key).ok()
        };
        for (name, t) in [
            (
                "jwt-signed-expired",
                signed(&|cl| {
                    cl["exp"] = json!(now - 3600);
                    cl["iat"] = json!(now - 7200);
                    cl["nbf"] = json!(now - 7200);
                }),
            ),
            (
                "jwt-signed-wrong-audience",
                signed(&|cl| cl["aud"] = json!("another-audience")),
            ),
            (
                "jwt-signed-not-yet-valid",
                signed(&|cl| {
                    cl["nbf"] = json!(now + 3600);
                    cl["iat"] = json!(now + 3600);
                }),
            ),
            (
                "jwt-signed-foreign-issuer",
                signed(&|cl| cl["iss"] = json!("https://bleed.invalid/")),
            ),
        ] {
            if let Some(t) = t {
                out.push((name.into(), Cred::Bearer(t)));
            }
        }
    } else {
        c.report.push(
            Family::Credential,
            "jwt-signed-expired, wrong audience, not yet valid",
            Verdict::Skip(
                "no --idp-signing-key: only forgeries without the IdP's key were tried".into(),
            ),
        );
    }
    out
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or_default()
}

/// The issuer's published key for the token's `kid` (from its discovery document), as the
/// byte strings a confused verifier would use as an HMAC secret.
async fn public_key_material(c: &Ctx<'_>, jwt: &Jwt) -> Vec<Vec<u8>> {
    let Some(iss) = jwt.claims["iss"].as_str() else {
        return Vec::new();
    };
    let http = reqwest::Client::new();
    let disc = format!(
        "{}/.well-known/openid-configuration",
        iss.trim_end_matches('/')
    );
    let Ok(d) = http.get(&disc).send().await else {
        return Vec::new();
    };
    let d: Value = d.json().await.unwrap_or_default();
    let Some(jwks_uri) = d["jwks_uri"].as_str() else {
        return Vec::new();
    };
    let Ok(k) = http.get(jwks_uri).send().await else {
        return Vec::new();
    };
    let k: Value = k.json().await.unwrap_or_default();
    let kid = jwt.header["kid"].as_str();
    let _ = c;
    k["keys"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|j| kid.is_none() || j["kid"].as_str() == kid)
        .flat_map(|j| {
            let mut v = vec![serde_json::to_vec(j).unwrap_or_default()];
            if let Some(n) = j["n"].as_str().or(j["x"].as_str()) {
                v.push(B64.decode(n).unwrap_or_default());
                v.push(n.as_bytes().to_vec());
            }
            v
        })
        .collect()
}

/// A fresh Ed25519 signing key (PKCS#8 DER: the fixed RFC 8410 prefix and a random seed).
fn foreign_key() -> jsonwebtoken::EncodingKey {
    let mut der = hex::decode("302e020100300506032b657004220420").unwrap_or_default();
    der.extend_from_slice(&rand::random::<[u8; 32]>());
    jsonwebtoken::EncodingKey::from_ed_der(&der)
}
