//! Hand-assembled pickles for every supported opcode group, and hostile inputs.

use super::*;

/// `X` (BINUNICODE) with its 4-byte length.
fn ustr(s: &str) -> Vec<u8> {
    let mut out = vec![b'X'];
    out.extend((s.len() as u32).to_le_bytes());
    out.extend(s.as_bytes());
    out
}

fn cat(parts: &[&[u8]]) -> Vec<u8> {
    parts.concat()
}

fn s(v: &str) -> Value {
    Value::Str(v.into())
}

#[test]
fn scalars_in_a_tuple() {
    let mut p = vec![0x80, 2, b'('];
    p.extend([b'K', 7, b'M', 0x34, 0x12, b'J']);
    p.extend((-5i32).to_le_bytes());
    p.extend([0x8a, 1, 0xff]); // LONG1 -1
    p.extend([0x8a, 8]);
    p.extend(i64::MIN.to_le_bytes());
    p.extend([0x8a, 0]); // LONG1 0
    p.push(b'G');
    p.extend(1.5f64.to_be_bytes());
    p.extend([b'N', 0x88, 0x89]);
    p.extend([0x8c, 2, b'h', b'i']);
    p.extend([b'C', 3, 0, 255, 7]);
    p.extend(ustr("é"));
    p.extend([b't', b'.']);
    let v = parse(&p).unwrap();
    assert_eq!(
        v,
        Value::Tuple(vec![
            Value::Int(7),
            Value::Int(0x1234),
            Value::Int(-5),
            Value::Int(-1),
            Value::Int(i64::MIN),
            Value::Int(0),
            Value::Float(1.5),
            Value::None,
            Value::Bool(true),
            Value::Bool(false),
            s("hi"),
            Value::Bytes(vec![0, 255, 7]),
            s("é"),
        ])
    );
}

#[test]
fn small_tuples_lists_and_dicts() {
    let p = cat(&[
        &[
            0x80, 2, b'K', 1, 0x85, b'K', 1, b'K', 2, 0x86, b'K', 1, b'K', 2, b'K', 3, 0x87,
        ],
        &[
            b'(', b'K', 1, b'K', 2, b'l', b']', b'(', b'K', 3, b'K', 4, b'e', b'K', 5, b'a',
        ],
        &[
            b'(', b'K', 1, b'K', 2, b'd', b'}', b'(', b'K', 3, b'K', 4, b'u', b'K', 5, b'K', 6,
            b's',
        ],
        &[b'(', b'K', 9, b'1', b'K', 8, b'2', b'0', b')'],
        &[0x86, 0x86, 0x86, 0x87, 0x86, b'.'],
    ]);
    let i = Value::Int;
    let t = Value::Tuple;
    // The stack ends as A B (C, (L1, L2, (D1, (D2, (8, ()))))); STOP returns the top.
    let want = t(vec![
        t(vec![i(1), i(2), i(3)]),
        t(vec![
            Value::List(vec![i(1), i(2)]),
            Value::List(vec![i(3), i(4), i(5)]),
            t(vec![
                Value::Dict(vec![(i(1), i(2))]),
                t(vec![
                    Value::Dict(vec![(i(3), i(4)), (i(5), i(6))]),
                    t(vec![i(8), t(vec![])]),
                ]),
            ]),
        ]),
    ]);
    assert_eq!(parse(&p).unwrap(), want);
}

#[test]
fn memo_aliases_like_python() {
    // list = []; d = {} (memo 0); list.append(d); then d["k"] = 1 through BINGET 0.
    let p = cat(&[
        &[0x80, 2, b']', b'}', b'q', 0, b'a', b'h', 0],
        &ustr("k"),
        &[b'K', 1, b's', b'0', b'.'],
    ]);
    assert_eq!(
        parse(&p).unwrap(),
        Value::List(vec![Value::Dict(vec![(s("k"), Value::Int(1))])])
    );
    // LONG_BINPUT / LONG_BINGET / MEMOIZE (protocol 4 with FRAME and STACK_GLOBAL).
    let mut p = vec![0x80, 4, 0x95];
    p.extend(0u64.to_le_bytes());
    p.extend([0x8c, 1, b'm', 0x94, 0x8c, 1, b'n', 0x94, 0x93, 0x94]);
    p.extend([b'j', 2, 0, 0, 0, b'h', 0, b'r', 9, 0, 0, 0, 0x87, b'.']);
    assert_eq!(
        parse(&p).unwrap(),
        Value::Tuple(vec![
            Value::Global {
                module: "m".into(),
                name: "n".into()
            },
            Value::Global {
                module: "m".into(),
                name: "n".into()
            },
            s("m"),
        ])
    );
}

