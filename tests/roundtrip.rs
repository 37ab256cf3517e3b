//! Property tests: generated messages, written in every legal spelling the
//! parser claims to read (compact and odd-case names, white space around the
//! colon, comma lists or repeated lines, folding, bare LF, with or without
//! Content-Length), parse to the meaning they were built from; written with
//! a proxy's edits they parse again to the edited meaning; and no input,
//! however broken, makes any part of the parser panic.

mod common;

use proptest::prelude::*;
use sipshard::sip::{Edits, HeaderName, Message, Method, ParseError, ResponseWriter, MAX_HEADERS};

#[derive(Clone, Debug)]
struct Model {
    method: &'static str,
    ruri: String,
    vias: Vec<(String, Option<u16>, String)>,
    from_tag: String,
    to_tag: Option<String>,
    call_id: String,
    cseq: u32,
    routes: Vec<String>,
    max_forwards: Option<u8>,
    unknown: Vec<(String, String)>,
    subject: Option<Vec<String>>,
    body: Vec<u8>,
}

#[derive(Clone, Debug)]
struct Style {
    lf_only: bool,
    name_case: Vec<u8>,
    colon_space: Vec<(u8, u8)>,
    join_vias: bool,
    join_routes: bool,
    content_length: bool,
    order_seed: u8,
}

const METHODS: &[&str] = &[
    "INVITE",
    "ACK",
    "BYE",
    "CANCEL",
    "OPTIONS",
    "REGISTER",
    "MESSAGE",
    "NEWMETHOD",
];

