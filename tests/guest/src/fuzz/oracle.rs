// SPDX-License-Identifier: GPL-2.0

//! The oracle: what `apeinfo --json` predicts for a file on this CPU and page size, and
//! whether an exec's outcome, the module's counters and its log agree with it.
//!
//! The mapping from a prediction to the module's counters is src/binfmt_ape_main.rs's
//! `decline()`: `not-ape` moves nothing (the module leaves the file alone, silently);
//! `debug-magic` moves `declined_debug` and is not logged; `no-printf`, `no-machine` and every
//! field's reason move `declined_no_header`, `declined_no_machine` and `declined_invalid`,
//! and are logged, rate-limited, as `binfmt_ape: NAME: not run natively: REASON`; a selected
//! header moves `handled`, and `elf_refused` too when binfmt_elf refuses it.

use super::child::{Auxv, Ended};
use super::kernel::Delta;
use apekit::ape;
use std::process::Command;

/// What apeinfo says the kernel does with a file here.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Prediction {
    /// Runs it with the header statement of this index.
    Run(usize),
    /// Declines it, for this reason (`ape::Error::name`).
    Decline(String),
}

impl std::fmt::Display for Prediction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Run(i) => write!(f, "run header {i}"),
            Self::Decline(r) => write!(f, "decline {r}"),
        }
    }
}

impl Prediction {
    /// The histogram's name for it.
    pub fn kind(&self) -> &str {
        match self {
            Self::Run(_) => "run",
            Self::Decline(r) => r,
        }
    }

    /// The counter a decline moves (`None`: none, for `not-ape`).
    fn counter(&self) -> Option<&'static str> {
        match self {
            Self::Run(_) => Some("handled"),
            Self::Decline(r) => match r.as_str() {
                "not-ape" => None,
                "debug-magic" => Some("declined_debug"),
                "no-printf" => Some("declined_no_header"),
                "no-machine" => Some("declined_no_machine"),
                _ => Some("declined_invalid"),
            },
        }
    }
}

/// Asks `apeinfo` about `paths` (one process for all of them), for CPU `arch` and `page`
/// bytes pages: for each file its prediction, or why apeinfo gave none.
pub fn predict(
    apeinfo: &str,
    paths: &[String],
    arch: &str,
    page: u64,
) -> Vec<Result<Prediction, String>> {
    let out = match Command::new(apeinfo)
        .args(["--json", "--arch", arch, "--page-size", &page.to_string()])
        .args(paths)
        .output()
    {
        Ok(o) => o,
        Err(e) => {
            return paths
                .iter()
                .map(|_| Err(format!("{apeinfo}: {e}")))
                .collect()
        }
    };
    // Its exit status says how the files run (or that one could not be read): not looked at.
    let text = String::from_utf8_lossy(&out.stdout);
    let errors = String::from_utf8_lossy(&out.stderr);
    let mut objects = Vec::new();
    let mut p = Parser {
        s: text.as_bytes(),
        i: 0,
    };
    let mut bad = None;
    while p.skip_ws() {
        match p.value() {
            Ok(Json::Arr(v)) => objects.extend(v),
            Ok(v) => objects.push(v),
            Err(e) => {
                bad = Some(e);
                break;
            }
        }
    }
    let objects: Vec<Json> = objects
        .into_iter()
        .filter(|o| o.get("selected").is_some())
        .collect();
    // By name; in order only where apeinfo names no file but answered for each.
    let named = objects.iter().any(|o| o.get("file").is_some());
    paths
        .iter()
        .enumerate()
        .map(|(i, path)| {
            let o = if named {
                objects
                    .iter()
                    .find(|o| matches!(o.get("file"), Some(Json::Str(f)) if f == path))
            } else {
                objects.get(i).filter(|_| objects.len() == paths.len())
            };
            let Some(o) = o else {
                let said = errors
                    .lines()
                    .find(|l| l.contains(path.as_str()))
                    .or(bad.as_deref())
                    .unwrap_or("nothing");
                return Err(format!("apeinfo said nothing of {path}: {said}"));
            };
            let sel = o.get("selected").and_then(|s| s.get(arch));
            let err = o.get("error").and_then(|s| s.get(arch));
            match (sel, err) {
                (Some(Json::Num(n)), Some(Json::Null) | None) => Ok(Prediction::Run(*n as usize)),
                (Some(Json::Null) | None, Some(Json::Str(r))) => Ok(Prediction::Decline(r.clone())),
                _ => Err(format!("apeinfo on {path}: no selected/error for {arch}")),
            }
        })
        .collect()
}

/// What one exec did.
pub struct Observed<'a> {
    pub ended: Ended,
    /// The auxiliary vector of the image the exec started, where it started one.
    pub auxv: Option<Auxv>,
    pub delta: &'a Delta,
    /// The module's log lines of this exec: (file name, reason).
    pub logged: &'a [(String, String)],
}

