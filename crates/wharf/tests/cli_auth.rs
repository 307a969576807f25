//! `wharf auth htpasswd` and the logins it makes possible: a password
//! longer than bcrypt reads is refused when set, never cut short.

mod common;
use common::cli::wharf_htpasswd;
use common::server::Wharf;

#[test]
fn a_password_longer_than_72_bytes_is_refused_and_nothing_is_written() {
    let work = tempfile::tempdir().expect("temp dir");
    let file = work.path().join("htpasswd");
    let long = format!("{}tail", "p".repeat(72));

    let out = wharf_htpasswd(&file, "ci", &long);
    assert_eq!(out.status.code(), Some(1), "{}", out.describe());
    assert!(
        out.stderr.contains("76 bytes") && out.stderr.contains("hint:"),
        "the error says what is wrong and what to do: {}",
        out.describe()
    );
    assert!(
        !out.stderr.contains(&long),
        "the password must not be echoed"
    );
    assert!(!file.exists(), "nothing may be written");

    let longest = "p".repeat(72);
    let out = wharf_htpasswd(&file, "ci", &longest);
    assert!(out.status.success(), "72 bytes fit: {}", out.describe());
}

#[test]
fn a_login_with_more_than_72_bytes_is_refused_even_when_they_begin_right() {
    let work = tempfile::tempdir().expect("temp dir");
    let file = work.path().join("htpasswd");
    let password = "q".repeat(72);
    assert!(wharf_htpasswd(&file, "ci", &password).status.success());
    let wharf = Wharf::start_with_config_text(
        &work.path().join("wharf"),
        &format!("[auth]\nmode = \"basic\"\nhtpasswd = {file:?}\n"),
    );
    let login = |password: &str| {
        reqwest::blocking::Client::new()
            .get(format!("{}/v2/", wharf.url()))
            .basic_auth("ci", Some(password))
            .send()
            .expect("GET /v2/")
            .status()
            .as_u16()
    };
    assert_eq!(login(&password), 200, "the password as set");
    assert_eq!(
        login(&format!("{password}-and-more")),
        401,
        "bcrypt would have matched the first 72 bytes; wharf refuses"
    );
}
