//! Seed inputs for every target, taken from the cores' unit tests and
//! encoded in each target's input layout. `tests/fuzz_corpus.rs` checks
//! them and can write them into `tests/fuzz/corpus/` (see README.md).

use super::input::encode;

/// A seed: target, name, input.
pub type Seed = (&'static str, &'static str, Vec<u8>);

/// `--max-line` config bytes: 16 and the default 8192.
const LINE16: u8 = 16;
const LINE_DEFAULT: u8 = 0xc0;

fn transform_request(code: u8, data: &[u8]) -> Vec<u8> {
    let word = (u32::from(code & 0x1f) << 27) | data.len() as u32;
    [&word.to_be_bytes()[..], data].concat()
}

fn upload_file(lines: &[&[u8]]) -> Vec<u8> {
    let mut v = (lines.len() as u32).to_be_bytes().to_vec();
    for line in lines {
        v.extend_from_slice(line);
        v.push(b'\n');
    }
    v
}

/// A chat op: client `who` reads `bytes`.
fn say(who: u8, bytes: &[u8]) -> Vec<u8> {
    [&[0, who, bytes.len() as u8][..], bytes].concat()
}

/// Every seed.
pub fn seeds() -> Vec<Seed> {
    let mut s: Vec<Seed> = Vec::new();

    // framing: the framer's unit tests.
    let framing: [(&str, u8, &[u8]); 6] = [
        ("cr-lf", LINE_DEFAULT, b"a\nb\r\nc\r\r\n\r\n\n"),
        ("cr-inside", LINE_DEFAULT, b"a\rb\n"),
        ("exact-limit", 3, b"abc\nabc\r\nabc\r"),
        ("over-long", 3, b"abcdefghij\nok\n"),
        ("zero-limit", 0, b"\n\r\na\n"),
        ("partial", 10, b"a\nbc"),
    ];
    for (name, max, stream) in framing {
        s.push(("framing", name, encode(&[max], &[4, 9], stream)));
    }

    // tne: the core's unit tests, TCP and datagram.
    let tne: [(&str, u8, &[u8]); 7] = [
        (
            "ack",
            LINE_DEFAULT,
            b"TNE20003:hello, world! \x01\x7f\r\x1b\n",
        ),
        (
            "errors",
            LINE_DEFAULT,
            b"\n\r\nhello\ntne20003:hi\nTNE20003\nTNE20003:\nTNE20003:caf\xc3\xa9\nTNE20003:a\0b\n",
        ),
        ("after-errors", LINE_DEFAULT, b"x\nTNE20003:\nTNE20003:ok\n"),
        (
            "over-long",
            LINE16,
            b"TNE20003:xxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\r\nTNE20003:after\n",
        ),
        ("exact", LINE16, b"TNE20003:1234567\r\n"),
        ("unterminated", LINE_DEFAULT, b"TNE20003:a\nTNE20003:b"),
        ("datagram-lf", 20, b"TNE20003:a\nb"),
    ];
    for (name, max, stream) in tne {
        s.push(("tne", name, encode(&[max, 0], &[3, 17], stream)));
    }
    s.push(("tne", "truncated", encode(&[20, 1], &[], b"TNE20003:ok")));

    // cmd: the core's unit tests (2023-11-14 22:13:20 UTC).
    let now = 1_700_000_000u32.to_be_bytes();
    let cmd: [(&str, u8, &[u8]); 6] = [
        (
            "every-verb",
            LINE_DEFAULT,
            b"HELO me\nREQTIME\nREQDATE\nECHO hello  world \nECHO\nREQIP\nBYE\n",
        ),
        (
            "case",
            LINE_DEFAULT,
            b"helo x\nReqTime\nrEqDaTe\necho a\nreqip\nbye\n",
        ),
        (
            "before-helo",
            LINE_DEFAULT,
            b"REQTIME\nECHO x\nFROB\n\nREQTIME now\nHELO\nHELO  \nHELO h\nREQIP\n",
        ),
        (
            "errors",
            LINE_DEFAULT,
            b"HELO a\nFROB x\n\nREQIP 1\nBYE now\nHELO\nECHO still here\nREQDATE \n",
        ),
        (
            "over-long",
            LINE16,
            b"HELO a\nECHO xxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\r\nECHO after\nECHO b",
        ),
        ("bye-first", LINE_DEFAULT, b"bye\r\nECHO late\n"),
    ];
    for (i, (name, max, stream)) in cmd.into_iter().enumerate() {
        let config = [&[max, i as u8][..], &now].concat();
        s.push(("cmd", name, encode(&config, &[5, 11], stream)));
    }

    // transform: the core's unit tests.
    let mut actions = transform_request(0x01, b"Hello, World 9z");
    actions.extend(transform_request(0x02, b"Hello, World 9Z"));
    actions.extend(transform_request(0x04, b"hELLO wORLD x1y o'neil"));
    actions.extend(transform_request(0x08, b"abc\x00\xff"));
    actions.extend(transform_request(0x10, b"shuffle me"));
    s.push(("transform", "actions", encode(&[3], &[6, 30], &actions)));
    let mut unknown = transform_request(0x03, b"xyz");
    unknown.extend(transform_request(0x00, b""));
    unknown.extend(transform_request(0x1f, b"q"));
    unknown.extend(transform_request(0x01, b"ok"));
    s.push(("transform", "unknown", encode(&[3], &[2], &unknown)));
    let mut budget = transform_request(0x08, b"12345678");
    budget.extend(transform_request(0x08, b"abcdefghijklmnopq"));
    budget.extend(transform_request(0x10, b"ab"));
    s.push(("transform", "over-budget", encode(&[1], &[13], &budget)));
    let mut partial = transform_request(0x04, b"abc def");
    partial.extend(&transform_request(0x04, b"ghijk")[..7]);
    s.push(("transform", "partial", encode(&[3], &[5], &partial)));

    // upload: the core's unit tests.
    let end = [0u8; 4];
    let two = [
        upload_file(&[b"hello", b"world"]),
        upload_file(&[b"", b"x"]),
        end.to_vec(),
    ]
    .concat();
    s.push(("upload", "two-files", encode(&[3, 0, 0], &[7, 20], &two)));
    let binary = [
        upload_file(&[b"\x00\x01\xfe\xff", b"dos\r", b"\r\r"]),
        end.to_vec(),
    ]
    .concat();
    s.push(("upload", "binary", encode(&[3, 0, 0], &[], &binary)));
    let limited = [upload_file(&[b"ok"]), upload_file(&[b"much too long"])].concat();
    s.push(("upload", "over-limit", encode(&[1, 0, 0], &[9], &limited)));
    for (name, fault) in [("fail-create", 1), ("fail-write", 2), ("fail-rename", 3)] {
        let input = [
            upload_file(&[b"abc"]),
            upload_file(&[b"abcdef"]),
            end.to_vec(),
        ]
        .concat();
        s.push(("upload", name, encode(&[3, fault, 6], &[], &input)));
    }
    s.push((
        "upload",
        "unfinished",
        encode(&[3, 0, 0], &[], &upload_file(&[b"a", b"b"])[..7]),
    ));

    // chat: the worked example of the module doc, and the slow consumer.
    let mut example = vec![LINE_DEFAULT, 0, 1];
    example.extend(say(0, b"/nick ann\n"));
    example.extend(say(1, b"hello\n/nick ANN\n/nick bo b\n"));
    example.extend(say(0, b"/who\n/msg GUEST2 psst\n//who\n"));
    example.extend(say(1, b"/quit bye all\n"));
    s.push(("chat", "worked-example", example));
    let mut errors = vec![LINE16, 0, 2];
    errors.extend(say(0, b"/help\n/me waves\n/\n/NICK x\n"));
    errors.extend(say(1, b"bell\x07\n\xff\xfe\nx\rx\n\n\r\n"));
    errors.extend(say(
        2,
        b"/msg nobody hi\n/msg\n/msg guest2\n/msg guest1 self\n",
    ));
    errors.extend(say(0, b"yyyyyyyyyyyyyyyyyyyyyyyyy\nafter\n"));
    errors.extend([4, 6, 1, 7, 2, 2]);
    s.push(("chat", "errors-and-leaves", errors));
    let mut slow = vec![LINE_DEFAULT, 1, 2];
    for _ in 0..6 {
        slow.extend(say(0, b"line 00\n"));
        slow.extend([5, 1]);
    }
    s.push(("chat", "slow-consumer", slow));
    s
}