/// Whether `seen` agrees with `pred` for the file `name` holding `bytes`; else what disagrees.
pub fn check(pred: &Prediction, bytes: &[u8], name: &str, seen: &Observed) -> Result<(), String> {
    let mut why = Vec::new();
    match seen.ended {
        Ended::Stuck => why.push("the exec could not be reaped, even killed".to_string()),
        Ended::Errno(-1) => why.push("the exec could not be started".to_string()),
        _ => {}
    }
    let want = pred.counter();
    // Every counter other than the predicted one stays; `elf_refused` may move with `handled`.
    for (c, d) in seen.delta.moved() {
        let ok = (Some(c) == want && d == 1)
            || (c == "elf_refused" && want == Some("handled") && d == 1);
        if !ok {
            why.push(format!("{c} moved by {d}"));
        }
    }
    if let Some(c) = want {
        if seen.delta.get(c) != 1 {
            why.push(format!("{c} did not move"));
        }
    }
    let refused = seen.delta.get("elf_refused") == 1;
    match pred {
        Prediction::Run(i) => {
            if seen.ended == Ended::Errno(libc::ENOEXEC) && !refused {
                why.push("ENOEXEC, and binfmt_elf refused nothing (elf_refused)".into());
            }
            if refused && seen.ended != Ended::Errno(libc::ENOEXEC) {
                why.push("binfmt_elf refused the header, yet the exec did not fail ENOEXEC".into());
            }
            if let Some(l) = seen.logged.first() {
                why.push(format!("logged a refusal: {l:?}"));
            }
            if let Some(a) = seen.auxv {
                if let Some(e) = started_elsewhere(bytes, *i, a) {
                    why.push(e);
                }
            }
        }
        Prediction::Decline(r) if r == "not-ape" => {
            if let Some(l) = seen.logged.first() {
                why.push(format!(
                    "logged a refusal of a file without an APE magic: {l:?}"
                ));
            }
        }
        Prediction::Decline(r) => {
            // Nothing after binfmt_ape takes a file that starts with an APE magic: declined,
            // it must fail ENOEXEC, never reach binfmt_elf.
            if seen.ended != Ended::Errno(libc::ENOEXEC) {
                why.push(format!("a declined file's exec ended {}", seen.ended));
            }
            for (n, got) in seen.logged {
                if r == "debug-magic" {
                    why.push(format!("logged a debug APE: {n}: {got}"));
                } else if n != name || got != r {
                    why.push(format!("logged {n}: {got}, want {name}: {r}"));
                }
            }
        }
    }
    if why.is_empty() {
        Ok(())
    } else {
        Err(why.join("; "))
    }
}

/// Whether the image started is not the one header `index` describes: `AT_PHNUM` is its
/// `e_phnum`, and `AT_ENTRY` its `e_entry` (ET_EXEC) or that moved by whole pages (ET_DYN).
fn started_elsewhere(bytes: &[u8], index: usize, a: Auxv) -> Option<String> {
    let window = &bytes[..bytes.len().min(ape::WINDOW)];
    let Some(s) = ape::statements(window).nth(index) else {
        return Some(format!("no header statement {index} in the file"));
    };
    let h = s.ehdr;
    if a.phnum != u64::from(h.e_phnum()) {
        return Some(format!(
            "AT_PHNUM {}, header {index} has {}",
            a.phnum,
            h.e_phnum()
        ));
    }
    let moved = a.entry.wrapping_sub(h.e_entry());
    let ok = match h.e_type() {
        2 => moved == 0,
        _ => moved % a.pagesz.max(1) == 0,
    };
    (!ok).then(|| {
        format!(
            "AT_ENTRY {:#x}, header {index} has e_entry {:#x} (type {})",
            a.entry,
            h.e_entry(),
            h.e_type()
        )
    })
}

/// A JSON value, as much of JSON as apeinfo prints.
#[derive(Debug)]
enum Json {
    Null,
    Bool(#[allow(dead_code)] bool),
    Num(f64),
    Str(String),
    Arr(Vec<Json>),
    Obj(Vec<(String, Json)>),
}

impl Json {
    fn get(&self, key: &str) -> Option<&Json> {
        match self {
            Self::Obj(v) => v.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }
}

struct Parser<'a> {
    s: &'a [u8],
    i: usize,
}

impl Parser<'_> {
    /// Skips white space: whether anything is left.
    fn skip_ws(&mut self) -> bool {
        while self.s.get(self.i).is_some_and(u8::is_ascii_whitespace) {
            self.i += 1;
        }
        self.i < self.s.len()
    }

    fn err<T>(&self, what: &str) -> Result<T, String> {
        Err(format!("apeinfo's JSON: {what} at byte {}", self.i))
    }

