use proptest::prelude::*;

use super::*;
use crate::mail::ParsedMail;

fn signer() -> MessageIdSigner {
    MessageIdSigner::new(b"0123456789abcdef0123456789abcdef-test-secret").unwrap()
}

fn mail(subject: &str, in_reply_to: &[&str], references: &[&str]) -> ParsedMail {
    ParsedMail {
        message_id: None,
        in_reply_to: in_reply_to.iter().map(|s| s.to_string()).collect(),
        references: references.iter().map(|s| s.to_string()).collect(),
        from: None,
        reply_to: vec![],
        to: vec![],
        cc: vec![],
        subject: subject.to_string(),
        date: None,
        text: String::new(),
        html: None,
        attachments: vec![],
        auto_reply: false,
        bounce: None,
        content_hash: [0; 32],
        size: 0,
    }
}

// ---- signed Message-IDs ----

#[test]
fn a_short_secret_is_refused_with_a_clear_error() {
    let err = MessageIdSigner::new(b"short").unwrap_err();
    assert!(err.to_string().contains("at least 32 bytes"), "{err}");
    assert!(!format!("{:?}", signer()).contains("0123"));
}

#[test]
fn made_ids_verify_and_name_their_account_and_interaction() {
    let s = signer();
    let id = s.make("SERV", InteractionId(123), "Example.TEST");
    assert!(id.starts_with("mr.serv.123."), "{id}");
    assert!(id.ends_with("@example.test"), "{id}");
    assert_eq!(
        s.verify(&id),
        Some(("SERV".to_string(), InteractionId(123)))
    );
    assert_eq!(
        s.verify(&format!("<{id}>")),
        Some(("SERV".to_string(), InteractionId(123)))
    );
}

#[test]
fn ids_are_unique_per_call_and_lowercase_safe() {
    let s = signer();
    let a = s.make("SERV", InteractionId(7), "example.test");
    let b = s.make("SERV", InteractionId(7), "example.test");
    assert_ne!(a, b);
    assert_eq!(a, a.to_lowercase());
    // Some servers upper- or lower-case ids; both still verify.
    assert!(s.verify(&a.to_uppercase()).is_some());
}

#[test]
fn made_ids_are_rfc5322_dot_atoms() {
    let id = signer().make("SERV", InteractionId(i64::MAX), "example.test");
    let (local, domain) = id.split_once('@').unwrap();
    assert!(is_dot_atom(local) && is_dot_atom(domain), "{id}");
    // An unusable domain does not make an invalid id.
    let id = signer().make("SERV", InteractionId(1), "bad domain..x");
    assert!(id.ends_with("@mailroom.invalid"), "{id}");
    assert!(signer().verify(&id).is_some());
}

#[test]
fn another_secret_or_garbage_does_not_verify() {
    let id = signer().make("SERV", InteractionId(5), "example.test");
    let other = MessageIdSigner::new(&[7u8; 32]).unwrap();
    assert_eq!(other.verify(&id), None);
    for junk in [
        "",
        "@",
        "mr.serv.5.x.y@example.test",
        "mr.serv.0.0123456789abcdef.00000000000000000000000000000000@example.test",
        "CAF=abc@mail.gmail.com",
        "mr..5.0123456789abcdef.00@x",
    ] {
        assert_eq!(signer().verify(junk), None, "{junk}");
    }
}

#[test]
fn reply_refs_keep_only_this_accounts_verified_ids_newest_first() {
    let s = signer();
    let ours_old = s.make("SERV", InteractionId(1), "example.test");
    let ours_new = s.make("SERV", InteractionId(2), "example.test");
    let sales = s.make("SALES", InteractionId(3), "example.test");
    let forged = ours_new.replace(".2.", ".9.");
    let m = mail(
        "Re: [SERV#2] Help",
        &[&ours_new],
        &["a@x.test", &ours_old, &sales, &forged, &ours_new],
    );
    let refs = reply_refs(&m, &s, "SERV");
    assert_eq!(refs.ours, vec![InteractionId(2), InteractionId(1)]);
    assert_eq!(
        refs.message_ids,
        vec![
            ours_new.clone(),
            forged.clone(),
            sales.clone(),
            ours_old.clone(),
            "a@x.test".to_string()
        ]
    );
    assert_eq!(refs.subject_token, Some(InteractionId(2)));
    // The other account sees only its own.
    assert_eq!(reply_refs(&m, &s, "sales").ours, vec![InteractionId(3)]);
}

