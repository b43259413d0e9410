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