    fn eat(&mut self, c: u8) -> Result<(), String> {
        self.skip_ws();
        if self.s.get(self.i) == Some(&c) {
            self.i += 1;
            Ok(())
        } else {
            self.err(&format!("expected '{}'", c as char))
        }
    }

    fn value(&mut self) -> Result<Json, String> {
        self.skip_ws();
        match self.s.get(self.i) {
            Some(b'{') => {
                self.i += 1;
                let mut v = Vec::new();
                self.skip_ws();
                if self.s.get(self.i) == Some(&b'}') {
                    self.i += 1;
                    return Ok(Json::Obj(v));
                }
                loop {
                    self.skip_ws();
                    let Json::Str(k) = self.value()? else {
                        return self.err("expected a key");
                    };
                    self.eat(b':')?;
                    v.push((k, self.value()?));
                    self.skip_ws();
                    match self.s.get(self.i) {
                        Some(b',') => self.i += 1,
                        Some(b'}') => {
                            self.i += 1;
                            return Ok(Json::Obj(v));
                        }
                        _ => return self.err("expected ',' or '}'"),
                    }
                }
            }
            Some(b'[') => {
                self.i += 1;
                let mut v = Vec::new();
                self.skip_ws();
                if self.s.get(self.i) == Some(&b']') {
                    self.i += 1;
                    return Ok(Json::Arr(v));
                }
                loop {
                    v.push(self.value()?);
                    self.skip_ws();
                    match self.s.get(self.i) {
                        Some(b',') => self.i += 1,
                        Some(b']') => {
                            self.i += 1;
                            return Ok(Json::Arr(v));
                        }
                        _ => return self.err("expected ',' or ']'"),
                    }
                }
            }
            Some(b'"') => self.string().map(Json::Str),
            Some(b't') => self.word("true", Json::Bool(true)),
            Some(b'f') => self.word("false", Json::Bool(false)),
            Some(b'n') => self.word("null", Json::Null),
            Some(c) if *c == b'-' || c.is_ascii_digit() => {
                let start = self.i;
                while self
                    .s
                    .get(self.i)
                    .is_some_and(|c| c.is_ascii_digit() || b"+-.eE".contains(c))
                {
                    self.i += 1;
                }
                let t = std::str::from_utf8(&self.s[start..self.i]).unwrap_or("");
                t.parse().map(Json::Num).or_else(|_| self.err("bad number"))
            }
            _ => self.err("unexpected byte"),
        }
    }

    fn word(&mut self, w: &str, v: Json) -> Result<Json, String> {
        if self.s[self.i..].starts_with(w.as_bytes()) {
            self.i += w.len();
            Ok(v)
        } else {
            self.err("bad word")
        }
    }

    fn string(&mut self) -> Result<String, String> {
        self.i += 1;
        let mut out = Vec::new();
        loop {
            let Some(&c) = self.s.get(self.i) else {
                return self.err("unterminated string");
            };
            self.i += 1;
            match c {
                b'"' => return Ok(String::from_utf8_lossy(&out).into_owned()),
                b'\\' => {
                    let Some(&e) = self.s.get(self.i) else {
                        return self.err("unterminated escape");
                    };
                    self.i += 1;
                    match e {
                        b'n' => out.push(b'\n'),
                        b't' => out.push(b'\t'),
                        b'r' => out.push(b'\r'),
                        b'b' => out.push(8),
                        b'f' => out.push(12),
                        b'u' => {
                            let h = self.s.get(self.i..self.i + 4).unwrap_or(b"003f");
                            self.i += 4;
                            let v = std::str::from_utf8(h)
                                .ok()
                                .and_then(|h| u32::from_str_radix(h, 16).ok())
                                .and_then(char::from_u32)
                                .unwrap_or('?');
                            let mut b = [0; 4];
                            out.extend_from_slice(v.encode_utf8(&mut b).as_bytes());
                        }
                        e => out.push(e),
                    }
                }
                c => out.push(c),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_apeinfo_lines() {
        let t = br#"{"file":"/tmp/a b","magic":null,"headers":[{"index":0,"x":-1.5e3}],"selected":{"x86_64":1,"aarch64":null},"error":{"x86_64":null,"aarch64":"no-machine"},"runs":true}
        [{"file":"c\"d","selected":{},"error":{"x86_64":"phoff"}}]"#;
        let mut p = Parser { s: t, i: 0 };
        let a = p.value().unwrap();
        assert!(
            matches!(a.get("selected").unwrap().get("x86_64"), Some(Json::Num(n)) if *n == 1.0)
        );
        assert!(p.skip_ws());
        let Json::Arr(b) = p.value().unwrap() else {
            panic!()
        };
        assert!(matches!(b[0].get("file"), Some(Json::Str(s)) if s == "c\"d"));
        assert!(!p.skip_ws());
    }
}
