use super::*;

#[test]
fn response_matches_the_rfc_examples() {
    // RFC 7616 §3.9.1 (SHA-256 and MD5 with the same inputs).
    let parts = Parts {
        method: b"GET",
        uri: b"/dir/index.html",
        nonce: b"7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v",
        nc: b"00000001",
        cnonce: b"f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ",
        qop: b"auth",
    };
    let ha1 = Ha1::of(b"Mufasa", b"http-auth@example.org", b"Circle of Life");
    let mut out = [0u8; 64];
    assert_eq!(
        parts.response::<Sha256>(&ha1.sha256.unwrap(), &mut out),
        b"753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1"
    );
    assert_eq!(
        parts.response::<Md5>(&ha1.md5.unwrap(), &mut out),
        b"8ca523f5e9506fed4657c9700eebdbec"
    );
}

const REALM: &[u8] = b"example.com";

fn config() -> AuthConfig {
    let line = |user: &str| {
        let h = Ha1::of(user.as_bytes(), REALM, b"secret");
        let md5 = String::from_utf8(h.md5.unwrap().to_vec()).unwrap();
        let sha = String::from_utf8(h.sha256.unwrap().to_vec()).unwrap();
        format!("{user}:example.com:{md5}:{sha}\n")
    };
    let text = line("alice") + &line("mallory");
    AuthConfig {
        users: CredentialStore::parse(&text).unwrap(),
        key: NonceKey::new(&[9; 32]),
        nonce_ttl: 60,
        invite: false,
        algorithms: vec![Algorithm::Sha256, Algorithm::Md5],
        failure_limit: None,
    }
}

/// A UA's answer to a challenge: the Authorization value for `user` with
/// `password`, computed here independently of [`Parts`].
fn answer(user: &str, password: &str, nonce: &[u8], nc: u32, algorithm: &str) -> String {
    answer_for("sip:example.com", user, password, nonce, nc, algorithm)
}

/// As [`answer`], with `uri` as the digest-uri.
fn answer_for(
    uri: &str,
    user: &str,
    password: &str,
    nonce: &[u8],
    nc: u32,
    algorithm: &str,
) -> String {
    fn h<D: Digest>(s: &str) -> String {
        D::digest(s.as_bytes())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }
    let nonce = std::str::from_utf8(nonce).unwrap();
    let (ha1, ha2, resp) = if algorithm == "MD5" {
        let ha1 = h::<Md5>(&format!("{user}:example.com:{password}"));
        let ha2 = h::<Md5>(&format!("REGISTER:{uri}"));
        let r = h::<Md5>(&format!("{ha1}:{nonce}:{nc:08x}:c1:auth:{ha2}"));
        (ha1, ha2, r)
    } else {
        let ha1 = h::<Sha256>(&format!("{user}:example.com:{password}"));
        let ha2 = h::<Sha256>(&format!("REGISTER:{uri}"));
        let r = h::<Sha256>(&format!("{ha1}:{nonce}:{nc:08x}:c1:auth:{ha2}"));
        (ha1, ha2, r)
    };
    let _ = (ha1, ha2);
    format!(
        "Digest username=\"{user}\", realm=\"example.com\", nonce=\"{nonce}\", uri=\"{uri}\", \
response=\"{resp}\", algorithm={algorithm}, cnonce=\"c1\", qop=auth, nc={nc:08x}"
    )
}

fn register(to_user: &str, auth: Option<&str>, branch: u32) -> Vec<u8> {
    let auth = auth.map_or(String::new(), |a| format!("Authorization: {a}\r\n"));
    format!(
        "REGISTER sip:example.com SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.5;branch=z9hG4bK{branch}\r\n\
To: <sip:{to_user}@example.com>\r\nFrom: <sip:{to_user}@example.com>;tag=1\r\nCall-ID: c\r\n\
CSeq: {branch} REGISTER\r\n{auth}Content-Length: 0\r\n\r\n"
    )
    .into_bytes()
}

fn check(cfg: &AuthConfig, data: &[u8], now: u64, counts: &mut NonceCounts) -> Outcome {
    let msg = Message::parse(data).unwrap();
    let to = msg.to().unwrap();
    let user = to
        .parsed_uri()
        .ok()
        .and_then(|u| u.as_sip().and_then(|s| s.user));
    let ours = |u: &[u8]| u == b"sip:192.0.2.1:5060";
    let claim = Claim {
        header: HeaderName::Authorization,
        realm: REALM,
        user,
        uri_is_ours: &ours,
    };
    cfg.check(&msg, &claim, now, counts)
}

#[test]
fn a_challenge_answered_right_is_accepted_with_either_algorithm() {
    let cfg = config();
    let mut counts = NonceCounts::default();
    for (i, alg) in ["SHA-256", "MD5"].iter().enumerate() {
        let nonce = cfg.key.mint(1000, i as u32, REALM);
        let a = answer("alice", "secret", &nonce, 1, alg);
        assert_eq!(
            check(&cfg, &register("alice", Some(&a), 1), 1000, &mut counts),
            Outcome::Accepted,
            "{alg}"
        );
    }
}