#[test]
fn ordered_dict_reduce_setitems_and_ignored_build_state() {
    let p = cat(&[
        &[0x80, 2, b'c'],
        b"collections\nOrderedDict\n",
        &[b')', b'R', b'q', 1, b'('],
        &ustr("b"),
        &[b'K', 2],
        &ustr("a"),
        &[b'K', 1, b'u', b'}'],
        &ustr("_metadata"),
        b"Nsb.",
    ]);
    assert_eq!(
        parse(&p).unwrap(),
        Value::Dict(vec![(s("b"), Value::Int(2)), (s("a"), Value::Int(1))])
    );
}

#[test]
fn reduce_newobj_build_and_persistent_id() {
    let p = cat(&[
        &[0x80, 2, b'c'],
        b"torch._utils\n_rebuild_tensor_v2\n",
        &ustr("storage"),
        &[b'K', 4, 0x86, b'Q', b'K', 0, 0x86, b'R', b'c'],
        b"numpy\ndtype\n",
        &[b')', 0x81, b'K', 3, 0x85, b'b', 0x86, b'.'],
    ]);
    let v = parse(&p).unwrap();
    let items = v.as_seq().unwrap();
    assert_eq!(
        items[0].constructor(),
        Some(("torch._utils", "_rebuild_tensor_v2"))
    );
    let Value::Object {
        args, state: None, ..
    } = &items[0]
    else {
        panic!("{v:?}")
    };
    assert_eq!(
        **args,
        Value::Tuple(vec![
            Value::PersistentId(Box::new(Value::Tuple(vec![s("storage"), Value::Int(4)]))),
            Value::Int(0)
        ])
    );
    let Value::Object {
        state: Some(state), ..
    } = &items[1]
    else {
        panic!("{v:?}")
    };
    assert_eq!(**state, Value::Tuple(vec![Value::Int(3)]));
}

#[test]
fn codecs_encode_latin1_gives_bytes() {
    let p = cat(&[
        &[0x80, 2, b'c'],
        b"_codecs\nencode\n",
        &ustr("a\u{ff}\u{80}"),
        &ustr("latin1"),
    ]);
    let p = cat(&[&p, &[0x86, b'R', b'.']]);
    assert_eq!(parse(&p).unwrap(), Value::Bytes(vec![b'a', 0xff, 0x80]));
    let bad = cat(&[
        &[0x80, 2, b'c'],
        b"_codecs\nencode\n",
        &ustr("\u{100}"),
        &ustr("latin1"),
    ]);
    let bad = cat(&[&bad, &[0x86, b'R', b'.']]);
    assert!(matches!(
        parse(&bad),
        Err(PickleError::Malformed {
            opcode: "REDUCE",
            ..
        })
    ));
}

