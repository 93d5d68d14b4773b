//! The README a newcomer follows stays true: its Rust blocks are complete programs, each the
//! very text of an example that `cargo test` compiles, its two first commands are the ones CI
//! and newcomers run, and its exit status table is the one `entra --help` prints.

use std::path::{Path, PathBuf};

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn readme() -> String {
    std::fs::read_to_string(workspace().join("README.md")).expect("README.md")
}

/// Each fenced block: the line before its opening fence, its language, and its text.
fn blocks(markdown: &str) -> Vec<(String, String, String)> {
    let mut blocks = Vec::new();
    let mut lines = markdown.lines();
    let mut previous = "";
    while let Some(line) = lines.next() {
        if let Some(language) = line.strip_prefix("```") {
            let mut text = String::new();
            for inner in lines.by_ref() {
                if inner == "```" {
                    break;
                }
                text.push_str(inner);
                text.push('\n');
            }
            blocks.push((previous.to_owned(), language.to_owned(), text));
        }
        previous = line;
    }
    blocks
}

#[test]
fn every_rust_block_is_an_example_that_compiles() {
    let readme = readme();
    let rust: Vec<_> = blocks(&readme)
        .into_iter()
        .filter(|(_, language, _)| language.starts_with("rust"))
        .collect();
    assert!(rust.len() >= 2, "the README shows the library");
    for (marker, language, text) in rust {
        assert_eq!(
            language, "rust",
            "a plain rust block, no rustdoc attributes"
        );
        let name = marker
            .strip_prefix("<!-- example: ")
            .and_then(|rest| rest.strip_suffix(" -->"))
            .unwrap_or_else(|| panic!("a Rust block without `<!-- example: NAME -->`:\n{text}"));
        let path = workspace().join(format!("crates/entra-identity/examples/{name}.rs"));
        let example = std::fs::read_to_string(&path)
            .unwrap_or_else(|error| panic!("{}: {error}", path.display()));
        assert_eq!(
            text,
            example,
            "the README's block differs from {}",
            path.display()
        );
        // Complete programs: no rustdoc hidden lines.
        assert!(
            !text
                .lines()
                .any(|line| line == "#" || line.starts_with("# ")),
            "{name}: a rustdoc hidden line"
        );
    }
}

#[test]
fn the_two_first_commands_are_kept() {
    let readme = readme();
    let first_shell = blocks(&readme)
        .into_iter()
        .find(|(_, language, _)| language == "sh")
        .expect("a shell block");
    assert_eq!(
        first_shell.2,
        "cargo run -p entra-cli -- demo   # run it: both credentials against an embedded \
         emulator, offline\nscripts/test                     # run every test suite \
         (installs what the tests need)\n"
    );
}

#[test]
fn the_exit_status_table_is_the_one_help_prints() {
    let help = assert_cmd::Command::cargo_bin("entra")
        .expect("the entra binary")
        .arg("--help")
        .output()
        .expect("entra --help");
    let help = String::from_utf8(help.stdout).expect("UTF-8");
    let codes_in_help: Vec<&str> = help
        .split_once("Exit status:")
        .expect("--help has the exit status")
        .1
        .lines()
        .filter_map(|line| {
            let line = line.strip_prefix("  ")?;
            let code = line.split_whitespace().next()?;
            code.chars().all(|c| c.is_ascii_digit()).then_some(code)
        })
        .collect();
    let readme = readme();
    let table = readme
        .split_once("### Exit status")
        .expect("the README has the exit status")
        .1;
    let codes_in_readme: Vec<&str> = table
        .lines()
        .skip_while(|line| !line.starts_with('|'))
        .take_while(|line| line.starts_with('|'))
        .filter_map(|line| line.split('|').nth(1).map(str::trim))
        .filter(|cell| cell.chars().all(|c| c.is_ascii_digit()) && !cell.is_empty())
        .collect();
    assert_eq!(codes_in_readme, codes_in_help);
    assert_eq!(codes_in_help, ["0", "1", "2", "3", "4", "5", "141"]);
}