#[test]
fn reply_refs_of_a_mail_without_headers_is_empty() {
    assert_eq!(
        reply_refs(&mail("", &[], &[]), &signer(), "SERV"),
        ReplyRefs::default()
    );
}

proptest! {
    #[test]
    fn signer_roundtrips(key in "[A-Z0-9]{1,5}", id in 1i64.., domain in "[a-z0-9]{1,10}(\\.[a-z]{2,5}){0,2}") {
        let s = signer();
        let made = s.make(&key, InteractionId(id), &domain);
        prop_assert_eq!(s.verify(&made), Some((key.clone(), InteractionId(id))));
    }

    #[test]
    fn any_changed_character_fails_verification(
        id in 1i64..1_000_000_000,
        pos in any::<prop::sample::Index>(),
        replacement in "[a-z0-9.@<>x#-]",
    ) {
        let s = signer();
        let made = s.make("SERV", InteractionId(id), "example.test");
        let i = pos.index(made.len());
        let old = &made[i..i + 1];
        let new = replacement.as_str();
        prop_assume!(!old.eq_ignore_ascii_case(new));
        let tampered = format!("{}{}{}", &made[..i], new, &made[i + 1..]);
        prop_assert_eq!(s.verify(&tampered), None, "{} verified", tampered);
    }

    #[test]
    fn verify_never_panics(s in "\\PC{0,200}") {
        let _ = signer().verify(&s);
    }
}

// ---- subject tokens ----

#[test]
fn subject_tokens_are_found_case_insensitively_with_spaces() {
    assert_eq!(
        subject_token("Re: [SERV#123] Help", "SERV"),
        Some(InteractionId(123))
    );
    assert_eq!(
        subject_token("re: [serv#123] help", "SERV"),
        Some(InteractionId(123))
    );
    assert_eq!(
        subject_token("Re: [ SERV # 123 ] Help", "SERV"),
        Some(InteractionId(123))
    );
    assert_eq!(
        subject_token("[SALES#5] [SERV#6]", "SERV"),
        Some(InteractionId(6))
    );
}

#[test]
fn other_keys_and_malformed_tokens_are_not_tokens() {
    for s in [
        "[SERVX#1]",
        "[SALES#1]",
        "[SERV#]",
        "[SERV#0]",
        "[SERV#-1]",
        "[SERV#12",
        "[SERV 12]",
        "SERV#12",
        "[SERV#99999999999999999999]",
        "",
    ] {
        assert_eq!(subject_token(s, "SERV"), None, "{s}");
    }
    assert_eq!(subject_token("[#1]", ""), None);
}

#[test]
fn add_subject_token_goes_after_prefixes_and_never_twice() {
    let id = InteractionId(42);
    assert_eq!(add_subject_token("Help", "SERV", id), "[SERV#42] Help");
    assert_eq!(
        add_subject_token("Re: Help", "SERV", id),
        "Re: [SERV#42] Help"
    );
    assert_eq!(add_subject_token("", "SERV", id), "[SERV#42]");
    assert_eq!(add_subject_token("Re:", "SERV", id), "Re: [SERV#42]");
    let once = add_subject_token("Re: Help", "SERV", id);
    assert_eq!(add_subject_token(&once, "SERV", id), once);
    assert_eq!(
        add_subject_token("Re: [serv # 42] Help", "SERV", id),
        "Re: [serv # 42] Help"
    );
    // Thread 2 replaces thread 1's token.
    assert_eq!(
        add_subject_token("Re: [SERV#7] Help", "SERV", id),
        "Re: [SERV#42] Help"
    );
    // Another account's token stays.
    assert_eq!(
        add_subject_token("[SALES#7] Help", "SERV", id),
        "[SERV#42] [SALES#7] Help"
    );
}

#[test]
fn reply_subject_adds_exactly_one_re() {
    for (input, want) in [
        ("Help", "Re: Help"),
        ("Re: Help", "Re: Help"),
        ("RE: Re: re: Help", "Re: Help"),
        ("AW: Help", "Re: Help"),
        ("Aw: SV: Antw: Help", "Re: Help"),
        ("Re[2]: Help", "Re: Help"),
        ("RE : Help", "Re: Help"),
        ("回复：Help", "Re: Help"),
        ("Fwd: Help", "Re: Fwd: Help"),
        ("Re: Fwd: Help", "Re: Fwd: Help"),
        ("Reminder: Help", "Re: Reminder: Help"),
        ("", "Re:"),
        ("  Re:  ", "Re:"),
    ] {
        assert_eq!(reply_subject(input), want, "{input:?}");
    }
}

