//! `ringbook lobster` on real data: the LOBSTER AAPL sample vendored in `tools/data/lobster`
//! must replay with no top-5 mismatch and every visible execution filling the order
//! it names; a tampered orderbook file and a priority violation must be caught; invalid input
//! must be refused with the file and line.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The sample's directory, vendored in the repository (tools/data/lobster/README.md).
fn sample_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("data/lobster")
}

/// The sample's message and orderbook files.
fn sample() -> (PathBuf, PathBuf) {
    let dir = sample_dir();
    let find = |suffix: &str| {
        fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("cannot read the LOBSTER sample in {}: {e}", dir.display()))
            .map(|e| e.unwrap().path())
            .find(|p| p.to_string_lossy().ends_with(suffix))
            .unwrap_or_else(|| panic!("no *{suffix} in {}", dir.display()))
    };
    (find("_message_10.csv"), find("_orderbook_10.csv"))
}

/// A fresh scratch directory for one test.
fn scratch(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("lobster-{name}"));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap();
    dir
}

fn ringbook(args: &[&Path], extra: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ringbook"))
        .arg("lobster")
        .args(args)
        .args(extra)
        .output()
        .expect("ringbook runs")
}

/// The number after `"key":` in the one-line JSON report.
fn number(json: &str, key: &str) -> u64 {
    let tag = format!("\"{key}\":");
    let at = json
        .find(&tag)
        .unwrap_or_else(|| panic!("no {key} in {json}"))
        + tag.len();
    let digits: String = json[at..]
        .chars()
        .take_while(|c| c.is_ascii_digit())
        .collect();
    digits
        .parse()
        .unwrap_or_else(|_| panic!("{key} is not a number in {json}"))
}

/// Runs with `--json` and returns the report and the exit status.
fn run_json(messages: &Path, books: &Path, extra: &[&str]) -> (String, Option<i32>) {
    let out = ringbook(&[messages, books], &[&["--json"], extra].concat());
    let stdout = String::from_utf8(out.stdout).unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    let json = stdout.trim().to_string();
    assert!(
        json.starts_with('{') && json.ends_with('}') && json.lines().count() == 1,
        "one JSON object expected, got {stdout:?} (stderr: {stderr})"
    );
    (json, out.status.code())
}

/// Lines of a file, however its last line ends (the sample's has no final newline).
fn line_count(path: &Path) -> u64 {
    fs::read_to_string(path).unwrap().lines().count() as u64
}

#[test]
fn the_sample_replays_exactly() {
    let (messages, books) = sample();
    // `wc -l` says 998: the last line has no newline. There are 999 messages.
    assert_eq!(line_count(&messages), 999);
    assert_eq!(line_count(&books), 999);

    let (json, code) = run_json(&messages, &books, &[]);
    assert_eq!(number(&json, "messages"), 999, "{json}");
    assert_eq!(number(&json, "top5_mismatches"), 0, "{json}");
    let executions = number(&json, "visible_executions");
    assert!(executions > 0, "{json}");
    assert_eq!(
        number(&json, "executions_filling_named_order"),
        executions,
        "{json}"
    );
    assert_eq!(number(&json, "hidden_executions"), 61, "{json}");
    // The book a market-data subscriber rebuilds from the depth updates is ringbook's book
    // after every message, so it matches LOBSTER's as well.
    assert_eq!(number(&json, "md_mismatches"), 0, "{json}");
    assert_eq!(number(&json, "md_top5_mismatches"), 0, "{json}");
    assert!(json.contains("\"state_hash\":\""), "{json}");
    assert_eq!(code, Some(0), "{json}");

    // The human summary tells the same story.
    let out = ringbook(&[&messages, &books], &[]);
    assert_eq!(out.status.code(), Some(0));
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("top-5 mismatches"), "{text}");
    assert!(
        text.lines()
            .any(|l| l.starts_with("result") && l.ends_with("OK")),
        "{text}"
    );
}

#[test]
fn a_tampered_orderbook_line_is_a_mismatch() {
    let (messages, books) = sample();
    let dir = scratch("tampered");
    let text = fs::read_to_string(&books).unwrap();
    // Line 500: one more share in the best ask.
    let tampered: Vec<String> = text
        .lines()
        .enumerate()
        .map(|(i, line)| {
            if i + 1 != 500 {
                return line.to_string();
            }
            let mut fields: Vec<String> = line.split(',').map(String::from).collect();
            fields[1] = (fields[1].parse::<u64>().unwrap() + 1).to_string();
            fields.join(",")
        })
        .collect();
    let tampered_books = dir.join("orderbook_10.csv");
    fs::write(&tampered_books, tampered.join("\n")).unwrap();

    let out = ringbook(&[&messages, &tampered_books], &["--json"]);
    let json = String::from_utf8(out.stdout).unwrap();
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert_eq!(number(&json, "top5_mismatches"), 1, "{json}");
    assert_eq!(number(&json, "md_top5_mismatches"), 1, "{json}");
    assert_eq!(number(&json, "md_mismatches"), 0, "{json}");
    assert_eq!(out.status.code(), Some(1), "{json}");
    assert!(
        stderr.contains("message line 500"),
        "the mismatch is shown: {stderr}"
    );
}

/// A hand-made 2-level file pair that walks through every mechanism: the starting book, unknown
/// ids acting on synthetic liquidity ahead of a newer order, a partial cancel, empty levels,
/// liquidity coming into view, a level that shrank out of view, a hidden execution at a
/// sub-penny price.
const SMALL_MESSAGES: &str = "\
34200.1,1,101,5,1001000,-1
34200.2,4,7,4,1001000,-1
34200.3,2,6,3,999000,1
34200.4,1,102,8,998000,1
34200.5,4,7,6,1001000,-1
34200.6,4,101,5,1001000,-1
34200.7,1,103,10,1001500,-1
34200.8,3,8,20,1002000,-1
34200.9,4,103,10,1001500,-1
34201.0,5,0,50,1002550,-1
34201.1,4,9,15,1003000,-1
34201.2,3,102,8,998000,1
";