#[test]
fn hostile_inputs_are_errors() {
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("empty", vec![]),
        ("no stop", vec![0x80, 2, b'K', 1]),
        ("unknown opcode", vec![0x80, 2, 0xff, b'.']),
        ("protocol 0 text int", b"I1\n.".to_vec()),
        ("stop on empty stack", vec![b'.']),
        ("append to nothing", vec![b'K', 1, b'a', b'.']),
        ("append to an int", vec![b'K', 1, b'K', 1, b'a', b'.']),
        ("tuple without mark", vec![b'K', 1, b't', b'.']),
        ("tuple3 of two", vec![b'K', 1, b'K', 1, 0x87, b'.']),
        ("pop below mark", vec![b'K', 1, b'(', b'R', b'.']),
        ("odd setitems", vec![b'}', b'(', b'K', 1, b'u', b'.']),
        ("undefined memo", vec![b'h', 3, b'.']),
        ("put on empty stack", vec![b'q', 0, b'.']),
        (
            "huge string length",
            vec![b'X', 0xff, 0xff, 0xff, 0xff, b'.'],
        ),
        (
            "huge bytes8 length",
            [&[0x8e][..], &u64::MAX.to_le_bytes(), b"."].concat(),
        ),
        (
            "9-byte long",
            vec![0x8a, 9, 1, 2, 3, 4, 5, 6, 7, 8, 9, b'.'],
        ),
        ("protocol 6", vec![0x80, 6, b'N', b'.']),
        ("bad utf-8", vec![0x8c, 1, 0xff, b'.']),
        ("reduce with list args", vec![b'N', b']', b'R', b'.']),
        ("build on a list", vec![b']', b'N', b'b', b'.']),
        ("unterminated global", b"cmod".to_vec()),
    ];
    for (name, p) in cases {
        assert!(parse(&p).is_err(), "{name}: {:?}", parse(&p));
    }
    assert!(matches!(
        parse(&[0x80, 2, 0xff]),
        Err(PickleError::UnknownOpcode {
            opcode: 0xff,
            offset: 2
        })
    ));
    assert!(matches!(
        parse(&[b'X', 0xff, 0xff, 0xff, 0xff]),
        Err(PickleError::Truncated { offset: 5, .. })
    ));
}

#[test]
fn cycles_and_exponential_sharing_hit_limits() {
    // l = []; l.append(l)
    let cycle = [b']', b'q', 0, b'h', 0, b'a', b'.'];
    assert!(matches!(
        parse(&cycle),
        Err(PickleError::LimitExceeded { .. })
    ));
    // l0 = []; l(i+1) = (l(i), l(i)), 60 times: 2^60 nodes if copied naively.
    let mut p = vec![b']', b'q', 0];
    for i in 0..60u8 {
        p.extend([b'h', i, b'h', i, 0x86, b'q', i + 1, b'0']);
    }
    p.extend([b'h', 60, b'.']);
    assert!(matches!(parse(&p), Err(PickleError::LimitExceeded { .. })));
    // One 1 MiB string referenced 200 times.
    let mut p = vec![0x8e];
    p.extend((1u64 << 20).to_le_bytes());
    p.extend(vec![b'x'; 1 << 20]);
    p.extend([b'q', 0, b'(']);
    for _ in 0..200 {
        p.extend([b'h', 0]);
    }
    p.extend([b't', b'.']);
    assert!(matches!(parse(&p), Err(PickleError::LimitExceeded { .. })));
    let tight = Limits {
        max_stack: 3,
        ..Limits::default()
    };
    assert!(parse_with_limits(b"NNNNt.", &tight).is_err());
}

#[test]
fn every_truncation_and_corruption_is_an_error_not_a_panic() {
    let good = cat(&[
        &[0x80, 2, b'c'],
        b"collections\nOrderedDict\n",
        &[b')', b'R', b'q', 1, b'('],
        &ustr("key"),
        b"c",
        b"torch._utils\n_rebuild_tensor_v2\n",
        &[b'(', b'K', 1, 0x85, b'Q', b'J', 1, 0, 0, 0, b'G'],
        &2.0f64.to_be_bytes(),
        &[b't', 0x85, b'R', b'u', b'}', b'b', b'.'],
    ]);
    assert!(parse(&good).is_ok(), "{:?}", parse(&good));
    for n in 0..good.len() {
        assert!(parse(&good[..n]).is_err(), "prefix of {n} bytes");
    }
    // Deterministic xorshift: flip bytes and make sure nothing panics.
    let mut state = 0x2545_f491_4f6c_dd1du64;
    for _ in 0..20_000 {
        let mut p = good.clone();
        for _ in 0..3 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let at = (state % p.len() as u64) as usize;
            p[at] = (state >> 32) as u8;
        }
        let _ = parse(&p);
    }
}