#[test]
fn forward_subject_adds_exactly_one_fwd() {
    assert_eq!(forward_subject("Help"), "Fwd: Help");
    assert_eq!(forward_subject("FW: Help"), "Fwd: Help");
    assert_eq!(forward_subject("WG: Fwd: Help"), "Fwd: Help");
    assert_eq!(forward_subject("Re: Help"), "Fwd: Re: Help");
    assert_eq!(forward_subject(""), "Fwd:");
}

proptest! {
    #[test]
    fn subject_helpers_never_panic_and_are_idempotent(s in "\\PC{0,80}", id in 1i64..) {
        let _ = subject_token(&s, "SERV");
        let r = reply_subject(&s);
        prop_assert_eq!(reply_subject(&r), r.clone());
        let f = forward_subject(&s);
        prop_assert_eq!(forward_subject(&f), f.clone());
        let t = add_subject_token(&s, "SERV", InteractionId(id));
        prop_assert_eq!(subject_token(&t, "SERV").is_some(), true);
        prop_assert_eq!(add_subject_token(&t, "SERV", InteractionId(id)), t.clone());
        // A reply keeps the token findable.
        prop_assert!(subject_token(&reply_subject(&t), "SERV").is_some());
    }

    #[test]
    fn prefixed_subjects_reply_to_the_same(
        prefixes in prop::collection::vec(prop::sample::select(vec!["Re:", "RE:", "Aw:", "SV:", "Antw:", "re :", "Re[3]:"]), 0..5),
        base in "[A-Za-z][A-Za-z0-9 ]{0,30}",
    ) {
        let subject = format!("{} {}", prefixes.join(" "), base);
        prop_assert_eq!(reply_subject(&subject), reply_subject(&base));
    }
}

// ---- names ----

#[test]
fn display_names_split_into_first_and_last() {
    for (name, address, first, last) in [
        (Some("Doe, Jane"), "jane@x.test", "Jane", "Doe"),
        (Some("Jane Q. Doe"), "jane@x.test", "Jane Q.", "Doe"),
        (Some("\"Jane Doe\""), "jane@x.test", "Jane", "Doe"),
        (Some("'Doe, Jane'"), "jane@x.test", "Jane", "Doe"),
        (Some("  Jane    Doe  "), "jane@x.test", "Jane", "Doe"),
        (
            Some("Jane Doe (ACME Support)"),
            "jane@x.test",
            "Jane",
            "Doe",
        ),
        (
            Some("Ludwig van Beethoven"),
            "lvb@x.test",
            "Ludwig",
            "van Beethoven",
        ),
        (Some("Jane Doe, Jr."), "jane@x.test", "Jane", "Doe Jr."),
        (Some("Madonna"), "m@x.test", "Madonna", ""),
        (Some("山田太郎"), "taro@x.test", "山田太郎", ""),
        (Some("jane@x.test"), "jane@x.test", "jane", ""),
        (
            Some("\"jane.doe@x.test\""),
            "jane.doe@x.test",
            "jane.doe",
            "",
        ),
        (Some(""), "jane@x.test", "jane", ""),
        (Some("   "), "jane@x.test", "jane", ""),
        (Some("\"\""), "jane@x.test", "jane", ""),
        (None, "jane@x.test", "jane", ""),
        (None, "no-at-sign", "no-at-sign", ""),
        (Some(", Jane"), "j@x.test", "Jane", ""),
        (Some("Doe,"), "j@x.test", "Doe", ""),
    ] {
        assert_eq!(
            split_display_name(name, address),
            (first.to_string(), last.to_string()),
            "{name:?}"
        );
    }
}

proptest! {
    #[test]
    fn split_display_name_never_panics_and_first_is_never_empty_for_a_real_address(
        name in proptest::option::of("\\PC{0,60}"),
        local in "[a-z]{1,10}",
    ) {
        let address = format!("{local}@x.test");
        let (first, _last) = split_display_name(name.as_deref(), &address);
        prop_assert!(!first.is_empty());
    }
}
