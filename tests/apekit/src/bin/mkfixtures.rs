// SPDX-License-Identifier: GPL-2.0

//! `mkfixtures --x86-exec F --arm-exec F --x86-dyn F --arm-dyn F -o DIR`: writes the test
//! APEs built from the payloads (DIR/fix) and the malformed corpus (DIR/corpus), each with a
//! MANIFEST.tsv naming every file and its expected outcome per CPU. Same inputs, same bytes.

use apekit::ape::Magic;
use apekit::{corpus, mkape};
use std::path::Path;

fn write(dir: &Path, name: &str, bytes: &[u8]) {
    use std::os::unix::fs::PermissionsExt;
    let p = dir.join(format!("{name}.ape"));
    std::fs::write(&p, bytes).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).expect("chmod");
}

fn main() {
    let mut args = std::env::args().skip(1);
    let (mut xe, mut ae, mut xd, mut ad, mut out) = (None, None, None, None, None);
    while let Some(a) = args.next() {
        let v = args.next();
        match a.as_str() {
            "--x86-exec" => xe = v,
            "--arm-exec" => ae = v,
            "--x86-dyn" => xd = v,
            "--arm-dyn" => ad = v,
            "-o" => out = v,
            _ => {
                eprintln!(
                    "usage: mkfixtures --x86-exec F --arm-exec F --x86-dyn F --arm-dyn F -o DIR"
                );
                std::process::exit(2);
            }
        }
    }
    let load = |p: Option<String>| {
        let p = p.expect("all four payloads are required");
        mkape::prepare(&std::fs::read(&p).unwrap_or_else(|e| panic!("{p}: {e}")))
            .unwrap_or_else(|e| panic!("{p}: {e}"))
    };
    let (xe, ae, xd, ad) = (load(xe), load(ae), load(xd), load(ad));
    let out = Path::new(out.as_deref().expect("-o DIR"));
    let (fix, cor) = (out.join("fix"), out.join("corpus"));
    for d in [&fix, &cor] {
        let _ = std::fs::remove_dir_all(d);
        std::fs::create_dir_all(d).expect("mkdir");
    }

    let mut manifest = String::from("# name\tx86_64\taarch64\twith_misc\tdescription\n");
    for (kind, x, a) in [("exec", &xe, &ae), ("dyn", &xd, &ad)] {
        for (mname, magic) in [
            ("mz", Magic::Mz),
            ("jartsr", Magic::Jartsr),
            ("debug", Magic::Debug),
        ] {
            for (order, elfs) in [
                ("xa", vec![x.clone(), a.clone()]),
                ("ax", vec![a.clone(), x.clone()]),
            ] {
                let name = format!("{kind}-{mname}-{order}");
                let bytes = mkape::Ape::new(magic, &elfs).render();
                write(&fix, &name, &bytes);
                let (want, misc) = if magic == Magic::Debug {
                    ("ENOEXEC", "sentinel")
                } else {
                    ("run", "same")
                };
                manifest.push_str(&format!(
                    "{name}\t{want}\t{want}\t{misc}\tET_{} payloads, {mname} magic, order {order}\n",
                    kind.to_uppercase()
                ));
            }
        }
    }
    std::fs::write(fix.join("MANIFEST.tsv"), manifest).expect("manifest");

    // Benchmark inputs: the decoder's worst case, a window full of decoy statements (each
    // a whole ELF header for no CPU, so each is decoded in full) with the real ones last,
    // the final quote at byte 8188 (the last place a closing quote is still read).
    let bench = out.join("bench");
    let _ = std::fs::remove_dir_all(&bench);
    std::fs::create_dir_all(&bench).expect("mkdir");
    let mut worst = mkape::Ape::new(Magic::Mz, &[xe.clone(), ae.clone()]);
    let mut decoy = worst.images[0].ehdr;
    decoy[18..20].copy_from_slice(&0u16.to_le_bytes());
    let decoy = mkape::printf_statement(&decoy);
    let real: usize = worst.statements.iter().map(Vec::len).sum();
    let head = Magic::Mz.bytes().len() + 3 + worst.script.len();
    let room = apekit::ape::WINDOW - 2 - head - real;
    let mut script = worst.script.clone();
    for _ in 0..room / decoy.len() {
        script.push_str(std::str::from_utf8(&decoy).expect("ASCII"));
    }
    // Pad with a comment line to put the last statement's newline at byte 8189.
    let pad = apekit::ape::WINDOW - 2 - head - real - (script.len() - worst.script.len());
    script.push_str(&format!("#{}\n", "-".repeat(pad.saturating_sub(2))));
    worst.script = script;
    let bytes = worst.render();
    assert_eq!(&bytes[8188..8190], b"'\n", "worst-window layout");
    write(&bench, "worst-window", &bytes);

    let cases = corpus::cases(&xe, &ae);
    for c in &cases {
        write(&cor, c.name, &c.bytes);
    }
    std::fs::write(cor.join("MANIFEST.tsv"), corpus::manifest(&cases)).expect("manifest");
    eprintln!(
        "mkfixtures: wrote 12 fixtures and {} corpus cases to {}",
        cases.len(),
        out.display()
    );
}