fn token() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9][a-zA-Z0-9.!%*_+`'~-]{0,15}"
}

fn host() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z][a-z0-9-]{0,8}(\\.[a-z][a-z0-9]{0,6}){0,2}",
        (1u8..255, 0u8..255, 0u8..255, 1u8..255)
            .prop_map(|(a, b, c, d)| format!("{a}.{b}.{c}.{d}")),
        any::<[u16; 8]>().prop_map(|s| format!("[{}]", std::net::Ipv6Addr::from(s))),
    ]
}

fn model() -> impl Strategy<Value = Model> {
    (
        (
            prop::sample::select(METHODS),
            ("[a-z][a-z0-9]{0,8}", host(), prop::option::of(1u16..)),
            prop::collection::vec((host(), prop::option::of(1u16..), token()), 1..5),
            token(),
            prop::option::of(token()),
            "[a-zA-Z0-9-]{1,20}(@[a-z0-9.]{1,12})?",
        ),
        (
            0u32..(1 << 31),
            prop::collection::vec(host(), 0..4),
            prop::option::of(any::<u8>()),
            prop::collection::vec(("X-[A-Za-z]{1,8}", "[ -~]{0,20}"), 0..4),
            prop::option::of(prop::collection::vec("[a-z]{1,8}( [a-z]{1,8}){0,3}", 1..4)),
            prop::collection::vec(any::<u8>(), 0..64),
        ),
    )
        .prop_map(
            |(
                (method, (user, h, port), vias, from_tag, to_tag, call_id),
                (cseq, routes, max_forwards, unknown, subject, body),
            )| {
                Model {
                    method,
                    ruri: match port {
                        Some(p) => format!("sip:{user}@{h}:{p}"),
                        None => format!("sip:{user}@{h}"),
                    },
                    vias: vias
                        .into_iter()
                        .map(|(h, p, b)| (h, p, format!("z9hG4bK{b}")))
                        .collect(),
                    from_tag,
                    to_tag,
                    call_id,
                    cseq,
                    routes,
                    max_forwards,
                    // One header per name (any case), so that the value a
                    // lookup finds does not depend on the shuffled order.
                    unknown: unknown.into_iter().fold(
                        Vec::new(),
                        |mut seen: Vec<(String, String)>, (n, v)| {
                            if !seen.iter().any(|(s, _)| s.eq_ignore_ascii_case(&n)) {
                                seen.push((n, v.trim().to_owned()));
                            }
                            seen
                        },
                    ),
                    subject,
                    body,
                }
            },
        )
}

fn style() -> impl Strategy<Value = Style> {
    (
        any::<bool>(),
        prop::collection::vec(0u8..4, 16),
        prop::collection::vec((0u8..3, 0u8..3), 16),
        any::<bool>(),
        any::<bool>(),
        any::<bool>(),
        any::<u8>(),
    )
        .prop_map(
            |(
                lf_only,
                name_case,
                colon_space,
                join_vias,
                join_routes,
                content_length,
                order_seed,
            )| Style {
                lf_only,
                name_case,
                colon_space,
                join_vias,
                join_routes,
                content_length,
                order_seed,
            },
        )
}

/// Spells header `i` of the message: canonical, lower, upper or compact.
fn spell(name: HeaderName, i: usize, st: &Style) -> String {
    let canonical = name.canonical();
    match st.name_case[i % st.name_case.len()] {
        0 => canonical.to_owned(),
        1 => canonical.to_ascii_lowercase(),
        2 => canonical.to_ascii_uppercase(),
        _ => name
            .compact()
            .map_or(canonical.to_owned(), |c| (c as char).to_string()),
    }
}

fn render(m: &Model, st: &Style) -> Vec<u8> {
    let nl = if st.lf_only { "\n" } else { "\r\n" };
    let sp = |n: u8| [" ", "", "  \t"][n as usize % 3];
    let mut lines: Vec<(HeaderName, String)> = Vec::new();
    let via_text: Vec<String> = m
        .vias
        .iter()
        .map(|(h, p, b)| match p {
            Some(p) => format!("SIP/2.0/UDP {h}:{p};branch={b}"),
            None => format!("SIP/2.0/UDP {h};branch={b}"),
        })
        .collect();
    if st.join_vias {
        lines.push((HeaderName::Via, via_text.join(", ")));
    } else {
        lines.extend(via_text.into_iter().map(|v| (HeaderName::Via, v)));
    }
    let route_text: Vec<String> = m.routes.iter().map(|h| format!("<sip:{h};lr>")).collect();
    if !route_text.is_empty() {
        if st.join_routes {
            lines.push((HeaderName::Route, route_text.join(",")));
        } else {
            lines.extend(route_text.into_iter().map(|r| (HeaderName::Route, r)));
        }
    }
    let mut rest = vec![
        (
            HeaderName::From,
            format!("\"A B\" <sip:a@example.com>;tag={}", m.from_tag),
        ),
        (
            HeaderName::To,
            match &m.to_tag {
                Some(t) => format!("<{}>;tag={t}", m.ruri),
                None => format!("<{}>", m.ruri),
            },
        ),
        (HeaderName::CallId, m.call_id.clone()),
        (HeaderName::CSeq, format!("{} {}", m.cseq, m.method)),
    ];
    if let Some(mf) = m.max_forwards {
        rest.push((HeaderName::MaxForwards, mf.to_string()));
    }
    for (n, v) in &m.unknown {
        rest.push((HeaderName::Other, format!("{n}\u{0}{v}")));
    }
    if let Some(words) = &m.subject {
        rest.push((HeaderName::Subject, words.join(&format!("{nl} "))));
    }
    // Shuffle the non-list headers deterministically.
    let k = rest.len();
    for i in 0..k {
        let j = (i + st.order_seed as usize) % k;
        rest.swap(i, j);
    }
    lines.extend(rest);
    let mut out = format!("{} {} SIP/2.0{nl}", m.method, m.ruri);
    for (i, (name, value)) in lines.iter().enumerate() {
        let (before, after) = st.colon_space[i % st.colon_space.len()];
        let (n, v) = if *name == HeaderName::Other {
            let (n, v) = value.split_once('\u{0}').unwrap();
            (n.to_owned(), v.to_owned())
        } else {
            (spell(*name, i, st), value.clone())
        };
        out.push_str(&format!("{n}{}:{}{v}{nl}", sp(before), sp(after)));
    }
    if st.content_length {
        out.push_str(&format!("Content-Length: {}{nl}", m.body.len()));
    }
    out.push_str(nl);
    let mut bytes = out.into_bytes();
    bytes.extend_from_slice(&m.body);
    bytes
}

fn check_meaning(msg: &Message<'_>, m: &Model) {
    assert_eq!(msg.method(), Some(Method::from_bytes(m.method.as_bytes())));
    assert_eq!(msg.request_uri_bytes(), Some(m.ruri.as_bytes()));
    assert!(msg.request_uri().is_ok());
    msg.validate().unwrap();
    let vias: Vec<_> = msg.vias().map(|v| v.unwrap()).collect();
    assert_eq!(vias.len(), m.vias.len());
    for (v, (h, p, b)) in vias.iter().zip(&m.vias) {
        assert_eq!(v.host_raw, h.as_bytes());
        assert_eq!(v.port, *p);
        assert_eq!(v.branch, Some(b.as_bytes()));
    }
    let routes: Vec<Vec<u8>> = msg.routes().map(|r| r.unwrap().uri.to_vec()).collect();
    let want: Vec<Vec<u8>> = m
        .routes
        .iter()
        .map(|h| format!("sip:{h};lr").into_bytes())
        .collect();
    assert_eq!(routes, want);
    assert_eq!(msg.from().unwrap().tag(), Some(m.from_tag.as_bytes()));
    assert_eq!(
        msg.to().unwrap().tag(),
        m.to_tag.as_deref().map(str::as_bytes)
    );
    assert_eq!(msg.call_id().unwrap(), m.call_id.as_bytes());
    let cseq = msg.cseq().unwrap();
    assert_eq!(cseq.number, m.cseq);
    assert_eq!(cseq.method.as_bytes(), m.method.as_bytes());
    for (n, v) in &m.unknown {
        assert_eq!(
            msg.other_header(n.as_bytes()),
            Some(v.as_bytes()),
            "{n}: {v}"
        );
    }
    if let Some(words) = &m.subject {
        let got = msg.header(HeaderName::Subject).unwrap();
        let squashed: Vec<&[u8]> = got
            .split(|b| b.is_ascii_whitespace())
            .filter(|w| !w.is_empty())
            .collect();
        let want: Vec<&[u8]> = words
            .iter()
            .flat_map(|w| w.split(' '))
            .map(str::as_bytes)
            .collect();
        assert_eq!(squashed, want);
    }
    assert_eq!(msg.body(), &m.body[..]);
}

/// Every view and the writer on any message that parses: nothing panics,
/// and an edited message parses again.
fn exercise(data: &[u8]) {
    let Ok(msg) = Message::parse(data) else {
        return;
    };
    let _ = msg.validate();
    let _ = msg.request_uri();
    let _ = msg.vias().count();
    msg.contacts().for_each(|c| {
        let _ = c.map(|c| (c.q(), c.expires()));
    });
    let _ = msg.routes().count();
    let _ = (
        msg.from(),
        msg.to(),
        msg.cseq(),
        msg.call_id(),
        msg.max_forwards(),
        msg.content_type(),
    );
    let mut out = vec![0u8; data.len() + 256];
    let mut e = Edits::new();
    e.insert_top_via(&msg, b"SIP/2.0/UDP 127.0.0.1;branch=z9hG4bKp")
        .unwrap();
    e.set_max_forwards(&msg, 1).unwrap();
    let n = e.write(&msg, &mut out).unwrap();
    match Message::parse(&out[..n]) {
        Ok(again) => assert_eq!(again.max_forwards().ok().flatten(), Some(1)),
        // Two added lines can push a full header index over.
        Err(ParseError::TooManyHeaders) => assert!(msg.header_count() + 2 > MAX_HEADERS),
        Err(e) => panic!("edited message does not parse: {e}"),
    }
    if msg.is_request() {
        let mut resp = vec![0u8; data.len() + 256];
        let r = ResponseWriter::new(&msg, 400, &[b"Bad"], Some(b"t"), &mut resp)
            .and_then(|w| w.finish())
            .unwrap();
        match Message::parse(&resp[..r]) {
            Ok(parsed) => assert_eq!(parsed.status(), Some(400)),
            Err(ParseError::TooManyHeaders) => assert!(msg.header_count() + 1 > MAX_HEADERS),
            Err(e) => panic!("response does not parse: {e}"),
        }
    }
}

/// 512 cases by default; `PROPTEST_CASES=N` for a longer run (CI uses more).
fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(512)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), .. ProptestConfig::default() })]

    #[test]
    fn parse_gives_back_the_meaning(m in model(), st in style()) {
        let data = render(&m, &st);
        if std::env::var_os("SHOW_SAMPLE").is_some() {
            eprintln!("{}", String::from_utf8_lossy(&data));
        }
        let msg = Message::parse(&data).unwrap();
        check_meaning(&msg, &m);
        // No edits: identical bytes.
        let mut out = vec![0u8; data.len()];
        let n = Edits::new().write(&msg, &mut out).unwrap();
        prop_assert_eq!(&out[..n], msg.framed());
    }

    #[test]
    fn parse_write_parse_keeps_the_meaning(m in model(), st in style()) {
        let data = render(&m, &st);
        let msg = Message::parse(&data).unwrap();
        let mut e = Edits::new();
        e.insert_top_via(&msg, b"SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKproxy").unwrap();
        let mf = m.max_forwards.map_or(70, |n| u32::from(n.saturating_sub(1)));
        e.set_max_forwards(&msg, mf).unwrap();
        if !m.routes.is_empty() {
            e.remove_first_route(&msg).unwrap();
        }
        e.add_record_route(&msg, b"<sip:192.0.2.1;lr>").unwrap();
        let mut out = vec![0u8; data.len() + 256];
        let n = e.write(&msg, &mut out).unwrap();
        let again = Message::parse(&out[..n]).unwrap();

        let mut want = m.clone();
        want.vias.insert(0, ("192.0.2.1".into(), Some(5060), "z9hG4bKproxy".into()));
        if !want.routes.is_empty() {
            want.routes.remove(0);
        }
        want.max_forwards = Some(mf as u8);
        check_meaning(&again, &want);
        prop_assert_eq!(again.max_forwards(), Ok(Some(mf as u8)));
        let rr: Vec<_> = again.record_routes().map(|r| r.unwrap().uri).collect();
        prop_assert_eq!(rr, vec![&b"sip:192.0.2.1;lr"[..]]);

        // And back: removing our Via, as for a response, restores the list.
        let mut back = Edits::new();
        back.remove_top_via(&again).unwrap();
        let mut out2 = vec![0u8; n];
        let n2 = back.write(&again, &mut out2).unwrap();
        let restored = Message::parse(&out2[..n2]).unwrap();
        let branches: Vec<_> = restored.vias().map(|v| v.unwrap().branch.unwrap().to_vec()).collect();
        let orig: Vec<_> = m.vias.iter().map(|v| v.2.clone().into_bytes()).collect();
        prop_assert_eq!(branches, orig);
    }

    #[test]
    fn arbitrary_bytes_never_panic(data in prop::collection::vec(any::<u8>(), 0..512)) {
        exercise(&data);
    }

    #[test]
    fn mutated_messages_never_panic(
        m in model(),
        st in style(),
        edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>(), 0u8..3), 1..8),
    ) {
        let mut data = render(&m, &st);
        common::mutate(&mut data, &edits);
        exercise(&data);
    }
}
