//! The man pages and shell completions the packages ship: generated from the CLI,
//! every page a SEE ALSO names exists, the main page says how the command exits and
//! what it reads, and bash, zsh and fish complete a second word.
//! (zsh and fish come from Debian's packages; README's setup and `.ci/run` install
//! them.)

mod common;
use std::path::Path;
use std::process::Command;

fn generated() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(common::BIN)
        .arg("generate")
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    dir
}

fn run(program: &str, args: &[&str]) -> String {
    let out = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{program} ({e}); install it: apt-get install bash zsh fish"));
    assert!(out.status.success(), "{program}: {out:?}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// What bash completes for `words` (the last one being completed).
fn bash(dir: &Path, words: &[&str]) -> Vec<String> {
    let script = format!(
        "source '{}/crawler-agent.bash'
         COMP_WORDS=({}); COMP_CWORD={}
         f=$(complete -p crawler-agent | sed 's/.*-F \\([^ ]*\\) .*/\\1/')
         \"$f\" crawler-agent '{}' '{}'
         printf '%s\\n' \"${{COMPREPLY[@]}}\"",
        dir.display(),
        words
            .iter()
            .map(|w| format!("'{w}'"))
            .collect::<Vec<_>>()
            .join(" "),
        words.len() - 1,
        words[words.len() - 1],
        words[words.len() - 2],
    );
    run("bash", &["-c", &script])
        .lines()
        .map(str::to_string)
        .collect()
}

fn fish(dir: &Path, line: &str) -> Vec<String> {
    let script = format!(
        "source '{}/crawler-agent.fish'; complete -C '{line}'",
        dir.display()
    );
    run("fish", &["-c", &script])
        .lines()
        .map(|l| l.split('\t').next().unwrap_or("").to_string())
        .collect()
}

fn zsh(dir: &Path, words: &[&str]) -> Vec<String> {
    let capture = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/completion/zsh_capture.zsh"
    );
    let mut args = vec![capture, dir.to_str().unwrap()];
    args.extend(words);
    run("zsh", &args).lines().map(str::to_string).collect()
}

#[test]
fn bash_zsh_and_fish_complete_the_second_word() {
    let dir = generated();
    let d = dir.path();
    for (words, want) in [
        (&["crawler-agent", "jobs", "l"][..], "list"),
        (&["crawler-agent", "credentials", "r"][..], "remove"),
        (&["crawler-agent", "db", "p"][..], "prune"),
    ] {
        assert!(bash(d, words).contains(&want.to_string()), "bash {words:?}");
        assert!(zsh(d, words).contains(&want.to_string()), "zsh {words:?}");
        let line = words.join(" ");
        assert!(fish(d, &line).contains(&want.to_string()), "fish {line}");
    }
    // And the options of a subcommand.
    let options = bash(d, &["crawler-agent", "jobs", "list", "--"]);
    assert!(options.contains(&"--status".to_string()), "{options:?}");
}

#[test]
fn every_man_page_a_page_points_to_exists_and_the_main_page_has_the_usual_sections() {
    let dir = generated();
    let main = std::fs::read_to_string(dir.path().join("crawler-agent.1")).unwrap();
    for section in [
        ".SH \"EXIT STATUS\"",
        ".SH ENVIRONMENT",
        ".SH FILES",
        ".SH \"SEE ALSO\"",
    ] {
        assert!(main.contains(section), "crawler-agent.1 lacks {section}");
    }
    let mut pages = 0;
    for entry in std::fs::read_dir(dir.path()).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().and_then(|e| e.to_str()) != Some("1") {
            continue;
        }
        pages += 1;
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains(".SH \"EXIT STATUS\""), "{}", path.display());
        let see_also = text.split(".SH \"SEE ALSO\"").nth(1).unwrap_or("");
        for name in see_also
            .split("\\fB")
            .skip(1)
            .filter_map(|s| s.split("\\fR(1)").next())
            .filter(|n| n.starts_with("crawler-agent"))
        {
            assert!(
                dir.path().join(format!("{name}.1")).exists(),
                "{} points at {name}(1), which is not generated",
                path.display()
            );
        }
    }
    assert!(pages >= 20, "a page per subcommand: {pages}");
}