const SMALL_BOOKS: &str = "\
1001000,15,999000,10,1002000,20,-9999999999,0
1001000,11,999000,10,1002000,20,-9999999999,0
1001000,11,999000,7,1002000,20,-9999999999,0
1001000,11,999000,7,1002000,20,998000,8
1001000,5,999000,7,1002000,20,998000,8
1002000,20,999000,7,1003000,25,998000,8
1001500,10,999000,7,1002000,20,998000,8
1001500,10,999000,7,1003000,15,998000,8
1003000,15,999000,7,1004000,40,998000,8
1003000,15,999000,7,1004000,40,998000,8
1004000,40,999000,7,9999999999,0,998000,8
1004000,40,999000,7,9999999999,0,-9999999999,0
";

fn write_pair(dir: &Path, messages: &str, books: &str) -> (PathBuf, PathBuf) {
    let (m, b) = (dir.join("message_2.csv"), dir.join("orderbook_2.csv"));
    fs::write(&m, messages).unwrap();
    fs::write(&b, books).unwrap();
    (m, b)
}

#[test]
fn a_small_replay_covers_the_blind_spot() {
    let dir = scratch("small");
    let (m, b) = write_pair(&dir, SMALL_MESSAGES, SMALL_BOOKS);
    let (json, code) = run_json(&m, &b, &["--levels", "2"]);
    assert_eq!(number(&json, "messages"), 12, "{json}");
    assert_eq!(number(&json, "top5_mismatches"), 0, "{json}");
    // Lines 6, 8 and 9 show levels that just came into view with news in them.
    assert_eq!(number(&json, "top10_mismatches"), 3, "{json}");
    assert_eq!(number(&json, "visible_executions"), 5, "{json}");
    assert_eq!(number(&json, "executions_filling_named_order"), 5, "{json}");
    assert_eq!(number(&json, "hidden_executions"), 1, "{json}");
    assert_eq!(code, Some(0), "{json}");
}

#[test]
fn an_execution_out_of_priority_is_caught() {
    let dir = scratch("priority");
    // Line 5 says order 101 traded, but the starting order ahead of it at $100.10 is older.
    let messages = SMALL_MESSAGES.replace("34200.5,4,7,6,", "34200.5,4,101,5,");
    let books = SMALL_BOOKS.replace("1001000,5,999000,7", "1001000,6,999000,7");
    let (m, b) = write_pair(&dir, &messages, &books);
    let out = ringbook(&[&m, &b], &["--json", "--levels", "2"]);
    let json = String::from_utf8(out.stdout).unwrap();
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert_eq!(number(&json, "visible_executions"), 5, "{json}");
    assert!(
        number(&json, "executions_filling_named_order") < 5,
        "{json}"
    );
    assert_eq!(out.status.code(), Some(1), "{json}");
    assert!(stderr.contains("message line 5"), "{stderr}");
}

#[test]
fn invalid_input_names_the_file_and_line() {
    let dir = scratch("invalid");
    // A price that is not a whole number of cents.
    let messages = SMALL_MESSAGES.replace("34200.4,1,102,8,998000,1", "34200.4,1,102,8,998050,1");
    let (m, b) = write_pair(&dir, &messages, SMALL_BOOKS);
    let out = ringbook(&[&m, &b], &["--levels", "2"]);
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("message_2.csv:4:"), "{stderr}");
    assert!(stderr.contains("whole number of cents"), "{stderr}");

    // A book line with a field missing.
    let books = SMALL_BOOKS.replace(
        "1001500,10,999000,7,1003000,15,998000,8\n",
        "1001500,10,999000,7,1003000,15,998000\n",
    );
    let (m, b) = write_pair(&dir, SMALL_MESSAGES, &books);
    let out = ringbook(&[&m, &b], &["--levels", "2"]);
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("orderbook_2.csv:8:"), "{stderr}");

    // The sample read as 5 levels: every line has the wrong number of fields.
    let (messages, books) = sample();
    let out = ringbook(&[&messages, &books], &["--levels", "5"]);
    assert_eq!(out.status.code(), Some(2));

    // A line of a million commas, and a field of a megabyte: counted, not collected, and not
    // quoted whole (a 120 MB line took 2 GB, and a bad field was echoed whole: red-team).
    for (line, says) in [
        (",".repeat(1 << 20), "found 1048577".to_string()),
        (
            format!("34200.1,1,{},8,998000,1", "9".repeat(1 << 20)),
            format!("order id \"{}…\" is not a valid number", "9".repeat(40)),
        ),
    ] {
        let messages = SMALL_MESSAGES.replacen("34200.4,1,102,8,998000,1", &line, 1);
        let (m, b) = write_pair(&dir, &messages, SMALL_BOOKS);
        let out = ringbook(&[&m, &b], &["--levels", "2"]);
        let stderr = String::from_utf8(out.stderr).unwrap();
        assert_eq!(
            out.status.code(),
            Some(2),
            "{}",
            &stderr[..stderr.len().min(300)]
        );
        assert!(stderr.len() < 1000, "{} bytes on stderr", stderr.len());
        assert!(stderr.contains(&says), "{stderr}");
    }

    // A file that is not there.
    let out = ringbook(&[&dir.join("nope.csv"), &b], &[]);
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("nope.csv"), "{stderr}");
}