#[test]
fn every_way_of_getting_it_wrong_is_refused() {
    let cfg = config();
    let mut counts = NonceCounts::default();
    let nonce = cfg.key.mint(1000, 1, REALM);
    let ok = answer("alice", "secret", &nonce, 1, "SHA-256");
    let mut run = |data: Vec<u8>, now| check(&cfg, &data, now, &mut counts);
    assert_eq!(run(register("alice", None, 1), 1000), Outcome::Missing);
    let wrong = answer("alice", "guess", &nonce, 1, "SHA-256");
    assert_eq!(
        run(register("alice", Some(&wrong), 1), 1000),
        Outcome::Failed(Failure::Response)
    );
    let nobody = answer("nobody", "secret", &nonce, 1, "SHA-256");
    assert_eq!(
        run(register("nobody", Some(&nobody), 1), 1000),
        Outcome::Failed(Failure::UnknownUser)
    );
    let forged = answer("alice", "secret", &[b'0'; NONCE_LEN], 1, "MD5");
    assert_eq!(
        run(register("alice", Some(&forged), 1), 1000),
        Outcome::Failed(Failure::Nonce)
    );
    let sess = ok.replace("algorithm=SHA-256", "algorithm=SHA-256-sess");
    assert_eq!(
        run(register("alice", Some(&sess), 1), 1000),
        Outcome::Failed(Failure::Unsupported)
    );
    let no_qop = ok.replace(", qop=auth", "");
    assert_eq!(
        run(register("alice", Some(&no_qop), 1), 1000),
        Outcome::Failed(Failure::Qop)
    );
    let other_uri = ok.replace("uri=\"sip:example.com\"", "uri=\"sip:example.org\"");
    assert_eq!(
        run(register("alice", Some(&other_uri), 1), 1000),
        Outcome::Failed(Failure::Uri)
    );
    // A digest-uri naming this server (what SIPp writes) is accepted.
    let other_nonce = cfg.key.mint(1000, 2, REALM);
    let to_us = answer_for(
        "sip:192.0.2.1:5060",
        "alice",
        "secret",
        &other_nonce,
        1,
        "SHA-256",
    );
    assert_eq!(
        run(register("alice", Some(&to_us), 9), 1000),
        Outcome::Accepted
    );
    assert_eq!(
        run(register("alice", Some("Digest nonsense"), 1), 1000),
        Outcome::Failed(Failure::Malformed)
    );
    // Mallory's own valid credentials do not let her register Alice.
    let mallory = answer("mallory", "secret", &nonce, 1, "SHA-256");
    assert_eq!(
        run(register("alice", Some(&mallory), 2), 1000),
        Outcome::WrongUser
    );
    // Right, but late: stale, so the UA retries without asking its user.
    assert_eq!(run(register("alice", Some(&ok), 3), 1061), Outcome::Stale);
    // An algorithm that is not offered.
    let md5_only = AuthConfig {
        algorithms: vec![Algorithm::Md5],
        ..config()
    };
    let mut fresh = NonceCounts::default();
    assert_eq!(
        check(
            &md5_only,
            &register("alice", Some(&ok), 1),
            1000,
            &mut fresh
        ),
        Outcome::Failed(Failure::Unsupported)
    );
    // Credentials for another realm are not ours to check.
    let elsewhere = ok.replace("realm=\"example.com\"", "realm=\"elsewhere\"");
    assert_eq!(
        run(register("alice", Some(&elsewhere), 1), 1000),
        Outcome::Missing
    );
}

#[test]
fn a_nonce_count_cannot_be_played_again_by_another_request() {
    let cfg = config();
    let mut counts = NonceCounts::default();
    let nonce = cfg.key.mint(1000, 1, REALM);
    let first = answer("alice", "secret", &nonce, 1, "SHA-256");
    assert_eq!(
        check(&cfg, &register("alice", Some(&first), 1), 1000, &mut counts),
        Outcome::Accepted
    );
    // A retransmission of the same request passes; a new request reusing
    // the count does not.
    assert_eq!(
        check(&cfg, &register("alice", Some(&first), 1), 1000, &mut counts),
        Outcome::Accepted
    );
    assert_eq!(
        check(&cfg, &register("alice", Some(&first), 2), 1000, &mut counts),
        Outcome::Failed(Failure::Replay)
    );
    let second = answer("alice", "secret", &nonce, 2, "SHA-256");
    assert_eq!(
        check(
            &cfg,
            &register("alice", Some(&second), 2),
            1000,
            &mut counts
        ),
        Outcome::Accepted
    );
}

#[test]
fn the_challenge_offers_sha256_then_md5_with_one_nonce() {
    let req = register("alice", None, 1);
    let msg = Message::parse(&req).unwrap();
    let mut out = [0u8; 2048];
    let mut w =
        crate::sip::ResponseWriter::new(&msg, 401, &[b"Unauthorized"], None, &mut out).unwrap();
    let nonce = config().key.mint(1, 1, REALM);
    write_challenge(
        &mut w,
        &[Algorithm::Sha256, Algorithm::Md5],
        "WWW-Authenticate",
        REALM,
        &nonce,
        true,
    )
    .unwrap();
    let n = w.finish().unwrap();
    let resp = Message::parse(&out[..n]).unwrap();
    let values: Vec<_> = resp
        .headers()
        .filter(|h| h.name == HeaderName::WwwAuthenticate)
        .map(|h| String::from_utf8(h.value.to_vec()).unwrap())
        .collect();
    let n = std::str::from_utf8(&nonce).unwrap();
    assert_eq!(
        values,
        [
            format!("Digest realm=\"example.com\", nonce=\"{n}\", algorithm=SHA-256, qop=\"auth\", stale=true"),
            format!("Digest realm=\"example.com\", nonce=\"{n}\", algorithm=MD5, qop=\"auth\", stale=true"),
        ]
    );
}
