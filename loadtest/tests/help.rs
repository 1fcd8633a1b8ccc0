//! `xmpp-loadtest --help` as a user reads it: clap turns `{n}` in help
//! text into a line break, which once cut the `--user-pattern` line in two.

use std::process::Command;

const HARNESS: &str = env!("CARGO_BIN_EXE_xmpp-loadtest");

fn help(flag: &str) -> String {
    let out = Command::new(HARNESS).arg(flag).output().expect("run");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8 help")
}

#[test]
fn user_pattern_help_line_was_broken_by_the_placeholder() {
    for flag in ["-h", "--help"] {
        let text = help(flag);
        assert!(
            text.contains("Account names: `{n}` is replaced by the user number."),
            "{flag}:\n{text}"
        );
        assert!(text.contains("[default: load{n}]"), "{flag}:\n{text}");
        for placeholder in ["`{user}`", "`{password}`", "`{domain}`"] {
            assert!(text.contains(placeholder), "{flag}: {placeholder}\n{text}");
        }
        // Not a single escape sequence reaches a pipe.
        assert!(!text.contains('\u{1b}'), "{flag}:\n{text:?}");
    }
}
