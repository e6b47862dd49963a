//! Verification with real keys: HS256 secrets, RS256 from the PEM fixtures, ES256 from a key
//! pair generated here (rcgen) and from the fixtures; every refusal reason.

use std::path::PathBuf;

use jsonwebtoken::{EncodingKey, Header, encode};
use serde_json::{Value, json};

use super::*;

const SECRET: &str = "a-shared-secret-of-32-bytes-long!";

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/auth")
        .join(name)
}

fn now() -> u64 {
    jsonwebtoken::get_current_timestamp()
}

fn cfg(algorithm: JwtAlgorithm) -> RouteAuth {
    RouteAuth {
        algorithm,
        secret: None,
        secret_env: None,
        public_key_file: None,
        issuer: None,
        audience: None,
        leeway_secs: 60,
        required: true,
        forward_token: true,
        cookie: None,
    }
}

fn hs(secret: &str) -> RouteAuth {
    RouteAuth {
        secret: Some(secret.into()),
        ..cfg(JwtAlgorithm::HS256)
    }
}

fn sign_hs(claims: &Value, secret: &str) -> String {
    encode(
        &Header::default(),
        claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap()
}

fn sign_pem(alg: Algorithm, claims: &Value, private_pem: &[u8]) -> String {
    let key = match alg {
        Algorithm::RS256 => EncodingKey::from_rsa_pem(private_pem).unwrap(),
        Algorithm::ES256 => EncodingKey::from_ec_pem(private_pem).unwrap(),
        _ => unreachable!(),
    };
    encode(&Header::new(alg), claims, &key).unwrap()
}

fn valid_claims() -> Value {
    json!({
        "sub": "alice",
        "exp": now() + 3600,
        "info": {"name": "Alice", "tags": ["a", "ü"]},
        "channels": ["private-user-alice", "presence-room-*"],
    })
}

#[test]
fn hs256_valid_token_gives_the_identity() {
    let v = Verifier::new(&hs(SECRET)).unwrap();
    let id = v
        .verify(sign_hs(&valid_claims(), SECRET).as_bytes())
        .unwrap();
    assert_eq!(id.user_id.as_deref(), Some(&b"alice"[..]));
    let info: Value = serde_json::from_slice(id.user_info.as_ref().unwrap()).unwrap();
    assert_eq!(info, json!({"name": "Alice", "tags": ["a", "ü"]}));
    assert!(id.allows(b"private-user-alice"));
    assert!(id.allows(b"presence-room-7"));
    assert!(!id.allows(b"private-user-bob"));
}

#[test]
fn info_is_kept_raw_and_claims_are_optional() {
    let v = Verifier::new(&hs(SECRET)).unwrap();
    // `info` of any JSON type, byte for byte.
    let token = sign_hs(&json!({"exp": now() + 60, "info": 42}), SECRET);
    let id = v.verify(token.as_bytes()).unwrap();
    assert_eq!(id.user_info.as_deref(), Some(&b"42"[..]));
    assert_eq!(id.user_id, None);
    assert!(id.channels.is_empty());
}

#[test]
fn hs256_refusals() {
    let v = Verifier::new(&hs(SECRET)).unwrap();
    let forged = sign_hs(&valid_claims(), "another-secret-of-32-bytes-long!!");
    assert_eq!(v.verify(forged.as_bytes()), Err(Refusal::Invalid));
    assert_eq!(v.verify(b"not.a.jwt"), Err(Refusal::Invalid));
    assert_eq!(v.verify(b""), Err(Refusal::Invalid));
    assert_eq!(v.verify(&[0xff, 0xfe]), Err(Refusal::Invalid));
    // A tampered payload under the original signature.
    let good = sign_hs(&valid_claims(), SECRET);
    let mut parts: Vec<&str> = good.split('.').collect();
    let evil = base64::Engine::encode(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD,
        json!({"sub": "mallory", "exp": now() + 3600, "channels": ["*"]}).to_string(),
    );
    parts[1] = &evil;
    assert_eq!(v.verify(parts.join(".").as_bytes()), Err(Refusal::Invalid));
    // `exp` is required.
    let no_exp = sign_hs(&json!({"sub": "alice"}), SECRET);
    assert_eq!(v.verify(no_exp.as_bytes()), Err(Refusal::Invalid));
    // Claims of the wrong type make a token invalid, not a partial identity.
    let bad_channels = sign_hs(&json!({"exp": now() + 60, "channels": "*"}), SECRET);
    assert_eq!(v.verify(bad_channels.as_bytes()), Err(Refusal::Invalid));
    let bad_sub = sign_hs(&json!({"exp": now() + 60, "sub": 7}), SECRET);
    assert_eq!(v.verify(bad_sub.as_bytes()), Err(Refusal::Invalid));
    // The unsigned `none` algorithm.
    let none = format!(
        "{}.{}.",
        base64::Engine::encode(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD,
            r#"{"alg":"none","typ":"JWT"}"#
        ),
        base64::Engine::encode(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD,
            valid_claims().to_string()
        ),
    );
    assert_eq!(v.verify(none.as_bytes()), Err(Refusal::Invalid));
}

#[test]
fn expiry_and_not_before_with_leeway() {
    let v = Verifier::new(&RouteAuth {
        leeway_secs: 30,
        ..hs(SECRET)
    })
    .unwrap();
    let t = |claims: Value| sign_hs(&claims, SECRET);
    // Expired 10 s ago: within the leeway.
    assert!(v.verify(t(json!({"exp": now() - 10})).as_bytes()).is_ok());
    // Expired 100 s ago: beyond it.
    assert_eq!(
        v.verify(t(json!({"exp": now() - 100})).as_bytes()),
        Err(Refusal::Expired)
    );
    // Not valid before 10 s from now: within the leeway; 100 s: refused.
    assert!(
        v.verify(t(json!({"exp": now() + 600, "nbf": now() + 10})).as_bytes())
            .is_ok()
    );
    assert_eq!(
        v.verify(t(json!({"exp": now() + 600, "nbf": now() + 100})).as_bytes()),
        Err(Refusal::Expired)
    );
    let strict = Verifier::new(&RouteAuth {
        leeway_secs: 0,
        ..hs(SECRET)
    })
    .unwrap();
    assert_eq!(
        strict.verify(t(json!({"exp": now() - 10})).as_bytes()),
        Err(Refusal::Expired)
    );
}

#[test]
fn issuer_and_audience() {
    let v = Verifier::new(&RouteAuth {
        issuer: Some("https://auth.example".into()),
        audience: Some("switchboard".into()),
        ..hs(SECRET)
    })
    .unwrap();
    let t = |claims: Value| sign_hs(&claims, SECRET);
    let exp = now() + 600;
    assert!(
        v.verify(
            t(json!({"exp": exp, "iss": "https://auth.example", "aud": "switchboard"})).as_bytes()
        )
        .is_ok()
    );
    // `aud` may be a list that names us.
    assert!(
        v.verify(
            t(json!({"exp": exp, "iss": "https://auth.example", "aud": ["other", "switchboard"]}))
                .as_bytes()
        )
        .is_ok()
    );
    assert_eq!(
        v.verify(
            t(json!({"exp": exp, "iss": "https://evil.example", "aud": "switchboard"})).as_bytes()
        ),
        Err(Refusal::Issuer)
    );
    assert_eq!(
        v.verify(t(json!({"exp": exp, "aud": "switchboard"})).as_bytes()),
        Err(Refusal::Issuer)
    );
    assert_eq!(
        v.verify(
            t(json!({"exp": exp, "iss": "https://auth.example", "aud": "billing"})).as_bytes()
        ),
        Err(Refusal::Audience)
    );
    assert_eq!(
        v.verify(t(json!({"exp": exp, "iss": "https://auth.example"})).as_bytes()),
        Err(Refusal::Audience)
    );
    // Without a configured audience, a token meant for another service is refused (RFC 7519
    // §4.1.3), and one without `aud` is fine.
    let open = Verifier::new(&hs(SECRET)).unwrap();
    assert_eq!(
        open.verify(t(json!({"exp": exp, "aud": "billing"})).as_bytes()),
        Err(Refusal::Audience)
    );
    assert!(open.verify(t(json!({"exp": exp})).as_bytes()).is_ok());
}

#[test]
fn rs256_from_pem_files() {
    let v = Verifier::new(&RouteAuth {
        public_key_file: Some(fixture("rs256-public.pem")),
        ..cfg(JwtAlgorithm::RS256)
    })
    .unwrap();
    let private = std::fs::read(fixture("rs256-private.pem")).unwrap();
    let token = sign_pem(Algorithm::RS256, &valid_claims(), &private);
    assert_eq!(
        v.verify(token.as_bytes()).unwrap().user_id.as_deref(),
        Some(&b"alice"[..])
    );
    // The same token checked against another key.
    let other = Verifier::new(&RouteAuth {
        public_key_file: Some(fixture("rs256-other-public.pem")),
        ..cfg(JwtAlgorithm::RS256)
    })
    .unwrap();
    assert_eq!(other.verify(token.as_bytes()), Err(Refusal::Invalid));
    // Algorithm confusion: an HS256 token whose "secret" is the public key's PEM.
    let public = std::fs::read_to_string(fixture("rs256-public.pem")).unwrap();
    let confused = sign_hs(&valid_claims(), &public);
    assert_eq!(v.verify(confused.as_bytes()), Err(Refusal::Invalid));
}

#[test]
fn es256_with_a_key_generated_here() {
    let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let public = dir.path().join("es256.pem");
    std::fs::write(&public, pair.public_key_pem()).unwrap();
    let v = Verifier::new(&RouteAuth {
        public_key_file: Some(public),
        ..cfg(JwtAlgorithm::ES256)
    })
    .unwrap();
    let token = sign_pem(
        Algorithm::ES256,
        &valid_claims(),
        pair.serialize_pem().as_bytes(),
    );
    assert!(v.verify(token.as_bytes()).is_ok());
    // A token from the fixture's key is not ours.
    let fixture_private = std::fs::read(fixture("es256-private.pem")).unwrap();
    let foreign = sign_pem(Algorithm::ES256, &valid_claims(), &fixture_private);
    assert_eq!(v.verify(foreign.as_bytes()), Err(Refusal::Invalid));
    // And an RS256 token is another algorithm.
    let rsa = std::fs::read(fixture("rs256-private.pem")).unwrap();
    let rs = sign_pem(Algorithm::RS256, &valid_claims(), &rsa);
    assert_eq!(v.verify(rs.as_bytes()), Err(Refusal::Invalid));
}

#[test]
fn es256_fixture_pair() {
    let v = Verifier::new(&RouteAuth {
        public_key_file: Some(fixture("es256-public.pem")),
        ..cfg(JwtAlgorithm::ES256)
    })
    .unwrap();
    let private = std::fs::read(fixture("es256-private.pem")).unwrap();
    let token = sign_pem(Algorithm::ES256, &valid_claims(), &private);
    assert!(v.verify(token.as_bytes()).is_ok());
}

#[test]
fn setup_errors_name_the_key() {
    let missing = Verifier::new(&RouteAuth {
        public_key_file: Some(PathBuf::from("/nonexistent/key.pem")),
        ..cfg(JwtAlgorithm::RS256)
    })
    .unwrap_err();
    assert_eq!(missing.key, "auth.public_key_file");
    assert!(missing.reason.contains("cannot read"), "{}", missing.reason);
    // An EC key where RS256 wants RSA.
    let wrong = Verifier::new(&RouteAuth {
        public_key_file: Some(fixture("es256-public.pem")),
        ..cfg(JwtAlgorithm::RS256)
    })
    .unwrap_err();
    assert_eq!(wrong.key, "auth.public_key_file");
    assert!(wrong.reason.contains("RSA"), "{}", wrong.reason);
    let not_pem = Verifier::new(&RouteAuth {
        public_key_file: Some(fixture("README.md")),
        ..cfg(JwtAlgorithm::ES256)
    })
    .unwrap_err();
    assert!(
        not_pem.reason.contains("not a PEM EC"),
        "{}",
        not_pem.reason
    );
    let unset_env = Verifier::new(&RouteAuth {
        secret_env: Some("SWITCHBOARD_TEST_SURELY_UNSET_SECRET".into()),
        ..cfg(JwtAlgorithm::HS256)
    })
    .unwrap_err();
    assert_eq!(unset_env.key, "auth.secret_env");
    assert!(
        unset_env
            .reason
            .contains("SWITCHBOARD_TEST_SURELY_UNSET_SECRET")
    );
    let no_secret = Verifier::new(&cfg(JwtAlgorithm::HS256)).unwrap_err();
    assert_eq!(no_secret.key, "auth.secret");
    let secret_for_rsa = Verifier::new(&RouteAuth {
        secret: Some("x".into()),
        ..cfg(JwtAlgorithm::RS256)
    })
    .unwrap_err();
    assert_eq!(secret_for_rsa.key, "auth.secret");
}

#[test]
fn secret_from_the_environment() {
    // PATH is set in any test environment; its value is as good a secret as any here.
    let path = std::env::var("PATH").unwrap();
    let v = Verifier::new(&RouteAuth {
        secret_env: Some("PATH".into()),
        ..cfg(JwtAlgorithm::HS256)
    })
    .unwrap();
    assert!(v.verify(sign_hs(&valid_claims(), &path).as_bytes()).is_ok());
}

#[test]
fn admit_finds_the_token_sets_identity_and_forwards_it() {
    let v = Verifier::new(&hs(SECRET)).unwrap();
    let token = Bytes::from(sign_hs(&valid_claims(), SECRET));
    let mut c = Credentials {
        token: Some(token.clone()),
        // A client cannot bring its own identity.
        identity: Some(Arc::new(Identity {
            channels: vec![Bytes::from("*")],
            ..Default::default()
        })),
        ..Default::default()
    };
    v.admit(&mut c).unwrap();
    let id = c.identity.as_ref().unwrap();
    assert_eq!(id.user_id.as_deref(), Some(&b"alice"[..]));
    assert!(!id.allows(b"anything-else"));
    assert_eq!(c.token, Some(token));

    let mut none = Credentials::default();
    assert_eq!(v.admit(&mut none), Err(Refusal::Missing));
    let mut empty = Credentials {
        token: Some(Bytes::new()),
        ..Default::default()
    };
    assert_eq!(v.admit(&mut empty), Err(Refusal::Missing));
}

#[test]
fn optional_auth_admits_anonymous_but_not_invalid() {
    let v = Verifier::new(&RouteAuth {
        required: false,
        ..hs(SECRET)
    })
    .unwrap();
    let mut anon = Credentials::default();
    v.admit(&mut anon).unwrap();
    assert_eq!(anon.identity, None);
    let mut forged = Credentials {
        token: Some(Bytes::from(sign_hs(&valid_claims(), "wrong-secret"))),
        ..Default::default()
    };
    assert_eq!(v.admit(&mut forged), Err(Refusal::Invalid));
}

#[test]
fn token_from_a_named_cookie() {
    let v = Verifier::new(&RouteAuth {
        cookie: Some("jwt".into()),
        forward_token: false,
        ..hs(SECRET)
    })
    .unwrap();
    let token = sign_hs(&valid_claims(), SECRET);
    let mut c = Credentials {
        cookie: Some(Bytes::from(format!(
            "session=abc; jwt=\"{token}\"; theme=dark"
        ))),
        ..Default::default()
    };
    v.admit(&mut c).unwrap();
    assert!(c.identity.is_some());
    assert_eq!(c.token, None);
    // Not forwarded: the cookie is gone from what the backend gets, the others stay.
    assert_eq!(c.cookie.as_deref(), Some(&b"session=abc; theme=dark"[..]));
    let mut only = Credentials {
        cookie: Some(Bytes::from(format!("jwt={token}"))),
        ..Default::default()
    };
    v.admit(&mut only).unwrap();
    assert_eq!(only.cookie, None);
    let mut other = Credentials {
        cookie: Some(Bytes::from("jwtx=1; xjwt=2")),
        ..Default::default()
    };
    assert_eq!(v.admit(&mut other), Err(Refusal::Missing));
}

#[test]
fn forward_token_false_strips_every_copy() {
    let v = Verifier::new(&RouteAuth {
        forward_token: false,
        ..hs(SECRET)
    })
    .unwrap();
    let token = Bytes::from(sign_hs(&valid_claims(), SECRET));
    let auth = format!(
        r#"{{"token":"{}","room":7}}"#,
        std::str::from_utf8(&token).unwrap()
    );
    let mut c = Credentials {
        token: Some(token.clone()),
        passcode: Some(token.clone()),
        auth_json: Some(Bytes::from(auth)),
        ..Default::default()
    };
    v.admit(&mut c).unwrap();
    assert!(c.identity.is_some());
    assert_eq!(c.token, None);
    assert_eq!(c.passcode, None);
    assert_eq!(c.auth_json.as_deref(), Some(&br#"{"room":7}"#[..]));
    let mut alone = Credentials {
        token: Some(token.clone()),
        auth_json: Some(Bytes::from(format!(
            r#"{{"token":"{}"}}"#,
            std::str::from_utf8(&token).unwrap()
        ))),
        ..Default::default()
    };
    v.admit(&mut alone).unwrap();
    assert_eq!(alone.auth_json, None);
}

#[test]
fn refusal_labels_and_messages_carry_no_token() {
    for r in [
        Refusal::Missing,
        Refusal::Invalid,
        Refusal::Expired,
        Refusal::Issuer,
        Refusal::Audience,
    ] {
        assert!(r.to_string().starts_with("unauthorized ("));
        assert!(!r.to_string().contains(':'));
        assert!(!r.label().is_empty());
    }
    let v = Verifier::new(&hs(SECRET)).unwrap();
    let debug = format!("{v:?}");
    assert!(!debug.contains(SECRET), "{debug}");
}

const ROUTE: &str = r#"
[admin]
listen = "127.0.0.1:9191"

[[route]]
name = "chat"
listen = "127.0.0.1:8181"
path = "/ws"
client = "stomp"

[route.upstream]
url = "ws://127.0.0.1:3000/ws"
dialect = "stomp"

[route.auth]
"#;

fn check_err(auth: &str) -> (String, Option<usize>, String) {
    let text = format!("{ROUTE}{auth}\n");
    match crate::registry::from_toml(&text) {
        Err(crate::config::ConfigError::Invalid { key, line, reason }) => (key, line, reason),
        other => panic!("expected an invalid key, got {other:?}"),
    }
}

#[test]
fn switchboard_check_reports_auth_keys_precisely() {
    let (key, line, why) = check_err("algorithm = \"HS512\"\nsecret = \"s\"");
    assert_eq!(key, "route.0.auth.algorithm");
    assert_eq!(line, Some(16));
    assert!(why.contains("HS256"), "{why}");
    let (key, line, why) = check_err("algorithm = \"HS256\"");
    assert_eq!(key, "route.0.auth.secret");
    assert!(why.contains("secret_env"), "{why}");
    // Not written: located at the table.
    assert_eq!(line, Some(15));
    let (key, _, _) = check_err("algorithm = \"HS256\"\nsecret = \"s\"\nsecret_env = \"S\"");
    assert_eq!(key, "route.0.auth.secret_env");
    let (key, line, why) =
        check_err("algorithm = \"RS256\"\npublic_key_file = \"/nonexistent/switchboard-key.pem\"");
    assert_eq!(key, "route.0.auth.public_key_file");
    assert_eq!(line, Some(17));
    assert!(
        why.contains("cannot read /nonexistent/switchboard-key.pem"),
        "{why}"
    );
    let es = fixture("es256-public.pem");
    let (key, _, why) = check_err(&format!(
        "algorithm = \"RS256\"\npublic_key_file = \"{}\"",
        es.display()
    ));
    assert_eq!(key, "route.0.auth.public_key_file");
    assert!(why.contains("not a PEM RSA public key"), "{why}");
    let (key, _, _) = check_err("algorithm = \"ES256\"\nsecret = \"s\"");
    assert_eq!(key, "route.0.auth.secret");
    let (key, line, _) = check_err("algorithm = \"HS256\"\nsecret = \"s\"\nlifetime = 3");
    assert_eq!(key, "route.0.auth.lifetime");
    assert_eq!(line, Some(18));
    let (key, _, _) = check_err("algorithm = \"HS256\"\nsecret = \"s\"\naudience = \"\"");
    assert_eq!(key, "route.0.auth.audience");
    // Passthrough routes do not read the frames the token is in.
    let text = format!("{ROUTE}algorithm = \"HS256\"\nsecret = \"s\"\n").replace(
        "client = \"stomp\"",
        "client = \"stomp\"\nmode = \"passthrough\"",
    );
    let err = crate::registry::from_toml(&text).unwrap_err().to_string();
    assert!(
        err.contains("route.0.auth") && err.contains("passthrough"),
        "{err}"
    );
    // And a good one passes, with its defaults.
    let text = format!(
        "{ROUTE}algorithm = \"ES256\"\npublic_key_file = \"{}\"\nissuer = \"i\"\n",
        es.display()
    );
    let c = crate::registry::from_toml(&text).unwrap();
    let a = c.routes[0].auth.as_ref().unwrap();
    assert!(a.required && a.forward_token);
    assert_eq!(a.leeway_secs, 60);
}

#[test]
fn a_forwarded_cookie_token_becomes_the_bearer_token() {
    let v = Verifier::new(&RouteAuth {
        cookie: Some("jwt".into()),
        ..hs(SECRET)
    })
    .unwrap();
    let token = sign_hs(&valid_claims(), SECRET);
    let mut c = Credentials {
        cookie: Some(Bytes::from(format!("jwt={token}"))),
        ..Default::default()
    };
    v.admit(&mut c).unwrap();
    assert_eq!(c.token.as_deref(), Some(token.as_bytes()));
    // The cookie itself goes along, as any cookie does.
    assert!(c.cookie.is_some());
}

#[test]
fn a_scope_joined_later_is_verified_with_its_own_token_or_the_sessions() {
    let good = sign_hs(&valid_claims(), SECRET);
    let forged = sign_hs(&valid_claims(), "another-secret-of-32-bytes-long!!");
    let v = Verifier::new(&hs(SECRET)).unwrap();
    let auth = |t: &str| Bytes::from(json!({"token": t, "room": 7}).to_string());
    let none = Credentials::default();
    // Its own token: verified, and the auth object goes on as it came.
    assert_eq!(
        v.admit_scope(Some(&auth(&good)), &none),
        Ok(Some(auth(&good)))
    );
    // A forged one is refused even when the session's own token was good.
    let session = Credentials {
        token: Some(Bytes::from(good.clone())),
        ..Default::default()
    };
    assert_eq!(
        v.admit_scope(Some(&auth(&forged)), &session),
        Err(Refusal::Invalid)
    );
    // No token of its own: the session's verified one stands for it.
    let plain = Bytes::from_static(br#"{"room":7}"#);
    assert_eq!(
        v.admit_scope(Some(&plain), &session),
        Ok(Some(plain.clone()))
    );
    assert_eq!(v.admit_scope(None, &none), Err(Refusal::Missing));
    // forward_token = false: the backend gets the auth object without the token.
    let mut cfg = hs(SECRET);
    cfg.forward_token = false;
    let v = Verifier::new(&cfg).unwrap();
    assert_eq!(
        v.admit_scope(Some(&auth(&good)), &none),
        Ok(Some(Bytes::from_static(br#"{"room":7}"#)))
    );
}
